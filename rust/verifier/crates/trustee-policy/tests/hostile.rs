//! Hostile policies: refused at compile time or stopped by the evaluation limits, never a
//! crash. One test binary of its own: the memory ceiling is process-wide, so these tests take
//! turns and do not disturb the crate's other tests.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use regorus::Engine;
use trustee_policy::{CompiledPolicy, LimitHit, Limits, PolicyError, RuleOutcome};

static TURN: Mutex<()> = Mutex::new(());

fn turn() -> MutexGuard<'static, ()> {
    TURN.lock().unwrap_or_else(PoisonError::into_inner)
}

const LIMITS: Limits = Limits {
    time: Duration::from_millis(300),
    memory_bytes: 16 * 1024 * 1024,
};

fn compile_err(text: &str) -> String {
    match CompiledPolicy::compile(text) {
        Err(PolicyError::Compile(msg)) => msg,
        other => panic!("expected a compile error for {text:?}, got {other:?}"),
    }
}

fn eval(text: &str, rule: &str) -> Result<Vec<RuleOutcome>, PolicyError> {
    let policy = CompiledPolicy::compile_with_limits(text, LIMITS).expect("compiles");
    policy.evaluate("{}", None, &[rule], None)
}

fn value(text: &str, rule: &str) -> serde_json::Value {
    match eval(text, rule) {
        Ok(mut outcomes) => match outcomes.pop() {
            Some(RuleOutcome::Value(v)) => v,
            other => panic!("no value for {rule}: {other:?}"),
        },
        Err(e) => panic!("{rule} failed: {e}"),
    }
}

#[test]
fn recursion_is_refused_at_compile_time() {
    let _turn = turn();
    for (text, names) in [
        ("package p\nf(x) { f(x) }\nallow { f(1) }", vec!["f (line 2)"]),
        ("package p\nf(x) if { f(x) }\nallow if f(1)", vec!["f (line 2)"]),
        (
            "package p\nimport rego.v1\na if b\nb if {\n  a\n}",
            vec!["a (line 3)", "b (line 4)"],
        ),
        (
            "package p\nimport rego.v1\ng(x) := y if { y := h(x) }\nh(x) := y if {\n  allow\n  y := x\n}\nallow if g(1) == 1",
            vec!["allow (line 8)", "g (line 3)", "h (line 4)"],
        ),
        ("package p\nimport rego.v1\nx := data.p.y\ny := x", vec!["x (line 3)", "y (line 4)"]),
        ("package p\nimport rego.v1\nimport data.p.y as z\nx := z\ny := x", vec!["x (line 4)"]),
        ("package p\nimport rego.v1\nall := data.p", vec!["all (line 3)"]),
        ("package p\nimport rego.v1\ns contains v if { some v in s }", vec!["s (line 3)"]),
    ] {
        let msg = compile_err(text);
        assert!(msg.contains("recursion is not allowed"), "{text}: {msg}");
        for name in names {
            assert!(msg.contains(name), "{text}: {msg} lacks {name}");
        }
    }
}

#[test]
fn deeply_nested_text_is_refused_quickly() {
    let _turn = turn();
    for (open, close) in [("[", "]"), ("{", "}"), ("{\"a\": ", "}")] {
        let text = format!(
            "package p\nimport rego.v1\nx := {}1{}",
            open.repeat(40),
            close.repeat(40)
        );
        let started = Instant::now();
        let msg = compile_err(&text);
        assert!(msg.contains("nest more than 10 levels"), "{msg}");
        assert!(started.elapsed() < Duration::from_millis(100));
    }
}

#[test]
fn non_recursive_policies_are_not_mistaken_for_recursion() {
    let _turn = turn();
    for text in [
        // A local that shares a rule's name is not a reference to the rule.
        "package p\nimport rego.v1\nx := 1\nallow if { x := 2; x == 2 }\nf(allow) := allow + x",
        // Rules under one prefix referring to each other without a cycle.
        "package p\nimport rego.v1\na.b := 1\na.c := a.b + 1",
        "package p\nimport rego.v1\nf(x) := x + 1\ng(x) := f(x) * 2\nallow if g(1) == 4",
        "package p\nimport rego.v1\nallow if { every allow in [1] { allow > 0 } }",
    ] {
        if let Err(e) = CompiledPolicy::compile(text) {
            panic!("{text}: {e}");
        }
    }
    assert_eq!(
        value(
            "package p\nimport rego.v1\na.b := 1\na.c := a.b + 1",
            "data.p.a.c"
        ),
        serde_json::json!(2)
    );
}

