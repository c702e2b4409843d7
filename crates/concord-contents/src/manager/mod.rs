//! The contents service: jupyter_server's `AsyncLargeFileManager` + `FileCheckpoints` +
//! the contents handlers' request logic, confined to a root and checked per path.
//!
//! One file per data path: `query` (what a GET asks for), `get` (models, listings,
//! `/files`, trust), `save` (PUT, chunked uploads, untitled entries), `move` (copy, rename,
//! delete, trash) and `checkpoints`. This file holds the service itself and how it finds
//! a path: `resolve`, `locate`, `ensure_may_write`.

mod checkpoints;
mod get;
mod r#move;
mod query;
mod save;

pub use get::FileDownload;
pub use query::{FileFormat, GetOptions};
pub use save::SaveOutcome;

use crate::access::Caller;
use crate::actions::{ActionKind, ActionListener, ContentsAction, Listeners};
use crate::atomic;
use crate::config::ContentsConfig;
use crate::error::{ContentsError, Result};
use crate::pyfmt::{repr_str, Glob};
use crate::trust::TrustStore;
use concord_authz::CanonicalPath;
use std::fs::{self, Metadata};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// A path the service is about to touch: as requested, as resolved, and on disk.
struct Located {
    request: CanonicalPath,
    resolved: CanonicalPath,
    os: PathBuf,
}

/// The files service for one root directory. Operations are blocking (file system work);
/// call them from `tokio::task::spawn_blocking`. Share it behind an `Arc`.
pub struct ContentsManager {
    config: ContentsConfig,
    root: PathBuf,
    trust: TrustStore,
    /// `config.hide_globs`, compiled.
    hide_globs: Vec<Glob>,
    /// The temp files of saves in progress (with a state directory).
    journal: Option<atomic::TempJournal>,
    /// Who hears of what the service does.
    listeners: Listeners,
}

/// The path as jupyter_server's handlers show it in messages: `/a/b`, and `''` for the root.
fn handler_path(path: &CanonicalPath) -> &str {
    if path.is_root() {
        ""
    } else {
        path.as_str()
    }
}

fn is_hidden(path: &CanonicalPath) -> bool {
    path.segments().any(|s| s.starts_with('.'))
}

fn mtime(meta: &Metadata) -> SystemTime {
    meta.modified().unwrap_or(UNIX_EPOCH)
}

fn parse_body_path(raw: &str) -> Result<CanonicalPath> {
    CanonicalPath::parse(raw)
        .map_err(|_| ContentsError::not_found(format!("{raw} is outside root contents directory")))
}

/// What a request does with its path, for the answer it gets when that path does not exist.
/// The server answers a path the caller may not see with the same error, so that a refusal
/// never tells whether anything lies there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Missing<'a> {
    /// Reading it (a model, the file's bytes, its checkpoints, trusting it).
    Read,
    /// Saving it (PUT): its directory does not exist.
    Save,
    /// Creating something in it (POST): the directory does not exist.
    CreateIn,
    /// Renaming or deleting it.
    Change,
    /// Restoring or deleting its checkpoint with this id.
    Checkpoint(&'a str),
}

impl ContentsError {
    /// The 404 of `op` on `path` when nothing is there, in jupyter_server's words.
    pub fn missing(op: Missing<'_>, path: &CanonicalPath) -> ContentsError {
        let parent = || {
            path.parent()
                .map(|p| p.api_path().to_string())
                .unwrap_or_default()
        };
        ContentsError::not_found(match op {
            Missing::Read => format!(
                "file or directory {} does not exist",
                repr_str(handler_path(path))
            ),
            Missing::Save => format!("No such parent directory: {} to save file in", parent()),
            Missing::CreateIn => format!("No such directory: {}", path.api_path()),
            Missing::Change => format!("File or directory does not exist: {}", path.api_path()),
            Missing::Checkpoint(id) => {
                format!("Checkpoint does not exist: {}@{id}", path.api_path())
            }
        })
    }
}

impl ContentsManager {
    /// Open the service for `config.root_dir` (which must be a directory).
    pub fn new(config: ContentsConfig) -> Result<Self> {
        let root = fs::canonicalize(&config.root_dir).map_err(|e| {
            ContentsError::internal(format!(
                "{} is not a directory: {e}",
                config.root_dir.display()
            ))
        })?;
        if !root.is_dir() {
            return Err(ContentsError::internal(format!(
                "{} is not a directory",
                root.display()
            )));
        }
        let trust = TrustStore::open(config.state_dir.as_deref())
            .map_err(|e| ContentsError::internal(format!("notebook trust store: {e}")))?;
        let hide_globs = config.hide_globs.iter().map(|g| Glob::new(g)).collect();
        let journal = match &config.state_dir {
            Some(dir) => {
                let (journal, removed) = atomic::TempJournal::open(&dir.join("temp-files"))
                    .map_err(|e| {
                        ContentsError::internal(format!(
                            "journal of temp files in {}: {e}",
                            dir.display()
                        ))
                    })?;
                for path in removed {
                    tracing::info!(
                        "removed {}, the temp file of a save the previous run did not finish",
                        path.display()
                    );
                }
                Some(journal)
            }
            None => None,
        };
        Ok(ContentsManager {
            config,
            root,
            trust,
            hide_globs,
            journal,
            listeners: Listeners::default(),
        })
    }

