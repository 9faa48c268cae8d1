//! `trustee._core`: the Python face of the verification core.
//!
//! Only type conversion, GIL handling and exception mapping live here; behaviour belongs in
//! the pure crates so it can be tested without an interpreter. Every call that does real
//! work releases the GIL, and the heavy calls of the request path (verification, policy
//! evaluation, signing, sealing) also have a `submit_*` form that runs them on an offload
//! thread (see `jobs`).

#![deny(missing_docs)]

mod errors;
mod evidence;
mod jobs;
mod jose;
mod policy;
mod session;

use pyo3::prelude::*;

/// Version of the native core.
#[pyfunction]
fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    errors::register(m)?;
    evidence::register(m)?;
    policy::register(m)?;
    jose::register(m)?;
    jobs::register(m)?;
    session::register(m)?;
    m.add_function(wrap_pyfunction!(version, m)?)?;
    Ok(())
}
