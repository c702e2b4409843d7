//! Profile updates (`PATCH /api/me`): the five user fields besides the username.

use serde::{Deserialize, Deserializer};

use crate::error::IdentityError;

/// Fields a user may change about themselves. Each is `None` to leave it alone,
/// `Some(None)` (JSON `null`) or `Some(Some(""))` to reset it to its default (name → username,
/// display name → name, others → unset), or `Some(Some(value))` to set it.
///
/// Deserializes from the `PATCH /api/me` JSON body; unknown fields are an error, as
/// jupyter_server answers 400 for fields that are not updatable.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileUpdate {
    /// Full name.
    #[serde(default, deserialize_with = "present")]
    pub name: Option<Option<String>>,
    /// Name to show.
    #[serde(default, deserialize_with = "present")]
    pub display_name: Option<Option<String>>,
    /// Initials for avatars.
    #[serde(default, deserialize_with = "present")]
    pub initials: Option<Option<String>>,
    /// Avatar image URL (`https://`, `http://` or a path on this server).
    #[serde(default, deserialize_with = "present")]
    pub avatar_url: Option<Option<String>>,
    /// CSS colour for collaboration cursors.
    #[serde(default, deserialize_with = "present")]
    pub color: Option<Option<String>>,
}

/// The field names a [`ProfileUpdate`] can carry (jupyter_server's `updatable_fields`).
pub const UPDATABLE_FIELDS: [&str; 5] = ["name", "display_name", "initials", "avatar_url", "color"];

/// Distinguishes a field given as `null` (`Some(None)`) from an absent one (`None`).
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// A validated change to one column: `None` = unchanged, `Some(None)` = reset.
pub(crate) type FieldChange = Option<Option<String>>;

fn no_control_chars(value: &str) -> bool {
    !value.chars().any(char::is_control)
}

fn check_text(
    field: &'static str,
    value: &Option<Option<String>>,
    max_chars: usize,
    extra: impl Fn(&str) -> Result<(), &'static str>,
) -> Result<FieldChange, IdentityError> {
    let Some(value) = value else {
        return Ok(None);
    };
    let value = value.as_deref().map(str::trim).filter(|v| !v.is_empty());
    let Some(value) = value else {
        return Ok(Some(None));
    };
    if value.chars().count() > max_chars {
        return Err(IdentityError::InvalidProfile {
            field,
            reason: "too long",
        });
    }
    if !no_control_chars(value) {
        return Err(IdentityError::InvalidProfile {
            field,
            reason: "must not contain control characters",
        });
    }
    extra(value).map_err(|reason| IdentityError::InvalidProfile { field, reason })?;
    Ok(Some(Some(value.to_string())))
}

fn check_avatar_url(url: &str) -> Result<(), &'static str> {
    let lower = url.to_ascii_lowercase();
    let absolute = lower.starts_with("https://") || lower.starts_with("http://");
    let local_path = url.starts_with('/') && !url.starts_with("//");
    if !(absolute || local_path) {
        return Err("must be an http(s) URL or a path starting with /");
    }
    if url
        .chars()
        .any(|c| c.is_whitespace() || c == '"' || c == '<' || c == '>')
    {
        return Err("must not contain spaces, quotes or angle brackets");
    }
    Ok(())
}

fn check_color(color: &str) -> Result<(), &'static str> {
    // Enough for #rgb, rgb()/hsl() with commas or spaces, named colours and var(--x);
    // nothing that could end a CSS declaration.
    if color
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "#(),.%-_ /+".contains(c))
    {
        Ok(())
    } else {
        Err("must be a CSS colour such as #1f77b4, rgb(31 119 180) or var(--jp-collaborator-color1)")
    }
}

/// The validated changes, in column order: name, display_name, initials, avatar_url, color.
pub(crate) struct ValidProfile {
    pub(crate) changes: [(&'static str, FieldChange); 5],
}

impl ProfileUpdate {
    /// Checks every given field; the first bad one is the error.
    pub(crate) fn validate(&self) -> Result<ValidProfile, IdentityError> {
        let any = |_: &str| Ok(());
        Ok(ValidProfile {
            changes: [
                ("name", check_text("name", &self.name, 256, any)?),
                (
                    "display_name",
                    check_text("display_name", &self.display_name, 256, any)?,
                ),
                ("initials", check_text("initials", &self.initials, 16, any)?),
                (
                    "avatar_url",
                    check_text("avatar_url", &self.avatar_url, 2048, check_avatar_url)?,
                ),
                ("color", check_text("color", &self.color, 64, check_color)?),
            ],
        })
    }
}

impl ProfileUpdate {
    /// Validates the update and applies it to a user kept outside the database (the
    /// token-mode owner). Reset fields fall back as in the database: name → username,
    /// display name → name, others → unset.
    pub fn apply_to(&self, user: &mut concord_authz::User) -> Result<(), IdentityError> {
        let valid = self.validate()?;
        for (field, change) in valid.changes {
            let Some(value) = change else { continue };
            match field {
                "name" => user.name = value.unwrap_or_else(|| user.username.clone()),
                "display_name" => user.display_name = value.unwrap_or_else(|| user.name.clone()),
                "initials" => user.initials = value,
                "avatar_url" => user.avatar_url = value,
                _ => user.color = value,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_null_absent_and_unknown_fields() {
        let update: ProfileUpdate =
            serde_json::from_str(r#"{"name": "Alice A.", "color": null}"#).unwrap();
        assert_eq!(update.name, Some(Some("Alice A.".to_string())));
        assert_eq!(update.color, Some(None));
        assert_eq!(update.initials, None);
        let err = serde_json::from_str::<ProfileUpdate>(r#"{"username": "root"}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
    }

    #[test]
    fn bad_values_are_refused() {
        let bad = [
            ProfileUpdate {
                avatar_url: Some(Some("javascript:alert(1)".into())),
                ..Default::default()
            },
            ProfileUpdate {
                avatar_url: Some(Some("//evil.example/x.png".into())),
                ..Default::default()
            },
            ProfileUpdate {
                color: Some(Some("red; background: url(x)".into())),
                ..Default::default()
            },
            ProfileUpdate {
                name: Some(Some("a\u{0}b".into())),
                ..Default::default()
            },
            ProfileUpdate {
                initials: Some(Some("x".repeat(17))),
                ..Default::default()
            },
        ];
        for update in bad {
            assert!(update.validate().is_err(), "{update:?}");
        }
        let good = ProfileUpdate {
            avatar_url: Some(Some("https://example.org/a.png".into())),
            color: Some(Some("var(--jp-collaborator-color1)".into())),
            initials: Some(Some("".into())),
            ..Default::default()
        };
        let valid = good.validate().unwrap();
        assert_eq!(valid.changes[2].1, Some(None));
    }

    #[test]
    fn apply_to_a_user_outside_the_database() {
        let mut user = concord_authz::User::named("owner");
        let update: ProfileUpdate =
            serde_json::from_str(r##"{"name": "The Owner", "color": "#123456"}"##).unwrap();
        update.apply_to(&mut user).unwrap();
        assert_eq!(user.name, "The Owner");
        assert_eq!(user.color.as_deref(), Some("#123456"));
        let reset: ProfileUpdate = serde_json::from_str(r#"{"name": null}"#).unwrap();
        reset.apply_to(&mut user).unwrap();
        assert_eq!(user.name, "owner");
        let bad: ProfileUpdate = serde_json::from_str(r#"{"color": "x;y"}"#).unwrap();
        assert!(bad.apply_to(&mut user).is_err());
        assert_eq!(user.color.as_deref(), Some("#123456"), "unchanged on error");
    }
}
