//! Rego policy compilation and evaluation for trustee-py, on top of `regorus`.
//!
//! A [`CompiledPolicy`] is parsed and analysed once (so a broken policy is rejected when it is
//! set, not on first use) and then evaluated many times, possibly from several threads at
//! once: each evaluation works on a cheap clone of the prepared engine.
//!
//! Both Rego syntaxes are accepted. v1 is tried first; v0 is only a fallback, and it is refused
//! whenever v0 would silently read a v1 keyword as an identifier — the cause of the old
//! "`allow if { false }` allows everything" behaviour (see [`syntax`]).

use std::num::NonZeroU32;
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use regorus::{Engine, PolicyLengthConfig, Value};
use thiserror::Error;

mod bounded;
mod explain;
mod limits;
mod recursion;
mod syntax;

pub use explain::{Definition, DefinitionStatus, Explanation, Expression, RuleExplanation};
pub use limits::{LimitHit, Limits, DEFAULT_MEMORY_BYTES, DEFAULT_TIME};
pub use syntax::Syntax;

/// Name of the custom builtin through which policies read reference values.
pub const QUERY_REFERENCE_VALUE: &str = "query_reference_value";

/// Deepest `[`/`{` nesting accepted (see [`syntax::nesting_beyond`]); at this depth the
/// parser's worst case is well under 100 ms.
const MAX_NESTING: usize = 10;

/// File name shown in regorus diagnostics (`--> policy.rego:3:7`).
const SOURCE_NAME: &str = "policy.rego";

/// regorus's error for a rule path that no loaded module defines. Upstream Trustee matches on
/// this text to tell an absent optional rule (e.g. `extensions`) from a failing one.
const NOT_A_RULE_PATH: &str = "not a valid rule path";

/// regorus's v1 complaint about a `{ … }` body without `if`, i.e. v0-style text.
const V0_BODY_HINT: &str = "keyword is required before rule body";

/// Looks up one reference value by id: `Ok(None)` when the id is unknown (the policy sees
/// `null`), `Err(message)` to abort the evaluation.
pub type ReferenceValueFn = dyn Fn(&str) -> Result<Option<serde_json::Value>, String> + Send + Sync;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum PolicyError {
    /// The policy text is not valid Rego (message as regorus reports it, with position).
    #[error("{0}")]
    Compile(String),
    /// The input or data document is not acceptable JSON.
    #[error("{0}")]
    Input(String),
    /// Evaluation failed (conflicting rule values, builtin errors, …).
    #[error("{0}")]
    Eval(String),
    /// The reference-value callback failed; the message is the callback's own.
    #[error("{0}")]
    ReferenceValue(String),
    /// The evaluation was stopped by one of its [`Limits`].
    #[error("{0}")]
    Limit(LimitHit),
    /// The evaluation did not finish within the time slice it was given (or needed more than
    /// the small share of memory that comes with a slice): running it again with the whole
    /// limits may still succeed.
    #[error("policy evaluation did not finish within its {} ms time slice", .0.as_millis())]
    SliceExpired(Duration),
}

/// Result of evaluating one rule.
#[derive(Debug, Clone, PartialEq)]
pub enum RuleOutcome {
    Value(serde_json::Value),
    /// The rule exists but no definition produced a value (and there is no default).
    Undefined,
    /// No rule with that path exists in the policy.
    Absent,
}

/// How many data documents keep a prepared engine. Resource policies see one data document
/// per resource path, and a KBS serves a handful of paths at a time; the bound keeps a client
/// that walks many paths from growing the cache.
const DATA_ENGINES: usize = 64;

/// A parsed and analysed policy, ready to be evaluated concurrently.
#[derive(Debug)]
pub struct CompiledPolicy {
    engine: Engine,
    syntax: Syntax,
    limits: Limits,
    package_path: String,
    /// The policy as written; explanations compile it again next to generated rules.
    text: Arc<str>,
    /// Engines with a data document already added and analysed, most recently used last.
    /// Adding data makes regorus redo its analysis on every clone; preparing once per
    /// document and cloning that engine skips it.
    data_engines: Mutex<Vec<(String, Engine)>>,
}

