//! Python's rules wherever they are visible to clients, in one place: `repr()` of strings in
//! error messages, `float.__repr__`, `json.dumps` and `str.splitlines(True)` in notebook
//! files, truthiness of JSON values, `%g`-style sizes, fnmatch globs.

use serde_json::Value;

/// Python's `repr()` of a `str`: single quotes unless the text has a `'` and no `"`.
pub fn repr_str(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// Python's `repr(float)`: the shortest round-trip digits, positional for exponents in
/// -4..16 (`100.0`, `0.0001`), scientific otherwise with a signed two-digit exponent (`1e+16`).
pub fn repr_float(x: f64) -> String {
    if x.is_nan() {
        return "NaN".into();
    }
    if x.is_infinite() {
        return if x > 0.0 {
            "Infinity".into()
        } else {
            "-Infinity".into()
        };
    }
    // Rust's `{:e}` is the shortest round-trip representation, e.g. "-1.25e-7".
    let sci = format!("{x:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (negative, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => (true, m),
        None => (false, mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let mut out = String::new();
    if negative {
        out.push('-');
    }
    if !(-4..16).contains(&exp) {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        out.push('e');
        out.push(if exp < 0 { '-' } else { '+' });
        out.push_str(&format!("{:02}", exp.abs()));
    } else if exp < 0 {
        out.push_str("0.");
        for _ in 0..(-exp - 1) {
            out.push('0');
        }
        out.push_str(&digits);
    } else {
        let point = exp as usize + 1;
        if digits.len() <= point {
            out.push_str(&digits);
            for _ in digits.len()..point {
                out.push('0');
            }
            out.push_str(".0");
        } else {
            out.push_str(&digits[..point]);
            out.push('.');
            out.push_str(&digits[point..]);
        }
    }
    out
}

/// Python's `str.splitlines(True)`: split after every line boundary Python recognises,
/// keeping the boundaries; `\r\n` is one boundary.
pub(crate) fn splitlines_keepends(s: &str) -> Vec<&str> {
    let mut lines = Vec::new();
    let mut start = 0;
    let mut iter = s.char_indices().peekable();
    while let Some((i, c)) = iter.next() {
        let end = match c {
            '\r' => {
                if let Some((j, '\n')) = iter.peek().copied() {
                    iter.next();
                    j + 1
                } else {
                    i + 1
                }
            }
            '\n' | '\x0b' | '\x0c' | '\x1c' | '\x1d' | '\x1e' | '\u{85}' | '\u{2028}'
            | '\u{2029}' => i + c.len_utf8(),
            _ => continue,
        };
        lines.push(&s[start..end]);
        start = end;
    }
    if start < s.len() {
        lines.push(&s[start..]);
    }
    lines
}

/// `fnmatch.fnmatch` on POSIX (case-sensitive): `*`, `?`, `[seq]`, `[!seq]`.
/// `json.dumps(v, indent=1, separators=(",", ": "), sort_keys=sort, ensure_ascii=ascii)`.
pub fn dumps_python(v: &Value, sort_keys: bool, ensure_ascii: bool) -> String {
    let mut out = String::new();
    write_value(&mut out, v, 0, sort_keys, ensure_ascii);
    out
}

pub(crate) fn write_value(out: &mut String, v: &Value, level: usize, sort: bool, ascii: bool) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&number_text(n)),
        Value::String(s) => write_string(out, s, ascii),
        Value::Array(items) => {
            if items.is_empty() {
                out.push_str("[]");
                return;
            }
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                newline_indent(out, level + 1);
                write_value(out, item, level + 1, sort, ascii);
            }
            newline_indent(out, level);
            out.push(']');
        }
        Value::Object(map) => {
            if map.is_empty() {
                out.push_str("{}");
                return;
            }
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            if sort {
                entries.sort_by(|a, b| a.0.cmp(b.0));
            }
            out.push('{');
            for (i, (key, value)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                newline_indent(out, level + 1);
                write_string(out, key, ascii);
                out.push_str(": ");
                write_value(out, value, level + 1, sort, ascii);
            }
            newline_indent(out, level);
            out.push('}');
        }
    }
}

pub(crate) fn newline_indent(out: &mut String, level: usize) {
    const SPACES: &str = "                                                                ";
    out.push('\n');
    let mut left = level;
    while left > 0 {
        let n = left.min(SPACES.len());
        out.push_str(&SPACES[..n]);
        left -= n;
    }
}

pub(crate) fn write_string(out: &mut String, s: &str, ascii: bool) {
    out.push('"');
    // Copy runs of characters that need no escape in one go.
    let mut run_start = 0;
    for (i, c) in s.char_indices() {
        let needs_escape =
            c == '"' || c == '\\' || (c as u32) < 0x20 || (ascii && (c as u32) > 0x7e);
        if !needs_escape {
            continue;
        }
        out.push_str(&s[run_start..i]);
        run_start = i + c.len_utf8();
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            c => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
    }
    out.push_str(&s[run_start..]);
    out.push('"');
}

/// A JSON number as Python's `str()` writes it (`float.__repr__` for floats).
pub(crate) fn number_text(n: &serde_json::Number) -> String {
    if n.is_f64() {
        repr_float(n.as_f64().unwrap_or(0.0))
    } else {
        n.to_string()
    }
}

