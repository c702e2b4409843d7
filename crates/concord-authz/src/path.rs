//! Canonical paths: the one form in which a contents path is authorized and then opened.
//!
//! A canonical path is absolute from the server's root (`/` is the root itself), has no
//! `.` or `..` segments, no empty segments and no trailing slash. The server turns every
//! path it receives (URL segments, body fields such as `copy_from` or a PATCH `path`) into
//! a `CanonicalPath` before it asks for a decision, and the contents service opens exactly
//! that path, so the decision and the file system never disagree about which file is meant.

use percent_encoding::percent_decode_str;
use std::fmt;

/// Why a path was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// `..` would climb above the root.
    #[error("path {0:?} is outside the root directory")]
    OutsideRoot(String),
    /// A NUL byte, or bytes that are not UTF-8 once percent-decoded.
    #[error("path {0:?} is not a valid path")]
    Invalid(String),
}

/// A normalised path relative to the server's root, written `/a/b` (the root is `/`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CanonicalPath(String);

impl CanonicalPath {
    /// The root directory.
    pub fn root() -> Self {
        CanonicalPath("/".to_string())
    }

    /// Normalise an already-decoded path: `a/./b//c/../d` → `/a/b/d`. Leading and trailing
    /// slashes are optional. `..` above the root is an error, never silently clamped.
    pub fn parse(raw: &str) -> Result<Self, PathError> {
        if raw.contains('\0') {
            return Err(PathError::Invalid(raw.to_string()));
        }
        let mut segments: Vec<&str> = Vec::new();
        for segment in raw.split('/') {
            match segment {
                "" | "." => {}
                ".." => {
                    if segments.pop().is_none() {
                        return Err(PathError::OutsideRoot(raw.to_string()));
                    }
                }
                other => segments.push(other),
            }
        }
        Ok(CanonicalPath(format!("/{}", segments.join("/"))))
    }

    /// Percent-decode once (as a URL path is), then normalise: `%2e%2e/x` is `../x`.
    pub fn from_url(raw: &str) -> Result<Self, PathError> {
        let decoded = percent_decode_str(raw)
            .decode_utf8()
            .map_err(|_| PathError::Invalid(raw.to_string()))?;
        Self::parse(&decoded)
    }

    /// The path with its leading slash: `/a/b`, or `/` for the root.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The path as jupyter_server's API writes it, without a leading slash: `a/b`, or `""`.
    pub fn api_path(&self) -> &str {
        &self.0[1..]
    }

    /// Whether this is the root directory.
    pub fn is_root(&self) -> bool {
        self.0.len() == 1
    }

    /// The last segment, or `""` for the root.
    pub fn name(&self) -> &str {
        match self.0.rfind('/') {
            Some(i) => &self.0[i + 1..],
            None => "",
        }
    }

    /// The parent directory; the root's parent is `None`.
    pub fn parent(&self) -> Option<CanonicalPath> {
        if self.is_root() {
            return None;
        }
        let i = self.0.rfind('/').unwrap_or(0);
        Some(if i == 0 {
            CanonicalPath::root()
        } else {
            CanonicalPath(self.0[..i].to_string())
        })
    }

    /// A direct child named `name` (which must be a single segment, not `.` or `..`).
    pub fn child(&self, name: &str) -> Result<CanonicalPath, PathError> {
        if name.is_empty() || name == "." || name == ".." || name.contains('/') {
            return Err(PathError::Invalid(name.to_string()));
        }
        Self::parse(&format!("{}/{}", self.0, name))
    }

    /// Whether `self` is `other` or lies below it, by whole segments: `/projects/a/x` is
    /// within `/projects/a`, `/projects/ab` is not.
    pub fn is_within(&self, other: &CanonicalPath) -> bool {
        other.is_root()
            || self.0 == other.0
            || (self.0.starts_with(&other.0) && self.0.as_bytes().get(other.0.len()) == Some(&b'/'))
    }

    /// The segments, root first: `/a/b` → `["a", "b"]`.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split('/').filter(|s| !s.is_empty())
    }
}

impl fmt::Display for CanonicalPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(raw: &str) -> String {
        CanonicalPath::parse(raw).unwrap().as_str().to_string()
    }

    #[test]
    fn normalises_dots_and_slashes() {
        assert_eq!(canon(""), "/");
        assert_eq!(canon("/"), "/");
        assert_eq!(canon("a/b/"), "/a/b");
        assert_eq!(canon("//a///b"), "/a/b");
        assert_eq!(canon("a/./b/../c"), "/a/c");
        assert_eq!(canon("a/.."), "/");
    }

    #[test]
    fn refuses_climbing_above_root() {
        assert!(matches!(
            CanonicalPath::parse(".."),
            Err(PathError::OutsideRoot(_))
        ));
        assert!(matches!(
            CanonicalPath::parse("a/../../b"),
            Err(PathError::OutsideRoot(_))
        ));
        assert!(matches!(
            CanonicalPath::from_url("%2e%2e/etc"),
            Err(PathError::OutsideRoot(_))
        ));
        assert!(matches!(
            CanonicalPath::parse("a\0b"),
            Err(PathError::Invalid(_))
        ));
    }

    #[test]
    fn decodes_percent_once() {
        assert_eq!(CanonicalPath::from_url("a%2Fb").unwrap().as_str(), "/a/b");
        assert_eq!(CanonicalPath::from_url("a/%2e/b").unwrap().as_str(), "/a/b");
        assert_eq!(
            CanonicalPath::from_url("%252e%252e").unwrap().as_str(),
            "/%2e%2e"
        );
    }

    #[test]
    fn within_is_by_whole_segments() {
        let a = CanonicalPath::parse("/projects/a").unwrap();
        assert!(CanonicalPath::parse("/projects/a/x").unwrap().is_within(&a));
        assert!(a.is_within(&a));
        assert!(!CanonicalPath::parse("/projects/ab").unwrap().is_within(&a));
        assert!(!CanonicalPath::parse("/projects").unwrap().is_within(&a));
        assert!(a.is_within(&CanonicalPath::root()));
    }

    #[test]
    fn parent_name_child() {
        let p = CanonicalPath::parse("/a/b").unwrap();
        assert_eq!(p.name(), "b");
        assert_eq!(p.parent().unwrap().as_str(), "/a");
        assert_eq!(p.parent().unwrap().parent().unwrap(), CanonicalPath::root());
        assert_eq!(CanonicalPath::root().parent(), None);
        assert_eq!(p.api_path(), "a/b");
        assert_eq!(p.child("c").unwrap().as_str(), "/a/b/c");
        assert!(p.child("..").is_err());
    }
}
