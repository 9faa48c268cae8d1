//! Why a policy decided what it did: which rule definitions produced a value, and where the
//! others stopped.
//!
//! regorus 0.14 has no evaluation trace we can read back, so every rule body is re-asked as
//! a series of prefix rules (`s1`, `s1; s2`, …) added in the policy's own package. The first
//! prefix without a solution names the expression at which the body failed, with variables
//! bound exactly as in the real body. This costs one extra compile and several evaluations,
//! which is why it is a separate path from [`CompiledPolicy::evaluate`].

use std::sync::{Arc, Mutex, PoisonError};

use regorus::unstable::{Import, LiteralStmt, Module, Ref, Rule, RuleHead, Span};
use regorus::{Engine, Value};
use serde_json::json;

use crate::{
    add_reference_values, build_engine, clean, CompiledPolicy, PolicyError, ReferenceValueFn,
    RuleOutcome, Run, Syntax, NOT_A_RULE_PATH, SOURCE_NAME,
};

/// Prefix rules are named with this stem; a policy that already uses it is explained
/// without prefixes rather than having its own rules shadowed.
const HELPER_STEM: &str = "trustee_explain_";

/// Source name of the generated prefix module in diagnostics.
const HELPER_SOURCE: &str = "explain.rego";

/// Rule heads are shown on one line; long object heads are cut here.
const HEAD_TEXT_MAX: usize = 120;

/// One expression of a rule body, with its position in the policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expression {
    pub line: u32,
    pub col: u32,
    pub text: String,
}

/// How a definition fared in this evaluation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DefinitionStatus {
    /// Every expression of the body held (or there is no body).
    Held,
    /// The body stopped at this expression: false, undefined, or no binding survived it.
    Failed(Expression),
    /// An earlier definition of the same `else` chain already produced the value.
    NotReached,
    /// A `default` definition; whether it applied follows from the others.
    Default,
    /// The body could not be re-asked (the reason says why); its outcome is unknown.
    Unexplained(String),
}

/// One definition (a rule body, an `else` branch or a `default`) of a requested rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Definition {
    /// The rule's head as written, on one line (`allow`, `executables := 3`, `default …`).
    pub head: String,
    pub first_line: u32,
    pub last_line: u32,
    pub status: DefinitionStatus,
}

/// The explanation of one requested rule.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleExplanation {
    pub rule: String,
    pub outcome: RuleOutcome,
    pub definitions: Vec<Definition>,
}

impl RuleExplanation {
    /// The definitions that produced the value: those that held, or the `default` when none
    /// did and the rule still has a value.
    pub fn because(&self) -> Vec<&Definition> {
        if !matches!(self.outcome, RuleOutcome::Value(_)) {
            return Vec::new();
        }
        let held: Vec<&Definition> = self
            .definitions
            .iter()
            .filter(|d| d.status == DefinitionStatus::Held)
            .collect();
        if !held.is_empty() {
            return held;
        }
        self.definitions
            .iter()
            .filter(|d| d.status == DefinitionStatus::Default)
            .collect()
    }

    /// Whether failures are worth reporting: the rule said no, or nothing.
    pub fn is_negative(&self) -> bool {
        matches!(
            self.outcome,
            RuleOutcome::Value(serde_json::Value::Bool(false))
                | RuleOutcome::Undefined
                | RuleOutcome::Absent
        )
    }

    /// Whether the value came from the `default` definition because no other one held.
    pub fn fell_back_to_default(&self) -> bool {
        let because = self.because();
        !because.is_empty()
            && because
                .iter()
                .all(|d| d.status == DefinitionStatus::Default)
    }

    /// For a negative rule, or one that fell back to its default: each definition's first
    /// failing expression. For any other rule the failures are branches not taken, which
    /// do not explain the value.
    pub fn failed(&self) -> Vec<(&Definition, &Expression)> {
        if !self.is_negative() && !self.fell_back_to_default() {
            return Vec::new();
        }
        self.definitions
            .iter()
            .filter_map(|d| match &d.status {
                DefinitionStatus::Failed(expr) => Some((d, expr)),
                _ => None,
            })
            .collect()
    }

