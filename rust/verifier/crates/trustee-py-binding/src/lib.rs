//! `trustee._core`: the Python face of the verification core.
//!
//! Only type conversion, GIL handling and exception mapping live here; behaviour belongs in
//! the pure crates so it can be tested without an interpreter. Every call that does real
//! work releases the GIL so a multi-threaded server keeps serving while evidence is checked.

mod session;

use trustee_offload as offload;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyRuntimeError};
use pyo3::prelude::*;
use pyo3::types::PyString;

use trustee_evidence::VerifyError;
use trustee_jose::{Curve, Es256Signer as Signer, Fixed, JoseError, Jwe};
use trustee_policy::{CompiledPolicy, Limits, PolicyError, ReferenceValueFn, RuleOutcome};

create_exception!(
    trustee._core,
    VerifierError,
    PyException,
    "Evidence could not be verified; the message says why."
);
create_exception!(
    trustee._core,
    UnsupportedTee,
    VerifierError,
    "A known TEE type for which this build has no verifier."
);
create_exception!(
    trustee._core,
    PolicyCompileError,
    PyException,
    "The policy text is not valid Rego."
);
create_exception!(
    trustee._core,
    PolicyEvalError,
    PyException,
    "Policy evaluation failed."
);
create_exception!(
    trustee._core,
    PolicyLimitError,
    PolicyEvalError,
    "Policy evaluation stopped at its time or memory limit; the message names the limit."
);
create_exception!(
    trustee._core,
    CryptoError,
    PyException,
    "A signing or sealing input was refused; the message says which."
);

fn verify_err(err: VerifyError) -> PyErr {
    match err {
        VerifyError::Unsupported(_) => UnsupportedTee::new_err(err.to_string()),
        _ => VerifierError::new_err(err.to_string()),
    }
}

/// Verifies `evidence` (JSON bytes) for `tee`; returns `(claims JSON, tee class)` pairs.
#[pyfunction]
#[pyo3(signature = (tee, evidence, expected_report_data, expected_init_data_hash))]
fn verify_evidence(
    py: Python<'_>,
    tee: &str,
    evidence: &[u8],
    expected_report_data: Option<&[u8]>,
    expected_init_data_hash: Option<&[u8]>,
) -> PyResult<Vec<(String, String)>> {
    py.detach(|| {
        let entries =
            trustee_evidence::verify(tee, evidence, expected_report_data, expected_init_data_hash)?;
        claims_texts(entries)
    })
    .map_err(verify_err)
}

/// The hardware verifiers (TDX, SNP) with their memo caches; one per attestation service.
#[pyclass(frozen, module = "trustee._core")]
struct Verifiers {
    inner: trustee_evidence::Verifiers,
}

fn fingerprints(values: Vec<Vec<u8>>) -> PyResult<Vec<[u8; 32]>> {
    values
        .into_iter()
        .map(|v| {
            <[u8; 32]>::try_from(v.as_slice()).map_err(|_| {
                pyo3::exceptions::PyValueError::new_err(format!(
                    "a trusted root fingerprint must be 32 bytes (SHA-256), got {}",
                    v.len()
                ))
            })
        })
        .collect()
}

#[pymethods]
impl Verifiers {
    #[new]
    #[pyo3(signature = (extra_roots_sha256 = Vec::new(), snp_allow_nonzero_vmpl = false))]
    fn new(extra_roots_sha256: Vec<Vec<u8>>, snp_allow_nonzero_vmpl: bool) -> PyResult<Self> {
        Ok(Self {
            inner: trustee_evidence::Verifiers::new(trustee_evidence::HardwareOptions {
                extra_roots_sha256: fingerprints(extra_roots_sha256)?,
                snp_allow_nonzero_vmpl,
            }),
        })
    }