impl Clone for CompiledPolicy {
    fn clone(&self) -> Self {
        Self::new(
            self.engine.clone(),
            self.syntax,
            self.package_path.clone(),
            Arc::clone(&self.text),
        )
        .with_limits(self.limits)
    }
}

impl CompiledPolicy {
    /// Compiles `text` with the default [`Limits`].
    pub fn compile(text: &str) -> Result<CompiledPolicy, PolicyError> {
        Self::compile_with_limits(text, Limits::default())
    }

    /// Compiles `text`; every evaluation of the result is held to `limits`. A panic inside
    /// regorus is reported as a compile error, never passed on.
    pub fn compile_with_limits(text: &str, limits: Limits) -> Result<CompiledPolicy, PolicyError> {
        let compiled = panic::catch_unwind(|| Self::compile_text(text))
            .unwrap_or_else(|payload| Err(PolicyError::Compile(panic_text("compiling", &payload))));
        compiled.map(|policy| policy.with_limits(limits))
    }

    fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// The limits every evaluation of this policy is held to.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    fn compile_text(text: &str) -> Result<CompiledPolicy, PolicyError> {
        if let Some((line, col)) = syntax::nesting_beyond(text, MAX_NESTING) {
            return Err(PolicyError::Compile(format!(
                "{SOURCE_NAME}:{line}:{col}: arrays, sets, objects and bodies nest more than \
                 {MAX_NESTING} levels deep here; the policy is refused rather than parsed"
            )));
        }
        let v1_err = match prepared_engine(text, Syntax::V1) {
            Ok((engine, package_path)) => {
                return Ok(Self::new(engine, Syntax::V1, package_path, text.into()))
            }
            Err(BuildError::Analysis(msg)) => {
                // It parsed as v1, so v1 is what the author wrote; re-reading it as v0 could
                // only change its meaning, never fix the analysis error.
                return Err(PolicyError::Compile(msg));
            }
            Err(BuildError::Parse(msg)) => msg,
        };

