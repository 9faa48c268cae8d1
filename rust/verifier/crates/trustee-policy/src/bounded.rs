//! Builtins that can allocate an enormous result from small arguments, sized first.
//!
//! `numbers.range(1, 1e9)` asks for 24 GB in one allocation, `replace(s, "", t)` or
//! `concat("", [s, s, …])` for a multiple of their input, and regorus's cooperative memory
//! check never runs in the middle of one builtin call, so such a call aborts the process.
//! regorus looks extensions up before builtins, so each one here is registered under the
//! builtin's own name: it works out the size of the result from the arguments, refuses it when
//! it exceeds the evaluation's memory limit, and otherwise calls regorus's own builtin, so
//! results and error messages are exactly the builtin's.

use regorus::unstable::{Expr, Ref, Source, Span, BUILTINS};
use regorus::{Engine, Value};

use crate::limits::{budget, note_refusal, rendered_size};

/// Bytes of one array element (`regorus::Value`).
const VALUE_BYTES: u64 = std::mem::size_of::<Value>() as u64;

type Sizer = fn(&[Value], u64) -> Sized;

enum Sized {
    /// The result fits (or the builtin will reject the arguments itself).
    Fits,
    /// The result would need this many bytes, more than the budget.
    Exceeds(u64),
}

const BOUNDED: [(&str, u8, Sizer); 10] = [
    ("numbers.range", 2, range_size),
    ("numbers.range_step", 3, range_step_size),
    ("sprintf", 2, sprintf_size),
    ("replace", 3, replace_size),
    ("strings.replace_n", 2, replace_n_size),
    ("regex.replace", 3, regex_replace_size),
    ("concat", 2, concat_size),
    ("json.marshal", 1, marshal_size),
    ("json.marshal_with_options", 2, marshal_options_size),
    ("bits.lsh", 2, lsh_size),
];

/// Registers the bounded builtins on `engine` (before its policies are analysed).
pub(crate) fn add(engine: &mut Engine) -> anyhow::Result<()> {
    for (name, nargs, sizer) in BOUNDED {
        let Some(&(builtin, _)) = BUILTINS.get(name) else {
            // Not in this regorus build: nothing to guard.
            continue;
        };
        engine.add_extension(
            name.to_owned(),
            nargs,
            Box::new(move |args: Vec<Value>| -> anyhow::Result<Value> {
                if let Sized::Exceeds(bytes) = sizer(&args, budget()) {
                    note_refusal();
                    anyhow::bail!(
                        "{name}: the result would take about {bytes} bytes, more than the \
                         evaluation's memory limit of {} bytes",
                        budget()
                    );
                }
                let (span, params) = call_site(name, args.len());
                builtin(&span, &params, &args, true)
            }),
        )?;
    }
    Ok(())
}

/// A span and argument expressions for calling a builtin directly; they only appear in the
/// builtin's own error messages, as `name(arg1, arg2)`.
fn call_site(name: &str, nargs: usize) -> (Span, Vec<Ref<Expr>>) {
    let args: Vec<String> = (1..=nargs).map(|i| format!("arg{i}")).collect();
    let text = format!("{name}({})", args.join(", "));
    let source = match Source::from_contents("builtin".into(), text.clone()) {
        Ok(source) => source,
        Err(_) => Source::from_contents("builtin".into(), String::new())
            .unwrap_or_else(|_| unreachable!("an empty source is always accepted")),
    };
    let span_of = |start: usize, end: usize| Span {
        source: source.clone(),
        line: 1,
        col: u32::try_from(start + 1).unwrap_or(1),
        start: u32::try_from(start).unwrap_or(0),
        end: u32::try_from(end).unwrap_or(0),
    };
    let mut params = Vec::with_capacity(nargs);
    let mut at = name.len() + 1;
    for arg in &args {
        params.push(Ref::new(Expr::Var {
            span: span_of(at, at + arg.len()),
            value: Value::from(arg.as_str()),
            eidx: 0,
        }));
        at += arg.len() + 2;
    }
    (span_of(0, text.len()), params)
}

fn verdict(bytes: u64, budget: u64) -> Sized {
    if bytes > budget {
        Sized::Exceeds(bytes)
    } else {
        Sized::Fits
    }
}

fn int(v: &Value) -> Option<i128> {
    match v {
        Value::Number(n) if n.is_integer() => n.as_i64().map(i128::from),
        _ => None,
    }
}

fn text(v: &Value) -> Option<&str> {
    match v {
        Value::String(s) => Some(s),
        _ => None,
    }
}

fn range_size(args: &[Value], budget: u64) -> Sized {
    match (int(&args[0]), int(&args[1])) {
        (Some(a), Some(b)) => {
            let count = (b - a).unsigned_abs().saturating_add(1);
            verdict(saturate(count).saturating_mul(VALUE_BYTES), budget)
        }
        _ => Sized::Fits,
    }
}

fn range_step_size(args: &[Value], budget: u64) -> Sized {
    match (int(&args[0]), int(&args[1]), int(&args[2])) {
        // A step below 1 is refused by the builtin (strict mode) before it divides by it.
        (Some(a), Some(b), Some(step)) if step > 0 => {
            let count = ((b - a).unsigned_abs() / step.unsigned_abs()).saturating_add(1);
            verdict(saturate(count).saturating_mul(VALUE_BYTES), budget)
        }
        _ => Sized::Fits,
    }
}