    #[pyo3(signature = (tee, evidence, expected_report_data, expected_init_data_hash, now, tdx_collateral = None, snp_certs = Vec::new()))]
    #[allow(clippy::too_many_arguments)]
    fn verify(
        &self,
        py: Python<'_>,
        tee: &str,
        evidence: &[u8],
        expected_report_data: Option<&[u8]>,
        expected_init_data_hash: Option<&[u8]>,
        now: i64,
        tdx_collateral: Option<&[u8]>,
        snp_certs: Vec<Vec<u8>>,
    ) -> PyResult<Vec<(String, String)>> {
        py.detach(|| {
            let inputs = trustee_evidence::HardwareInputs {
                now_unix: now,
                tdx_collateral,
                snp_certs: &snp_certs,
            };
            let entries = self.inner.verify(
                tee,
                evidence,
                expected_report_data,
                expected_init_data_hash,
                &inputs,
            )?;
            claims_texts(entries)
        })
        .map_err(verify_err)
    }
}

/// `(fmspc, ca, pce_id)` of TDX evidence: what to fetch its collateral by.
#[pyfunction]
fn tdx_collateral_key(evidence: &[u8]) -> PyResult<(String, String, String)> {
    let key = trustee_evidence::tdx_collateral_key(evidence).map_err(verify_err)?;
    Ok((key.fmspc, key.ca.as_str().to_owned(), key.pce_id))
}

/// What SNP evidence lacks: `{"vcek": {...} | None, "product": str | None, "has_ca": bool}`.
#[pyfunction]
fn snp_needs(py: Python<'_>, evidence: &[u8]) -> PyResult<Py<PyAny>> {
    let needs = trustee_evidence::snp_needs(evidence).map_err(verify_err)?;
    let out = pyo3::types::PyDict::new(py);
    match needs.vcek {
        Some(r) => {
            let d = pyo3::types::PyDict::new(py);
            d.set_item("product", r.product)?;
            d.set_item("hw_id", r.hw_id_hex)?;
            d.set_item("bl", r.bl)?;
            d.set_item("tee", r.tee)?;
            d.set_item("snp", r.snp)?;
            d.set_item("microcode", r.microcode)?;
            d.set_item("fmc", r.fmc)?;
            out.set_item("vcek", d)?;
        }
        None => out.set_item("vcek", py.None())?,
    }
    out.set_item("product", needs.product)?;
    out.set_item("has_ca", needs.has_ca)?;
    Ok(out.into_any().unbind())
}

fn claims_texts(
    entries: Vec<(serde_json::Value, String)>,
) -> Result<Vec<(String, String)>, VerifyError> {
    entries
        .into_iter()
        .map(|(claims, class)| {
            serde_json::to_string(&claims)
                .map(|text| (text, class))
                .map_err(|e| VerifyError::Malformed {
                    tee: "claims",
                    reason: e.to_string(),
                })
        })
        .collect()
}

/// TEE names with a verifier in this build.
#[pyfunction]
fn supported_tees() -> Vec<&'static str> {
    trustee_evidence::supported_tees()
}

/// Version of the native core.
#[pyfunction]
fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

/// A compiled Rego policy; immutable, so one instance may be evaluated from many threads.
#[pyclass(frozen, module = "trustee._core")]
struct Policy {
    inner: Arc<CompiledPolicy>,
}

impl Policy {
    /// One evaluation with the GIL released; None when `slice` ran out first.
    fn evaluate_within(
        &self,
        py: Python<'_>,
        input_json: &str,
        data_json: Option<&str>,
        rules: &[String],
        reference_values: Option<Py<PyAny>>,
        slice: Option<Duration>,
    ) -> PyResult<Option<Vec<(&'static str, String)>>> {
        // The Python exception raised by the callback, kept so it can become the
        // PolicyEvalError's __cause__ instead of being flattened to text.
        let raised: Arc<Mutex<Option<PyErr>>> = Arc::default();
        let callback = reference_values.map(|f| python_callback(f, Arc::clone(&raised)));
        let rule_refs: Vec<&str> = rules.iter().map(String::as_str).collect();
        let result = py.detach(|| {
            self.inner
                .evaluate_sliced(input_json, data_json, &rule_refs, callback, slice)
        });
        if let Err(PolicyError::SliceExpired(_)) = result {
            return Ok(None);
        }
        policy_result(py, result, &raised).map(Some)
    }
}

