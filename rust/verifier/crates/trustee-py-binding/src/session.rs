//! `SessionSealer`: the sealed-cookie session keyring of `trustee-session`.

use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use trustee_session::{Keyring, SessionError};

create_exception!(
    trustee._core,
    SessionCookieError,
    PyException,
    "A session cookie was refused: args are (kind, message); kind is one of malformed, \
     unknown-key, tampered, expired, too-large, key, crypto."
);

fn session_err(err: SessionError) -> PyErr {
    SessionCookieError::new_err((err.kind(), err.to_string()))
}

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
            .map_err(session_err)
    }

    /// The sealing key's public id (hex), for logs.
    #[getter]
    fn key_id(&self) -> String {
        self.ring.sealing_key_id()
    }

    fn seal(&self, py: Python<'_>, expires_at: u64, payload: &[u8]) -> PyResult<String> {
        py.detach(|| self.ring.seal(expires_at, payload))
            .map_err(session_err)
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
            .map_err(session_err)?;
        Ok((PyBytes::new(py, &opened.payload), opened.expires_at))
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("SessionCookieError", py.get_type::<SessionCookieError>())?;
    m.add_class::<SessionSealer>()?;
    Ok(())
}