    fn to_json(&self) -> serde_json::Value {
        let (status, value) = outcome_json(&self.outcome);
        let because: Vec<_> = self
            .because()
            .into_iter()
            .map(|d| {
                json!({
                    "line": d.first_line,
                    "end_line": d.last_line,
                    "text": d.head,
                })
            })
            .collect();
        let failed: Vec<_> = self
            .failed()
            .into_iter()
            .map(|(d, e)| {
                json!({
                    "line": e.line,
                    "col": e.col,
                    "text": e.text,
                    "definition": d.head,
                    "definition_line": d.first_line,
                })
            })
            .collect();
        let unexplained: Vec<_> = self
            .definitions
            .iter()
            .filter_map(|d| match &d.status {
                DefinitionStatus::Unexplained(why) => Some(json!({
                    "line": d.first_line,
                    "definition": d.head,
                    "reason": why,
                })),
                _ => None,
            })
            .collect();
        let mut out = json!({
            "rule": self.rule,
            "status": status,
            "value": value,
            "because": because,
            "failed": failed,
        });
        if !unexplained.is_empty() {
            out["unexplained"] = serde_json::Value::Array(unexplained);
        }
        out
    }
}

/// The explanation of an evaluation, rule by rule in the order asked.
#[derive(Debug, Clone, PartialEq)]
pub struct Explanation {
    pub rules: Vec<RuleExplanation>,
}

impl Explanation {
    /// `{"decision": {rule: value}, "rules": [...]}`; an undefined or absent rule's value is
    /// `null` and its `status` says which.
    pub fn to_json(&self) -> serde_json::Value {
        let mut decision = serde_json::Map::new();
        for rule in &self.rules {
            decision.insert(rule.rule.clone(), outcome_json(&rule.outcome).1);
        }
        json!({
            "decision": decision,
            "rules": self.rules.iter().map(RuleExplanation::to_json).collect::<Vec<_>>(),
        })
    }
}

fn outcome_json(outcome: &RuleOutcome) -> (&'static str, serde_json::Value) {
    match outcome {
        RuleOutcome::Value(v) => ("value", v.clone()),
        RuleOutcome::Undefined => ("undefined", serde_json::Value::Null),
        RuleOutcome::Absent => ("absent", serde_json::Value::Null),
    }
}

/// A body to re-ask: its statements, and where its definition sits in the output.
struct Body {
    rule_idx: usize,
    def_idx: usize,
    /// The `else` chain the body belongs to, when its rule has `else` branches.
    chain: Option<usize>,
    stmts: Vec<Expression>,
}

/// One generated prefix rule: the first `len` statements of body `body`.
#[derive(Clone)]
struct Prefix {
    body: usize,
    len: usize,
}

impl Prefix {
    fn name(&self) -> String {
        format!("{HELPER_STEM}{}_{}", self.body, self.len)
    }
}

