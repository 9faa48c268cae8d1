use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use serde_json::json;

use super::*;

fn compile(text: &str) -> CompiledPolicy {
    CompiledPolicy::compile(text).unwrap_or_else(|e| panic!("compile failed: {e}\n{text}"))
}

fn eval_one(policy: &CompiledPolicy, input: &str, rule: &str) -> RuleOutcome {
    let mut out = policy.evaluate(input, None, &[rule], None).unwrap();
    out.pop().unwrap()
}

fn allow(text: &str, input: &str) -> RuleOutcome {
    eval_one(&compile(text), input, "data.policy.allow")
}

fn rv_map(pairs: &[(&str, serde_json::Value)]) -> Arc<ReferenceValueFn> {
    let map: HashMap<String, serde_json::Value> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect();
    Arc::new(move |id: &str| Ok(map.get(id).cloned()))
}

#[test]
fn policy_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync + 'static>() {}
    assert_send_sync::<CompiledPolicy>();
}

// --- syntax selection -------------------------------------------------------------------

#[test]
fn v1_if_without_import_is_not_allow_all() {
    for text in [
        "package policy\nallow if { false }",
        "package policy\nallow if { 1 == 2 }",
    ] {
        let p = compile(text);
        assert_eq!(p.syntax(), Syntax::V1);
        assert_eq!(
            eval_one(&p, "{}", "data.policy.allow"),
            RuleOutcome::Undefined,
            "{text}"
        );
    }
}

#[test]
fn mixed_syntax_never_falls_back_to_the_allow_all_reading() {
    // Fails v1 (line 3 lacks `if`); a plain v0 parse would make `allow` unconditional.
    let text = "package policy\ndefault allow = false\nallow { false }\nallow if { false }";
    let err = CompiledPolicy::compile(text).unwrap_err();
    let PolicyError::Compile(msg) = err else {
        panic!("expected compile error, got {err:?}")
    };
    assert!(
        msg.contains("`if` keyword is required before rule body"),
        "{msg}"
    );
    assert!(msg.contains("policy.rego:3:7"), "{msg}");
    assert!(msg.contains("not retried as Rego v0"), "{msg}");

    let text = "package policy\nallow if { false }\nfoo { true }";
    assert!(CompiledPolicy::compile(text).is_err());

    // With the future import the same shape is a well-defined v0 policy.
    let text =
        "package policy\nimport future.keywords.if\ndefault allow = false\nallow { false }\nallow if { false }";
    let p = compile(text);
    assert_eq!(p.syntax(), Syntax::V0);
    assert_eq!(
        eval_one(&p, "{}", "data.policy.allow"),
        RuleOutcome::Value(json!(false))
    );
}