fn saturate(n: u128) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// Widths (`%1000000d`, `%.99999f`) are the one way a short format asks for a long text.
fn sprintf_size(args: &[Value], budget: u64) -> Sized {
    let Some(format) = text(&args[0]) else {
        return Sized::Fits;
    };
    let mut bytes = format.len() as u64;
    let mut chars = format.bytes().peekable();
    while let Some(c) = chars.next() {
        if c != b'%' {
            continue;
        }
        let mut width: u64 = 0;
        while let Some(&d) = chars.peek() {
            match d {
                b'0'..=b'9' => {
                    width = width.saturating_mul(10).saturating_add(u64::from(d - b'0'));
                }
                b'.' | b'-' | b'+' | b' ' | b'#' => {
                    bytes = bytes.saturating_add(width);
                    width = 0;
                }
                _ => break,
            }
            chars.next();
        }
        bytes = bytes.saturating_add(width);
        if bytes > budget {
            return Sized::Exceeds(bytes);
        }
    }
    match rendered_size(&args[1], budget.saturating_sub(bytes), 0) {
        Some(_) => Sized::Fits,
        None => Sized::Exceeds(budget.saturating_add(1)),
    }
}

/// Length of `s` after replacing every `old` by `new`, as `str::replace` does it (an empty
/// `old` matches before every character and at the end).
fn replaced_len(s: &str, old: &str, new: &str) -> u64 {
    let count = if old.is_empty() {
        s.chars().count() as u64 + 1
    } else {
        s.matches(old).count() as u64
    };
    (s.len() as u64)
        .saturating_sub(count.saturating_mul(old.len() as u64))
        .saturating_add(count.saturating_mul(new.len() as u64))
}

fn replace_size(args: &[Value], budget: u64) -> Sized {
    match (text(&args[0]), text(&args[1]), text(&args[2])) {
        (Some(s), Some(old), Some(new)) => verdict(replaced_len(s, old, new), budget),
        _ => Sized::Fits,
    }
}

/// The builtin applies the patterns one after another in key order; so does the sizing, on
/// the real intermediate strings, stopping before any of them gets too long.
fn replace_n_size(args: &[Value], budget: u64) -> Sized {
    let (Value::Object(patterns), Some(s)) = (&args[0], text(&args[1])) else {
        return Sized::Fits;
    };
    let mut current = s.to_owned();
    for (key, value) in patterns.iter_sorted() {
        let (Some(old), Some(new)) = (text(key), text(value)) else {
            return Sized::Fits;
        };
        let len = replaced_len(&current, old, new);
        if len > budget {
            return Sized::Exceeds(len);
        }
        current = current.replace(old, new);
    }
    Sized::Fits
}

/// Each match is replaced by the template with its `$` references expanded; a reference
/// expands to at most the match itself (captures lie inside it), so the whole text is bounded
/// by the input, the template once per match and the input once per reference.
fn regex_replace_size(args: &[Value], budget: u64) -> Sized {
    let (Some(s), Some(pattern), Some(template)) = (text(&args[0]), text(&args[1]), text(&args[2]))
    else {
        return Sized::Fits;
    };
    let refs = template.matches('$').count() as u64;
    let len = s.len() as u64;
    let rough = len
        .saturating_add((len + 1).saturating_mul(template.len() as u64))
        .saturating_add(refs.saturating_mul(len));
    if rough <= budget {
        return Sized::Fits;
    }
    let Ok(re) = regex::Regex::new(pattern) else {
        return Sized::Fits;
    };
    let matches = re.find_iter(s).count() as u64;
    verdict(
        len.saturating_add(matches.saturating_mul(template.len() as u64))
            .saturating_add(refs.saturating_mul(len)),
        budget,
    )
}

fn concat_size(args: &[Value], budget: u64) -> Sized {
    let Some(delimiter) = text(&args[0]) else {
        return Sized::Fits;
    };
    let parts: Box<dyn Iterator<Item = &Value>> = match &args[1] {
        Value::Array(items) => Box::new(items.iter()),
        Value::Set(items) => Box::new(items.iter()),
        _ => return Sized::Fits,
    };
    let mut bytes: u64 = 0;
    for part in parts {
        let Some(part) = text(part) else {
            return Sized::Fits;
        };
        bytes = bytes
            .saturating_add(part.len() as u64)
            .saturating_add(delimiter.len() as u64);
        if bytes > budget {
            return Sized::Exceeds(bytes);
        }
    }
    Sized::Fits
}

fn marshal_size(args: &[Value], budget: u64) -> Sized {
    match rendered_size(&args[0], budget, 1) {
        Some(_) => Sized::Fits,
        None => Sized::Exceeds(budget.saturating_add(1)),
    }
}

/// Pretty printing repeats the prefix and indent on every line, once per nesting level.
fn marshal_options_size(args: &[Value], budget: u64) -> Sized {
    let option = |name: &str| match &args[1] {
        Value::Object(options) => options
            .get(&Value::from(name))
            .and_then(text)
            .map_or(0, |s| s.len() as u64),
        _ => 0,
    };
    let per_level = 2u64
        .saturating_add(option("prefix"))
        .saturating_add(option("indent"));
    match rendered_size(&args[0], budget, per_level) {
        Some(_) => Sized::Fits,
        None => Sized::Exceeds(budget.saturating_add(1)),
    }
}

fn lsh_size(args: &[Value], budget: u64) -> Sized {
    match int(&args[1]) {
        Some(shift) if shift > 0 => verdict(saturate(shift.unsigned_abs() / 8 + 8), budget),
        _ => Sized::Fits,
    }
}
