//! Fuzz target of the path canonicaliser, run as a bounded property test: whatever a client
//! writes, `CanonicalPath` never panics, never leaves the root, and is idempotent.
//! (`PROPTEST_CASES=100000` runs it longer.)

use concord_authz::{CanonicalPath, PathError};
use proptest::collection::vec;
use proptest::prelude::*;

/// Segments a path may be made of, hostile ones included.
fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just(".".to_string()),
        Just("..".to_string()),
        Just("%2e%2e".to_string()),
        Just("%2E.".to_string()),
        Just("..%2f..".to_string()),
        Just("%252e%252e".to_string()),
        Just("a%2Fb".to_string()),
        Just("%00".to_string()),
        Just("%ff".to_string()),
        "[a-z]{1,4}",
        ".{1,6}",
    ]
}

fn raw_path() -> impl Strategy<Value = String> {
    (any::<bool>(), vec(segment(), 0..8), any::<bool>()).prop_map(|(lead, segs, trail)| {
        let mut s = segs.join("/");
        if lead {
            s.insert(0, '/');
        }
        if trail {
            s.push('/');
        }
        s
    })
}

/// What a canonical path must be: absolute, no empty, `.` or `..` segment, no NUL, no
/// trailing slash, and a fixed point of both parsers.
fn check_canonical(p: &CanonicalPath) -> Result<(), TestCaseError> {
    let s = p.as_str();
    prop_assert!(s.starts_with('/'), "{s:?}");
    prop_assert!(!s.contains('\0'), "{s:?}");
    prop_assert!(p.is_root() || !s.ends_with('/'), "{s:?}");
    for seg in s[1..].split('/').filter(|_| !p.is_root()) {
        prop_assert!(!seg.is_empty() && seg != "." && seg != "..", "{s:?}");
    }
    prop_assert_eq!(&CanonicalPath::parse(s).unwrap(), p);
    prop_assert_eq!(&CanonicalPath::parse(p.api_path()).unwrap(), p);
    let encoded: Vec<String> = p
        .segments()
        .map(|seg| {
            percent_encoding::utf8_percent_encode(seg, percent_encoding::NON_ALPHANUMERIC)
                .to_string()
        })
        .collect();
    prop_assert_eq!(&CanonicalPath::from_url(&encoded.join("/")).unwrap(), p);
    prop_assert!(p.is_within(&CanonicalPath::root()));
    if let Some(parent) = p.parent() {
        prop_assert_eq!(&parent.child(p.name()).unwrap(), p);
        prop_assert!(p.is_within(&parent));
    }
    Ok(())
}

/// The reference: a stack of decoded segments; `..` above the root is an error.
fn reference(decoded: &str) -> Result<Vec<&str>, ()> {
    let mut stack = Vec::new();
    for seg in decoded.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                stack.pop().ok_or(())?;
            }
            other => stack.push(other),
        }
    }
    Ok(stack)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

    #[test]
    fn url_paths_are_canonical_and_inside_the_root(raw in raw_path()) {
        match CanonicalPath::from_url(&raw) {
            Ok(p) => {
                check_canonical(&p)?;
                let decoded = percent_encoding::percent_decode_str(&raw).decode_utf8().unwrap();
                let expected = reference(&decoded).expect("the reference agrees it is inside");
                prop_assert_eq!(p.segments().collect::<Vec<_>>(), expected);
            }
            Err(PathError::OutsideRoot(_)) => {
                let decoded = percent_encoding::percent_decode_str(&raw).decode_utf8().unwrap();
                prop_assert!(reference(&decoded).is_err(), "{raw:?}");
            }
            Err(PathError::Invalid(_)) => {
                let decoded = percent_encoding::percent_decode_str(&raw).decode_utf8();
                prop_assert!(decoded.map(|d| d.contains('\0')).unwrap_or(true), "{raw:?}");
            }
        }
    }

    #[test]
    fn any_text_parses_or_is_refused(raw in ".{0,40}") {
        let parsed = [CanonicalPath::parse(&raw), CanonicalPath::from_url(&raw)];
        for p in parsed.into_iter().flatten() {
            check_canonical(&p)?;
        }
    }

    #[test]
    fn children_stay_below_their_parent(base in raw_path(), name in segment()) {
        if let Ok(parent) = CanonicalPath::parse(&base) {
            if let Ok(child) = parent.child(&name) {
                check_canonical(&child)?;
                prop_assert!(child.is_within(&parent));
                prop_assert_eq!(child.parent(), Some(parent));
            }
        }
    }
}
