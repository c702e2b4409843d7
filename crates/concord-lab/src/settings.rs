//! Per-user plugin settings (`/lab/api/settings`): the plugin's schema with the admin's
//! overrides, the user's raw JSON5 and its parsed value. User settings are validated
//! against the schema (Draft 7) when saved and again when read.

use serde_json::{json, Value};

use crate::error::{LabError, LabResult};
use crate::install::LabInstall;
use crate::store::{Item, Stored};
use crate::{iso, Lab};

/// What the caller may do, where it changes what their front end offers.
#[derive(Clone, Copy, Debug, Default)]
pub struct Abilities {
    /// The caller may shut the server down: File → Shut Down is offered.
    pub may_shut_down: bool,
}

/// The File menu's Shut Down entry. JupyterLab shows it and Log Out only together (both
/// follow the page config's `quitButton`), so `quitButton` is on for everyone and Shut
/// Down is hidden from those who may not use it by disabling its menu item in the schema.
const SHUT_DOWN_COMMAND: &str = "filemenu:shutdown";

/// `schema` with the menu items (in `jupyter.lab.menus`, submenus included) that run one of
/// `commands` marked `disabled`, which JupyterLab leaves out of its menus.
fn disable_menu_commands(schema: &Value, commands: &[&str]) -> Value {
    fn walk(items: &mut Value, commands: &[&str]) {
        let Some(items) = items.as_array_mut() else {
            return;
        };
        for item in items {
            let runs_hidden = item
                .get("command")
                .and_then(Value::as_str)
                .is_some_and(|command| commands.contains(&command));
            if runs_hidden {
                item["disabled"] = json!(true);
            }
            // `get_mut`, not indexing: indexing would add the keys it looks for.
            if let Some(items) = item
                .get_mut("submenu")
                .and_then(|submenu| submenu.get_mut("items"))
            {
                walk(items, commands);
            }
            if let Some(items) = item.get_mut("items") {
                walk(items, commands);
            }
        }
    }
    let mut schema = schema.clone();
    if let Some(menus) = schema
        .get_mut("jupyter.lab.menus")
        .and_then(|m| m.get_mut("main"))
    {
        walk(menus, commands);
    }
    schema
}

impl Lab {
    /// One plugin's settings for one user. User settings that no longer validate are
    /// dropped, and the second value says why, as jupyterlab_server.
    fn plugin_settings(
        &self,
        i: &LabInstall,
        user: &str,
        id: &str,
        abilities: Abilities,
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
        let schema = if abilities.may_shut_down {
            entry.schema.clone()
        } else {
            disable_menu_commands(&entry.schema, &[SHUT_DOWN_COMMAND])
        };
        Ok((
            json!({
                "id": id,
                "schema": schema,
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
    pub fn list_settings(
        &self,
        user: &str,
        ids_only: bool,
        abilities: Abilities,
    ) -> LabResult<Value> {
        let i = self.install()?;
        let schemas = i.schemas.get();
        let mut list = Vec::with_capacity(schemas.len());
        for id in schemas.keys().rev() {
            if ids_only {
                list.push(json!({ "id": id }));
            } else {
                let (mut entry, warning) = self.plugin_settings(i, user, id, abilities)?;
                entry["warning"] = json!(warning);
                list.push(entry);
            }
        }
        Ok(json!({ "settings": list }))
    }

    /// One plugin's settings for `user`. Blocking.
    pub fn settings(&self, user: &str, id: &str, abilities: Abilities) -> LabResult<Value> {
        let (entry, _) = self.plugin_settings(self.install()?, user, id, abilities)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_named_commands_are_disabled_in_menus_and_submenus() {
        let schema = json!({
            "jupyter.lab.menus": {"main": [{
                "id": "jp-mainmenu-file",
                "items": [
                    {"command": "filemenu:logout", "rank": 99},
                    {"command": "filemenu:shutdown", "rank": 99},
                    {"type": "submenu", "submenu": {"id": "sub", "items": [
                        {"command": "filemenu:shutdown"}
                    ]}}
                ]
            }]},
            "properties": {}
        });
        let hidden = disable_menu_commands(&schema, &[SHUT_DOWN_COMMAND]);
        let items = &hidden["jupyter.lab.menus"]["main"][0]["items"];
        assert_eq!(items[0].get("disabled"), None);
        assert_eq!(items[1]["disabled"], true);
        assert_eq!(items[2]["submenu"]["items"][0]["disabled"], true);
        assert_eq!(hidden["properties"], schema["properties"]);
        // Nothing else changes: no keys are added to items that lack them.
        let mut expected = schema.clone();
        expected["jupyter.lab.menus"]["main"][0]["items"][1]["disabled"] = json!(true);
        expected["jupyter.lab.menus"]["main"][0]["items"][2]["submenu"]["items"][0]["disabled"] =
            json!(true);
        assert_eq!(hidden, expected);
    }
}
