//! Rego policies: `Policy` (compile once, evaluate or explain many times, from any thread),
//! `ReferenceValues` (an RVPS snapshot for evaluations off the interpreter's thread) and
//! `RuleOutcome`, what one rule evaluated to.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::PyString;

use trustee_policy::{CompiledPolicy, Limits, PolicyError, ReferenceValueFn};

use crate::errors::{compile_error, invalid_argument, policy_error, Raise, Raised};
use crate::jobs::{self, Job};

/// What one rule evaluated to.
#[pyclass(frozen, eq, get_all, module = "trustee._core")]
#[derive(PartialEq, Eq)]
pub struct RuleOutcome {
    /// `"value"`, `"undefined"` (no definition held, no default) or `"absent"` (no such rule).
    kind: &'static str,
    /// The value as JSON text for `"value"`, else `""`.
    json: String,
}

#[pymethods]
impl RuleOutcome {
    fn __repr__(&self) -> String {
        format!("RuleOutcome({:?}, {:?})", self.kind, self.json)
    }
}

fn outcomes(outcomes: Vec<trustee_policy::RuleOutcome>) -> Vec<RuleOutcome> {
    use trustee_policy::RuleOutcome as Outcome;
    outcomes
        .into_iter()
        .map(|o| match o {
            Outcome::Value(v) => RuleOutcome {
                kind: "value",
                json: v.to_string(),
            },
            Outcome::Undefined => RuleOutcome {
                kind: "undefined",
                json: String::new(),
            },
            Outcome::Absent => RuleOutcome {
                kind: "absent",
                json: String::new(),
            },
        })
        .collect()
}

type Evaluated = Result<Vec<trustee_policy::RuleOutcome>, PolicyError>;

fn evaluated(py: Python<'_>, outcome: Evaluated) -> PyResult<Py<PyAny>> {
    // Offloaded evaluations read a snapshot, never a Python callback: no cause to attach.
    Ok(outcomes(outcome.map_err(Raise::raise)?)
        .into_pyobject(py)?
        .into_any()
        .unbind())
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
    ) -> PyResult<Option<Vec<RuleOutcome>>> {
        let raised: Arc<Raised> = Arc::default();
        let callback = reference_values.map(|f| python_callback(f, Arc::clone(&raised)));
        let rule_refs: Vec<&str> = rules.iter().map(String::as_str).collect();
        let result = py.detach(|| {
            self.inner
                .evaluate_sliced(input_json, data_json, &rule_refs, callback, slice)
        });
        match result {
            Ok(found) => Ok(Some(outcomes(found))),
            Err(PolicyError::SliceExpired(_)) => Ok(None),
            Err(err) => Err(policy_error(py, err, &raised)),
        }
    }
}

#[pymethods]
impl Policy {
    #[new]
    #[pyo3(signature = (text, timeout_ms = 1000, memory_mib = 64))]
    fn new(py: Python<'_>, text: &str, timeout_ms: u64, memory_mib: u64) -> PyResult<Self> {
        if timeout_ms == 0 || memory_mib == 0 {
            return Err(invalid_argument("policy limits must be positive"));
        }
        let limits = Limits {
            time: Duration::from_millis(timeout_ms),
            memory_bytes: memory_mib.saturating_mul(1024 * 1024),
        };
        let inner = py
            .detach(|| CompiledPolicy::compile_with_limits(text, limits))
            .map_err(compile_error)?;
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
    ) -> PyResult<Vec<RuleOutcome>> {
        // Without a slice the evaluation always runs to an outcome: `None` cannot come back.
        self.evaluate_within(py, input_json, data_json, &rules, reference_values, None)
            .map(Option::unwrap_or_default)
    }

    /// `evaluate` given at most `slice_ms` of wall-clock time: None when the slice ran out
    /// first (the evaluation is pure; run it again with `submit_evaluate` or `evaluate`).
    #[pyo3(signature = (input_json, data_json, rules, slice_ms, reference_values = None))]
    fn evaluate_slice(
        &self,
        py: Python<'_>,
        input_json: &str,
        data_json: Option<&str>,
        rules: Vec<String>,
        slice_ms: u64,
        reference_values: Option<Py<PyAny>>,
    ) -> PyResult<Option<Vec<RuleOutcome>>> {
        let slice = Some(Duration::from_millis(slice_ms));
        self.evaluate_within(py, input_json, data_json, &rules, reference_values, slice)
    }

    /// `(timeout_ms, memory_mib)` every evaluation is held to.
    #[getter]
    fn limits(&self) -> (u128, u64) {
        let limits = self.inner.limits();
        (limits.time.as_millis(), limits.memory_bytes / (1024 * 1024))
    }

    /// `evaluate` on an offload thread. Reference values come from a `ReferenceValues`
    /// snapshot, so the thread never needs the interpreter.
    #[pyo3(signature = (job_id, input_json, data_json, rules, reference_values = None))]
    fn submit_evaluate(
        &self,
        job_id: u64,
        input_json: String,
        data_json: Option<String>,
        rules: Vec<String>,
        reference_values: Option<&ReferenceValues>,
    ) -> PyResult<Job> {
        let policy = Arc::clone(&self.inner);
        let callback = reference_values.map(ReferenceValues::lookup);
        let work = move || {
            let rule_refs: Vec<&str> = rules.iter().map(String::as_str).collect();
            policy.evaluate(&input_json, data_json.as_deref(), &rule_refs, callback)
        };
        jobs::submit(job_id, work, evaluated)
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
        let raised: Arc<Raised> = Arc::default();
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

/// Adapts a Python `Callable[[str], str | None]` (JSON text of the value, or None when the
/// id is unknown) to the policy crate's callback. Runs with the GIL released by `evaluate`,
/// so it re-attaches for the duration of the call only.
fn python_callback(func: Py<PyAny>, raised: Arc<Raised>) -> Arc<ReferenceValueFn> {
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

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Policy>()?;
    m.add_class::<ReferenceValues>()?;
    m.add_class::<RuleOutcome>()?;
    Ok(())
}
