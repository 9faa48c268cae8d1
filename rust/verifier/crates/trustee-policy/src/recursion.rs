//! Compile-time refusal of recursive rules and functions.
//!
//! regorus evaluates a recursive rule or function by recursing natively until the thread's
//! stack is gone, which kills the whole process. Rego forbids recursion anyway (OPA refuses it
//! when compiling), so a policy whose rules and functions reference each other in a cycle is
//! refused when it is set, before anything evaluates it.
//!
//! The reference graph is built from the parsed module: a node per rule path (`allow`,
//! `f`, `a.b`), an edge for every reference to another rule of the same package found in a
//! rule's head or bodies, by name (`f(x)`, `allow`, `a.b.c`), through an import alias or as
//! `data.<package>.<rule>`. Names bound locally (`:=`, `some`, `every`, function arguments)
//! shadow rules and are not edges.

use std::collections::{BTreeMap, BTreeSet};

use regorus::unstable::{AssignOp, Expr, Literal, LiteralStmt, Module, Query, Ref, Rule, RuleHead};

/// A cycle of rule paths, each with the line of its first definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Cycle(pub Vec<(String, u32)>);

impl std::fmt::Display for Cycle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let steps: Vec<String> = self
            .0
            .iter()
            .map(|(name, line)| format!("{name} (line {line})"))
            .collect();
        write!(
            f,
            "recursion is not allowed in Rego: {} refers back to itself through {}",
            self.0.first().map_or("?", |(n, _)| n.as_str()),
            steps.join(" -> ")
        )
    }
}

/// The first reference cycle among the rules of `module`, if any.
pub(crate) fn find_cycle(module: &Module) -> Option<Cycle> {
    let package = static_path(&module.package.refr).unwrap_or_default();
    let aliases = import_aliases(module);

    // Rule path → (first line, referenced rule paths).
    let mut nodes: BTreeMap<String, (u32, BTreeSet<String>)> = BTreeMap::new();
    let mut refs_by_rule: Vec<(String, Vec<Vec<String>>)> = Vec::new();
    for rule in &module.policy {
        let (name, line, refs) = rule_refs(rule);
        let Some(name) = name else { continue };
        nodes
            .entry(name.join("."))
            .or_insert_with(|| (line, BTreeSet::new()));
        refs_by_rule.push((name.join("."), refs));
    }
    let names: Vec<String> = nodes.keys().cloned().collect();
    for (rule, refs) in refs_by_rule {
        let mut targets = BTreeSet::new();
        for path in refs {
            let Some(path) = resolve(path, &package, &aliases) else {
                continue;
            };
            let dotted = path.join(".");
            for name in &names {
                // `a` reaches every rule under `a`; `a.b.c` reaches the rule `a.b`.
                if path_prefix(name, &dotted) || path_prefix(&dotted, name) {
                    targets.insert(name.clone());
                }
            }
        }
        if let Some(node) = nodes.get_mut(&rule) {
            node.1.extend(targets);
        }
    }
    cycle_in(&nodes)
}

fn path_prefix(prefix: &str, path: &str) -> bool {
    prefix.is_empty()
        || path == prefix
        || (path.starts_with(prefix) && path.as_bytes().get(prefix.len()) == Some(&b'.'))
}

/// Turns a referenced path into a rule path of this package, or `None` for anything else
/// (builtins, `input`, other packages).
fn resolve(
    mut path: Vec<String>,
    package: &[String],
    aliases: &BTreeMap<String, Vec<String>>,
) -> Option<Vec<String>> {
    if let Some(target) = path.first().and_then(|head| aliases.get(head)) {
        let mut full = target.clone();
        full.extend(path.drain(1..));
        path = full;
    }
    if path.first().map(String::as_str) == Some("data") {
        let rest = &path[1..];
        let shared = rest.len().min(package.len());
        if rest[..shared] != package[..shared] {
            return None;
        }
        // `data` or a prefix of the package: the whole package, i.e. every rule.
        if rest.len() <= package.len() {
            return Some(Vec::new());
        }
        return Some(rest[package.len()..].to_vec());
    }
    Some(path)
}

fn import_aliases(module: &Module) -> BTreeMap<String, Vec<String>> {
    let mut aliases = BTreeMap::new();
    for import in &module.imports {
        let Some(path) = static_path(&import.refr) else {
            continue;
        };
        if path.first().map(String::as_str) != Some("data") {
            continue;
        }
        let alias = match &import.r#as {
            Some(span) => span.text().to_owned(),
            None => match path.last() {
                Some(last) => last.clone(),
                None => continue,
            },
        };
        aliases.insert(alias, path);
    }
    aliases
}