    /// The settings in force.
    pub fn config(&self) -> &ContentsConfig {
        &self.config
    }

    /// Tell `listener` what the service does from now on, as jupyter_server's `contents_service`
    /// events: each operation that answers a request reports its actions once it has
    /// succeeded, in jupyter_server's order, on the thread doing it.
    pub fn subscribe_actions(&self, listener: Arc<dyn ActionListener>) {
        self.listeners.add(listener);
    }

    /// jupyter_server's `save` reports a `get` (it reads the model it answers) then a `save`.
    fn report_saved(&self, api_path: &str) {
        self.listeners.report(|| {
            let Some(resolved) = self.resolve_api_path(api_path) else {
                return Vec::new();
            };
            vec![
                ContentsAction::new(ActionKind::Get, api_path, vec![resolved.clone()]),
                ContentsAction::new(ActionKind::Save, api_path, vec![resolved]),
            ]
        });
    }

    /// Where the API path `api_path` of a model leads.
    fn resolve_api_path(&self, api_path: &str) -> Option<CanonicalPath> {
        self.resolve(&CanonicalPath::parse(api_path).ok()?).ok()
    }

    /// The root directory, with symlinks resolved.
    pub fn root_dir(&self) -> &Path {
        &self.root
    }

    fn os_path(&self, path: &CanonicalPath) -> PathBuf {
        let mut p = self.root.clone();
        p.extend(path.segments());
        p
    }

    fn to_canonical(&self, real: &Path) -> Option<CanonicalPath> {
        let rel = real.strip_prefix(&self.root).ok()?;
        let mut parts = Vec::new();
        for c in rel.components() {
            parts.push(c.as_os_str().to_str()?);
        }
        CanonicalPath::parse(&parts.join("/")).ok()
    }

    /// Resolve symlinks in `path`. A path whose symlinks lead outside the root, or that
    /// goes through a dangling symlink, is "not found". Missing trailing segments are kept
    /// as they are (so a path about to be created resolves to where it will be created).
    /// The server authorizes the path this returns.
    pub fn resolve(&self, path: &CanonicalPath) -> Result<CanonicalPath> {
        let not_found = || {
            ContentsError::not_found(format!(
                "file or directory {} does not exist",
                repr_str(handler_path(path))
            ))
        };
        let segments: Vec<&str> = path.segments().collect();
        let mut real = self.root.clone();
        for (i, segment) in segments.iter().enumerate() {
            let candidate = real.join(segment);
            match fs::symlink_metadata(&candidate) {
                Ok(meta) if meta.file_type().is_symlink() => {
                    let target = fs::canonicalize(&candidate).map_err(|_| not_found())?;
                    if !target.starts_with(&self.root) {
                        return Err(not_found());
                    }
                    real = target;
                }
                Ok(_) => real = candidate,
                Err(_) => {
                    real.extend(&segments[i..]);
                    break;
                }
            }
        }
        self.to_canonical(&real).ok_or_else(not_found)
    }

    fn locate(&self, path: &CanonicalPath) -> Result<Located> {
        let resolved = self.resolve(path)?;
        let os = self.os_path(&resolved);
        Ok(Located {
            request: path.clone(),
            resolved,
            os,
        })
    }

    /// Locate the entry itself (a final symlink is not followed): for rename and delete.
    fn locate_entry(&self, path: &CanonicalPath) -> Result<Located> {
        let Some(parent) = path.parent() else {
            return self.locate(path);
        };
        let parent_resolved = self.resolve(&parent)?;
        let resolved = parent_resolved.child(path.name()).map_err(|_| {
            ContentsError::not_found(format!("{} is not a valid path", path.api_path()))
        })?;
        let os = self.os_path(&resolved);
        Ok(Located {
            request: path.clone(),
            resolved,
            os,
        })
    }

    fn hidden(&self, loc: &Located) -> bool {
        !self.config.allow_hidden && (is_hidden(&loc.request) || is_hidden(&loc.resolved))
    }

    fn should_list(&self, name: &str) -> bool {
        !self.hide_globs.iter().any(|g| g.matches(name))
    }

    fn get_not_found(path: &CanonicalPath) -> ContentsError {
        ContentsError::missing(Missing::Read, path)
    }

    /// Refuse a change the caller may not make: 403 if they may see the path, else 404.
    fn ensure_may_write(&self, caller: &Caller<'_>, loc: &Located) -> Result<()> {
        if caller.access.may_write(&loc.resolved) {
            return Ok(());
        }
        if caller.access.may_read(&loc.resolved) {
            Err(ContentsError::forbidden(format!(
                "Permission denied: {}",
                loc.request.api_path()
            )))
        } else {
            Err(Self::get_not_found(&loc.request))
        }
    }

    fn check_size(&self, size: u64) -> Result<()> {
        match self.config.max_save_bytes {
            Some(limit) if size > limit => Err(ContentsError::too_large(format!(
                "File too large: {size} bytes exceeds the limit of {limit} bytes"
            ))),
            _ => Ok(()),
        }
    }
}
