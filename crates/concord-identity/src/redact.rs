//! Removing secrets from URLs before they reach any log.

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// Query parameters whose (lowercased, decoded) name contains one of these have their value
/// replaced: jupyter_server's list (`token`, `auth`, `key`, `code`, `state`, `xsrf`) plus
/// a few more that are secret or identify a connection.
const SECRET_KEY_PARTS: [&str; 12] = [
    "token",
    "auth",
    "key",
    "code",
    "state",
    "xsrf",
    "password",
    "passwd",
    "secret",
    "session",
    "cookie",
    "signature",
];

/// What a secret value becomes (as in jupyter_server's access log).
pub const REDACTED: &str = "[secret]";

/// Characters escaped when a redacted nested URL is put back into a query value.
const NESTED_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'/')
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

fn decode(s: &str) -> String {
    percent_decode_str(&s.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned()
}

/// Replaces the values of secret-looking query parameters (`token=`, `_xsrf=`, …) in a path
/// with query, or a full URL, with `[secret]`. Parameter names are matched after
/// percent-decoding and case-insensitively; a parameter holding a URL (such as
/// `next=/lab?token=…`) is redacted inside. Everything else is left as it was.
///
/// ```
/// use concord_identity::redact_url;
/// assert_eq!(redact_url("/api/kernels/k/channels?session_id=s&token=abc"),
///            "/api/kernels/k/channels?session_id=[secret]&token=[secret]");
/// ```
pub fn redact_url(path_and_query: &str) -> String {
    redact_nested(path_and_query, 0)
}

fn redact_nested(url: &str, depth: usize) -> String {
    let Some((path, rest)) = url.split_once('?') else {
        return url.to_string();
    };
    let (query, fragment) = match rest.split_once('#') {
        Some((query, fragment)) => (query, Some(fragment)),
        None => (rest, None),
    };
    let parts: Vec<String> = query
        .split('&')
        .map(|part| redact_param(part, depth))
        .collect();
    let mut out = format!("{path}?{}", parts.join("&"));
    if let Some(fragment) = fragment {
        // A fragment can carry tokens too (OAuth implicit flow); never log it.
        if !fragment.is_empty() {
            out.push('#');
            out.push_str(REDACTED);
        }
    }
    out
}

fn redact_param(part: &str, depth: usize) -> String {
    let (key, value) = match part.split_once('=') {
        Some((key, value)) => (key, Some(value)),
        None => (part, None),
    };
    let decoded_key = decode(key).to_ascii_lowercase();
    if SECRET_KEY_PARTS
        .iter()
        .any(|secret| decoded_key.contains(secret))
    {
        return match value {
            Some(_) => format!("{key}={REDACTED}"),
            None => part.to_string(),
        };
    }
    let Some(value) = value else {
        return part.to_string();
    };
    // A URL inside a value (`next=/lab%3Ftoken%3D…`): redact it too, a few levels deep.
    let decoded = decode(value);
    if depth < 3 && decoded.contains('?') {
        let redacted = redact_nested(&decoded, depth + 1);
        if redacted != decoded {
            return format!("{key}={}", utf8_percent_encode(&redacted, NESTED_VALUE));
        }
    }
    part.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_parameters_are_replaced() {
        assert_eq!(redact_url("/lab?token=abc123"), "/lab?token=[secret]");
        assert_eq!(
            redact_url("/api/contents/x?type=file&format=text&_xsrf=2|abc&content=1"),
            "/api/contents/x?type=file&format=text&_xsrf=[secret]&content=1"
        );
        assert_eq!(
            redact_url("http://h:8888/tree?TOKEN=abc&x=1"),
            "http://h:8888/tree?TOKEN=[secret]&x=1"
        );
        assert_eq!(
            redact_url("/lab?%74oken=abc"),
            "/lab?%74oken=[secret]",
            "percent-encoded names are matched"
        );
        assert_eq!(redact_url("/x?password=hunter2"), "/x?password=[secret]");
        assert_eq!(
            redact_url("/x?api_key=1&access_token=2"),
            "/x?api_key=[secret]&access_token=[secret]"
        );
    }

    #[test]
    fn nested_urls_and_fragments() {
        let redacted = redact_url("/login?next=%2Flab%3Ftoken%3Dabc123%26x%3D1");
        assert!(!redacted.contains("abc123"), "{redacted}");
        assert!(
            redacted.starts_with("/login?next=/lab%3Ftoken%3D%5Bsecret%5D"),
            "{redacted}"
        );
        let redacted = redact_url("/login?next=/lab?token=abc123");
        assert!(!redacted.contains("abc123"), "{redacted}");
        assert_eq!(redact_url("/x?a=1#access_token=zzz"), "/x?a=1#[secret]");
    }

    #[test]
    fn everything_else_is_unchanged() {
        for url in [
            "/api/contents/a%20b.ipynb",
            "/api/contents?content=0",
            "/x?flag",
            "/x?",
            "/x?a=1&&b=2",
            "",
            "/files/token.txt",
        ] {
            assert_eq!(redact_url(url), url);
        }
    }
}
