//! Per-user workspaces (`/lab/api/workspaces`): the layout JupyterLab saves every few
//! seconds, kept per user so people do not overwrite each other's.

use serde_json::{json, Value};

use crate::error::{LabError, LabResult};
use crate::store::Item;
use crate::{decoded, iso, Lab};

impl Lab {
    /// A stored workspace with its times in `metadata`; `None` when absent or not JSON.
    fn load_workspace(&self, user: &str, name: &str) -> LabResult<Option<Value>> {
        let Some(stored) = self
            .store
            .read(Some(user), Item::Workspace, name)
            .map_err(|e| LabError::io("reading workspace", e))?
        else {
            return Ok(None);
        };
        let mut workspace: Value = match serde_json::from_str(&stored.text) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!("workspace {name} of {user} is not JSON: {e}");
                return Ok(None);
            }
        };
        if let Some(meta) = workspace.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert("last_modified".into(), iso(stored.modified));
            meta.insert("created".into(), iso(stored.created));
        }
        Ok(Some(workspace))
    }

    /// `user`'s workspaces: `{"workspaces": {"ids": [...], "values": [...]}}`. Blocking.
    pub fn list_workspaces(&self, user: &str) -> LabResult<Value> {
        let (mut ids, mut values) = (Vec::new(), Vec::new());
        for name in self.store.list(user, Item::Workspace) {
            if let Some(w) = self.load_workspace(user, &name)? {
                ids.push(w["metadata"]["id"].clone());
                values.push(w);
            }
        }
        Ok(json!({"workspaces": {"ids": ids, "values": values}}))
    }

    /// One of `user`'s workspaces; an unknown one is empty. Blocking.
    pub fn workspace(&self, user: &str, name: &str) -> LabResult<Value> {
        Ok(self.load_workspace(user, name)?.unwrap_or_else(|| {
            let id = if name.starts_with('/') {
                name.to_string()
            } else {
                format!("/{name}")
            };
            json!({"data": {}, "metadata": {"id": id}})
        }))
    }

    /// Save `user`'s workspace `name`; its `metadata.id` must name it. Blocking.
    pub fn save_workspace(&self, user: &str, name: &str, workspace: &Value) -> LabResult<()> {
        let id = workspace
            .get("metadata")
            .and_then(|m| m.get("id"))
            .and_then(Value::as_str)
            .ok_or_else(|| LabError::bad_request("The workspace has no metadata.id"))?;
        let id = decoded(id.strip_prefix('/').unwrap_or(id));
        if id != name {
            return Err(LabError::bad_request(format!(
                "Workspace metadata ID mismatch: expected {name:?} got {:?}",
                format!("/{id}")
            )));
        }
        self.store
            .write(Some(user), Item::Workspace, name, &workspace.to_string())
            .map_err(|e| LabError::io("saving workspace", e))
    }

    /// Delete `user`'s workspace `name`; not found when there is none. Blocking.
    pub fn delete_workspace(&self, user: &str, name: &str) -> LabResult<()> {
        let deleted = self
            .store
            .delete(Some(user), Item::Workspace, name)
            .map_err(|e| LabError::io("deleting workspace", e))?;
        if deleted {
            Ok(())
        } else {
            Err(LabError::not_found(format!("Workspace {name:?} not found")))
        }
    }
}