#[pymethods]
impl Policy {
    #[new]
    #[pyo3(signature = (text, timeout_ms = 1000, memory_mib = 64))]
    fn new(py: Python<'_>, text: &str, timeout_ms: u64, memory_mib: u64) -> PyResult<Self> {
        if timeout_ms == 0 || memory_mib == 0 {
            return Err(pyo3::exceptions::PyValueError::new_err(
                "policy limits must be positive",
            ));
        }
        let limits = Limits {
            time: Duration::from_millis(timeout_ms),
            memory_bytes: memory_mib.saturating_mul(1024 * 1024),
        };
        let inner = py
            .detach(|| CompiledPolicy::compile_with_limits(text, limits))
            .map_err(|e| PolicyCompileError::new_err(e.to_string()))?;
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    #[getter]
    fn syntax(&self) -> &'static str {
        self.inner.syntax().as_str()
    }

    #[pyo3(signature = (input_json, data_json, rules, reference_values = None))]
    fn evaluate(
        &self,
        py: Python<'_>,
        input_json: &str,
        data_json: Option<&str>,
        rules: Vec<String>,
        reference_values: Option<Py<PyAny>>,
    ) -> PyResult<Vec<(&'static str, String)>> {
        // Without a slice the evaluation always runs to an outcome: `None` cannot come back.
        self.evaluate_within(py, input_json, data_json, &rules, reference_values, None)
            .map(Option::unwrap_or_default)
    }

    /// `evaluate` given at most `slice_ms` of wall-clock time: None when the slice ran out
    /// first (the evaluation is pure; run it again with `submit` or `evaluate`).
    #[pyo3(signature = (input_json, data_json, rules, slice_ms, reference_values = None))]
    fn evaluate_slice(
        &self,
        py: Python<'_>,
        input_json: &str,
        data_json: Option<&str>,
        rules: Vec<String>,
        slice_ms: u64,
        reference_values: Option<Py<PyAny>>,
    ) -> PyResult<Option<Vec<(&'static str, String)>>> {
        let slice = Some(Duration::from_millis(slice_ms));
        self.evaluate_within(py, input_json, data_json, &rules, reference_values, slice)
    }

    /// `(timeout_ms, memory_mib)` every evaluation is held to.
    #[getter]
    fn limits(&self) -> (u128, u64) {
        let limits = self.inner.limits();
        (limits.time.as_millis(), limits.memory_bytes / (1024 * 1024))
    }

    /// Starts the same evaluation on an offload thread (see `offload_start`) and returns at
    /// once; `Job.result()` gives what `evaluate` would have. Reference values come from a
    /// `ReferenceValues` snapshot, so the thread never needs the interpreter.
    #[pyo3(signature = (job_id, input_json, data_json, rules, reference_values = None))]
    fn submit(
        &self,
        job_id: u64,
        input_json: String,
        data_json: Option<String>,
        rules: Vec<String>,
        reference_values: Option<&ReferenceValues>,
    ) -> PyResult<Job> {
        let policy = Arc::clone(&self.inner);
        let callback = reference_values.map(|rv| rv.lookup());
        let slot = offload::submit(job_id, move || {
            let rule_refs: Vec<&str> = rules.iter().map(String::as_str).collect();
            policy.evaluate(&input_json, data_json.as_deref(), &rule_refs, callback)
        })
        .map_err(PyRuntimeError::new_err)?;
        Ok(Job {
            pending: Pending::Policy(slot),
        })
    }