#[test]
fn v0_policies_work() {
    let p = compile("package policy\nallow { input.x == 1 }");
    assert_eq!(p.syntax(), Syntax::V0);
    assert_eq!(
        eval_one(&p, r#"{"x":1}"#, "data.policy.allow"),
        RuleOutcome::Value(json!(true))
    );
    assert_eq!(
        eval_one(&p, r#"{"x":2}"#, "data.policy.allow"),
        RuleOutcome::Undefined
    );

    let p = compile("package policy\ndefault allow = false\nallow { true }");
    assert_eq!(p.syntax(), Syntax::V0);
    assert_eq!(
        eval_one(&p, "{}", "data.policy.allow"),
        RuleOutcome::Value(json!(true))
    );

    // v0 builtin `contains` is not mistaken for the keyword.
    assert_eq!(
        allow(
            "package policy\ndefault allow = false\nallow { contains(input.s, \"b\") }",
            r#"{"s":"abc"}"#
        ),
        RuleOutcome::Value(json!(true))
    );
}

#[test]
fn v1_policies_work() {
    let p = compile(
        "package policy\nimport rego.v1\ndefault allow := false\nallow if {\n  input.x in [1, 2]\n}",
    );
    assert_eq!(p.syntax(), Syntax::V1);
    assert_eq!(p.package_path(), "data.policy");
    assert_eq!(
        eval_one(&p, r#"{"x":2}"#, "data.policy.allow"),
        RuleOutcome::Value(json!(true))
    );
    assert_eq!(
        eval_one(&p, r#"{"x":3}"#, "data.policy.allow"),
        RuleOutcome::Value(json!(false))
    );
}

#[test]
fn one_line_folded_policy() {
    // What a YAML folded scalar makes of a two-line policy (the seed's resource policy).
    for text in [
        "package policy default allow = true",
        "package policy default allow = true\n",
        "package policy import rego.v1 default allow := false allow if input.x == 1",
    ] {
        let p = compile(text);
        assert_eq!(p.syntax(), Syntax::V1, "{text}");
    }
    assert_eq!(
        allow("package policy default allow = true", "{}"),
        RuleOutcome::Value(json!(true))
    );
    assert_eq!(
        allow(
            "package policy import rego.v1 default allow := false allow if input.x == 1",
            r#"{"x":1}"#
        ),
        RuleOutcome::Value(json!(true))
    );
}

#[test]
fn long_single_line_policies_are_accepted() {
    let mut text = String::from("package policy default allow = false");
    for i in 0..200 {
        text.push_str(&format!(" allow if input.x == {i}"));
    }
    assert!(text.len() > 2048);
    assert_eq!(
        allow(&text, r#"{"x":199}"#),
        RuleOutcome::Value(json!(true))
    );
}

#[test]
fn compile_errors_carry_position() {
    let err = CompiledPolicy::compile("package policy\nallow if {\n  input.x ==\n}").unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, PolicyError::Compile(_)));
    assert!(msg.contains("policy.rego:"), "{msg}");
    assert!(!msg.starts_with('\n'), "{msg:?}");

    // A v1 typo is reported as such, without v0 commentary.
    assert!(!msg.contains("Rego v0"), "{msg}");

    // v0-style text that is broken in v0 too: both diagnoses, v1 first.
    let msg = CompiledPolicy::compile("package policy\nallow { input.x = }")
        .unwrap_err()
        .to_string();
    let v1_at = msg.find("`if` keyword is required").expect(&msg);
    let v0_at = msg.find("as Rego v0:").expect(&msg);
    assert!(v1_at < v0_at, "{msg}");

    assert!(CompiledPolicy::compile("").is_err());
    assert!(CompiledPolicy::compile("allow = true").is_err());
}

#[test]
fn analysis_errors_are_compile_errors() {
    // Parses fine but `x` is unsafe: reject at set time, not on first evaluation.
    let err =
        CompiledPolicy::compile("package policy\nimport rego.v1\nallow if { x }").unwrap_err();
    assert!(matches!(err, PolicyError::Compile(_)), "{err:?}");
    assert!(err.to_string().contains("unsafe"), "{err}");
}

#[test]
fn unknown_functions_are_evaluation_errors() {
    let p = compile("package policy\nimport rego.v1\nallow if { no_such_fn(1) }");
    let err = p
        .evaluate("{}", None, &["data.policy.allow"], None)
        .unwrap_err();
    assert!(err.to_string().contains("could not find function"), "{err}");
}

// --- evaluation semantics ---------------------------------------------------------------

#[test]
fn outcome_kinds() {
    let p = compile(
        "package policy\nimport rego.v1\nx := 1\ny := 2 if input.a > 2\nz := {\"k\": [1, \"s\", null, true]}",
    );
    let out = p
        .evaluate(
            r#"{"a":1}"#,
            None,
            &[
                "data.policy.x",
                "data.policy.y",
                "data.policy.nope",
                "data.other.x",
                "data.policy.z",
            ],
            None,
        )
        .unwrap();
    assert_eq!(
        out,
        vec![
            RuleOutcome::Value(json!(1)),
            RuleOutcome::Undefined,
            RuleOutcome::Absent,
            RuleOutcome::Absent,
            RuleOutcome::Value(json!({"k": [1, "s", null, true]})),
        ]
    );
}

#[test]
fn sets_become_arrays() {
    let p = compile("package policy\nimport rego.v1\ns contains x if { some x in [3, 1, 3] }");
    assert_eq!(
        eval_one(&p, "{}", "data.policy.s"),
        RuleOutcome::Value(json!([1, 3]))
    );
}

#[test]
fn membership_on_arrays_vs_strings() {
    let text =
        "package policy\nimport rego.v1\ndefault allow := false\nallow if { input.v in input.rv }";
    assert_eq!(
        allow(text, r#"{"v":"1","rv":["1","2"]}"#),
        RuleOutcome::Value(json!(true))
    );
    // Membership in a string is false, not a substring test and not an error.
    assert_eq!(
        allow(text, r#"{"v":"1","rv":"1"}"#),
        RuleOutcome::Value(json!(false))
    );
    assert_eq!(
        allow(text, r#"{"v":"1","rv":null}"#),
        RuleOutcome::Value(json!(false))
    );
}

#[test]
fn cross_type_comparison_with_null() {
    let text = "package policy\nimport rego.v1\ndefault allow := false\nallow if { 4 >= input.n }";
    assert_eq!(
        allow(text, r#"{"n":null}"#),
        RuleOutcome::Value(json!(true))
    );
    assert_eq!(allow(text, r#"{"n":5}"#), RuleOutcome::Value(json!(false)));
}

#[test]
fn conflicting_rule_values_fail() {
    let p = compile("package policy\nimport rego.v1\nr := 1 if { true }\nr := 2 if { true }");
    let err = p
        .evaluate("{}", None, &["data.policy.r"], None)
        .unwrap_err();
    assert!(matches!(err, PolicyError::Eval(_)), "{err:?}");
    assert!(err.to_string().contains("conflict"), "{err}");
}

#[test]
fn first_error_aborts_later_rules() {
    let p = compile(
        "package policy\nimport rego.v1\nbad := 1 if { true }\nbad := 2 if { true }\nok := 1",
    );
    assert!(p
        .evaluate("{}", None, &["data.policy.ok", "data.policy.bad"], None)
        .is_err());
}

#[test]
fn data_document() {
    let text = "package policy\nimport rego.v1\ndefault allow := false\nallow if {\n  data.plugin == \"resource\"\n  data[\"resource-path\"][0] == input.repo\n}";
    let p = compile(text);
    let run = |data: &str, input: &str| {
        p.evaluate(input, Some(data), &["data.policy.allow"], None)
            .map(|mut v| v.pop().unwrap())
    };
    assert_eq!(
        run(
            r#"{"plugin":"resource","resource-path":["repo","t","k"],"query":{}}"#,
            r#"{"repo":"repo"}"#
        )
        .unwrap(),
        RuleOutcome::Value(json!(true))
    );
    assert_eq!(
        run(r#"{"plugin":"other"}"#, r#"{"repo":"repo"}"#).unwrap(),
        RuleOutcome::Value(json!(false))
    );
    // Data does not leak between evaluations of the same compiled policy.
    assert_eq!(
        p.evaluate(r#"{"repo":"repo"}"#, None, &["data.policy.allow"], None)
            .unwrap(),
        vec![RuleOutcome::Value(json!(false))]
    );
    assert!(matches!(run("[]", "{}"), Err(PolicyError::Input(_))));
    assert!(matches!(run("{", "{}"), Err(PolicyError::Input(_))));
}

#[test]
fn prepared_data_engines_keep_documents_and_inputs_apart() {
    // Resource policies are evaluated with one data document per resource path; the prepared
    // engine kept per document must never answer for another document or an earlier input.
    let text = "package policy\nimport rego.v1\ndefault allow := false\nallow if {\n  data[\"resource-path\"][0] == input.repo\n}";
    let p = compile(text);
    let doc = |i: usize| format!(r#"{{"plugin":"resource","resource-path":["r{i}","t","k"]}}"#);
    let input = |i: usize| format!(r#"{{"repo":"r{i}"}}"#);
    let allow = |d: &str, i: &str| {
        p.evaluate(i, Some(d), &["data.policy.allow"], None)
            .unwrap()
            .pop()
            .unwrap()
    };
    // More documents than the cache holds, twice over, in an order that evicts and reloads.
    for round in 0..2 {
        for i in 0..(DATA_ENGINES + 10) {
            let d = doc(i);
            assert_eq!(
                allow(&d, &input(i)),
                RuleOutcome::Value(json!(true)),
                "{round}/{i}"
            );
            assert_eq!(
                allow(&d, &input(i + 1)),
                RuleOutcome::Value(json!(false)),
                "{round}/{i}"
            );
        }
    }
    assert!(p.data_engines.lock().unwrap().len() <= DATA_ENGINES);
    // A clone starts with an empty cache and the same behaviour.
    let q = p.clone();
    assert!(q.data_engines.lock().unwrap().is_empty());
    assert_eq!(
        q.evaluate(&input(3), Some(&doc(3)), &["data.policy.allow"], None)
            .unwrap(),
        vec![RuleOutcome::Value(json!(true))]
    );
}

#[test]
fn reference_values_work_on_prepared_data_engines() {
    let text = "package policy\nimport rego.v1\ndefault allow := false\nallow if query_reference_value(data.plugin) == input.v";
    let p = compile(text);
    let rv: Arc<ReferenceValueFn> = Arc::new(|id: &str| Ok(Some(json!(format!("rv-{id}")))));
    for _ in 0..3 {
        assert_eq!(
            p.evaluate(
                r#"{"v":"rv-a"}"#,
                Some(r#"{"plugin":"a"}"#),
                &["data.policy.allow"],
                Some(Arc::clone(&rv))
            )
            .unwrap(),
            vec![RuleOutcome::Value(json!(true))]
        );
        assert_eq!(
            p.evaluate(
                r#"{"v":"rv-a"}"#,
                Some(r#"{"plugin":"b"}"#),
                &["data.policy.allow"],
                Some(Arc::clone(&rv))
            )
            .unwrap(),
            vec![RuleOutcome::Value(json!(false))]
        );
    }
}

#[test]
fn bad_input_json_is_an_input_error() {
    let p = compile("package policy default allow = true");
    for input in ["", "{", "nope"] {
        assert!(matches!(
            p.evaluate(input, None, &["data.policy.allow"], None),
            Err(PolicyError::Input(_))
        ));
    }
}

// --- query_reference_value --------------------------------------------------------------

const RV_POLICY: &str = r#"package policy
import rego.v1

v := query_reference_value(input.id)
"#;

#[test]
fn reference_values_without_callback_are_null() {
    let p = compile(RV_POLICY);
    let out = p
        .evaluate(r#"{"id":"x"}"#, None, &["data.policy.v"], None)
        .unwrap();
    assert_eq!(out, vec![RuleOutcome::Value(json!(null))]);
}

#[test]
fn reference_values_from_callback() {
    let p = compile(RV_POLICY);
    let rv = rv_map(&[
        ("svn", json!(["1", "2"])),
        ("obj", json!({"a": [1.5, null]})),
    ]);
    let run = |id: &str| {
        p.evaluate(
            &json!({ "id": id }).to_string(),
            None,
            &["data.policy.v"],
            Some(Arc::clone(&rv)),
        )
        .unwrap()
    };
    assert_eq!(run("svn"), vec![RuleOutcome::Value(json!(["1", "2"]))]);
    assert_eq!(
        run("obj"),
        vec![RuleOutcome::Value(json!({"a": [1.5, null]}))]
    );
    assert_eq!(run("missing"), vec![RuleOutcome::Value(json!(null))]);
}

#[test]
fn reference_value_id_must_be_a_string() {
    let p = compile(RV_POLICY);
    let err = p
        .evaluate(r#"{"id":1}"#, None, &["data.policy.v"], Some(rv_map(&[])))
        .unwrap_err();
    assert!(matches!(err, PolicyError::Eval(_)), "{err:?}");
    assert!(err.to_string().contains("must be a string"), "{err}");
}

#[test]
fn reference_value_callback_errors_abort() {
    let p = compile(RV_POLICY);
    let cb: Arc<ReferenceValueFn> =
        Arc::new(|id: &str| Err(format!("RVPS down while reading {id}")));
    let err = p
        .evaluate(r#"{"id":"svn"}"#, None, &["data.policy.v"], Some(cb))
        .unwrap_err();
    assert_eq!(
        err,
        PolicyError::ReferenceValue("RVPS down while reading svn".into())
    );
}

#[test]
fn reference_values_are_not_queried_for_short_circuited_rules() {
    let p = compile(
        "package policy\nimport rego.v1\ndefault ok := false\nok if {\n  input.flag\n  input.v in query_reference_value(\"list\")\n}",
    );
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let cb: Arc<ReferenceValueFn> = Arc::new(move |_id: &str| {
        counter.fetch_add(1, Ordering::SeqCst);
        Ok(Some(json!(["a"])))
    });
    let run = |input: &str| {
        p.evaluate(input, None, &["data.policy.ok"], Some(Arc::clone(&cb)))
            .unwrap()
    };
    assert_eq!(
        run(r#"{"flag":false,"v":"a"}"#),
        vec![RuleOutcome::Value(json!(false))]
    );
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    assert_eq!(
        run(r#"{"flag":true,"v":"a"}"#),
        vec![RuleOutcome::Value(json!(true))]
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

// --- trust-claims shaped policy (upstream's default policy shapes) -----------------

/// A cut-down policy with the same shape as the default CPU policy's `sample` section,
/// written for these tests: defaults 33/97/36 and affirming values when the evidence
/// matches the reference values.
const TRUST_POLICY: &str = r#"package policy
import rego.v1

default executables := 33
default hardware := 97
default configuration := 36

executables := 3 if {
  input.sample
  input.sample.launch_digest in query_reference_value("launch_digest")
}

hardware := 2 if {
  input.sample
  input.sample.svn in query_reference_value("svn")
  input.sample.platform_version.major == query_reference_value("major_version")
  input.sample.platform_version.minor >= query_reference_value("minimum_minor_version")
}

configuration := 2 if {
  input.sample
  input.sample.debug == false
}

trust_claims := {
  "executables": executables,
  "hardware": hardware,
  "configuration": configuration,
}
"#;

fn sample_input() -> String {
    json!({
        "report_data": "",
        "runtime_data_claims": null,
        "sample": {
            "svn": "1",
            "report_data": "",
            "launch_digest": "abcde",
            "platform_version": {"major": 1, "minor": 4},
            "debug": false
        }
    })
    .to_string()
}

fn trust(rvs: &[(&str, serde_json::Value)]) -> Vec<RuleOutcome> {
    compile(TRUST_POLICY)
        .evaluate(
            &sample_input(),
            None,
            &["data.policy.trust_claims", "data.policy.extensions"],
            Some(rv_map(rvs)),
        )
        .unwrap()
}

fn claims(e: i64, h: i64, c: i64) -> RuleOutcome {
    RuleOutcome::Value(json!({"executables": e, "hardware": h, "configuration": c}))
}

#[test]
fn vector_a_no_reference_values() {
    assert_eq!(trust(&[]), vec![claims(33, 97, 2), RuleOutcome::Absent]);
}

#[test]
fn vector_b_full_reference_values() {
    let rvs = [
        ("svn", json!(["1"])),
        ("launch_digest", json!(["abcde"])),
        ("major_version", json!(1)),
        ("minimum_minor_version", json!(1)),
    ];
    assert_eq!(trust(&rvs), vec![claims(3, 2, 2), RuleOutcome::Absent]);
}

#[test]
fn vector_c_missing_minimum_minor_version() {
    // `4 >= null` holds, so a missing minimum does not lower the hardware claim.
    let rvs = [
        ("svn", json!(["1"])),
        ("launch_digest", json!(["abcde"])),
        ("major_version", json!(1)),
    ];
    assert_eq!(trust(&rvs), vec![claims(3, 2, 2), RuleOutcome::Absent]);
}

#[test]
fn vector_d_scalar_reference_values() {
    let rvs = [
        ("svn", json!("1")),
        ("launch_digest", json!("abcde")),
        ("major_version", json!(1)),
        ("minimum_minor_version", json!(1)),
    ];
    assert_eq!(trust(&rvs), vec![claims(33, 97, 2), RuleOutcome::Absent]);
}

#[test]
fn concurrent_evaluation_of_one_policy() {
    let p = Arc::new(compile(TRUST_POLICY));
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let p = Arc::clone(&p);
            std::thread::spawn(move || {
                for i in 0..200 {
                    let affirm = (i + t) % 2 == 0;
                    let rv = if affirm {
                        rv_map(&[
                            ("svn", json!(["1"])),
                            ("launch_digest", json!(["abcde"])),
                            ("major_version", json!(1)),
                        ])
                    } else {
                        rv_map(&[])
                    };
                    let out = p
                        .evaluate(
                            &sample_input(),
                            None,
                            &["data.policy.trust_claims"],
                            Some(rv),
                        )
                        .unwrap();
                    let want = if affirm {
                        claims(3, 2, 2)
                    } else {
                        claims(33, 97, 2)
                    };
                    assert_eq!(out, vec![want]);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}