impl CompiledPolicy {
    /// Evaluates `rules` like [`CompiledPolicy::evaluate`] and reports, for each, which
    /// definitions produced the value and where the others failed.
    pub fn explain(
        &self,
        input_json: &str,
        data_json: Option<&str>,
        rules: &[&str],
        reference_values: Option<Arc<ReferenceValueFn>>,
    ) -> Result<Explanation, PolicyError> {
        let run = Run::start(self.limits(), None);
        let module = self.module()?;
        let package = module_package(&module);
        let mut explained: Vec<RuleExplanation> = Vec::with_capacity(rules.len());
        let mut bodies: Vec<Body> = Vec::new();
        let mut chains = 0usize;
        for (rule_idx, rule) in rules.iter().enumerate() {
            let definitions =
                collect_definitions(&module, &package, rule, rule_idx, &mut bodies, &mut chains);
            explained.push(RuleExplanation {
                rule: (*rule).to_owned(),
                outcome: RuleOutcome::Absent,
                definitions,
            });
        }

        let uses_stem = self.text.contains(HELPER_STEM);
        let prefixes: Vec<Prefix> = if uses_stem {
            Vec::new()
        } else {
            bodies
                .iter()
                .enumerate()
                .flat_map(|(b, body)| {
                    (1..=body.stmts.len()).map(move |len| Prefix { body: b, len })
                })
                .collect()
        };
        let header = module_header(&module, &package);
        let v1 = module.rego_v1 || self.syntax == Syntax::V1;
        let (mut engine, usable) = self.engine_with_prefixes(&header, v1, &bodies, prefixes)?;
        if let Some(data) = data_json {
            engine
                .add_data_json(data)
                .map_err(|e| PolicyError::Input(format!("policy data document: {e}")))?;
        }
        engine
            .set_input_json(input_json)
            .map_err(|e| PolicyError::Input(format!("policy input is not valid JSON: {e}")))?;
        let callback_error: Arc<Mutex<Option<String>>> = Arc::default();
        add_reference_values(&mut engine, reference_values, &callback_error)?;

        let take_callback_error = || {
            callback_error
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take()
        };

        for item in &mut explained {
            run.arm(&mut engine)?;
            item.outcome = match engine.eval_rule(item.rule.clone()) {
                Ok(Value::Undefined) => RuleOutcome::Undefined,
                Ok(value) => RuleOutcome::Value(run.to_json(&value)?),
                Err(err) => {
                    if let Some(msg) = take_callback_error() {
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
        }

        // An else chain yields the value of its first body that holds; the rest are moot.
        let mut chains_done: Vec<usize> = Vec::new();
        for (b, body) in bodies.iter().enumerate() {
            if body.chain.is_some_and(|c| chains_done.contains(&c)) {
                set_status(&mut explained, body, DefinitionStatus::NotReached);
                continue;
            }
            let status = if uses_stem {
                DefinitionStatus::Unexplained(format!(
                    "the policy itself uses names starting with {HELPER_STEM}"
                ))
            } else {
                let mut ask = |len: usize| -> Result<Option<bool>, PolicyError> {
                    let prefix = Prefix { body: b, len };
                    if !usable.iter().any(|p| p.body == b && p.len == len) {
                        return Ok(None);
                    }
                    let path = format!("{package}.{}", prefix.name());
                    run.arm(&mut engine)?;
                    match engine.eval_rule(path) {
                        Ok(Value::Bool(true)) => Ok(Some(true)),
                        Ok(_) => Ok(Some(false)),
                        Err(err) => {
                            if let Some(msg) = take_callback_error() {
                                return Err(PolicyError::ReferenceValue(msg));
                            }
                            if let Some(hit) = run.limit_error(&err) {
                                return Err(hit);
                            }
                            Err(PolicyError::Eval(clean(&err)))
                        }
                    }
                };
                body_status(body, &mut ask)?
            };
            if let (Some(chain), DefinitionStatus::Held) = (body.chain, &status) {
                chains_done.push(chain);
            }
            set_status(&mut explained, body, status);
        }
        Ok(Explanation { rules: explained })
    }

    /// The parsed policy module, read from a throw-away clone of the engine.
    fn module(&self) -> Result<Ref<Module>, PolicyError> {
        let mut engine = self.engine.clone();
        engine
            .get_modules()
            .iter()
            .find(|m| m.package.span.source.file() == SOURCE_NAME)
            .cloned()
            .ok_or_else(|| PolicyError::Eval("explain: the policy module is missing".into()))
    }

    /// An engine with the policy and as many prefix rules as compile. A prefix can be
    /// unsafe on its own (a variable used before the statement that binds it), and one bad
    /// prefix must not cost the explanation of all others, so failing sets are halved.
    fn engine_with_prefixes(
        &self,
        header: &str,
        v1: bool,
        bodies: &[Body],
        prefixes: Vec<Prefix>,
    ) -> Result<(Engine, Vec<Prefix>), PolicyError> {
        let mut pending = vec![prefixes];
        let mut usable: Vec<Prefix> = Vec::new();
        // Bounds the compiles for pathological policies; what is left is reported unexplained.
        let mut budget = 64usize;
        while let Some(set) = pending.pop() {
            if set.is_empty() || budget == 0 {
                continue;
            }
            budget -= 1;
            let mut trial = usable.clone();
            trial.extend(set.iter().cloned());
            if self.build_with(header, v1, bodies, &trial).is_ok() {
                usable = trial;
            } else if set.len() > 1 {
                let mid = set.len() / 2;
                pending.push(set[mid..].to_vec());
                pending.push(set[..mid].to_vec());
            }
        }
        let engine = self
            .build_with(header, v1, bodies, &usable)
            .map_err(PolicyError::Compile)?;
        Ok((engine, usable))
    }

    fn build_with(
        &self,
        header: &str,
        v1: bool,
        bodies: &[Body],
        prefixes: &[Prefix],
    ) -> Result<Engine, String> {
        let mut sources = vec![(SOURCE_NAME.to_owned(), self.text.to_string())];
        if !prefixes.is_empty() {
            sources.push((
                HELPER_SOURCE.to_owned(),
                helper_module(header, v1, bodies, prefixes),
            ));
        }
        build_engine(self.syntax, &sources)
            .map(|(engine, _)| engine)
            .map_err(|e| e.message())
    }
}

fn set_status(explained: &mut [RuleExplanation], body: &Body, status: DefinitionStatus) {
    if let Some(def) = explained
        .get_mut(body.rule_idx)
        .and_then(|r| r.definitions.get_mut(body.def_idx))
    {
        def.status = status;
    }
}

/// Decides a body's status by asking its prefixes: the whole body first, and only if that
/// fails, prefixes from the shortest up.
fn body_status(
    body: &Body,
    ask: &mut dyn FnMut(usize) -> Result<Option<bool>, PolicyError>,
) -> Result<DefinitionStatus, PolicyError> {
    let n = body.stmts.len();
    match ask(n)? {
        Some(true) => return Ok(DefinitionStatus::Held),
        Some(false) => {}
        None => {
            return Ok(DefinitionStatus::Unexplained(
                "its body cannot be evaluated on its own (see the rule's own diagnostics)".into(),
            ))
        }
    }
    for len in 1..n {
        if ask(len)? == Some(false) {
            return Ok(failed_at(body, len));
        }
    }
    Ok(failed_at(body, n))
}

fn failed_at(body: &Body, len: usize) -> DefinitionStatus {
    match body.stmts.get(len.saturating_sub(1)) {
        Some(expr) => DefinitionStatus::Failed(expr.clone()),
        None => DefinitionStatus::Unexplained(format!("no expression {len} in the body")),
    }
}

/// The module's package as a data path (`data.policy`).
fn module_package(module: &Module) -> String {
    format!("data.{}", module.package.refr.span().text())
}

/// `package …` and the module's imports, so prefix rules read names as the policy does.
fn module_header(module: &Module, package: &str) -> String {
    let mut header = format!("package {}\n", package.trim_start_matches("data."));
    for import in &module.imports {
        header.push_str(&import_text(import));
        header.push('\n');
    }
    header
}

fn import_text(import: &Import) -> String {
    let end = import
        .r#as
        .as_ref()
        .map_or(import.span.end, |alias| alias.end.max(import.span.end));
    let (text, _) = quoted_text(&import.span);
    let start = import.span.start;
    if end > import.span.end {
        source_slice(&import.span, start, end).to_owned()
    } else {
        text.to_owned()
    }
}

/// The generated module: one rule per prefix, true when the prefix has a solution.
fn helper_module(header: &str, v1: bool, bodies: &[Body], prefixes: &[Prefix]) -> String {
    let mut text = header.to_owned();
    for prefix in prefixes {
        let Some(body) = bodies.get(prefix.body) else {
            continue;
        };
        text.push_str(&prefix.name());
        // Plain v0 reads `if` as a name unless imported, and accepts a bare `{` regardless.
        text.push_str(if v1 { " if {\n" } else { " {\n" });
        for stmt in body.stmts.iter().take(prefix.len) {
            text.push_str(&stmt.text);
            text.push('\n');
        }
        text.push_str("}\n");
    }
    text
}

fn source_slice(span: &Span, start: u32, end: u32) -> &str {
    let contents = span.source.contents();
    usize::try_from(start)
        .ok()
        .zip(usize::try_from(end).ok())
        .and_then(|(s, e)| contents.get(s..e))
        .unwrap_or("")
}

/// The 1-based line on which byte offset `end` of the span's source falls.
fn end_line(span: &Span) -> u32 {
    let text = source_slice(span, span.start, span.end);
    let extra = text.trim_end().matches('\n').count();
    span.line
        .saturating_add(u32::try_from(extra).unwrap_or(u32::MAX))
}

fn one_line(text: &str) -> String {
    let first = text.lines().next().unwrap_or("").trim();
    let mut out: String = first.chars().take(HEAD_TEXT_MAX).collect();
    if out.len() < first.len() || text.trim().lines().nth(1).is_some() {
        out.push_str(" …");
    }
    out
}

/// The span's text with the quotes of a string literal at either edge: regorus's string
/// tokens exclude them, so a statement's span starts or ends inside its quotes.
fn quoted_text(span: &Span) -> (&str, u32) {
    let bytes = span.source.contents().as_bytes();
    let is_quote = |at: u32| {
        usize::try_from(at)
            .ok()
            .and_then(|i| bytes.get(i))
            .is_some_and(|b| matches!(b, b'"' | b'`'))
    };
    let start = match span.start.checked_sub(1) {
        Some(before) if is_quote(before) => before,
        _ => span.start,
    };
    let end = if is_quote(span.end) {
        span.end.saturating_add(1)
    } else {
        span.end
    };
    let col = span.col.saturating_sub(span.start.saturating_sub(start));
    (source_slice(span, start, end), col)
}

fn stmt_expression(stmt: &LiteralStmt) -> Expression {
    let (text, col) = quoted_text(&stmt.span);
    Expression {
        line: stmt.span.line,
        col,
        text: text.trim().to_owned(),
    }
}

/// The definitions of `rule` (a full path) in `module`, registering each body to re-ask.
fn collect_definitions(
    module: &Module,
    package: &str,
    rule: &str,
    rule_idx: usize,
    bodies: &mut Vec<Body>,
    chains: &mut usize,
) -> Vec<Definition> {
    let mut definitions = Vec::new();
    for item in &module.policy {
        match item.as_ref() {
            Rule::Default { span, refr, .. } => {
                if format!("{package}.{}", refr.span().text()) != rule {
                    continue;
                }
                definitions.push(Definition {
                    head: one_line(quoted_text(span).0),
                    first_line: span.line,
                    last_line: end_line(span),
                    status: DefinitionStatus::Default,
                });
            }
            Rule::Spec {
                span,
                head,
                bodies: rule_bodies,
            } => {
                let (head_span, refr, is_func) = match head {
                    RuleHead::Compr { span, refr, .. } | RuleHead::Set { span, refr, .. } => {
                        (span, refr, false)
                    }
                    RuleHead::Func { span, refr, .. } => (span, refr, true),
                };
                if format!("{package}.{}", refr.span().text()) != rule {
                    continue;
                }
                let head_text = one_line(quoted_text(head_span).0);
                if rule_bodies.is_empty() {
                    definitions.push(Definition {
                        head: head_text,
                        first_line: span.line,
                        last_line: end_line(span),
                        status: DefinitionStatus::Held,
                    });
                    continue;
                }
                let chain = if rule_bodies.iter().any(|b| b.is_else) {
                    *chains += 1;
                    Some(*chains)
                } else {
                    None
                };
                for (i, body) in rule_bodies.iter().enumerate() {
                    let (first_line, text) = if i == 0 {
                        (span.line, head_text.clone())
                    } else {
                        let text = match &body.assign {
                            Some(assign) if body.is_else => {
                                one_line(&format!("else = {}", quoted_text(assign.value.span()).0))
                            }
                            _ if body.is_else => "else".to_owned(),
                            _ => head_text.clone(),
                        };
                        (body.span.line, text)
                    };
                    let last_line = end_line(&body.span).max(first_line);
                    let stmts: Vec<Expression> =
                        body.query.stmts.iter().map(stmt_expression).collect();
                    let status = if is_func {
                        DefinitionStatus::Unexplained("functions are not explained".into())
                    } else if stmts.is_empty() {
                        DefinitionStatus::Held
                    } else {
                        bodies.push(Body {
                            rule_idx,
                            def_idx: definitions.len(),
                            chain,
                            stmts,
                        });
                        DefinitionStatus::Unexplained("not evaluated".into())
                    };
                    definitions.push(Definition {
                        head: text,
                        first_line,
                        last_line,
                        status,
                    });
                }
            }
        }
    }
    definitions
}

#[cfg(test)]
#[path = "explain_tests.rs"]
mod tests;