    /// JSON of the explanation of `rules`: the decision plus, per rule, the definitions that
    /// produced it and where the others failed.
    #[pyo3(signature = (input_json, data_json, rules, reference_values = None))]
    fn explain(
        &self,
        py: Python<'_>,
        input_json: &str,
        data_json: Option<&str>,
        rules: Vec<String>,
        reference_values: Option<Py<PyAny>>,
    ) -> PyResult<String> {
        let raised: Arc<Mutex<Option<PyErr>>> = Arc::default();
        let callback = reference_values.map(|f| python_callback(f, Arc::clone(&raised)));
        let rule_refs: Vec<&str> = rules.iter().map(String::as_str).collect();

        let result = py.detach(|| {
            // Evaluation guards itself; explanation runs extra rules through regorus, so a
            // panic there must not escape as PanicException (a BaseException) either.
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.inner
                    .explain(input_json, data_json, &rule_refs, callback)
                    .map(|explanation| explanation.to_json().to_string())
            }))
            .unwrap_or_else(|_| {
                Err(PolicyError::Eval(
                    "the policy engine failed while explaining the policy".into(),
                ))
            })
        });

        result.map_err(|err| policy_error(py, err, &raised))
    }

    fn __repr__(&self) -> String {
        format!(
            "<Policy {} syntax={}>",
            self.inner.package_path(),
            self.inner.syntax()
        )
    }
}

fn policy_result(
    py: Python<'_>,
    result: Result<Vec<RuleOutcome>, PolicyError>,
    raised: &Mutex<Option<PyErr>>,
) -> PyResult<Vec<(&'static str, String)>> {
    match result {
        Ok(outcomes) => Ok(outcomes
            .into_iter()
            .map(|o| match o {
                RuleOutcome::Value(v) => ("value", v.to_string()),
                RuleOutcome::Undefined => ("undefined", String::new()),
                RuleOutcome::Absent => ("absent", String::new()),
            })
            .collect()),
        Err(err) => Err(policy_error(py, err, raised)),
    }
}

/// PolicyEvalError; a failed reference-value callback's Python exception becomes its cause.
fn policy_error(py: Python<'_>, err: PolicyError, raised: &Mutex<Option<PyErr>>) -> PyErr {
    if let PolicyError::Limit(_) = err {
        return PolicyLimitError::new_err(err.to_string());
    }
    let py_err = PolicyEvalError::new_err(err.to_string());
    if let PolicyError::ReferenceValue(_) = err {
        let cause = raised.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(cause) = cause {
            py_err.set_cause(py, Some(cause));
        }
    }
    py_err
}

/// Reference values by id (the RVPS snapshot: id → JSON text), parsed once, for policies
/// evaluated off the interpreter's thread. A value that is not JSON fails only the policies
/// that look it up, exactly as with a callback.
#[pyclass(frozen, module = "trustee._core")]
struct ReferenceValues {
    values: Arc<HashMap<String, Result<serde_json::Value, String>>>,
}

impl ReferenceValues {
    fn lookup(&self) -> Arc<ReferenceValueFn> {
        let values = Arc::clone(&self.values);
        Arc::new(move |id: &str| match values.get(id) {
            None => Ok(None),
            Some(Ok(value)) => Ok(Some(value.clone())),
            Some(Err(msg)) => Err(msg.clone()),
        })
    }
}

fn reference_value_json(id: &str, text: &str) -> Result<serde_json::Value, String> {
    serde_json::from_str(text).map_err(|e| format!("reference value {id:?} is not valid JSON: {e}"))
}

#[pymethods]
impl ReferenceValues {
    #[new]
    fn new(values: HashMap<String, String>) -> Self {
        let parsed = values
            .into_iter()
            .map(|(id, text)| {
                let value = reference_value_json(&id, &text);
                (id, value)
            })
            .collect();
        Self {
            values: Arc::new(parsed),
        }
    }

    fn __len__(&self) -> usize {
        self.values.len()
    }
}

/// An ES256 token signer (P-256 PKCS#8 key).
#[pyclass(frozen, module = "trustee._core")]
struct Es256Signer {
    inner: Arc<Signer>,
}

#[pymethods]
impl Es256Signer {
    #[new]
    fn new(pkcs8_der: &[u8]) -> PyResult<Self> {
        Signer::from_pkcs8(pkcs8_der)
            .map(|inner| Self {
                inner: Arc::new(inner),
            })
            .map_err(crypto_err)
    }

