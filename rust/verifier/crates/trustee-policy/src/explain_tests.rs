use std::sync::Arc;

use serde_json::json;

use crate::{CompiledPolicy, DefinitionStatus, Explanation, PolicyError, RuleOutcome};

const RESOURCE: &str = r#"package policy

default allow := false
allow if {
    input.tdx.tcb_status == "UpToDate"
    data["resource-path"][0] == "default"
}
"#;

fn explain(policy: &str, input: &str, data: Option<&str>, rules: &[&str]) -> Explanation {
    let compiled = CompiledPolicy::compile(policy).expect("policy compiles");
    compiled
        .explain(input, data, rules, None)
        .expect("explain succeeds")
}

#[test]
fn denied_resource_names_the_failing_expression() {
    let out = explain(
        RESOURCE,
        r#"{"tdx": {"tcb_status": "OutOfDate"}}"#,
        Some(r#"{"resource-path": ["default", "key", "1"]}"#),
        &["data.policy.allow"],
    );
    let rule = &out.rules[0];
    assert_eq!(rule.outcome, RuleOutcome::Value(json!(false)));
    let because = rule.because();
    assert_eq!(because.len(), 1);
    assert_eq!(because[0].status, DefinitionStatus::Default);
    assert_eq!(because[0].first_line, 3);
    let failed = rule.failed();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].0.head, "allow");
    assert_eq!(failed[0].0.first_line, 4);
    assert_eq!(failed[0].1.line, 5);
    assert_eq!(failed[0].1.col, 5);
    assert_eq!(failed[0].1.text, r#"input.tdx.tcb_status == "UpToDate""#);
}

