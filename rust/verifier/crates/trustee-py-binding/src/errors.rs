//! The exceptions the extension raises, and the one place where Rust errors become them.
//!
//! Every domain error derives from `CoreError`, so a caller that only wants "the native core
//! refused this" catches one type; the subclasses say which domain refused.

use std::fmt::Display;
use std::sync::{Mutex, PoisonError};

use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyRuntimeError, PyValueError};
use pyo3::prelude::*;

use trustee_evidence::VerifyError;
use trustee_jose::JoseError;
use trustee_policy::PolicyError;
use trustee_session::SessionError;

create_exception!(
    trustee._core,
    CoreError,
    PyException,
    "Base of every refusal of the native core; the message says what was refused and why."
);
create_exception!(
    trustee._core,
    VerifierError,
    CoreError,
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
    CoreError,
    "The policy text is not valid Rego."
);
create_exception!(
    trustee._core,
    PolicyEvalError,
    CoreError,
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
    CoreError,
    "A signing or sealing input was refused; the message says which."
);
create_exception!(
    trustee._core,
    SessionCookieError,
    CoreError,
    "A session cookie was refused: args are (kind, message); kind is one of malformed, \
     unknown-key, tampered, expired, too-large, key, crypto."
);

/// A domain error as the Python exception that stands for it.
pub(crate) trait Raise {
    fn raise(self) -> PyErr;
}

impl Raise for VerifyError {
    fn raise(self) -> PyErr {
        match self {
            VerifyError::Unsupported(_) => UnsupportedTee::new_err(self.to_string()),
            _ => VerifierError::new_err(self.to_string()),
        }
    }
}

impl Raise for JoseError {
    fn raise(self) -> PyErr {
        CryptoError::new_err(self.to_string())
    }
}

impl Raise for SessionError {
    fn raise(self) -> PyErr {
        SessionCookieError::new_err((self.kind(), self.to_string()))
    }
}

/// An evaluation's failure; compiling has its own exception ([`compile_error`]).
impl Raise for PolicyError {
    fn raise(self) -> PyErr {
        match self {
            PolicyError::Limit(_) => PolicyLimitError::new_err(self.to_string()),
            _ => PolicyEvalError::new_err(self.to_string()),
        }
    }
}

/// Whatever stopped a policy from compiling.
pub(crate) fn compile_error(err: PolicyError) -> PyErr {
    PolicyCompileError::new_err(err.to_string())
}

/// Where a reference-value callback leaves the Python exception it raised, so that it can
/// become the PolicyEvalError's `__cause__` instead of being flattened to text.
pub(crate) type Raised = Mutex<Option<PyErr>>;

/// `err` raised, with the callback's exception (if it failed) as its cause.
pub(crate) fn policy_error(py: Python<'_>, err: PolicyError, raised: &Raised) -> PyErr {
    let caused = matches!(err, PolicyError::ReferenceValue(_));
    let py_err = err.raise();
    if caused {
        let cause = raised.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(cause) = cause {
            py_err.set_cause(py, Some(cause));
        }
    }
    py_err
}

/// A caller passed a value the call cannot take (ValueError).
pub(crate) fn invalid_argument(message: impl Into<String>) -> PyErr {
    PyValueError::new_err(message.into())
}

/// The offload machinery itself failed (RuntimeError): no pool, a panicked job, a result
/// taken twice. Never a refusal of the input.
pub(crate) fn offload_failure(message: impl Display) -> PyErr {
    PyRuntimeError::new_err(message.to_string())
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("CoreError", py.get_type::<CoreError>())?;
    m.add("VerifierError", py.get_type::<VerifierError>())?;
    m.add("UnsupportedTee", py.get_type::<UnsupportedTee>())?;
    m.add("PolicyCompileError", py.get_type::<PolicyCompileError>())?;
    m.add("PolicyEvalError", py.get_type::<PolicyEvalError>())?;
    m.add("PolicyLimitError", py.get_type::<PolicyLimitError>())?;
    m.add("CryptoError", py.get_type::<CryptoError>())?;
    m.add("SessionCookieError", py.get_type::<SessionCookieError>())?;
    Ok(())
}
