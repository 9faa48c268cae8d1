//! Per-evaluation time and memory limits.
//!
//! Time: regorus's cooperative execution timer, re-armed before each rule with what is left of
//! the evaluation's budget.
//!
//! Memory: regorus counts the live bytes of the Rust heap through its mimalloc build (with
//! its `allocator-memory-limits` feature regorus installs that as the global allocator of
//! whatever links it, the Python extension included) and compares them with one
//! process-wide ceiling while it evaluates. To give that ceiling a per-evaluation meaning, it
//! is kept at "heap size when the first of the evaluations now running started + the limit of
//! each running evaluation". A builtin that allocates its whole result in one go is never
//! reached by that cooperative check, so [`crate::bounded`] replaces those builtins with
//! versions that size the result before allocating it.

use std::cell::Cell;
use std::fmt;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use regorus::{LimitError, Value};

pub const DEFAULT_TIME: Duration = Duration::from_secs(1);
pub const DEFAULT_MEMORY_BYTES: u64 = 64 * 1024 * 1024;
/// regorus reads the clock once per this many work units; one unit is a few hundred
/// nanoseconds at most, so a limit is noticed within well under a millisecond.
const CHECK_INTERVAL: u32 = 32;

/// What one evaluation may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock time for the whole evaluation (all rules asked).
    pub time: Duration,
    /// Heap bytes the evaluation may allocate beyond what the process held when it started.
    pub memory_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            time: DEFAULT_TIME,
            memory_bytes: DEFAULT_MEMORY_BYTES,
        }
    }
}

/// Which limit stopped an evaluation, with its configured value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitHit {
    Time(Duration),
    Memory(u64),
}

impl fmt::Display for LimitHit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LimitHit::Time(limit) => write!(
                f,
                "policy evaluation exceeded its time limit of {} ms",
                limit.as_millis()
            ),
            LimitHit::Memory(limit) => {
                write!(
                    f,
                    "policy evaluation exceeded its memory limit of {}",
                    mib_text(*limit)
                )
            }
        }
    }
}

fn mib_text(bytes: u64) -> String {
    const MIB: u64 = 1024 * 1024;
    if bytes.is_multiple_of(MIB) {
        format!("{} MiB", bytes / MIB)
    } else {
        format!("{bytes} bytes")
    }
}

pub(crate) fn timer_config(limit: Duration) -> regorus::utils::limits::ExecutionTimerConfig {
    regorus::utils::limits::ExecutionTimerConfig {
        limit,
        check_interval: std::num::NonZeroU32::new(CHECK_INTERVAL)
            .unwrap_or(std::num::NonZeroU32::MIN),
    }
}

thread_local! {
    /// The memory limit of the evaluation running on this thread, for the bounded builtins.
    static BUDGET: Cell<u64> = const { Cell::new(DEFAULT_MEMORY_BYTES) };
    /// Set by a bounded builtin that refused to allocate: regorus flattens extension errors
    /// to text, and the caller must still know a limit was hit.
    static REFUSED: Cell<bool> = const { Cell::new(false) };
}

pub(crate) fn budget() -> u64 {
    BUDGET.with(Cell::get)
}

pub(crate) fn note_refusal() {
    REFUSED.with(|r| r.set(true));
}

fn take_refusal() -> bool {
    REFUSED.with(|r| r.replace(false))
}

#[derive(Default)]
struct Governor {
    in_flight: usize,
    baseline: u64,
    reserved: u64,
}

static GOVERNOR: Mutex<Governor> = Mutex::new(Governor {
    in_flight: 0,
    baseline: 0,
    reserved: 0,
});

/// Holds one evaluation's share of the global memory ceiling while it runs on this thread.
pub(crate) struct MemoryScope {
    limit: u64,
    previous_budget: u64,
}

impl MemoryScope {
    pub(crate) fn enter(limit: u64) -> Self {
        let mut gov = GOVERNOR.lock().unwrap_or_else(PoisonError::into_inner);
        if gov.in_flight == 0 {
            gov.baseline = regorus_mimalloc::global_allocation_stats_snapshot().allocated;
        }
        gov.in_flight += 1;
        gov.reserved = gov.reserved.saturating_add(limit);
        regorus::set_global_memory_limit(Some(gov.baseline.saturating_add(gov.reserved)));
        drop(gov);
        take_refusal();
        Self {
            limit,
            previous_budget: BUDGET.with(|b| b.replace(limit)),
        }
    }

    /// Whether a bounded builtin refused an allocation since the scope began.
    pub(crate) fn refused(&self) -> bool {
        take_refusal()
    }

    pub(crate) fn limit(&self) -> u64 {
        self.limit
    }
}

impl Drop for MemoryScope {
    fn drop(&mut self) {
        BUDGET.with(|b| b.set(self.previous_budget));
        let mut gov = GOVERNOR.lock().unwrap_or_else(PoisonError::into_inner);
        gov.in_flight = gov.in_flight.saturating_sub(1);
        gov.reserved = gov.reserved.saturating_sub(self.limit);
        if gov.in_flight == 0 {
            regorus::set_global_memory_limit(None);
        } else {
            regorus::set_global_memory_limit(Some(gov.baseline.saturating_add(gov.reserved)));
        }
    }
}

/// The limit regorus reported in `err`, if it stopped on one.
pub(crate) fn regorus_limit(err: &anyhow::Error) -> Option<LimitError> {
    err.chain()
        .find_map(|cause| cause.downcast_ref::<LimitError>().copied())
}

/// Approximate bytes of `value` written out as JSON, or `None` once that exceeds `budget`.
/// Values share their parts, so a small heap value can stand for an enormous text; the walk
/// stops at the budget, so it costs at most that much work.
pub(crate) fn rendered_size(value: &Value, budget: u64, per_level: u64) -> Option<u64> {
    let mut total: u64 = 0;
    let mut stack: Vec<(&Value, u64)> = vec![(value, 0)];
    while let Some((v, depth)) = stack.pop() {
        let own = match v {
            Value::Null | Value::Bool(_) | Value::Undefined => 5,
            // Machine-sized numbers print in at most ~24 characters; big integers grow only
            // through arithmetic, which the cooperative check watches.
            Value::Number(_) => 24,
            Value::String(s) => s.len() as u64 + 2,
            Value::Array(items) => {
                stack.extend(items.iter().map(|i| (i, depth + 1)));
                2
            }
            Value::Set(items) => {
                stack.extend(items.iter().map(|i| (i, depth + 1)));
                2
            }
            Value::Object(fields) => {
                for (k, v) in fields.iter() {
                    stack.push((k, depth + 1));
                    stack.push((v, depth + 1));
                }
                2
            }
        };
        total = total
            .saturating_add(own)
            .saturating_add(per_level.saturating_mul(depth.saturating_add(1)));
        if total > budget {
            return None;
        }
    }
    Some(total)
}