#[test]
fn second_expression_fails_on_the_data_document() {
    let out = explain(
        RESOURCE,
        r#"{"tdx": {"tcb_status": "UpToDate"}}"#,
        Some(r#"{"resource-path": ["other", "key", "1"]}"#),
        &["data.policy.allow"],
    );
    let failed = out.rules[0].failed();
    assert_eq!(failed[0].1.line, 6);
    assert_eq!(failed[0].1.text, r#"data["resource-path"][0] == "default""#);
}

#[test]
fn allowed_resource_names_the_definition() {
    let out = explain(
        RESOURCE,
        r#"{"tdx": {"tcb_status": "UpToDate"}}"#,
        Some(r#"{"resource-path": ["default", "key", "1"]}"#),
        &["data.policy.allow"],
    );
    let rule = &out.rules[0];
    assert_eq!(rule.outcome, RuleOutcome::Value(json!(true)));
    let because = rule.because();
    assert_eq!(because.len(), 1);
    assert_eq!((because[0].first_line, because[0].last_line), (4, 7));
    assert_eq!(because[0].head, "allow");
    assert!(rule.failed().is_empty());
    let doc = out.to_json();
    assert_eq!(doc["decision"]["data.policy.allow"], json!(true));
    assert_eq!(doc["rules"][0]["because"][0]["line"], json!(4));
}

#[test]
fn loop_bindings_carry_across_expressions() {
    let policy = r#"package policy
allow if {
    some x in input.xs
    x.a == 1
    x.b == 2
}
"#;
    // One element passes `x.a == 1`, but no element passes both.
    let out = explain(
        policy,
        r#"{"xs": [{"a": 1, "b": 3}, {"a": 2, "b": 2}]}"#,
        None,
        &["data.policy.allow"],
    );
    let rule = &out.rules[0];
    assert_eq!(rule.outcome, RuleOutcome::Undefined);
    let failed = rule.failed();
    assert_eq!(failed[0].1.text, "x.b == 2");
    assert_eq!(failed[0].1.line, 5);
}

#[test]
fn else_chain_stops_at_the_branch_that_held() {
    let policy = r#"package policy
level := 3 if {
    input.a == 1
} else := 2 if {
    input.b == 1
} else := 1
"#;
    let out = explain(policy, r#"{"a": 0, "b": 1}"#, None, &["data.policy.level"]);
    let rule = &out.rules[0];
    assert_eq!(rule.outcome, RuleOutcome::Value(json!(2)));
    let statuses: Vec<_> = rule.definitions.iter().map(|d| d.status.clone()).collect();
    assert!(matches!(statuses[0], DefinitionStatus::Failed(ref e) if e.line == 3));
    assert_eq!(statuses[1], DefinitionStatus::Held);
    assert_eq!(rule.because()[0].first_line, 4);
    assert_eq!(rule.because()[0].head, "else = 2");
}

#[test]
fn v0_policy_is_explained() {
    let policy =
        "package policy\ndefault allow = false\nallow {\n  input.x == 1\n  input.y == 2\n}\n";
    let out = explain(policy, r#"{"x": 1, "y": 3}"#, None, &["data.policy.allow"]);
    let failed = out.rules[0].failed();
    assert_eq!(failed[0].1.text, "input.y == 2");
}

#[test]
fn absent_rule_has_no_definitions() {
    let out = explain(RESOURCE, "{}", None, &["data.policy.deny"]);
    assert_eq!(out.rules[0].outcome, RuleOutcome::Absent);
    assert!(out.rules[0].definitions.is_empty());
    assert_eq!(out.to_json()["rules"][0]["status"], json!("absent"));
}

#[test]
fn attestation_policy_with_reference_values() {
    let policy = include_str!("../../../../../policies/default_cpu.rego");
    let compiled = CompiledPolicy::compile(policy).expect("default_cpu compiles");
    let input = r#"{"sample": {"launch_digest": "abc", "svn": "1", "debug": false,
        "platform_version": {"major": 1, "minor": 0}}}"#;
    let rv: Arc<crate::ReferenceValueFn> = Arc::new(|id: &str| {
        Ok(match id {
            "launch_digest" => Some(json!(["abc"])),
            "svn" => Some(json!(["2"])),
            _ => None,
        })
    });
    let out = compiled
        .explain(
            input,
            None,
            &[
                "data.policy.executables",
                "data.policy.hardware",
                "data.policy.trust_claims",
            ],
            Some(rv),
        )
        .expect("explain succeeds");
    let executables = &out.rules[0];
    assert_eq!(executables.outcome, RuleOutcome::Value(json!(3)));
    assert_eq!(executables.because().len(), 1);
    assert_eq!(executables.because()[0].head, "executables := 3");
    let hardware = &out.rules[1];
    assert_eq!(hardware.outcome, RuleOutcome::Value(json!(97)));
    assert_eq!(hardware.because()[0].status, DefinitionStatus::Default);
    let sample_hw = hardware.definitions.iter().find_map(|d| match &d.status {
        DefinitionStatus::Failed(e) if e.text.contains("input.sample.svn") => Some(e),
        _ => None,
    });
    assert!(sample_hw.is_some(), "{:?}", hardware.definitions);
    assert!(hardware
        .failed()
        .iter()
        .any(|(_, e)| e.text.contains("input.sample.svn")));
    // A value from a held definition lists no failures, even of other TEEs' definitions.
    assert!(executables.failed().is_empty());
    let claims = &out.rules[2];
    assert_eq!(claims.outcome.clone(), evaluate_one(&compiled, input));
}

fn evaluate_one(compiled: &CompiledPolicy, input: &str) -> RuleOutcome {
    let rv: Arc<crate::ReferenceValueFn> = Arc::new(|id: &str| {
        Ok(match id {
            "launch_digest" => Some(json!(["abc"])),
            "svn" => Some(json!(["2"])),
            _ => None,
        })
    });
    compiled
        .evaluate(input, None, &["data.policy.trust_claims"], Some(rv))
        .expect("evaluate succeeds")
        .remove(0)
}

#[test]
fn reference_value_failure_is_reported_as_such() {
    let policy = "package policy\nallow if input.x in query_reference_value(\"x\")\n";
    let compiled = CompiledPolicy::compile(policy).expect("compiles");
    let rv: Arc<crate::ReferenceValueFn> = Arc::new(|_: &str| Err("RVPS unavailable".into()));
    let err = compiled
        .explain(r#"{"x": 1}"#, None, &["data.policy.allow"], Some(rv))
        .expect_err("callback failure aborts");
    assert_eq!(err, PolicyError::ReferenceValue("RVPS unavailable".into()));
}

#[test]
fn bad_input_is_an_input_error() {
    let compiled = CompiledPolicy::compile(RESOURCE).expect("compiles");
    let err = compiled
        .explain("{", None, &["data.policy.allow"], None)
        .expect_err("bad JSON");
    assert!(matches!(err, PolicyError::Input(_)), "{err:?}");
}

#[test]
fn evaluate_and_explain_agree() {
    let compiled = CompiledPolicy::compile(RESOURCE).expect("compiles");
    for status in ["UpToDate", "OutOfDate"] {
        let input = format!(r#"{{"tdx": {{"tcb_status": "{status}"}}}}"#);
        let data = Some(r#"{"resource-path": ["default"]}"#);
        let evaluated = compiled
            .evaluate(&input, data, &["data.policy.allow"], None)
            .expect("evaluate");
        let explained = compiled
            .explain(&input, data, &["data.policy.allow"], None)
            .expect("explain");
        assert_eq!(explained.rules[0].outcome, evaluated[0]);
    }
}

#[test]
fn string_literals_keep_their_quotes() {
    let policy = r#"package policy
default msg := "none"
msg := "found" if {
    "kernel" in input.paths
}
"#;
    let out = explain(
        policy,
        r#"{"paths": ["initrd"]}"#,
        None,
        &["data.policy.msg"],
    );
    let rule = &out.rules[0];
    assert_eq!(rule.outcome, RuleOutcome::Value(json!("none")));
    assert_eq!(rule.because()[0].head, r#"default msg := "none""#);
    // A default value is explained by the definitions that did not hold.
    let failed = rule.failed();
    assert_eq!(failed.len(), 1);
    let expr = failed[0].1;
    assert_eq!(expr.text, r#""kernel" in input.paths"#);
    assert_eq!((expr.line, expr.col), (4, 5));
    assert_eq!(rule.definitions[1].head, r#"msg := "found""#);
}
