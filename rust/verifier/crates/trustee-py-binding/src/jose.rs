//! The two public-key operations of the request path: ES256 token signatures (`Es256Signer`)
//! and the ECDH-ES JWE that seals a resource to a guest's EC key (`seal_ecdh_es`, `Jwe`).

use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::PyDict;

use trustee_jose::{Curve, Es256Signer as Signer, Fixed, JoseError};

use crate::errors::{CryptoError, Raise};
use crate::jobs::{self, Job};

/// An ES256 token signer (P-256 PKCS#8 key).
#[pyclass(frozen, module = "trustee._core")]
struct Es256Signer {
    inner: Arc<Signer>,
}

fn signed(py: Python<'_>, outcome: Result<String, JoseError>) -> PyResult<Py<PyAny>> {
    Ok(outcome
        .map_err(Raise::raise)?
        .into_pyobject(py)?
        .into_any()
        .unbind())
}

#[pymethods]
impl Es256Signer {
    #[new]
    fn new(pkcs8_der: &[u8]) -> PyResult<Self> {
        Signer::from_pkcs8(pkcs8_der)
            .map(|inner| Self {
                inner: Arc::new(inner),
            })
            .map_err(Raise::raise)
    }

    /// The compact JWS `signing_input.signature`.
    fn sign_compact(&self, py: Python<'_>, signing_input: &str) -> PyResult<String> {
        py.detach(|| self.inner.sign_compact(signing_input))
            .map_err(Raise::raise)
    }

    /// `sign_compact` on an offload thread.
    fn submit_sign_compact(&self, job_id: u64, signing_input: String) -> PyResult<Job> {
        let signer = Arc::clone(&self.inner);
        jobs::submit(job_id, move || signer.sign_compact(&signing_input), signed)
    }
}

/// A flattened RFC 7516 JWE; every member is base64url without padding.
#[pyclass(frozen, get_all, module = "trustee._core")]
struct Jwe {
    protected: String,
    encrypted_key: String,
    iv: String,
    ciphertext: String,
    tag: String,
}

impl From<trustee_jose::Jwe> for Jwe {
    fn from(jwe: trustee_jose::Jwe) -> Self {
        Self {
            protected: jwe.protected,
            encrypted_key: jwe.encrypted_key,
            iv: jwe.iv,
            ciphertext: jwe.ciphertext,
            tag: jwe.tag,
        }
    }
}

#[pymethods]
impl Jwe {
    /// The members as the JSON object a resource response carries, in wire order.
    fn members<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let out = PyDict::new(py);
        out.set_item("protected", &self.protected)?;
        out.set_item("encrypted_key", &self.encrypted_key)?;
        out.set_item("iv", &self.iv)?;
        out.set_item("ciphertext", &self.ciphertext)?;
        out.set_item("tag", &self.tag)?;
        Ok(out)
    }
}

fn sealed(py: Python<'_>, outcome: Result<trustee_jose::Jwe, JoseError>) -> PyResult<Py<PyAny>> {
    let jwe = Jwe::from(outcome.map_err(Raise::raise)?);
    Ok(Py::new(py, jwe)?.into_any())
}

fn curve(name: &str) -> PyResult<Curve> {
    Curve::from_jwk_name(name)
        .ok_or_else(|| CryptoError::new_err(format!("curve {name:?} is not P-256 or P-521")))
}

/// Seals `plaintext` to an EC guest key as an `ECDH-ES+A256KW` / `A256GCM` JWE. `x` and `y`
/// are the key's coordinates, decoded. `cek`, `iv` and `ephemeral` (the private scalar)
/// replace the random values for known-answer tests.
#[pyfunction]
#[pyo3(signature = (crv, x, y, plaintext, cek = None, iv = None, ephemeral = None))]
// The Python signature is the list; `py` is the one extra.
#[allow(clippy::too_many_arguments)]
fn seal_ecdh_es(
    py: Python<'_>,
    crv: &str,
    x: &[u8],
    y: &[u8],
    plaintext: &[u8],
    cek: Option<&[u8]>,
    iv: Option<&[u8]>,
    ephemeral: Option<&[u8]>,
) -> PyResult<Jwe> {
    let curve = curve(crv)?;
    let fixed = Fixed { cek, iv, ephemeral };
    py.detach(|| trustee_jose::ecdh_es_a256kw(curve, x, y, plaintext, &fixed))
        .map(Jwe::from)
        .map_err(Raise::raise)
}

/// `seal_ecdh_es` (random values only) on an offload thread.
#[pyfunction]
fn submit_seal_ecdh_es(
    job_id: u64,
    crv: &str,
    x: Vec<u8>,
    y: Vec<u8>,
    plaintext: Vec<u8>,
) -> PyResult<Job> {
    let curve = curve(crv)?;
    let work = move || trustee_jose::ecdh_es_a256kw(curve, &x, &y, &plaintext, &Fixed::default());
    jobs::submit(job_id, work, sealed)
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Es256Signer>()?;
    m.add_class::<Jwe>()?;
    m.add_function(wrap_pyfunction!(seal_ecdh_es, m)?)?;
    m.add_function(wrap_pyfunction!(submit_seal_ecdh_es, m)?)?;
    Ok(())
}
