//! `Job`: a call running on an offload thread (`trustee-offload`), and starting the pool.
//!
//! Every offloadable call has a synchronous form and a `submit_*` form that returns a `Job`
//! at once; `Job.result()` gives exactly what the synchronous form returns or raises.

use pyo3::prelude::*;

use trustee_offload as offload;

use crate::errors::offload_failure;

/// Converts a finished job's outcome, on the interpreter's thread, into what the
/// synchronous call returns (or raises).
pub(crate) type Convert<T> = fn(Python<'_>, T) -> PyResult<Py<PyAny>>;

trait Pending: Send + Sync {
    fn result(&self, py: Python<'_>) -> PyResult<Py<PyAny>>;
}

struct Waiting<T> {
    slot: offload::Slot<T>,
    convert: Convert<T>,
}

impl<T: Send> Pending for Waiting<T> {
    fn result(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let outcome = match offload::take(&self.slot) {
            Some(Ok(outcome)) => outcome,
            Some(Err(panic)) => {
                return Err(offload_failure(format!(
                    "the native job failed unexpectedly: {panic}"
                )))
            }
            None => {
                return Err(offload_failure(
                    "the job has not finished or was already taken",
                ))
            }
        };
        (self.convert)(py, outcome)
    }
}

/// A call running on an offload thread; its id is announced on the pipe when it is done.
#[pyclass(frozen, module = "trustee._core")]
pub struct Job {
    pending: Box<dyn Pending>,
}

#[pymethods]
impl Job {
    /// What the synchronous call would have returned or raised; once only.
    fn result(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        self.pending.result(py)
    }
}

/// Runs `work` on the pool under `job_id`; `convert` turns its outcome into the Python
/// value when `Job.result()` is called.
pub(crate) fn submit<T: Send + 'static>(
    job_id: u64,
    work: impl FnOnce() -> T + Send + 'static,
    convert: Convert<T>,
) -> PyResult<Job> {
    let slot = offload::submit(job_id, work).map_err(offload_failure)?;
    Ok(Job {
        pending: Box::new(Waiting { slot, convert }),
    })
}

/// Starts the offload threads (once per process) and returns (the read end of the
/// completion pipe, the number of threads).
#[pyfunction]
fn offload_start(threads: usize) -> PyResult<(i32, usize)> {
    offload::start(threads).map_err(offload_failure)
}

/// Whether this process has started its offload threads.
#[pyfunction]
fn offload_started() -> bool {
    offload::started()
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Job>()?;
    m.add_function(wrap_pyfunction!(offload_start, m)?)?;
    m.add_function(wrap_pyfunction!(offload_started, m)?)?;
    Ok(())
}
