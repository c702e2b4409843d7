//! Validation of names that end up in policies, logs and the database.

use crate::error::IdentityError;

/// Longest accepted username or group name, in bytes.
pub const MAX_NAME_LEN: usize = 64;

/// Characters allowed in usernames and group names, besides ASCII letters and digits.
const NAME_PUNCTUATION: &[char] = &['.', '_', '@', '-'];

/// Shortens `s` for inclusion in an error message (input may be arbitrarily long).
pub(crate) fn truncate_for_message(s: &str) -> String {
    const LIMIT: usize = 80;
    if s.len() <= LIMIT {
        return s.to_string();
    }
    let mut end = LIMIT;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

fn check_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("must not be empty");
    }
    if name.len() > MAX_NAME_LEN {
        return Err("longer than 64 characters");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || NAME_PUNCTUATION.contains(&c))
    {
        return Err("only letters A-Z a-z, digits and . _ @ - are allowed");
    }
    // A leading '-' reads as a command-line option; a leading '.' as a hidden file.
    if name.starts_with('-') || name.starts_with('.') {
        return Err("must not start with '-' or '.'");
    }
    Ok(())
}

/// Checks a username: 1–64 characters from `[A-Za-z0-9._@-]`, not starting with `-` or `.`.
pub fn validate_username(username: &str) -> Result<(), IdentityError> {
    check_name(username).map_err(|reason| IdentityError::InvalidUsername {
        username: truncate_for_message(username),
        reason,
    })
}

/// Checks a group name with the same rules as usernames.
pub fn validate_group(group: &str) -> Result<(), IdentityError> {
    check_name(group).map_err(|reason| IdentityError::InvalidGroup {
        group: truncate_for_message(group),
        reason,
    })
}

/// Validates, sorts and de-duplicates a list of group names.
pub(crate) fn normalize_groups<S: AsRef<str>>(groups: &[S]) -> Result<Vec<String>, IdentityError> {
    let mut out = Vec::with_capacity(groups.len());
    for group in groups {
        let group = group.as_ref();
        validate_group(group)?;
        out.push(group.to_string());
    }
    out.sort();
    out.dedup();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames() {
        for ok in ["alice", "a.b_c-d@example.org", "Bob2", "x"] {
            assert!(validate_username(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "-rf",
            ".hidden",
            "a b",
            "a/b",
            "ünïcode",
            "a\nb",
            "a:b",
            &"x".repeat(65),
        ] {
            let err = validate_username(bad).unwrap_err();
            assert!(err.to_string().starts_with("invalid username"), "{err}");
        }
        let long = "y".repeat(10_000);
        let message = validate_username(&long).unwrap_err().to_string();
        assert!(
            message.len() < 300,
            "error message not truncated: {message}"
        );
    }

    #[test]
    fn groups_are_sorted_and_deduplicated() {
        let groups = normalize_groups(&["b", "a", "b"]).unwrap();
        assert_eq!(groups, vec!["a", "b"]);
        assert!(normalize_groups(&["ok", "not ok"]).is_err());
    }
}