    /// The compact JWS `signing_input.signature`.
    fn sign_compact(&self, py: Python<'_>, signing_input: &str) -> PyResult<String> {
        py.detach(|| self.inner.sign_compact(signing_input))
            .map_err(crypto_err)
    }

    /// `sign_compact` on an offload thread.
    fn submit(&self, job_id: u64, signing_input: String) -> PyResult<Job> {
        let signer = Arc::clone(&self.inner);
        let slot = offload::submit(job_id, move || signer.sign_compact(&signing_input))
            .map_err(PyRuntimeError::new_err)?;
        Ok(Job {
            pending: Pending::Sign(slot),
        })
    }
}

fn crypto_err(err: JoseError) -> PyErr {
    CryptoError::new_err(err.to_string())
}

fn curve(name: &str) -> PyResult<Curve> {
    Curve::from_jwk_name(name)
        .ok_or_else(|| CryptoError::new_err(format!("curve {name:?} is not P-256 or P-521")))
}

type JweParts = (String, String, String, String, String);

fn jwe_parts(jwe: Jwe) -> JweParts {
    (
        jwe.protected,
        jwe.encrypted_key,
        jwe.iv,
        jwe.ciphertext,
        jwe.tag,
    )
}

/// Seals `plaintext` to an EC guest key as an `ECDH-ES+A256KW` / `A256GCM` JWE; returns
/// (protected, encrypted_key, iv, ciphertext, tag), all base64url. `cek`, `iv` and
/// `ephemeral` (the private scalar) replace the random values for known-answer tests.
#[pyfunction]
#[pyo3(signature = (crv, x, y, plaintext, cek = None, iv = None, ephemeral = None))]
// The Python signature is the list; `py` is the one extra.
#[allow(clippy::too_many_arguments)]
fn seal_ecdh_es(
    py: Python<'_>,
    crv: &str,
    x: &str,
    y: &str,
    plaintext: &[u8],
    cek: Option<&[u8]>,
    iv: Option<&[u8]>,
    ephemeral: Option<&[u8]>,
) -> PyResult<JweParts> {
    let curve = curve(crv)?;
    let fixed = Fixed { cek, iv, ephemeral };
    py.detach(|| trustee_jose::ecdh_es_a256kw(curve, x, y, plaintext, &fixed))
        .map(jwe_parts)
        .map_err(crypto_err)
}

/// `seal_ecdh_es` (random values only) on an offload thread.
#[pyfunction]
fn submit_seal_ecdh_es(
    job_id: u64,
    crv: &str,
    x: String,
    y: String,
    plaintext: Vec<u8>,
) -> PyResult<Job> {
    let curve = curve(crv)?;
    let slot = offload::submit(job_id, move || {
        trustee_jose::ecdh_es_a256kw(curve, &x, &y, &plaintext, &Fixed::default())
    })
    .map_err(PyRuntimeError::new_err)?;
    Ok(Job {
        pending: Pending::Seal(slot),
    })
}

enum Pending {
    Policy(offload::Slot<Result<Vec<RuleOutcome>, PolicyError>>),
    Sign(offload::Slot<Result<String, JoseError>>),
    Seal(offload::Slot<Result<Jwe, JoseError>>),
}

/// A call running on an offload thread; its id is announced on the pipe when it is done.
#[pyclass(frozen, module = "trustee._core")]
struct Job {
    pending: Pending,
}

#[pymethods]
impl Job {
    /// What the synchronous call would have returned or raised; once only.
    fn result(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        match &self.pending {
            Pending::Policy(slot) => {
                let outcome = finished(offload::take(slot))?;
                let none = Mutex::new(None);
                Ok(policy_result(py, outcome, &none)?
                    .into_pyobject(py)?
                    .into_any()
                    .unbind())
            }
            Pending::Sign(slot) => {
                let outcome = finished(offload::take(slot))?;
                Ok(outcome
                    .map_err(crypto_err)?
                    .into_pyobject(py)?
                    .into_any()
                    .unbind())
            }
            Pending::Seal(slot) => {
                let outcome = finished(offload::take(slot))?;
                Ok(jwe_parts(outcome.map_err(crypto_err)?)
                    .into_pyobject(py)?
                    .into_any()
                    .unbind())
            }
        }
    }
}

