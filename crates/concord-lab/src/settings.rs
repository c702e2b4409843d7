//! Per-user plugin settings (`/lab/api/settings`): the plugin's schema with the admin's
//! overrides, the user's raw JSON5 and its parsed value. User settings are validated
//! against the schema (Draft 7) when saved and again when read.

use serde_json::{json, Value};

use crate::error::{LabError, LabResult};
use crate::install::LabInstall;
use crate::store::{Item, Stored};
use crate::{iso, Lab};

impl Lab {
    /// One plugin's settings for one user. User settings that no longer validate are
    /// dropped, and the second value says why, as jupyterlab_server.
    fn plugin_settings(
        &self,
        i: &LabInstall,
        user: &str,
        id: &str,
    ) -> LabResult<(Value, Option<String>)> {
        let entry = i
            .schemas
            .get()
            .get(id)
            .ok_or_else(|| LabError::not_found(format!("Schema not found: {id}")))?;
        let stored = self
            .store
            .read(Some(user), Item::Settings, id)
            .map_err(|e| LabError::io("reading settings", e))?;
        let (mut raw, mut settings, mut warning) = ("{}".to_string(), json!({}), None);
        let (mut modified, mut created) = (None, None);
        if let Some(Stored {
            text,
            modified: m,
            created: c,
        }) = stored
        {
            modified = m;
            created = c;
            match json5::from_str::<Value>(&text) {
                Ok(v) => {
                    let valid = match entry.validator(id) {
                        Some(validator) => validator.validate(&v).map_err(|e| e.to_string()),
                        None => Ok(()),
                    };
                    match valid {
                        Ok(()) => {
                            raw = if text.trim().is_empty() {
                                "{}".to_string()
                            } else {
                                text
                            };
                            settings = v;
                        }
                        Err(e) => warning = Some(format!("Failed validating settings ({id}): {e}")),
                    }
                }
                Err(e) => warning = Some(format!("Failed loading settings ({id}): {e}")),
            }
        }
        Ok((
            json!({
                "id": id,
                "schema": entry.schema,
                "version": entry.version,
                "raw": raw,
                "settings": settings,
                "last_modified": iso(modified),
                "created": iso(created),
            }),
            warning,
        ))
    }

    /// Every plugin's settings for `user` (`ids_only`: the ids alone), ids descending as
    /// jupyterlab_server orders them: `{"settings": [...]}`. Blocking.
    pub fn list_settings(&self, user: &str, ids_only: bool) -> LabResult<Value> {
        let i = self.install()?;
        let schemas = i.schemas.get();
        let mut list = Vec::with_capacity(schemas.len());
        for id in schemas.keys().rev() {
            if ids_only {
                list.push(json!({ "id": id }));
            } else {
                let (mut entry, warning) = self.plugin_settings(i, user, id)?;
                entry["warning"] = json!(warning);
                list.push(entry);
            }
        }
        Ok(json!({ "settings": list }))
    }

    /// One plugin's settings for `user`. Blocking.
    pub fn settings(&self, user: &str, id: &str) -> LabResult<Value> {
        let (entry, _) = self.plugin_settings(self.install()?, user, id)?;
        Ok(entry)
    }

    /// Store `raw` (JSON5 text, kept as sent) as `user`'s settings of plugin `id`, once it
    /// parses and validates against the plugin's schema. Blocking.
    pub fn save_settings(&self, user: &str, id: &str, raw: &str) -> LabResult<()> {
        let i = self.install()?;
        let entry = i
            .schemas
            .get()
            .get(id)
            .ok_or_else(|| LabError::not_found(format!("Schema not found: {id}")))?;
        let value: Value = json5::from_str(raw)
            .map_err(|e| LabError::bad_request(format!("Failed parsing settings ({id}): {e}")))?;
        if let Some(validator) = entry.validator(id) {
            validator.validate(&value).map_err(|e| {
                LabError::bad_request(format!("Failed validating settings ({id}): {e}"))
            })?;
        }
        self.store
            .write(Some(user), Item::Settings, id, raw)
            .map_err(|e| LabError::io("saving settings", e))
    }
}