        // The v0 outcome is only worth showing when the text has v0-style rule bodies;
        // for a plain v1 typo it would be noise.
        let looks_v0 = v1_err.contains(V0_BODY_HINT);
        if let Some(hazard) = syntax::v0_keyword_hazard(text) {
            return Err(PolicyError::Compile(if looks_v0 {
                format!("{v1_err}\n\nnot retried as Rego v0: {hazard}")
            } else {
                v1_err
            }));
        }
        match prepared_engine(text, Syntax::V0) {
            Ok((engine, package_path)) => {
                Ok(Self::new(engine, Syntax::V0, package_path, text.into()))
            }
            Err(BuildError::Parse(v0_err) | BuildError::Analysis(v0_err)) => {
                Err(PolicyError::Compile(if looks_v0 {
                    format!("{v1_err}\n\nas Rego v0:\n{v0_err}")
                } else {
                    v1_err
                }))
            }
        }
    }

    fn new(engine: Engine, syntax: Syntax, package_path: String, text: Arc<str>) -> Self {
        Self {
            engine,
            syntax,
            limits: Limits::default(),
            package_path,
            text,
            data_engines: Mutex::default(),
        }
    }

    /// A fresh evaluation engine, with `data_json` added and analysed when given.
    fn engine_for(&self, data_json: Option<&str>) -> Result<Engine, PolicyError> {
        let Some(data) = data_json else {
            return Ok(self.engine.clone());
        };
        {
            let mut cache = self
                .data_engines
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if let Some(pos) = cache.iter().position(|(key, _)| key == data) {
                let entry = cache.remove(pos);
                let engine = entry.1.clone();
                cache.push(entry);
                return Ok(engine);
            }
        }
        let mut engine = self.engine.clone();
        engine
            .add_data_json(data)
            .map_err(|e| PolicyError::Input(format!("policy data document: {e}")))?;
        // Same trick as at compile time: evaluating `data` runs the analysis. A failure here
        // is left for the real evaluation to report, and such an engine is not kept.
        if prepare(&mut engine).is_ok() {
            let mut cache = self
                .data_engines
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if cache.len() >= DATA_ENGINES {
                cache.remove(0);
            }
            cache.push((data.to_owned(), engine.clone()));
        }
        Ok(engine)
    }

    /// Which Rego syntax the policy was accepted under.
    pub fn syntax(&self) -> Syntax {
        self.syntax
    }

    /// The policy's package as a data path, e.g. `data.policy`.
    pub fn package_path(&self) -> &str {
        &self.package_path
    }

    /// Evaluates `rules` (full paths such as `data.policy.allow`) in order against
    /// `input_json` and the optional `data_json` document.
    ///
    /// The first failing rule aborts the whole evaluation; an absent rule does not.
    pub fn evaluate(
        &self,
        input_json: &str,
        data_json: Option<&str>,
        rules: &[&str],
        reference_values: Option<Arc<ReferenceValueFn>>,
    ) -> Result<Vec<RuleOutcome>, PolicyError> {
        self.evaluate_sliced(input_json, data_json, rules, reference_values, None)
    }

    /// [`CompiledPolicy::evaluate`] given at most `slice` of wall-clock time: when that runs
    /// out before the time limit does, the result is [`PolicyError::SliceExpired`]. The
    /// evaluation is pure, so the caller can run it again elsewhere with the whole limit.
    pub fn evaluate_sliced(
        &self,
        input_json: &str,
        data_json: Option<&str>,
        rules: &[&str],
        reference_values: Option<Arc<ReferenceValueFn>>,
        slice: Option<Duration>,
    ) -> Result<Vec<RuleOutcome>, PolicyError> {
        // A panic inside regorus becomes this evaluation's error; nothing it touched outlives
        // the evaluation except the shared caches, whose locks tolerate poisoning.
        panic::catch_unwind(AssertUnwindSafe(|| {
            self.evaluate_guarded(&Call {
                input_json,
                data_json,
                rules,
                reference_values,
                slice,
            })
        }))
        .unwrap_or_else(|payload| Err(PolicyError::Eval(panic_text("evaluating", &payload))))
    }

    fn evaluate_guarded(&self, call: &Call<'_>) -> Result<Vec<RuleOutcome>, PolicyError> {
        let Call {
            input_json,
            data_json,
            rules,
            ref reference_values,
            slice,
        } = *call;
        let run = Run::start(self.limits, slice);
        // Cloning shares the parsed modules and analysis (reference-counted); only the
        // per-evaluation state is fresh, which is what makes concurrent use safe.
        let mut engine = self.engine_for(data_json)?;
        engine
            .set_input_json(input_json)
            .map_err(|e| PolicyError::Input(format!("policy input is not valid JSON: {e}")))?;

        let callback_error: Arc<Mutex<Option<String>>> = Arc::default();
        add_reference_values(&mut engine, reference_values.clone(), &callback_error)?;

        let mut outcomes = Vec::with_capacity(rules.len());
        for rule in rules {
            run.arm(&mut engine)?;
            let outcome = match engine.eval_rule((*rule).to_owned()) {
                Ok(Value::Undefined) => RuleOutcome::Undefined,
                Ok(value) => RuleOutcome::Value(run.to_json(&value)?),
                Err(err) => {
                    let taken = callback_error
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .take();
                    if let Some(msg) = taken {
                        return Err(PolicyError::ReferenceValue(msg));
                    }
                    if let Some(hit) = run.limit_error(&err) {
                        return Err(hit);
                    }
                    let msg = clean(&err);
                    if msg.contains(NOT_A_RULE_PATH) {
                        RuleOutcome::Absent
                    } else {
                        return Err(PolicyError::Eval(msg));
                    }
                }
            };
            outcomes.push(outcome);
        }
        Ok(outcomes)
    }
}

/// The arguments of one evaluation.
struct Call<'a> {
    input_json: &'a str,
    data_json: Option<&'a str>,
    rules: &'a [&'a str],
    reference_values: Option<Arc<ReferenceValueFn>>,
    slice: Option<Duration>,
}

/// Memory an evaluation given a time slice may use before it counts as not finished.
const SLICE_MEMORY_BYTES: u64 = 4 * 1024 * 1024;

