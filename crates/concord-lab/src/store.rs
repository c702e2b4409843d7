//! Per-user state of the JupyterLab front end: user settings, workspaces and front-end config
//! sections, plus the server-wide config layer. One small file per user per item under
//! `<state_dir>/lab/`, written atomically (temporary file + rename), so a crash never leaves a
//! half-written file and two users never share a file:
//!
//! ```text
//! <state_dir>/lab/users/<user>/settings/<plugin id>.jupyterlab-settings   (JSON5 text, as sent)
//! <state_dir>/lab/users/<user>/workspaces/<name>.jupyterlab-workspace     (JSON)
//! <state_dir>/lab/users/<user>/config/<section>.json                      (JSON)
//! <state_dir>/lab/config/<section>.json                                   (server-wide, JSON)
//! ```
//!
//! Names are percent-encoded (everything but ASCII letters, digits, `-` and `_`), so no user
//! name, plugin id or workspace name can reach outside its directory.

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

const NAME_ENCODE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_');

/// Suffix of a user's settings file (JupyterLab's).
pub const SETTINGS_EXT: &str = ".jupyterlab-settings";
/// Suffix of a workspace file (JupyterLab's).
pub const WORKSPACE_EXT: &str = ".jupyterlab-workspace";

/// Which per-user item.
#[derive(Clone, Copy, Debug)]
pub enum Item {
    /// A plugin's user settings.
    Settings,
    /// A workspace (layout).
    Workspace,
    /// A front-end config section (`/api/config/{section}`).
    Config,
}

impl Item {
    fn dir(self) -> &'static str {
        match self {
            Item::Settings => "settings",
            Item::Workspace => "workspaces",
            Item::Config => "config",
        }
    }

    fn ext(self) -> &'static str {
        match self {
            Item::Settings => SETTINGS_EXT,
            Item::Workspace => WORKSPACE_EXT,
            Item::Config => ".json",
        }
    }
}

/// A stored file: its text and times.
pub struct Stored {
    /// The file's content.
    pub text: String,
    /// Last modification.
    pub modified: Option<SystemTime>,
    /// Creation (the file system's change time when birth time is unknown).
    pub created: Option<SystemTime>,
}

/// The per-user store.
pub struct LabStore {
    root: PathBuf,
}

fn encode(name: &str) -> String {
    utf8_percent_encode(name, NAME_ENCODE).to_string()
}

impl LabStore {
    /// A store under `<state_dir>/lab`.
    pub fn new(state_dir: &Path) -> Self {
        LabStore {
            root: state_dir.join("lab"),
        }
    }

    fn user_dir(&self, user: &str, item: Item) -> PathBuf {
        self.root.join("users").join(encode(user)).join(item.dir())
    }

    fn path(&self, user: Option<&str>, item: Item, name: &str) -> PathBuf {
        let dir = match user {
            Some(u) => self.user_dir(u, item),
            None => self.root.join(item.dir()),
        };
        dir.join(format!("{}{}", encode(name), item.ext()))
    }

    /// Read one item of a user (`None` for the server-wide layer); absent → `Ok(None)`.
    pub fn read(
        &self,
        user: Option<&str>,
        item: Item,
        name: &str,
    ) -> std::io::Result<Option<Stored>> {
        let path = self.path(user, item, name);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let meta = std::fs::metadata(&path).ok();
                Ok(Some(Stored {
                    text,
                    modified: meta.as_ref().and_then(|m| m.modified().ok()),
                    created: meta
                        .as_ref()
                        .and_then(|m| m.created().ok().or_else(|| m.modified().ok())),
                }))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Write one item atomically.
    pub fn write(
        &self,
        user: Option<&str>,
        item: Item,
        name: &str,
        text: &str,
    ) -> std::io::Result<()> {
        let path = self.path(user, item, name);
        let dir = path
            .parent()
            .ok_or_else(|| std::io::Error::other("no parent directory"))?;
        create_private_dir(dir)?;
        let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
        tmp.write_all(text.as_bytes())?;
        tmp.as_file().sync_all()?;
        tmp.persist(&path).map_err(|e| e.error)?;
        Ok(())
    }

    /// Delete one item; `Ok(false)` when it did not exist.
    pub fn delete(&self, user: Option<&str>, item: Item, name: &str) -> std::io::Result<bool> {
        match std::fs::remove_file(self.path(user, item, name)) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Names of a user's items of one kind, sorted.
    pub fn list(&self, user: &str, item: Item) -> Vec<String> {
        let dir = self.user_dir(user, item);
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .filter_map(|e| {
                        let file = e.file_name().into_string().ok()?;
                        let stem = file.strip_suffix(item.ext())?;
                        percent_decode_str(stem)
                            .decode_utf8()
                            .ok()
                            .map(|s| s.into_owned())
                    })
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_cannot_escape_and_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let store = LabStore::new(dir.path());
        store
            .write(Some("../bob"), Item::Workspace, "../../x", "{}")
            .unwrap();
        assert_eq!(store.list("../bob", Item::Workspace), vec!["../../x"]);
        assert!(store.list("bob", Item::Workspace).is_empty());
        let users = std::fs::read_dir(dir.path().join("lab/users"))
            .unwrap()
            .count();
        assert_eq!(users, 1);
        assert!(store
            .read(Some("../bob"), Item::Workspace, "../../x")
            .unwrap()
            .is_some());
        assert!(store
            .delete(Some("../bob"), Item::Workspace, "../../x")
            .unwrap());
        assert!(!store
            .delete(Some("../bob"), Item::Workspace, "../../x")
            .unwrap());
    }
}