/// Python's `bool()` of a JSON value (`if model:`, `if copy_from:`).
pub(crate) fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// Python's `format(value, ".4g")` for a positive finite value: four significant digits,
/// trailing zeros dropped, exponent notation outside 1e-4..1e4.
pub(crate) fn format_g4(value: f64) -> String {
    // `{:.3e}` rounds to four significant digits and gives the exponent after rounding,
    // which is what %g decides on.
    let sci = format!("{value:.3e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let trim = |s: &str| {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s.to_string()
        }
    };
    if (-4..4).contains(&exp) {
        let decimals = usize::try_from(3 - exp).unwrap_or(0);
        trim(&format!("{value:.decimals$}"))
    } else {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{}e{sign}{:02}", trim(mantissa), exp.abs())
    }
}

#[cfg(test)]
pub(crate) fn fnmatch(name: &str, pattern: &str) -> bool {
    Glob::new(pattern).matches(name)
}

/// A glob for `fnmatch`, its shape worked out once: listings test every name against
/// every glob.
#[derive(Clone, Debug)]
pub(crate) enum Glob {
    /// No wildcard: the name itself.
    Exact(String),
    /// `*suffix` with no other wildcard.
    Suffix(String),
    /// Anything else, for the general matcher.
    General(Vec<char>),
}

impl Glob {
    /// The glob `pattern`.
    pub(crate) fn new(pattern: &str) -> Glob {
        let special = |c: char| matches!(c, '*' | '?' | '[');
        if !pattern.contains(special) {
            return Glob::Exact(pattern.to_string());
        }
        if let Some(suffix) = pattern.strip_prefix('*').filter(|s| !s.contains(special)) {
            return Glob::Suffix(suffix.to_string());
        }
        Glob::General(pattern.chars().collect())
    }

    /// `fnmatch.fnmatch(name, pattern)`.
    pub(crate) fn matches(&self, name: &str) -> bool {
        match self {
            Glob::Exact(exact) => name == exact,
            Glob::Suffix(suffix) => name.ends_with(suffix.as_str()),
            Glob::General(pattern) => {
                let name: Vec<char> = name.chars().collect();
                glob_match(&name, pattern)
            }
        }
    }
}

fn glob_match(name: &[char], pattern: &[char]) -> bool {
    let Some((&first, rest)) = pattern.split_first() else {
        return name.is_empty();
    };
    match first {
        '*' => (0..=name.len()).any(|skip| glob_match(&name[skip..], rest)),
        '?' => !name.is_empty() && glob_match(&name[1..], rest),
        '[' => {
            let Some(close) = rest.iter().skip(1).position(|c| *c == ']').map(|p| p + 1) else {
                // An unclosed `[` is a literal, as in Python.
                return name.first() == Some(&'[') && glob_match(&name[1..], rest);
            };
            let Some(&c) = name.first() else { return false };
            let mut set = &rest[..close];
            let negate = matches!(set.first(), Some('!'));
            if negate {
                set = &set[1..];
            }
            let mut found = false;
            let mut i = 0;
            while i < set.len() {
                if i + 2 < set.len() && set[i + 1] == '-' {
                    if set[i] <= c && c <= set[i + 2] {
                        found = true;
                    }
                    i += 3;
                } else {
                    if set[i] == c {
                        found = true;
                    }
                    i += 1;
                }
            }
            found != negate && glob_match(&name[1..], &rest[close + 1..])
        }
        literal => name.first() == Some(&literal) && glob_match(&name[1..], rest),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_repr_matches_python() {
        for (x, want) in [
            (1.0, "1.0"),
            (0.1, "0.1"),
            (100000.0, "100000.0"),
            (1e16, "1e+16"),
            (1e15, "1000000000000000.0"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (-1.5e-7, "-1.5e-07"),
            (1.5e300, "1.5e+300"),
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (123.456, "123.456"),
            (2.5e-5, "2.5e-05"),
        ] {
            assert_eq!(repr_float(x), want, "{x}");
        }
    }

    #[test]
    fn splitlines_like_python() {
        assert_eq!(
            splitlines_keepends("a\nb\r\nc\rd"),
            vec!["a\n", "b\r\n", "c\r", "d"]
        );
        assert_eq!(splitlines_keepends("a\n"), vec!["a\n"]);
        assert_eq!(splitlines_keepends(""), Vec::<&str>::new());
        assert_eq!(
            splitlines_keepends("x\u{2028}y\x0c"),
            vec!["x\u{2028}", "y\x0c"]
        );
    }

    #[test]
    fn repr_quotes_like_python() {
        assert_eq!(repr_str("a"), "'a'");
        assert_eq!(repr_str("it's"), "\"it's\"");
        assert_eq!(repr_str("a'\"b"), "'a\\'\"b'");
        assert_eq!(repr_str("a\nb"), "'a\\nb'");
    }

    #[test]
    fn fnmatch_globs() {
        assert!(fnmatch("x.pyc", "*.pyc"));
        assert!(fnmatch("__pycache__", "__pycache__"));
        assert!(fnmatch("notes~", "*~"));
        assert!(!fnmatch("x.py", "*.pyc"));
        assert!(fnmatch("a1", "a[0-9]"));
        assert!(!fnmatch("a1", "a[!0-9]"));
        assert!(fnmatch("ab", "a?"));
    }
}
