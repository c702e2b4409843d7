//! Matching a request path against the route table's patterns.
//!
//! `{name}` captures one segment (percent-decoded); `{*name}` captures zero or more segments
//! (percent-encoded, as received) and may stand anywhere, also in the middle
//! (`/api/contents/{*path}/checkpoints/{checkpoint_id}`), which is why axum's router is not
//! used. Patterns are compiled once, when the dispatcher is built; a request's path is split
//! once and then compared with each row's compiled pattern.

/// One segment of a compiled pattern.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Segment {
    /// Must equal the request's segment.
    Literal(&'static str),
    /// Captures the request's segment (decoded) under this name.
    Param(&'static str),
}

/// A route pattern, split into segments once.
#[derive(Clone, Debug)]
pub struct Pattern {
    /// The segments before the wildcard (all of them when there is none).
    before: Vec<Segment>,
    /// The wildcard's name and the segments after it.
    wildcard: Option<(&'static str, Vec<Segment>)>,
}

impl Pattern {
    /// Compile a pattern such as `/api/kernels/{kernel_id}` or `/files/{*path}`.
    pub fn compile(pattern: &'static str) -> Pattern {
        let mut before = Vec::new();
        let mut wildcard: Option<(&'static str, Vec<Segment>)> = None;
        for raw in split(pattern) {
            if let Some(name) = raw.strip_prefix("{*").and_then(|r| r.strip_suffix('}')) {
                wildcard = Some((name, Vec::new()));
                continue;
            }
            let segment = match raw.strip_prefix('{').and_then(|r| r.strip_suffix('}')) {
                Some(name) => Segment::Param(name),
                None => Segment::Literal(raw),
            };
            match &mut wildcard {
                Some((_, after)) => after.push(segment),
                None => before.push(segment),
            }
        }
        Pattern { before, wildcard }
    }

    /// Match a request path already split by [`PathSegments::new`].
    pub fn matches(&self, path: &PathSegments<'_>) -> Option<RouteParams> {
        let segs = path.0.as_slice();
        let mut params = Vec::new();
        match &self.wildcard {
            None => {
                if self.before.len() != segs.len() {
                    return None;
                }
                for (p, s) in self.before.iter().zip(segs) {
                    match_segment(*p, s, &mut params)?;
                }
            }
            Some((name, after)) => {
                let w = self.before.len();
                if segs.len() < w + after.len() {
                    return None;
                }
                for (p, s) in self.before.iter().zip(&segs[..w]) {
                    match_segment(*p, s, &mut params)?;
                }
                let rest = segs.len() - after.len();
                for (p, s) in after.iter().zip(&segs[rest..]) {
                    match_segment(*p, s, &mut params)?;
                }
                params.push((*name, segs[w..rest].join("/")));
            }
        }
        Some(RouteParams(params))
    }
}

/// A request path (relative to the base URL, starting with `/`) split into segments, once
/// per request. A trailing slash is not a segment: `/api/contents/` is `/api/contents`.
pub struct PathSegments<'a>(Vec<&'a str>);

impl<'a> PathSegments<'a> {
    /// Split `path`.
    pub fn new(path: &'a str) -> Self {
        let mut segs = split(path);
        if segs.last() == Some(&"") {
            segs.pop();
        }
        PathSegments(segs)
    }
}

/// Match a request path against a pattern (compiles the pattern: for tests and one-offs).
pub fn match_pattern(pattern: &'static str, path: &str) -> Option<RouteParams> {
    Pattern::compile(pattern).matches(&PathSegments::new(path))
}

/// The values captured by a route's pattern.
#[derive(Clone, Debug, Default)]
pub struct RouteParams(Vec<(&'static str, String)>);

impl RouteParams {
    /// A captured value by name (`{*path}` captures are percent-encoded as received; single
    /// segments are decoded).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

fn split(path: &str) -> Vec<&str> {
    let trimmed = path.strip_prefix('/').unwrap_or(path);
    if trimmed.is_empty() {
        Vec::new()
    } else {
        trimmed.split('/').collect()
    }
}

fn match_segment(
    pattern: Segment,
    segment: &str,
    params: &mut Vec<(&'static str, String)>,
) -> Option<()> {
    match pattern {
        Segment::Param(name) => {
            if segment.is_empty() {
                return None;
            }
            let decoded = percent_encoding::percent_decode_str(segment)
                .decode_utf8()
                .ok()?
                .into_owned();
            params.push((name, decoded));
            Some(())
        }
        Segment::Literal(literal) if literal == segment => Some(()),
        Segment::Literal(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_and_single_segment() {
        assert!(match_pattern("/api/status", "/api/status").is_some());
        assert!(match_pattern("/api/status", "/api/status/").is_some());
        assert!(match_pattern("/api/status", "/api/statusx").is_none());
        let p = match_pattern("/api/kernels/{kernel_id}", "/api/kernels/abc%2D1").unwrap();
        assert_eq!(p.get("kernel_id"), Some("abc-1"));
        assert!(match_pattern("/api/kernels/{kernel_id}", "/api/kernels/").is_none());
        assert!(match_pattern("/", "/").is_some());
        assert!(match_pattern("/", "/api").is_none());
    }

    #[test]
    fn wildcard_in_the_middle() {
        let pat = "/api/contents/{*path}/checkpoints/{checkpoint_id}";
        let p = match_pattern(pat, "/api/contents/a/b.ipynb/checkpoints/checkpoint").unwrap();
        assert_eq!(p.get("path"), Some("a/b.ipynb"));
        assert_eq!(p.get("checkpoint_id"), Some("checkpoint"));
        let p = match_pattern("/api/contents/{*path}", "/api/contents").unwrap();
        assert_eq!(p.get("path"), Some(""));
        let p = match_pattern("/api/contents/{*path}", "/api/contents/a%2Fb/c").unwrap();
        assert_eq!(p.get("path"), Some("a%2Fb/c"));
        assert!(match_pattern(pat, "/api/contents/a").is_none());
    }

    mod fuzz {
        //! Fuzz target of the route matcher, run as a bounded property test: no request path
        //! makes it panic, and every value a client puts in a pattern's places comes back.
        use super::super::*;
        use crate::http::routes::table;
        use proptest::collection::vec;
        use proptest::prelude::*;

        fn encode(s: &str) -> String {
            percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
        }

        fn patterns() -> Vec<&'static str> {
            let mut p: Vec<&'static str> = table().iter().map(|r| r.pattern).collect();
            p.dedup();
            p
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

            #[test]
            fn arbitrary_paths_never_panic(raw in "(/|[a-z]{1,3}|%[0-9a-fA-F]{0,2}|\\.|.){0,24}") {
                for pattern in patterns() {
                    let _ = match_pattern(pattern, &raw);
                    let _ = match_pattern(pattern, &format!("/{raw}"));
                }
            }

            #[test]
            fn captured_values_come_back(
                values in vec(".{1,8}", 8),
                rest in vec("[^/]{1,6}", 0..4),
                trailing_slash in any::<bool>(),
            ) {
                for pattern in patterns() {
                    let mut path = String::new();
                    let mut expected: Vec<(String, String)> = Vec::new();
                    for (i, seg) in split(pattern).into_iter().enumerate() {
                        path.push('/');
                        if let Some(name) = seg.strip_prefix("{*").and_then(|s| s.strip_suffix('}')) {
                            let raw: Vec<String> = rest.iter().map(|r| encode(r)).collect();
                            path.push_str(&raw.join("/"));
                            if raw.is_empty() {
                                path.pop();
                            }
                            expected.push((name.to_string(), raw.join("/")));
                        } else if let Some(name) = seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                            let value = &values[i % values.len()];
                            path.push_str(&encode(value));
                            expected.push((name.to_string(), value.clone()));
                        } else {
                            path.push_str(seg);
                        }
                    }
                    if path.is_empty() {
                        path.push('/');
                    }
                    if trailing_slash && !path.ends_with('/') {
                        path.push('/');
                    }
                    let params = match_pattern(pattern, &path);
                    prop_assert!(params.is_some(), "{} does not match {}", pattern, path);
                    let params = params.unwrap_or_default();
                    for (name, value) in &expected {
                        prop_assert_eq!(params.get(name), Some(value.as_str()), "{} {}", pattern, path);
                    }
                }
            }
        }
    }
}
