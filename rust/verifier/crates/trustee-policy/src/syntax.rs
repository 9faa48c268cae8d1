//! Rego syntax selection.
//!
//! Rego v0 treats `if`, `contains`, `every` and `in` as plain identifiers unless they are
//! imported from `future.keywords`. A v0 parser therefore reads `allow if { false }` as two
//! rules, an unconditional `allow` and a rule named `if`, and the policy allows everything.
//! v1 parsing comes first, so such text normally never reaches the v0 parser; this module
//! covers the remaining case (text that fails v1 for some other reason) by refusing the v0
//! fallback whenever one of those words appears as a bare identifier without its import.

use core::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Syntax {
    V0,
    V1,
}

impl Syntax {
    pub const fn as_str(self) -> &'static str {
        match self {
            Syntax::V0 => "v0",
            Syntax::V1 => "v1",
        }
    }
}

impl fmt::Display for Syntax {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

const FUTURE_KEYWORDS: [&str; 4] = ["contains", "every", "if", "in"];

/// A v1 keyword that a v0 parse would read as an identifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeywordHazard {
    pub word: &'static str,
    pub line: usize,
    pub col: usize,
}

impl fmt::Display for KeywordHazard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{w}` at {l}:{c} would be an identifier, not a keyword, without \
             `import future.keywords.{w}` or `import rego.v1`",
            w = self.word,
            l = self.line,
            c = self.col
        )
    }
}

pub(crate) fn v0_keyword_hazard(text: &str) -> Option<KeywordHazard> {
    let tokens = tokenize(text);
    let mut imported = [false; FUTURE_KEYWORDS.len()];
    for (i, tok) in tokens.iter().enumerate() {
        if tok.text != "import" {
            continue;
        }
        let path: Vec<&str> = tokens[i + 1..].iter().take(5).map(|t| t.text).collect();
        match path.as_slice() {
            // `import rego.v1` switches regorus to v1 parsing whatever mode it started in.
            ["rego", ".", "v1", ..] => imported = [true; FUTURE_KEYWORDS.len()],
            ["future", ".", "keywords", ".", kw] => {
                if let Some(k) = FUTURE_KEYWORDS.iter().position(|w| w == kw) {
                    imported[k] = true;
                }
            }
            ["future", ".", "keywords", ..] => imported = [true; FUTURE_KEYWORDS.len()],
            _ => {}
        }
    }

    for (i, tok) in tokens.iter().enumerate() {
        let Some(k) = FUTURE_KEYWORDS.iter().position(|w| *w == tok.text) else {
            continue;
        };
        if imported[k] {
            continue;
        }
        let prev = i.checked_sub(1).map(|p| tokens[p].text);
        let next = tokens.get(i + 1).map(|t| t.text);
        // `input.if` is a field reference and `contains(s, t)` the string builtin; neither is
        // parsed differently in v0 and v1.
        if prev == Some(".") || (FUTURE_KEYWORDS[k] == "contains" && next == Some("(")) {
            continue;
        }
        return Some(KeywordHazard {
            word: FUTURE_KEYWORDS[k],
            line: tok.line,
            col: tok.col,
        });
    }
    None
}

/// Where `[`/`{` nesting first exceeds `max` levels, as (line, column). regorus's parser
/// backtracks at every collection literal, so its time doubles or more with each level of
/// nesting: twenty levels take minutes. Policies nest a handful.
pub(crate) fn nesting_beyond(text: &str, max: usize) -> Option<(usize, usize)> {
    let mut depth = 0usize;
    for tok in tokenize(text) {
        match tok.text {
            "[" | "{" => {
                depth += 1;
                if depth > max {
                    return Some((tok.line, tok.col));
                }
            }
            "]" | "}" => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}

struct Token<'a> {
    text: &'a str,
    line: usize,
    col: usize,
}

/// Just enough of Rego's lexical grammar to find identifiers: strings, raw strings and
/// comments are skipped so that `"if"` or `# if` never count. Other symbols are kept as
/// one-character tokens, which is all the import and `.`/`(` checks need.
fn tokenize(text: &str) -> Vec<Token<'_>> {
    let bytes = text.as_bytes();
    let mut tokens = Vec::new();
    let (mut i, mut line, mut line_start) = (0usize, 1usize, 0usize);
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'\n' => {
                i += 1;
                line += 1;
                line_start = i;
            }
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' && bytes[i] != b'\n' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            b'`' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'`' {
                    if bytes[i] == b'\n' {
                        line += 1;
                        line_start = i + 1;
                    }
                    i += 1;
                }
                i += 1;
            }
            _ if b == b'_' || b.is_ascii_alphabetic() => {
                let start = i;
                while i < bytes.len() && (bytes[i] == b'_' || bytes[i].is_ascii_alphanumeric()) {
                    i += 1;
                }
                tokens.push(Token {
                    text: &text[start..i],
                    line,
                    col: start - line_start + 1,
                });
            }
            _ if b.is_ascii_whitespace() => i += 1,
            _ if b.is_ascii() => {
                tokens.push(Token {
                    text: &text[i..i + 1],
                    line,
                    col: i - line_start + 1,
                });
                i += 1;
            }
            // Non-ASCII bytes only occur inside strings and comments in valid Rego.
            _ => i += 1,
        }
    }
    tokens
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hazard(text: &str) -> Option<(&'static str, usize, usize)> {
        v0_keyword_hazard(text).map(|h| (h.word, h.line, h.col))
    }

    #[test]
    fn bare_keywords_are_hazards() {
        assert_eq!(hazard("package p\nallow if { false }"), Some(("if", 2, 7)));
        assert_eq!(
            hazard("package p\ndeny contains msg { msg := 1 }"),
            Some(("contains", 2, 6))
        );
        assert_eq!(
            hazard("package p\nok { every x in [1] { x > 0 } }"),
            Some(("every", 2, 6))
        );
        assert_eq!(hazard("package p\nok { 1 in [1] }"), Some(("in", 2, 8)));
    }

    #[test]
    fn harmless_uses_are_not_hazards() {
        for text in [
            "package p\nallow { true }",
            "package p\nallow { contains(\"abc\", \"b\") }",
            "package p\nallow { input.if == 1 }",
            "package p\nallow { x := \"if in every contains\"; x != \"\" }",
            "package p\n# allow if { false }\nallow { true }",
            "package p\nallow { x := `raw if\nstring`; x != \"\" }",
            "package p\nallow { \"esc\\\"if\" != \"\" }",
        ] {
            assert_eq!(hazard(text), None, "{text}");
        }
    }

    #[test]
    fn imports_lift_the_hazard() {
        assert_eq!(
            hazard("package p\nimport future.keywords.if\nallow if { false }\nx { true }"),
            None
        );
        assert_eq!(
            hazard("package p\nimport future.keywords\nallow if { 1 in [1] }"),
            None
        );
        assert_eq!(hazard("package p\nimport rego.v1\nallow if { true }"), None);
        // Importing one keyword does not cover another.
        assert_eq!(
            hazard("package p\nimport future.keywords.if\nallow if { 1 in [1] }"),
            Some(("in", 3, 14))
        );
    }

    #[test]
    fn deep_nesting_is_found_outside_strings_and_comments() {
        let deep = format!("package p\nx := {}1{}", "[".repeat(11), "]".repeat(11));
        assert_eq!(nesting_beyond(&deep, 10), Some((2, 16)));
        assert_eq!(nesting_beyond(&deep, 11), None);
        let quoted = format!(
            "package p\n# {}\nx := \"{}\"",
            "[".repeat(40),
            "{".repeat(40)
        );
        assert_eq!(nesting_beyond(&quoted, 10), None);
        assert_eq!(nesting_beyond("[]]]][[", 2), None);
    }

    #[test]
    fn tokenizer_survives_unterminated_and_non_ascii_text() {
        for text in ["\"", "`", "\"\\", "#", "é if", "a.\u{1F600}if"] {
            let _ = v0_keyword_hazard(text);
        }
        assert_eq!(hazard("x := \"é\" if"), Some(("if", 1, 11)));
    }
}
