//! Evidence verification: `Verifiers` (the one entry point, for every TEE), what hardware
//! evidence needs fetched (`tdx_collateral_key`, `snp_needs`) and which TEEs this build knows.

use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::PyBytes;

use trustee_evidence::{ClaimsEntry, HardwareOptions, Inputs, TpmAkRoots, VerifyError};

use crate::errors::{invalid_argument, Raise};
use crate::jobs::{self, Job};

/// One appraised component of the evidence.
#[pyclass(frozen, get_all, module = "trustee._core")]
pub struct Claims {
    /// The claims, a JSON object as text.
    json: String,
    /// The component's TEE class: `cpu`, `gpu`, …
    tee_class: String,
}

#[pymethods]
impl Claims {
    fn __repr__(&self) -> String {
        format!("<Claims {} {} bytes>", self.tee_class, self.json.len())
    }
}

fn claims(entries: Vec<ClaimsEntry>) -> Result<Vec<Claims>, VerifyError> {
    entries
        .into_iter()
        .map(|(claims, tee_class)| {
            serde_json::to_string(&claims)
                .map(|json| Claims { json, tee_class })
                .map_err(|e| VerifyError::Malformed {
                    tee: "claims",
                    reason: e.to_string(),
                })
        })
        .collect()
}

fn verified(py: Python<'_>, outcome: Result<Vec<Claims>, VerifyError>) -> PyResult<Py<PyAny>> {
    Ok(outcome
        .map_err(Raise::raise)?
        .into_pyobject(py)?
        .into_any()
        .unbind())
}

/// The verifiers of every supported TEE with their memo caches; one per attestation service.
#[pyclass(frozen, module = "trustee._core")]
struct Verifiers {
    inner: Arc<trustee_evidence::Verifiers>,
}