/// One evaluation's limits in force: its share of the memory ceiling and its deadline.
pub(crate) struct Run {
    started: Instant,
    /// What this run may take: the time limit, or the shorter slice.
    allowed: Duration,
    limits: Limits,
    memory: limits::MemoryScope,
}

impl Run {
    pub(crate) fn start(limits: Limits, slice: Option<Duration>) -> Self {
        // Work that allocates a lot also takes long, and a builtin call is not interrupted
        // by the clock: a slice gets a small share of memory too, so that the loop is never
        // held while tens of megabytes are built.
        let memory = match slice {
            Some(_) => limits.memory_bytes.min(SLICE_MEMORY_BYTES),
            None => limits.memory_bytes,
        };
        Self {
            started: Instant::now(),
            allowed: slice.map_or(limits.time, |s| s.min(limits.time)),
            limits,
            memory: limits::MemoryScope::enter(memory),
        }
    }

    fn sliced(&self) -> bool {
        self.allowed < self.limits.time || self.memory.limit() < self.limits.memory_bytes
    }

    fn out_of_time(&self) -> PolicyError {
        if self.sliced() {
            PolicyError::SliceExpired(self.allowed)
        } else {
            PolicyError::Limit(LimitHit::Time(self.limits.time))
        }
    }

    fn out_of_memory(&self) -> PolicyError {
        if self.sliced() {
            PolicyError::SliceExpired(self.allowed)
        } else {
            PolicyError::Limit(LimitHit::Memory(self.limits.memory_bytes))
        }
    }

    /// Gives `engine` what is left of the time before it evaluates one more rule.
    pub(crate) fn arm(&self, engine: &mut Engine) -> Result<(), PolicyError> {
        let left = self.allowed.saturating_sub(self.started.elapsed());
        if left.is_zero() {
            return Err(self.out_of_time());
        }
        engine.set_execution_timer_config(limits::timer_config(left));
        Ok(())
    }

    /// The limit that stopped a failed rule, if one did.
    pub(crate) fn limit_error(&self, err: &anyhow::Error) -> Option<PolicyError> {
        if self.memory.refused() {
            return Some(self.out_of_memory());
        }
        match limits::regorus_limit(err) {
            Some(regorus::LimitError::TimeLimitExceeded { .. }) => Some(self.out_of_time()),
            Some(regorus::LimitError::MemoryLimitExceeded { .. }) => Some(self.out_of_memory()),
            Some(regorus::LimitError::RegexSizeLimitExceeded { .. }) => None,
            None => {
                // regorus re-wraps some errors as text on their way out.
                let text = err.to_string();
                if text.contains("execution exceeded time limit") {
                    Some(self.out_of_time())
                } else if text.contains("execution exceeded memory limit") {
                    Some(self.out_of_memory())
                } else {
                    None
                }
            }
        }
    }

    /// A rule's value as JSON; values share their parts, so the text is sized first.
    pub(crate) fn to_json(&self, value: &Value) -> Result<serde_json::Value, PolicyError> {
        if limits::rendered_size(value, self.memory.limit(), 0).is_none() {
            return Err(self.out_of_memory());
        }
        to_json(value)
    }
}

fn panic_text(doing: &str, payload: &Box<dyn std::any::Any + Send>) -> String {
    let detail = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no details".to_owned());
    format!("the policy engine failed while {doing} the policy: {detail}")
}

/// Backs `query_reference_value` with `reference_values`; a callback failure is parked in
/// `callback_error` so the caller can report it rather than regorus's wrapping.
fn add_reference_values(
    engine: &mut Engine,
    reference_values: Option<Arc<ReferenceValueFn>>,
    callback_error: &Arc<Mutex<Option<String>>>,
) -> Result<(), PolicyError> {
    let ext_error = Arc::clone(callback_error);
    engine
        .add_extension(
            QUERY_REFERENCE_VALUE.into(),
            1,
            Box::new(move |args: Vec<Value>| {
                query_reference_value(reference_values.as_deref(), &ext_error, args)
            }),
        )
        .map_err(|e| PolicyError::Eval(clean(&e)))
}

enum BuildError {
    Parse(String),
    Analysis(String),
}