/// The dotted prefix of a reference made of names and string keys (`a.b["c"]` → a, b, c);
/// a dynamic index ends it.
fn static_path(expr: &Ref<Expr>) -> Option<Vec<String>> {
    match expr.as_ref() {
        Expr::Var { span, .. } => Some(vec![span.text().to_owned()]),
        Expr::RefDot { refr, field, .. } => {
            let mut path = static_path(refr)?;
            path.push(field.0.text().to_owned());
            Some(path)
        }
        Expr::RefBrack { refr, index, .. } => Some(with_key(static_path(refr)?, index)),
        _ => None,
    }
}

/// `path` extended by a string index (`["c"]`); any other index leaves it as it is.
fn with_key(mut path: Vec<String>, index: &Ref<Expr>) -> Vec<String> {
    if let Expr::String { value, .. } = index.as_ref() {
        if let Ok(key) = value.as_string() {
            path.push(key.to_string());
        }
    }
    path
}

/// A rule's path, first line and every static reference path found in it.
fn rule_refs(rule: &Ref<Rule>) -> (Option<Vec<String>>, u32, Vec<Vec<String>>) {
    let mut walk = Walk::default();
    match rule.as_ref() {
        Rule::Default {
            span,
            refr,
            args,
            value,
            ..
        } => {
            for arg in args {
                walk.bind_vars(arg);
            }
            walk.expr(value);
            (head_name(refr), span.line, walk.finish())
        }
        Rule::Spec { span, head, bodies } => {
            let refr = match head {
                RuleHead::Compr { refr, assign, .. } => {
                    if let Some(assign) = assign {
                        walk.expr(&assign.value);
                    }
                    refr
                }
                RuleHead::Set { refr, key, .. } => {
                    if let Some(key) = key {
                        walk.expr(key);
                    }
                    refr
                }
                RuleHead::Func {
                    refr, args, assign, ..
                } => {
                    for arg in args {
                        walk.bind_vars(arg);
                    }
                    if let Some(assign) = assign {
                        walk.expr(&assign.value);
                    }
                    refr
                }
            };
            // Dynamic parts of the head (`p[x]`) are expressions too.
            walk.head_indexes(refr);
            for body in bodies {
                if let Some(assign) = &body.assign {
                    walk.expr(&assign.value);
                }
                walk.query(&body.query);
            }
            (head_name(refr), span.line, walk.finish())
        }
    }
}

/// The static part of a rule head's reference (`p[x]` → p, `a.b` → a, b).
fn head_name(refr: &Ref<Expr>) -> Option<Vec<String>> {
    match refr.as_ref() {
        Expr::RefBrack { refr, index, .. } => Some(with_key(head_name(refr)?, index)),
        _ => static_path(refr),
    }
}

#[derive(Default)]
struct Walk {
    refs: Vec<Vec<String>>,
    locals: BTreeSet<String>,
}

impl Walk {
    fn finish(self) -> Vec<Vec<String>> {
        let locals = self.locals;
        self.refs
            .into_iter()
            .filter(|path| path.first().is_none_or(|head| !locals.contains(head)))
            .collect()
    }

    fn head_indexes(&mut self, refr: &Ref<Expr>) {
        match refr.as_ref() {
            Expr::RefBrack { refr, index, .. } => {
                self.expr(index);
                self.head_indexes(refr);
            }
            Expr::RefDot { refr, .. } => self.head_indexes(refr),
            _ => {}
        }
    }

    /// Every variable name in `expr` (a pattern such as `[a, b]`) becomes local.
    fn bind_vars(&mut self, expr: &Ref<Expr>) {
        match expr.as_ref() {
            Expr::Var { span, .. } => {
                self.locals.insert(span.text().to_owned());
            }
            Expr::Array { items, .. } | Expr::Set { items, .. } => {
                for item in items {
                    self.bind_vars(item);
                }
            }
            Expr::Object { fields, .. } => {
                for (_, _, value) in fields {
                    self.bind_vars(value);
                }
            }
            _ => {}
        }
    }

    fn query(&mut self, query: &Ref<Query>) {
        for stmt in &query.stmts {
            self.stmt(stmt);
        }
    }