fn fingerprints(values: Vec<Vec<u8>>) -> PyResult<Vec<[u8; 32]>> {
    values
        .into_iter()
        .map(|v| {
            <[u8; 32]>::try_from(v.as_slice()).map_err(|_| {
                invalid_argument(format!(
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
    #[pyo3(signature = (extra_roots_sha256 = Vec::new(), snp_allow_nonzero_vmpl = false, tpm_ak_roots = Vec::new()))]
    fn new(
        extra_roots_sha256: Vec<Vec<u8>>,
        snp_allow_nonzero_vmpl: bool,
        tpm_ak_roots: Vec<Vec<u8>>,
    ) -> PyResult<Self> {
        let options = HardwareOptions {
            extra_roots_sha256: fingerprints(extra_roots_sha256)?,
            snp_allow_nonzero_vmpl,
            tpm_ak_roots: TpmAkRoots::from_der(&tpm_ak_roots)
                .map_err(|e| invalid_argument(e.to_string()))?,
        };
        Ok(Self {
            inner: Arc::new(trustee_evidence::Verifiers::new(options)),
        })
    }

    /// TEE names whose evidence needs collateral or certificates fetched by the caller;
    /// their verification is the heavy kind.
    #[staticmethod]
    fn hardware_tees() -> Vec<&'static str> {
        trustee_evidence::hardware_tees()
    }

    #[pyo3(signature = (tee, evidence, expected_report_data, expected_init_data_hash, now, tdx_collateral = None, snp_certs = Vec::new()))]
    // The Python signature is the list; `py` is the one extra.
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
    ) -> PyResult<Vec<Claims>> {
        py.detach(|| {
            let inputs = Inputs {
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
            claims(entries)
        })
        .map_err(Raise::raise)
    }

    /// `verify` on an offload thread.
    #[pyo3(signature = (job_id, tee, evidence, expected_report_data, expected_init_data_hash, now, tdx_collateral = None, snp_certs = Vec::new()))]
    #[allow(clippy::too_many_arguments)]
    fn submit_verify(
        &self,
        job_id: u64,
        tee: String,
        evidence: Vec<u8>,
        expected_report_data: Option<Vec<u8>>,
        expected_init_data_hash: Option<Vec<u8>>,
        now: i64,
        tdx_collateral: Option<Vec<u8>>,
        snp_certs: Vec<Vec<u8>>,
    ) -> PyResult<Job> {
        let verifiers = Arc::clone(&self.inner);
        let work = move || {
            let inputs = Inputs {
                now_unix: now,
                tdx_collateral: tdx_collateral.as_deref(),
                snp_certs: &snp_certs,
            };
            let entries = verifiers.verify(
                &tee,
                &evidence,
                expected_report_data.as_deref(),
                expected_init_data_hash.as_deref(),
                &inputs,
            )?;
            claims(entries)
        };
        jobs::submit(job_id, work, verified)
    }
}

/// `(fmspc, ca, pce_id, tee)` of TDX or SGX evidence: what to fetch its collateral by.
#[pyfunction]
fn tdx_collateral_key(evidence: &[u8]) -> PyResult<(String, String, String, &'static str)> {
    let key = trustee_evidence::tdx_collateral_key(evidence).map_err(Raise::raise)?;
    Ok((
        key.fmspc,
        key.ca.as_str().to_owned(),
        key.pce_id,
        key.tee.as_str(),
    ))
}

/// Which VCEK to fetch from AMD's KDS: the chip and the TCB the report was signed under.
#[pyclass(frozen, get_all, module = "trustee._core")]
struct VcekKey {
    product: Option<&'static str>,
    hw_id: String,
    bl: u8,
    tee: u8,
    snp: u8,
    microcode: u8,
    fmc: Option<u8>,
}

/// What SNP evidence lacks.
#[pyclass(frozen, get_all, module = "trustee._core")]
struct SnpNeeds {
    /// The VCEK to fetch; None when the evidence's cert_chain carries a VCEK or VLEK.
    vcek: Option<Py<VcekKey>>,
    /// The product named by the report's CPUID fields; None for v2 reports.
    product: Option<&'static str>,
}

#[pyfunction]
fn snp_needs(py: Python<'_>, evidence: &[u8]) -> PyResult<SnpNeeds> {
    let needs = trustee_evidence::snp_needs(evidence).map_err(Raise::raise)?;
    let vcek = match needs.vcek {
        Some(r) => Some(Py::new(
            py,
            VcekKey {
                product: r.product,
                hw_id: r.hw_id_hex,
                bl: r.bl,
                tee: r.tee,
                snp: r.snp,
                microcode: r.microcode,
                fmc: r.fmc,
            },
        )?),
        None => None,
    };
    Ok(SnpNeeds {
        vcek,
        product: needs.product,
    })
}

/// TEE names with a verifier in this build.
#[pyfunction]
fn supported_tees() -> Vec<&'static str> {
    trustee_evidence::supported_tees()
}

/// The built-in vendor certificates: (product, role, DER).
#[pyfunction]
fn vendor_anchors(py: Python<'_>) -> Vec<(&'static str, &'static str, Py<PyBytes>)> {
    trustee_evidence::vendor_anchors()
        .into_iter()
        .map(|a| (a.product, a.role, PyBytes::new(py, a.der).unbind()))
        .collect()
}

/// `(valid_from, valid_until)` (unix seconds) of DCAP collateral in its JSON form for `tee`
/// (`tdx`/`sgx`), checked without a quote: issuer chains to the Intel root or an extra root,
/// document and CRL signatures, revoked signers. ValueError names the failed check.
#[pyfunction]
#[pyo3(signature = (collateral, tee, extra_roots_sha256 = Vec::new()))]
fn check_dcap_collateral(
    py: Python<'_>,
    collateral: &[u8],
    tee: &str,
    extra_roots_sha256: Vec<Vec<u8>>,
) -> PyResult<(i64, i64)> {
    let roots = fingerprints(extra_roots_sha256)?;
    py.detach(|| trustee_evidence::check_dcap_collateral(collateral, tee, &roots))
        .map_err(invalid_argument)
}

/// `(not_before, not_after)` of an SNP vendor certificate (DER) checked against `issuer` (its
/// ARK or ASK), or, without one, as a root: self-signed and AMD's or an extra root.
/// ValueError names the failed check.
#[pyfunction]
#[pyo3(signature = (cert, issuer = None, extra_roots_sha256 = Vec::new()))]
fn check_snp_certificate(
    py: Python<'_>,
    cert: &[u8],
    issuer: Option<&[u8]>,
    extra_roots_sha256: Vec<Vec<u8>>,
) -> PyResult<(i64, i64)> {
    let roots = fingerprints(extra_roots_sha256)?;
    py.detach(|| trustee_evidence::check_snp_certificate(cert, issuer, &roots))
        .map_err(invalid_argument)
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Verifiers>()?;
    m.add_class::<Claims>()?;
    m.add_class::<SnpNeeds>()?;
    m.add_class::<VcekKey>()?;
    m.add_function(wrap_pyfunction!(tdx_collateral_key, m)?)?;
    m.add_function(wrap_pyfunction!(snp_needs, m)?)?;
    m.add_function(wrap_pyfunction!(supported_tees, m)?)?;
    m.add_function(wrap_pyfunction!(vendor_anchors, m)?)?;
    m.add_function(wrap_pyfunction!(check_dcap_collateral, m)?)?;
    m.add_function(wrap_pyfunction!(check_snp_certificate, m)?)?;
    Ok(())
}