impl BuildError {
    fn message(self) -> String {
        match self {
            BuildError::Parse(msg) | BuildError::Analysis(msg) => msg,
        }
    }
}

/// Parses `text` under `syntax` and runs regorus's analysis pass (unsafe variables,
/// recursion, …) so that clones start out prepared.
fn prepared_engine(text: &str, syntax: Syntax) -> Result<(Engine, String), BuildError> {
    let (engine, mut packages) =
        build_engine(syntax, &[(SOURCE_NAME.to_owned(), text.to_owned())])?;
    let package = packages
        .pop()
        .ok_or_else(|| BuildError::Parse("the policy declares no package".into()))?;
    Ok((engine, package))
}

/// An analysed engine holding `sources` (`(file name, text)`); returns each one's package.
fn build_engine(
    syntax: Syntax,
    sources: &[(String, String)],
) -> Result<(Engine, Vec<String>), BuildError> {
    let mut engine = Engine::new();
    engine.set_rego_v0(syntax == Syntax::V0);
    bounded::add(&mut engine).map_err(|e| BuildError::Analysis(clean(&e)))?;
    // regorus's 1024-column default would reject long single-line policies, which YAML
    // folding produces (`package policy default allow = true`); the byte and line limits
    // still bound the work.
    engine.set_policy_length_config(PolicyLengthConfig {
        max_col: NonZeroU32::new(16 * 1024).unwrap_or(NonZeroU32::MIN),
        ..PolicyLengthConfig::default()
    });
    let mut packages = Vec::with_capacity(sources.len());
    for (name, text) in sources {
        let package = engine
            .add_policy(name.clone(), text.clone())
            .map_err(|e| BuildError::Parse(clean(&e)))?;
        packages.push(package);
    }
    // Before regorus's own analysis, which does not look for recursion.
    for module in engine.get_modules() {
        if let Some(cycle) = recursion::find_cycle(module) {
            return Err(BuildError::Analysis(cycle.to_string()));
        }
    }
    prepare(&mut engine).map_err(BuildError::Analysis)?;
    Ok((engine, packages))
}

/// Runs regorus's analysis pass. regorus has no public "prepare" call; evaluating `data`,
/// which is never a rule path, runs the analysis and then fails with the path error we expect.
fn prepare(engine: &mut Engine) -> Result<(), String> {
    match engine.eval_rule("data".into()) {
        Err(e) if e.to_string().contains(NOT_A_RULE_PATH) => Ok(()),
        Err(e) => Err(clean(&e)),
        Ok(_) => Ok(()),
    }
}

fn query_reference_value(
    callback: Option<&ReferenceValueFn>,
    callback_error: &Mutex<Option<String>>,
    mut args: Vec<Value>,
) -> anyhow::Result<Value> {
    // regorus checks the arity before calling, so exactly one argument is present.
    let id = match args.pop() {
        Some(Value::String(id)) => id,
        Some(other) => anyhow::bail!(
            "{QUERY_REFERENCE_VALUE}: the reference value id must be a string, got {}",
            rego_type(&other)
        ),
        None => anyhow::bail!("{QUERY_REFERENCE_VALUE}: missing reference value id"),
    };
    let Some(callback) = callback else {
        return Ok(Value::Null);
    };
    match callback(&id) {
        Ok(Some(value)) => Ok(Value::from(value)),
        Ok(None) => Ok(Value::Null),
        Err(msg) => {
            // Keep the callback's own message: regorus wraps extension errors in a source
            // excerpt, and callers want to report "RVPS unavailable", not a caret diagram.
            *callback_error
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(msg.clone());
            anyhow::bail!(msg)
        }
    }
}

fn rego_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Set(_) => "set",
        Value::Object(_) => "object",
        Value::Undefined => "undefined",
    }
}

fn to_json(value: &Value) -> Result<serde_json::Value, PolicyError> {
    serde_json::to_value(value)
        .map_err(|e| PolicyError::Eval(format!("rule value cannot be represented as JSON: {e}")))
}

/// regorus diagnostics start with a newline before the `-->` location line.
fn clean(err: &anyhow::Error) -> String {
    err.to_string().trim().to_owned()
}

#[cfg(test)]
mod tests;
