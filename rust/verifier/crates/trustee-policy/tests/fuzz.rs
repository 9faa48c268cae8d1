//! Bounded, deterministic fuzzing (fixed-seed xorshift PRNG, time-boxed) of policy compilation
//! and evaluation under tight limits: hostile seeds (recursion, huge ranges, string blow-ups,
//! deep nesting) are spliced, mutated and mixed with random tokens. Compile and evaluation
//! errors are expected; a panic, an abort or an evaluation that overruns its time limit by far
//! is not.
//!
//! Budget: `POLICY_FUZZ_SECS` seconds (default 3, at most 60).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use trustee_policy::{CompiledPolicy, Limits};

const DEFAULT_SECS: u64 = 3;
const MAX_SECS: u64 = 60;
const LIMITS: Limits = Limits {
    time: Duration::from_millis(50),
    memory_bytes: 8 * 1024 * 1024,
};
/// How far past its time limit one evaluation may finish (one builtin call is not
/// interrupted, and the machine is shared).
const OVERRUN: Duration = Duration::from_secs(2);

fn budget() -> Duration {
    let secs = std::env::var("POLICY_FUZZ_SECS")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(DEFAULT_SECS)
        .min(MAX_SECS);
    Duration::from_secs(secs)
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

const HEADER: &str = "package policy\nimport rego.v1\n";

const BODIES: &[&str] = &[
    "f(x) if f(x)\nallow if f(1)",
    "a if b\nb if a\nallow if a",
    "g(x) := y if { y := h(x) }\nh(x) := y if { allow; y := x }\nallow if g(1) == 1",
    "allow if count(numbers.range(1, 1e9)) > 0",
    "allow if count(numbers.range_step(1, 1e12, 3)) > 0",
    "allow if numbers.range_step(1, 10, 0)",
    "allow if count([x | some x in numbers.range(1, 3000); some y in numbers.range(1, 3000)]) > 0",
    "s0 := \"ab\"\ns1 := concat(\"\", [s0, s0])\ns2 := concat(\"\", [s1, s1, s1, s1])\n\
     s3 := concat(\"\", [s2, s2, s2, s2, s2, s2, s2, s2])\ns4 := replace(s3, \"\", s3)\n\
     allow if count(s4) > 0",
    "allow if count(sprintf(\"%99999999999d\", [1])) > 0",
    "allow if count(replace(\"aaaaaaaaaaaaaaaa\", \"a\", \"bbbbbbbbbbbbbbbb\")) > 0",
    "d0 := [1]\nd1 := [d0, d0]\nd2 := [d1, d1]\nd3 := [d2, d2]\nd4 := [d3, d3]\n\
     allow := json.marshal([d4, d4, d4, d4])",
    "allow if bits.lsh(1, 4000000000) > 0",
    "allow if { x := [[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]; x[0][0][0][0][0][0][0][0] }",
    "allow if input.x == 1",
    "default allow := false\nallow if { some i; input.list[i] > 3 }",
];

const TOKENS: &[&str] = &[
    " ",
    "\n",
    "(",
    ")",
    "[",
    "]",
    "{",
    "}",
    ",",
    ";",
    ":=",
    "=",
    "==",
    "if",
    "else",
    "some",
    "every",
    "in",
    "not",
    "with",
    "contains",
    "allow",
    "f",
    "g",
    "x",
    "y",
    "input",
    "data",
    "numbers.range",
    "concat",
    "replace",
    "sprintf",
    "count",
    "1e9",
    "0",
    "-1",
    "\"\"",
    "\"%",
    "1.5",
    "true",
    "null",
    "package",
    "import",
    "default",
    "|",
    "+",
    "*",
    "/",
    "%",
    "&",
];

fn mutate(rng: &mut Rng, text: &str) -> String {
    let mut out: Vec<u8> = text.as_bytes().to_vec();
    for _ in 0..=rng.below(4) {
        let at = rng.below(out.len() + 1);
        match rng.below(5) {
            0 if !out.is_empty() => {
                let end = (at + 1 + rng.below(8)).min(out.len());
                out.drain(at.min(end)..end);
            }
            1 => {
                let token = rng.pick(TOKENS);
                out.splice(at..at, token.bytes());
            }
            2 => {
                let body = rng.pick(BODIES);
                out.splice(at..at, format!("\n{body}\n").into_bytes());
            }
            3 if !out.is_empty() => {
                let i = at.min(out.len() - 1);
                out[i] = (rng.next() & 0x7f) as u8;
            }
            _ => {
                // Deep nesting: regorus's parser bounds it; it must refuse, not overflow.
                let depth = 1 + rng.below(200);
                let nested = format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
                out.splice(at..at, nested.into_bytes());
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn exercise(text: &str) {
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        let Ok(policy) = CompiledPolicy::compile_with_limits(text, LIMITS) else {
            return;
        };
        let started = Instant::now();
        let _ = policy.evaluate(
            r#"{"x": 1, "list": [1, 5]}"#,
            None,
            &["data.policy.allow"],
            None,
        );
        let took = started.elapsed();
        assert!(
            took < LIMITS.time + OVERRUN,
            "evaluation took {took:?}:\n{text}"
        );
    }));
    assert!(outcome.is_ok(), "panic for policy:\n{text}");
}

#[test]
fn hostile_and_mutated_policies_never_crash() {
    let deadline = Instant::now() + budget();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    // Every seed once, whole, before the mutants.
    for body in BODIES {
        exercise(&format!("{HEADER}{body}\n"));
    }
    let mut runs = 0u64;
    while Instant::now() < deadline {
        let seed = format!("{HEADER}{}\n", rng.pick(BODIES));
        exercise(&mutate(&mut rng, &seed));
        runs += 1;
    }
    eprintln!("policy fuzz: {runs} mutants");
}
