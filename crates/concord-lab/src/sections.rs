//! Front-end config sections (jupyter_server's `/api/config/{section}`): a server-wide layer
//! and each user's own on top.

use serde_json::{json, Map, Value};

use crate::error::{LabError, LabResult};
use crate::store::Item;
use crate::Lab;

/// Which layer of a section to read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigScope {
    /// The server-wide layer with the user's own merged on top.
    Merged,
    /// The server-wide layer alone.
    Server,
    /// The user's own layer alone.
    User,
}

impl Lab {
    /// Refuse a section name that is not one jupyter_server would read from a file.
    pub fn check_config_section(section: &str) -> LabResult<()> {
        if section.is_empty()
            || !section
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            || section.starts_with('.')
        {
            return Err(LabError::bad_request(format!(
                "Invalid config section name: {section:?}"
            )));
        }
        Ok(())
    }

    /// One stored layer of a section, as jupyter_server reads a config file: through
    /// [`config_update`] from `{}`, so `null`s and empty objects a `PUT` stored are dropped.
    fn read_section(&self, user: Option<&str>, section: &str) -> LabResult<Value> {
        let stored = self
            .store
            .read(user, Item::Config, section)
            .map_err(|e| LabError::io("reading config", e))?;
        let mut layer = json!({});
        if let Some(value) = stored.and_then(|s| serde_json::from_str::<Value>(&s.text).ok()) {
            config_update(&mut layer, &value);
        }
        Ok(layer)
    }

    /// A section as `user` sees it in `scope`. Blocking.
    pub fn config_section(
        &self,
        user: &str,
        section: &str,
        scope: ConfigScope,
    ) -> LabResult<Value> {
        Self::check_config_section(section)?;
        match scope {
            ConfigScope::Server => self.read_section(None, section),
            ConfigScope::User => self.read_section(Some(user), section),
            ConfigScope::Merged => {
                let mut merged = self.read_section(None, section)?;
                config_update(&mut merged, &self.read_section(Some(user), section)?);
                Ok(merged)
            }
        }
    }

    /// Write one layer of a section: `user`'s own, or the server-wide one (`None`). As
    /// jupyter_server, `replace` stores `section_value` as it is, otherwise it is merged
    /// with `recursive_update`; the stored layer comes back. Blocking.
    pub fn write_config_section(
        &self,
        user: Option<&str>,
        section: &str,
        section_value: Value,
        replace: bool,
    ) -> LabResult<Value> {
        Self::check_config_section(section)?;
        if !section_value.is_object() {
            return Err(LabError::bad_request(
                "A config section must be a JSON object",
            ));
        }
        let value = if replace {
            section_value
        } else {
            let mut value = self.read_section(user, section)?;
            config_update(&mut value, &section_value);
            value
        };
        self.store
            .write(user, Item::Config, section, &value.to_string())
            .map_err(|e| LabError::io("saving config", e))?;
        Ok(value)
    }
}

/// jupyter_server's `recursive_update` of config sections (`PATCH`, and the layers merged
/// by `GET`): an object merges into the object under its key, which is dropped when that
/// leaves it empty; `null` removes the key; anything else replaces it. (Where jupyter_server
/// fails on an object merged into a non-object, 500, the non-object is replaced.)
fn config_update(target: &mut Value, update: &Value) {
    let (Some(target), Some(update)) = (target.as_object_mut(), update.as_object()) else {
        return;
    };
    for (key, value) in update {
        match value {
            Value::Object(_) => {
                let entry = target.entry(key.clone()).or_insert_with(|| json!({}));
                if !entry.is_object() {
                    *entry = json!({});
                }
                config_update(entry, value);
                if entry.as_object().is_some_and(Map::is_empty) {
                    target.remove(key);
                }
            }
            Value::Null => {
                target.remove(key);
            }
            other => {
                target.insert(key.clone(), other.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_patch_merges_removes_and_prunes() {
        let mut v = json!({"a": {"x": 1, "y": 2}, "b": 1, "e": {"f": 1}, "g": 5});
        config_update(
            &mut v,
            &json!({"a": {"y": null, "z": 3}, "b": null, "c": true, "d": {},
                    "e": {"f": null}, "g": {"h": 1}, "l": [null, {"m": null}]}),
        );
        assert_eq!(
            v,
            json!({"a": {"x": 1, "z": 3}, "c": true, "g": {"h": 1}, "l": [null, {"m": null}]})
        );
    }
}
