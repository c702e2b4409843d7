//! Checkpoints: one per file (id `checkpoint`), in `.ipynb_checkpoints` beside it or under
//! the state directory when its folder is not writable.

use super::{mtime, ContentsManager, Located, Missing};
use crate::access::Caller;
use crate::atomic;
use crate::error::{ContentsError, Result};
use crate::model::{format_time, Checkpoint};
use crate::write_check::access_writable;
use concord_authz::CanonicalPath;
use std::fs;
use std::path::{Path, PathBuf};

impl ContentsManager {
    /// Where `loc`'s checkpoint lives: `dir/.ipynb_checkpoints/name-checkpoint.ext`, or under
    /// the state directory (else the system temp dir) when `dir` is not writable.
    pub(super) fn checkpoint_file(&self, loc: &Located) -> PathBuf {
        let name = loc.request.name();
        let leading = name.len() - name.trim_start_matches('.').len();
        let (base, ext) = match name[leading..].rfind('.') {
            Some(i) => name.split_at(leading + i),
            None => (name, ""),
        };
        let file = format!("{base}-checkpoint{ext}");
        let parent_os = loc
            .os
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| self.root.clone());
        if access_writable(&parent_os) {
            return parent_os.join(&self.config.checkpoint_dir).join(file);
        }
        let base_dir = match &self.config.state_dir {
            Some(d) => d.join("checkpoints"),
            None => std::env::temp_dir().join("jupyter_checkpoints"),
        };
        let rel = loc
            .resolved
            .parent()
            .map(|p| p.api_path().to_string())
            .unwrap_or_default();
        base_dir.join(rel).join(file)
    }

    pub(super) fn checkpoint_target(
        &self,
        caller: &Caller<'_>,
        path: &CanonicalPath,
    ) -> Result<Located> {
        let loc = self.locate(path).map_err(|_| Self::get_not_found(path))?;
        if self.hidden(&loc) || !caller.access.may_read(&loc.resolved) {
            return Err(Self::get_not_found(path));
        }
        Ok(loc)
    }

    pub(super) fn checkpoint_model(file: &Path) -> Result<Checkpoint> {
        let meta = fs::metadata(file)
            .map_err(|e| ContentsError::internal(format!("Reading checkpoint failed: {e}")))?;
        Ok(Checkpoint {
            id: "checkpoint".into(),
            last_modified: format_time(mtime(&meta)),
        })
    }

    pub(super) fn no_such_checkpoint(path: &CanonicalPath, id: &str) -> ContentsError {
        ContentsError::missing(Missing::Checkpoint(id), path)
    }

    /// GET `…/checkpoints`: the file's checkpoints (at most one, id `checkpoint`).
    pub fn list_checkpoints(
        &self,
        caller: &Caller<'_>,
        path: &CanonicalPath,
    ) -> Result<Vec<Checkpoint>> {
        let loc = self.checkpoint_target(caller, path)?;
        let file = self.checkpoint_file(&loc);
        if file.is_file() {
            Ok(vec![Self::checkpoint_model(&file)?])
        } else {
            Ok(Vec::new())
        }
    }

    pub(super) fn create_checkpoint_at(&self, loc: &Located) -> Result<Checkpoint> {
        let meta = fs::metadata(&loc.os).map_err(|_| Self::get_not_found(&loc.request))?;
        if !meta.is_file() {
            return Err(ContentsError::bad_request(format!(
                "Cannot create a checkpoint of a directory: {}",
                loc.request.api_path()
            )));
        }
        let file = self.checkpoint_file(loc);
        if let Some(dir) = file.parent() {
            fs::create_dir_all(dir).map_err(|e| {
                ContentsError::from_io(&e, loc.request.api_path(), "Creating checkpoint")
            })?;
        }
        atomic::copy_with_times(&loc.os, &file, self.journal.as_ref()).map_err(|e| {
            ContentsError::from_io(&e, loc.request.api_path(), "Creating checkpoint")
        })?;
        Self::checkpoint_model(&file)
    }

    /// POST `…/checkpoints`: snapshot the file (201 with the checkpoint).
    pub fn create_checkpoint(
        &self,
        caller: &Caller<'_>,
        path: &CanonicalPath,
    ) -> Result<Checkpoint> {
        let loc = self.checkpoint_target(caller, path)?;
        self.ensure_may_write(caller, &loc)?;
        self.create_checkpoint_at(&loc)
    }

    pub(super) fn checkpoint_for_id(
        &self,
        caller: &Caller<'_>,
        path: &CanonicalPath,
        id: &str,
    ) -> Result<(Located, PathBuf)> {
        let loc = self.checkpoint_target(caller, path)?;
        let file = self.checkpoint_file(&loc);
        if id != "checkpoint" || !file.is_file() {
            return Err(Self::no_such_checkpoint(path, id));
        }
        Ok((loc, file))
    }

    /// POST `…/checkpoints/{id}`: put the checkpoint's content back (atomically).
    pub fn restore_checkpoint(
        &self,
        caller: &Caller<'_>,
        path: &CanonicalPath,
        id: &str,
    ) -> Result<()> {
        let (loc, file) = self.checkpoint_for_id(caller, path, id)?;
        self.ensure_may_write(caller, &loc)?;
        atomic::copy_with_times(&file, &loc.os, self.journal.as_ref())
            .map_err(|e| self.write_error(&loc, &e))
    }

    /// DELETE `…/checkpoints/{id}`.
    pub fn delete_checkpoint(
        &self,
        caller: &Caller<'_>,
        path: &CanonicalPath,
        id: &str,
    ) -> Result<()> {
        let (loc, file) = self.checkpoint_for_id(caller, path, id)?;
        self.ensure_may_write(caller, &loc)?;
        fs::remove_file(&file)
            .map_err(|e| ContentsError::from_io(&e, path.api_path(), "Deleting checkpoint"))
    }
}
