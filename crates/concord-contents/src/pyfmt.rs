//! Python's formatting rules where they are visible to clients: `repr()` of strings in error
//! messages, `float.__repr__` and `str.splitlines(True)` in notebook files, fnmatch globs.

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