    fn stmt(&mut self, stmt: &LiteralStmt) {
        match &stmt.literal {
            Literal::SomeVars { vars, .. } => {
                for var in vars {
                    self.locals.insert(var.text().to_owned());
                }
            }
            Literal::SomeIn {
                key,
                value,
                collection,
                ..
            } => {
                if let Some(key) = key {
                    self.bind_vars(key);
                }
                self.bind_vars(value);
                self.expr(collection);
            }
            Literal::Expr { expr, .. } | Literal::NotExpr { expr, .. } => self.expr(expr),
            Literal::Every {
                key,
                value,
                domain,
                query,
                ..
            } => {
                if let Some(key) = key {
                    self.locals.insert(key.text().to_owned());
                }
                self.locals.insert(value.text().to_owned());
                self.expr(domain);
                self.query(query);
            }
        }
        for modifier in &stmt.with_mods {
            self.expr(&modifier.r#as);
        }
    }

    fn expr(&mut self, expr: &Ref<Expr>) {
        match expr.as_ref() {
            Expr::String { .. }
            | Expr::RawString { .. }
            | Expr::Number { .. }
            | Expr::Bool { .. }
            | Expr::Null { .. } => {}
            Expr::Var { span, .. } => self.refs.push(vec![span.text().to_owned()]),
            Expr::RefDot { refr, .. } => {
                if let Some(path) = static_path(expr) {
                    self.refs.push(path);
                } else {
                    self.expr(refr);
                }
            }
            Expr::RefBrack { refr, index, .. } => {
                if let Some(path) = static_path(expr) {
                    self.refs.push(path);
                } else {
                    self.expr(refr);
                }
                self.expr(index);
            }
            Expr::Array { items, .. } | Expr::Set { items, .. } => {
                for item in items {
                    self.expr(item);
                }
            }
            Expr::Object { fields, .. } => {
                for (_, key, value) in fields {
                    self.expr(key);
                    self.expr(value);
                }
            }
            Expr::ArrayCompr { term, query, .. } | Expr::SetCompr { term, query, .. } => {
                self.expr(term);
                self.query(query);
            }
            Expr::ObjectCompr {
                key, value, query, ..
            } => {
                self.expr(key);
                self.expr(value);
                self.query(query);
            }
            Expr::Call { fcn, params, .. } => {
                self.expr(fcn);
                for param in params {
                    self.expr(param);
                }
            }
            Expr::UnaryExpr { expr, .. } => self.expr(expr),
            Expr::BinExpr { lhs, rhs, .. }
            | Expr::BoolExpr { lhs, rhs, .. }
            | Expr::ArithExpr { lhs, rhs, .. } => {
                self.expr(lhs);
                self.expr(rhs);
            }
            Expr::AssignExpr { op, lhs, rhs, .. } => {
                if *op == AssignOp::ColEq {
                    self.bind_vars(lhs);
                } else {
                    self.expr(lhs);
                }
                self.expr(rhs);
            }
            Expr::Membership {
                key,
                value,
                collection,
                ..
            } => {
                if let Some(key) = key {
                    self.expr(key);
                }
                self.expr(value);
                self.expr(collection);
            }
        }
    }
}

/// Depth-first search without native recursion (a policy may define thousands of rules).
fn cycle_in(nodes: &BTreeMap<String, (u32, BTreeSet<String>)>) -> Option<Cycle> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnPath,
        Done,
    }
    let mut marks: BTreeMap<&str, Mark> = nodes.keys().map(|k| (k.as_str(), Mark::New)).collect();
    for start in nodes.keys() {
        if marks[start.as_str()] != Mark::New {
            continue;
        }
        // (node, its successors still to visit)
        let mut path: Vec<(&str, Vec<&str>)> = Vec::new();
        let succ = |n: &str| -> Vec<&str> {
            nodes
                .get(n)
                .map(|(_, s)| s.iter().map(String::as_str).rev().collect())
                .unwrap_or_default()
        };
        marks.insert(start, Mark::OnPath);
        path.push((start, succ(start)));
        while let Some((node, pending)) = path.last_mut() {
            let node = *node;
            match pending.pop() {
                Some(next) => match marks.get(next).copied() {
                    Some(Mark::New) => {
                        marks.insert(next, Mark::OnPath);
                        path.push((next, succ(next)));
                    }
                    Some(Mark::OnPath) => {
                        let from = path.iter().position(|(n, _)| *n == next).unwrap_or(0);
                        let mut cycle: Vec<(String, u32)> = path[from..]
                            .iter()
                            .map(|(n, _)| ((*n).to_owned(), nodes[*n].0))
                            .collect();
                        cycle.push((next.to_owned(), nodes[next].0));
                        return Some(Cycle(cycle));
                    }
                    _ => {}
                },
                None => {
                    marks.insert(node, Mark::Done);
                    path.pop();
                }
            }
        }
    }
    None
}
