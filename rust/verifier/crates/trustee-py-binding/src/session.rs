//! `SessionSealer`: the sealed-cookie session keyring of `trustee-session`.

use pyo3::prelude::*;
use pyo3::types::PyBytes;

use trustee_session::Keyring;

use crate::errors::Raise;

/// Seals and opens session cookies with a list of 32-byte keys (the first seals).
#[pyclass(frozen, module = "trustee._core")]
pub struct SessionSealer {
    ring: Keyring,
}

#[pymethods]
impl SessionSealer {
    #[new]
    fn new(keys: Vec<Vec<u8>>) -> PyResult<Self> {
        Keyring::new(&keys)
            .map(|ring| Self { ring })
            .map_err(Raise::raise)
    }

    /// The sealing key's public id (hex), for logs.
    #[getter]
    fn key_id(&self) -> String {
        self.ring.sealing_key_id()
    }

    fn seal(&self, py: Python<'_>, expires_at: u64, payload: &[u8]) -> PyResult<String> {
        py.detach(|| self.ring.seal(expires_at, payload))
            .map_err(Raise::raise)
    }

    /// (payload, expires_at) of a cookie this keyring sealed.
    fn open<'py>(
        &self,
        py: Python<'py>,
        cookie: &str,
        now: u64,
    ) -> PyResult<(Bound<'py, PyBytes>, u64)> {
        let opened = py
            .detach(|| self.ring.open(cookie, now))
            .map_err(Raise::raise)?;
        Ok((PyBytes::new(py, &opened.payload), opened.expires_at))
    }
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<SessionSealer>()?;
    Ok(())
}