#[test]
fn a_long_evaluation_stops_at_the_time_limit() {
    let _turn = turn();
    let text = "package p\nimport rego.v1\nn := count([x | some x in numbers.range(1, 3000); some y in numbers.range(1, 3000); x == y])";
    let started = Instant::now();
    let err = eval(text, "data.p.n").expect_err("too slow");
    assert_eq!(err, PolicyError::Limit(LimitHit::Time(LIMITS.time)));
    assert_eq!(
        err.to_string(),
        "policy evaluation exceeded its time limit of 300 ms"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_time_slice_is_reported_apart_from_the_limit() {
    let _turn = turn();
    let text = "package p\nimport rego.v1\nn := count([x | some x in numbers.range(1, 3000); some y in numbers.range(1, 3000); x == y])\nok := true";
    let policy = CompiledPolicy::compile_with_limits(text, LIMITS).expect("compiles");
    let slice = Some(Duration::from_millis(10));
    let started = Instant::now();
    assert_eq!(
        policy.evaluate_sliced("{}", None, &["data.p.n"], None, slice),
        Err(PolicyError::SliceExpired(Duration::from_millis(10)))
    );
    assert!(started.elapsed() < Duration::from_millis(200));
    // So does one that needs more memory than comes with a slice.
    let big = "package p\nimport rego.v1\nn := count(numbers.range(1, 400000))";
    let policy_big = CompiledPolicy::compile_with_limits(big, LIMITS).expect("compiles");
    assert_eq!(
        policy_big.evaluate_sliced("{}", None, &["data.p.n"], None, slice),
        Err(PolicyError::SliceExpired(Duration::from_millis(10)))
    );
    assert_eq!(
        policy_big.evaluate("{}", None, &["data.p.n"], None),
        Ok(vec![RuleOutcome::Value(serde_json::json!(400000))])
    );
    // A quick rule finishes inside the slice.
    assert_eq!(
        policy.evaluate_sliced("{}", None, &["data.p.ok"], None, slice),
        Ok(vec![RuleOutcome::Value(serde_json::json!(true))])
    );
}

#[test]
fn memory_blow_ups_stop_at_the_memory_limit() {
    let _turn = turn();
    let memory = PolicyError::Limit(LimitHit::Memory(LIMITS.memory_bytes));
    for body in [
        "count(numbers.range(1, 1000000000))",
        "count(numbers.range_step(1, 10000000000, 2))",
        "count(numbers.range(1, 10000000))",
        // Doubling through rules: each step is small, the cooperative check stops it.
        "count(s30)",
        "count(replace(s20, \"\", s20))",
        "count(replace(s20, \"a\", s20))",
        "count(strings.replace_n({\"a\": s20}, s20))",
        "count(regex.replace(s20, \"a\", s20))",
        "count(sprintf(\"%999999999999d\", [1]))",
        "count(sprintf(\"%v\", [d40]))",
        "count(concat(\"\", [s20 | some _ in numbers.range(1, 100)]))",
        "count(json.marshal(d40))",
        "count(json.marshal_with_options(d20, {\"indent\": s10, \"pretty\": true}))",
        "bits.lsh(1, 4000000000) > 0",
        // The value of a rule is converted to JSON on the way out.
        "d40",
    ] {
        let text = format!(
            "package p\nimport rego.v1\n\
             s0 := \"aa\"\n{}\n{}\nr := {body}",
            (1..=30)
                .map(|i| format!("s{i} := concat(\"\", [s{p}, s{p}])", p = i - 1))
                .collect::<Vec<_>>()
                .join("\n"),
            std::iter::once("d0 := [1]".to_owned())
                .chain((1..=40).map(|i| format!("d{i} := [d{p}, d{p}]", p = i - 1)))
                .collect::<Vec<_>>()
                .join("\n"),
        );
        let started = Instant::now();
        assert_eq!(eval(&text, "data.p.r"), Err(memory.clone()), "{body}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{body}: {:?}",
            started.elapsed()
        );
    }
    assert_eq!(
        memory.to_string(),
        "policy evaluation exceeded its memory limit of 16 MiB"
    );
}

#[test]
fn builtin_misuse_is_an_error_not_a_panic() {
    let _turn = turn();
    for body in [
        "numbers.range_step(1, 10, 0)",
        "numbers.range_step(1, 10, -1)",
        "numbers.range_step(10, 1, 0)",
        "numbers.range(1, 1.5)",
        "bits.lsh(1, -1)",
        "sprintf(\"%\", [])",
        "strings.replace_n({\"a\": 1}, \"abc\")",
        "regex.replace(\"a\", \"(\", \"b\")",
    ] {
        let text = format!("package p\nimport rego.v1\nr := {body}");
        match eval(&text, "data.p.r") {
            Err(PolicyError::Eval(_)) | Ok(_) => {}
            other => panic!("{body}: {other:?}"),
        }
    }
}

/// The bounded builtins give what regorus's own give for ordinary arguments.
#[test]
fn bounded_builtins_match_the_builtins() {
    let _turn = turn();
    let calls = [
        "numbers.range(1, 5)",
        "numbers.range(5, -2)",
        "numbers.range(3, 3)",
        "numbers.range_step(1, 10, 3)",
        "numbers.range_step(10, 1, 4)",
        "sprintf(\"%05d|%-4s|%.2f|%x|%v\", [42, \"ab\", 3.14159, 255, {\"k\": [1, 2]}])",
        "sprintf(\"%d%%\", [7])",
        "replace(\"banana\", \"an\", \"AN\")",
        "replace(\"abc\", \"\", \"-\")",
        "strings.replace_n({\"a\": \"1\", \"b\": \"22\"}, \"abcab\")",
        "regex.replace(\"a1b22c\", \"[0-9]+\", \"<$0>\")",
        "concat(\", \", [\"x\", \"y\", \"z\"])",
        "concat(\"-\", {\"b\", \"a\"})",
        "json.marshal({\"a\": [1, true, null, \"s\"]})",
        "json.marshal_with_options({\"a\": [1]}, {\"pretty\": true, \"indent\": \"  \"})",
        "bits.lsh(3, 4)",
        "bits.lsh(1, 70)",
    ];
    for call in calls {
        let text = format!("package p\nimport rego.v1\nr := {call}");
        let ours = value(&text, "data.p.r");
        let mut plain = Engine::new();
        plain
            .add_policy("p.rego".into(), text.clone())
            .expect("policy");
        let theirs = plain.eval_rule("data.p.r".into()).expect("builtin");
        assert_eq!(ours, serde_json::to_value(&theirs).expect("json"), "{call}");
    }
}