fn finished<T>(taken: Option<Result<T, String>>) -> PyResult<T> {
    match taken {
        Some(Ok(value)) => Ok(value),
        Some(Err(panic)) => Err(PyRuntimeError::new_err(format!(
            "the native job failed unexpectedly: {panic}"
        ))),
        None => Err(PyRuntimeError::new_err(
            "the job has not finished or was already taken",
        )),
    }
}

/// Starts the offload threads (once per process) and returns (the read end of the
/// completion pipe, the number of threads).
#[pyfunction]
fn offload_start(threads: usize) -> PyResult<(i32, usize)> {
    offload::start(threads).map_err(|e| PyRuntimeError::new_err(e.to_string()))
}

#[pyfunction]
fn offload_started() -> bool {
    offload::started()
}

/// Adapts a Python `Callable[[str], str | None]` (JSON text of the value, or None when the
/// id is unknown) to the policy crate's callback. Runs with the GIL released by `evaluate`,
/// so it re-attaches for the duration of the call only.
fn python_callback(func: Py<PyAny>, raised: Arc<Mutex<Option<PyErr>>>) -> Arc<ReferenceValueFn> {
    Arc::new(move |id: &str| {
        Python::attach(|py| {
            let fail = |err: PyErr| {
                let msg = err.to_string();
                *raised.lock().unwrap_or_else(PoisonError::into_inner) = Some(err);
                Err(msg)
            };
            let ret = match func.bind(py).call1((id,)) {
                Ok(ret) => ret,
                Err(err) => return fail(err),
            };
            if ret.is_none() {
                return Ok(None);
            }
            let Ok(text) = ret.cast::<PyString>() else {
                let type_name = ret
                    .get_type()
                    .name()
                    .map(|n| n.to_string())
                    .unwrap_or_else(|_| "?".into());
                return Err(format!(
                    "reference_values callback must return JSON text (str) or None, \
                     got {type_name} for {id:?}"
                ));
            };
            let text = match text.to_str() {
                Ok(t) => t,
                Err(err) => return fail(err),
            };
            reference_value_json(id, text).map(Some)
        })
    })
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("VerifierError", py.get_type::<VerifierError>())?;
    m.add("UnsupportedTee", py.get_type::<UnsupportedTee>())?;
    m.add("PolicyCompileError", py.get_type::<PolicyCompileError>())?;
    m.add("PolicyEvalError", py.get_type::<PolicyEvalError>())?;
    m.add("PolicyLimitError", py.get_type::<PolicyLimitError>())?;
    m.add("CryptoError", py.get_type::<CryptoError>())?;
    m.add_function(wrap_pyfunction!(seal_ecdh_es, m)?)?;
    m.add_function(wrap_pyfunction!(submit_seal_ecdh_es, m)?)?;
    m.add_function(wrap_pyfunction!(offload_start, m)?)?;
    m.add_function(wrap_pyfunction!(offload_started, m)?)?;
    m.add_class::<ReferenceValues>()?;
    m.add_class::<Es256Signer>()?;
    m.add_class::<Job>()?;
    m.add_function(wrap_pyfunction!(verify_evidence, m)?)?;
    m.add_function(wrap_pyfunction!(supported_tees, m)?)?;
    m.add_function(wrap_pyfunction!(version, m)?)?;
    m.add_function(wrap_pyfunction!(tdx_collateral_key, m)?)?;
    m.add_function(wrap_pyfunction!(snp_needs, m)?)?;
    m.add_class::<Policy>()?;
    m.add_class::<Verifiers>()?;
    session::register(m)?;
    Ok(())
}
