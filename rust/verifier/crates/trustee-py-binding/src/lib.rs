//! `trustee._core`: the Python face of the verification core.
//!
//! Only type conversion, GIL handling and exception mapping live here; behaviour belongs in
//! the pure crates so it can be tested without an interpreter. Every call that does real
//! work releases the GIL so a multi-threaded server keeps serving while evidence is checked.

use std::sync::{Arc, Mutex, PoisonError};

use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::PyString;

use trustee_evidence::VerifyError;
use trustee_policy::{CompiledPolicy, PolicyError, ReferenceValueFn, RuleOutcome};

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
    inner: CompiledPolicy,
}

#[pymethods]
impl Policy {
    #[new]
    fn new(py: Python<'_>, text: &str) -> PyResult<Self> {
        let inner = py
            .detach(|| CompiledPolicy::compile(text))
            .map_err(|e| PolicyCompileError::new_err(e.to_string()))?;
        Ok(Self { inner })
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
        // The Python exception raised by the callback, kept so it can become the
        // PolicyEvalError's __cause__ instead of being flattened to text.
        let raised: Arc<Mutex<Option<PyErr>>> = Arc::default();
        let callback = reference_values.map(|f| python_callback(f, Arc::clone(&raised)));
        let rule_refs: Vec<&str> = rules.iter().map(String::as_str).collect();

        let result = py.detach(|| {
            self.inner
                .evaluate(input_json, data_json, &rule_refs, callback)
        });

        match result {
            Ok(outcomes) => Ok(outcomes
                .into_iter()
                .map(|o| match o {
                    RuleOutcome::Value(v) => ("value", v.to_string()),
                    RuleOutcome::Undefined => ("undefined", String::new()),
                    RuleOutcome::Absent => ("absent", String::new()),
                })
                .collect()),
            Err(err) => {
                let py_err = PolicyEvalError::new_err(err.to_string());
                if let PolicyError::ReferenceValue(_) = err {
                    let cause = raised.lock().unwrap_or_else(PoisonError::into_inner).take();
                    if let Some(cause) = cause {
                        py_err.set_cause(py, Some(cause));
                    }
                }
                Err(py_err)
            }
        }
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
            self.inner
                .explain(input_json, data_json, &rule_refs, callback)
                .map(|explanation| explanation.to_json().to_string())
        });

        result.map_err(|err| {
            let py_err = PolicyEvalError::new_err(err.to_string());
            if let PolicyError::ReferenceValue(_) = err {
                let cause = raised.lock().unwrap_or_else(PoisonError::into_inner).take();
                if let Some(cause) = cause {
                    py_err.set_cause(py, Some(cause));
                }
            }
            py_err
        })
    }

    fn __repr__(&self) -> String {
        format!(
            "<Policy {} syntax={}>",
            self.inner.package_path(),
            self.inner.syntax()
        )
    }
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
            serde_json::from_str(text).map(Some).map_err(|e| {
                format!("reference value {id:?} from the callback is not valid JSON: {e}")
            })
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
    m.add_function(wrap_pyfunction!(verify_evidence, m)?)?;
    m.add_function(wrap_pyfunction!(supported_tees, m)?)?;
    m.add_function(wrap_pyfunction!(version, m)?)?;
    m.add_function(wrap_pyfunction!(tdx_collateral_key, m)?)?;
    m.add_function(wrap_pyfunction!(snp_needs, m)?)?;
    m.add_class::<Policy>()?;
    m.add_class::<Verifiers>()?;
    Ok(())
}
