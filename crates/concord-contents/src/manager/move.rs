//! Copying (POST `copy_from`), renaming (PATCH) and deleting (DELETE, to the trash or for good).

use super::{
    handler_path, is_hidden, parse_body_path, ContentsManager, GetOptions, Located, Missing,
};
use crate::access::Caller;
use crate::actions::{ActionKind, ContentsAction};
use crate::atomic;
use crate::error::{ContentsError, Result};
use crate::model::{ContentType, Model};
use crate::notebook;
use crate::pyfmt::repr_str;
use crate::request::{Body, CreateRequest, Field, RenameRequest, SaveModel};
use crate::trash;
use crate::write_check::access_writable;
use concord_authz::CanonicalPath;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Remove `-Copy<digits>.` → `.` (jupyter_server's `copy_pat`).
pub(super) fn strip_copy_suffix(name: &str) -> String {
    let mut out = String::new();
    let mut rest = name;
    while let Some(i) = rest.find("-Copy") {
        let after = &rest[i + 5..];
        let digits = after.len() - after.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if after[digits..].starts_with('.') {
            out.push_str(&rest[..i]);
            out.push('.');
            rest = &after[digits + 1..];
        } else {
            out.push_str(&rest[..i + 5]);
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

impl ContentsManager {
    /// POST `/api/contents/{path}` with its body: a new untitled file, notebook or directory
    /// in the directory `path` (`type`, `ext`), or a copy of `copy_from` into it. The caller
    /// must be able to read `copy_from`; this is checked here.
    pub fn post(
        &self,
        caller: &Caller<'_>,
        path: &CanonicalPath,
        body: Body<CreateRequest>,
    ) -> Result<Model> {
        if let Ok(loc) = self.locate(path) {
            if fs::metadata(&loc.os).is_ok_and(|m| m.is_file()) {
                return Err(ContentsError::bad_request(
                    "Cannot POST to files, use PUT instead.",
                ));
            }
        }
        let Some(request) = body.into_model()? else {
            let model = self.new_untitled(caller, path, None, None)?;
            self.report_saved(&model.path);
            return Ok(model);
        };
        if request.copy_from.is_truthy() {
            let raw_from = request
                .copy_from
                .as_str()
                .ok_or_else(|| ContentsError::bad_request("copy_from must be a string"))?;
            let from = parse_body_path(raw_from)?;
            if !self.config.allow_hidden && (is_hidden(path) || is_hidden(&from)) {
                return Err(ContentsError::bad_request(format!(
                    "Cannot copy file or directory {}",
                    repr_str(handler_path(path))
                )));
            }
            let model = self.copy(caller, &from, path)?;
            self.report_copied(raw_from, &from, &model);
            return Ok(model);
        }
        let model = self.new_untitled(caller, path, request.kind.as_str(), request.ext.as_str())?;
        self.report_saved(&model.path);
        Ok(model)
    }

    /// jupyter_server's actions for a copy: a file is read twice (its `copy` and the base
    /// class's both `get` it), saved at the destination, then `copy` names the source as the
    /// client wrote it; a folder is read, copied as a tree, and its copy read.
    fn report_copied(&self, raw_source: &str, from: &CanonicalPath, copy: &Model) {
        self.listeners.report(|| {
            let (Some(to), Ok(source)) = (self.resolve_api_path(&copy.path), self.resolve(from))
            else {
                return Vec::new();
            };
            let read_source =
                ContentsAction::new(ActionKind::Get, from.api_path(), vec![source.clone()]);
            let read_copy = ContentsAction::new(ActionKind::Get, &copy.path, vec![to.clone()]);
            if copy.kind == ContentType::Directory {
                return vec![read_source, read_copy];
            }
            vec![
                read_source.clone(),
                read_source,
                read_copy,
                ContentsAction::new(ActionKind::Save, &copy.path, vec![to.clone()]),
                ContentsAction::new(ActionKind::Copy, &copy.path, vec![to, source])
                    .with_source(raw_source),
            ]
        });
    }

    /// Copy a file or directory `from` into the directory `to` (as `name-Copy1.ext`), or to
    /// the new path `to`. Needs read on the source (for a folder, on everything in it) and
    /// write on the destination.
    pub fn copy(
        &self,
        caller: &Caller<'_>,
        from: &CanonicalPath,
        to: &CanonicalPath,
    ) -> Result<Model> {
        let missing =
            || ContentsError::not_found(format!("No such file or directory: {}", from.api_path()));
        let src = self.locate(from).map_err(|_| missing())?;
        if self.hidden(&src) || !caller.access.may_read(&src.resolved) {
            return Err(missing());
        }
        let src_meta = fs::metadata(&src.os).map_err(|_| missing())?;
        if !src_meta.is_file() && !src_meta.is_dir() {
            return Err(missing());
        }
        if src.resolved.parent().is_none() {
            return Err(ContentsError::bad_request("Cannot copy the root folder"));
        }
        let to_loc = self.locate(to)?;
        let from_name = from.name();
        let to_is_dir = fs::metadata(&to_loc.os).is_ok_and(|m| m.is_dir());
        let dest = if to_is_dir {
            let name = self.increment_filename(&strip_copy_suffix(from_name), &to_loc.os, "-Copy");
            let request = to.child(&name).map_err(|_| missing())?;
            Located {
                resolved: to_loc.resolved.child(&name).unwrap_or(request.clone()),
                os: to_loc.os.join(&name),
                request,
            }
        } else if src_meta.is_dir() {
            let name = strip_copy_suffix(from_name);
            let request = to.child(&name).map_err(|_| missing())?;
            Located {
                resolved: to_loc.resolved.child(&name).unwrap_or(request.clone()),
                os: to_loc.os.join(&name),
                request,
            }
        } else {
            if let Some(parent) = to.parent() {
                let parent_ok = self
                    .locate(&parent)
                    .ok()
                    .is_some_and(|p| fs::metadata(&p.os).is_ok_and(|m| m.is_dir()));
                if !parent_ok {
                    return Err(ContentsError::not_found(format!(
                        "No such parent directory: {} to copy file in",
                        parent.api_path()
                    )));
                }
            }
            to_loc
        };
        if self.hidden(&dest) {
            return Err(ContentsError::bad_request(format!(
                "Cannot copy file or directory {}",
                repr_str(handler_path(to))
            )));
        }
        self.ensure_may_write(caller, &dest)?;
        if src_meta.is_dir() {
            self.copy_dir(caller, &src, &dest)?;
            return self.model_for(caller, &dest, &GetOptions::metadata_only());
        }
        if fs::metadata(&dest.os).is_ok_and(|m| m.is_dir()) {
            return Err(ContentsError::bad_request(format!(
                "Cannot save {}: it is a directory",
                dest.request.api_path()
            )));
        }
        if from.name().ends_with(".ipynb") {
            // As jupyter_server: read the notebook model and save it at the destination.
            let (checked, _) = self.read_notebook_file(&src)?;
            let mut nb = checked.nb;
            // A read notebook is already in its signed form (transient fields stripped).
            let trusted = self.trust.is_trusted(caller.username, &nb);
            notebook::mark_cells(&mut nb, trusted);
            let model = SaveModel::new("notebook", Some(nb));
            return self.save(caller, &dest, model, None);
        }
        self.check_size(src_meta.len())?;
        let bytes = self.read_bytes(&src)?;
        self.write(&dest, &bytes)?;
        self.model_for(caller, &dest, &GetOptions::metadata_only())
    }

    /// Copy the folder `src` to the new folder `dest`, as jupyter_server's `shutil.copytree`
    /// does (missing parents of `dest` created, `dest` may lie inside `src`), except that
    /// the whole tree must be readable by the caller: a folder holding anything they may
    /// not read is not copied at all (copying around it would silently lose files).
    pub(super) fn copy_dir(
        &self,
        caller: &Caller<'_>,
        src: &Located,
        dest: &Located,
    ) -> Result<()> {
        let too_large = |size: u64| {
            // jupyter_server's message, indentation and line breaks included.
            ContentsError::bad_request(format!(
                "\n                    Can't copy folders larger than {}MB,\n                    \"{}\" is {}\n                ",
                self.config.max_copy_folder_bytes / (1024 * 1024),
                src.request.api_path(),
                human_size(size)
            ))
        };
        let size = disk_usage(&src.os);
        if size > self.config.max_copy_folder_bytes {
            return Err(too_large(size));
        }
        // The whole tree is read before anything is written: the copy is the folder as it
        // was, even when `dest` lies inside it.
        let tree = self.copy_plan(caller, src)?;
        let bytes: u64 = tree.iter().map(|e| e.len).sum();
        if bytes > self.config.max_copy_folder_bytes {
            return Err(too_large(bytes));
        }
        let fail = |e: io::Error| {
            if let Some(refusal) = ContentsError::from_client_io(&e, dest.request.api_path()) {
                return refusal;
            }
            ContentsError::bad_request(format!(
                "Can't copy '{}' into read-only Folder '{}'",
                src.request.api_path(),
                dest.request.api_path()
            ))
        };
        self.create_missing_parents(caller, dest)?;
        fs::create_dir(&dest.os).map_err(fail)?;
        let copied = tree.iter().try_for_each(|entry| {
            let to = dest.os.join(&entry.relative);
            match &entry.source {
                None => fs::create_dir(&to),
                Some(from) => atomic::copy_with_times(from, &to, self.journal.as_ref()).map(|_| ()),
            }
        });
        if let Err(e) = copied {
            // Nothing half-copied is left behind.
            let _ = fs::remove_dir_all(&dest.os);
            return Err(fail(e));
        }
        Ok(())
    }

    /// Every folder and file below `src`, parents first, with the file each copy is read
    /// from. Symlinks are followed when they stay inside the root (and leave out when they
    /// do not, or dangle: those are not part of the tree the API shows); a link back to a
    /// folder being copied is left out (it would never end). Refused when the caller may
    /// not read one of the entries.
    pub(super) fn copy_plan(&self, caller: &Caller<'_>, src: &Located) -> Result<Vec<CopyEntry>> {
        let unreadable = || {
            ContentsError::forbidden(format!(
                "Cannot copy {}: it contains files or folders you may not read",
                src.request.api_path()
            ))
        };
        let failed = |_: io::Error| {
            ContentsError::bad_request(format!(
                "Cannot copy {}: it could not be read",
                src.request.api_path()
            ))
        };
        let mut plan = Vec::new();
        // (os path, canonical path, path relative to `src`, folders from `src` down to it)
        let mut stack = vec![(
            src.os.clone(),
            src.resolved.clone(),
            PathBuf::new(),
            vec![src.resolved.clone()],
        )];
        while let Some((dir_os, dir_path, relative, ancestors)) = stack.pop() {
            let mut entries: Vec<fs::DirEntry> =
                fs::read_dir(&dir_os).map_err(failed)?.flatten().collect();
            entries.sort_by_key(|e| e.file_name());
            for entry in entries {
                let Ok(name) = entry.file_name().into_string() else {
                    return Err(unreadable());
                };
                let Ok(mut child) = dir_path.child(&name) else {
                    return Err(unreadable());
                };
                let mut os = entry.path();
                if entry.file_type().map_err(failed)?.is_symlink() {
                    let Some((target, canonical)) = fs::canonicalize(&os)
                        .ok()
                        .and_then(|t| self.to_canonical(&t).map(|c| (t, c)))
                    else {
                        continue;
                    };
                    child = canonical;
                    os = target;
                }
                if !caller.access.may_read(&child) {
                    return Err(unreadable());
                }
                let meta = fs::metadata(&os).map_err(failed)?;
                let rel = relative.join(&name);
                if meta.is_dir() {
                    if ancestors.iter().any(|a| a.is_within(&child)) {
                        continue;
                    }
                    plan.push(CopyEntry {
                        relative: rel.clone(),
                        source: None,
                        len: 0,
                    });
                    let mut below = ancestors.clone();
                    below.push(child.clone());
                    stack.push((os, child, rel, below));
                } else if meta.is_file() {
                    plan.push(CopyEntry {
                        relative: rel,
                        source: Some(os),
                        len: meta.len(),
                    });
                }
            }
        }
        Ok(plan)
    }

    /// Create the missing folders above `dest` (shutil.copytree's `makedirs`), each one a
    /// write the caller must be allowed.
    pub(super) fn create_missing_parents(&self, caller: &Caller<'_>, dest: &Located) -> Result<()> {
        let mut missing = Vec::new();
        let mut next = dest.request.parent();
        while let Some(dir) = next {
            let loc = self.locate(&dir)?;
            if fs::symlink_metadata(&loc.os).is_ok() {
                break;
            }
            next = dir.parent();
            missing.push(loc);
        }
        for loc in missing.iter().rev() {
            self.ensure_may_write(caller, loc)?;
            fs::create_dir(&loc.os).map_err(|_| {
                ContentsError::bad_request(format!(
                    "Can't create folder '{}'",
                    loc.request.api_path()
                ))
            })?;
        }
        Ok(())
    }

    /// PATCH `/api/contents/{path}` with its body `{"path": new_path}`: rename or move.
    /// Needs write on both paths (the new one is checked here).
    pub fn patch(
        &self,
        caller: &Caller<'_>,
        path: &CanonicalPath,
        request: &RenameRequest,
    ) -> Result<Model> {
        let new_path = match &request.path {
            Field::Absent | Field::Null => path.clone(),
            Field::Given(s) => parse_body_path(s)?,
            Field::Other(_) => return Err(ContentsError::bad_request("path must be a string")),
        };
        if !self.config.allow_hidden && (is_hidden(path) || is_hidden(&new_path)) {
            return Err(ContentsError::bad_request(format!(
                "Cannot rename file or directory {}",
                repr_str(handler_path(path))
            )));
        }
        // Who may hear of it: the readers of both ends as they were before the move.
        let ends = self
            .listeners
            .listening()
            .then(|| Some((self.resolve(path).ok()?, self.resolve(&new_path).ok()?)))
            .flatten();
        if new_path != *path {
            self.rename(caller, path, &new_path)?;
        }
        let (_, model) = self.located_model(caller, &new_path, &GetOptions::metadata_only())?;
        // jupyter_server's `rename`, then the `get` of its `update`.
        self.listeners.report(|| {
            let Some((from, to)) = ends else {
                return Vec::new();
            };
            let mut actions = Vec::with_capacity(2);
            if model.path != path.api_path() {
                actions.push(
                    ContentsAction::new(ActionKind::Rename, &model.path, vec![to.clone(), from])
                        .with_source(path.api_path()),
                );
            }
            actions.push(ContentsAction::new(ActionKind::Get, &model.path, vec![to]));
            actions
        });
        Ok(model)
    }

    /// Rename or move `from` to `to`, with its checkpoint.
    pub fn rename(
        &self,
        caller: &Caller<'_>,
        from: &CanonicalPath,
        to: &CanonicalPath,
    ) -> Result<()> {
        let missing = || ContentsError::missing(Missing::Change, from);
        let src = self.locate_entry(from).map_err(|_| missing())?;
        let dest = self.locate_entry(to)?;
        if self.hidden(&src) || self.hidden(&dest) {
            return Err(ContentsError::bad_request(format!(
                "Cannot rename file or directory {}",
                repr_str(handler_path(from))
            )));
        }
        let src_meta = fs::symlink_metadata(&src.os).map_err(|_| missing())?;
        if !caller.access.may_read(&src.resolved) {
            return Err(missing());
        }
        self.ensure_may_write(caller, &src)?;
        self.ensure_may_write(caller, &dest)?;
        if let Ok(dest_meta) = fs::symlink_metadata(&dest.os) {
            let same = dest_meta.dev() == src_meta.dev() && dest_meta.ino() == src_meta.ino();
            if !same {
                return Err(ContentsError::conflict(format!(
                    "File already exists: {}",
                    to.api_path()
                )));
            }
        }
        if src_meta.is_dir() && dest.resolved.is_within(&src.resolved) {
            return Err(ContentsError::bad_request(format!(
                "Cannot move a directory into itself: {} -> {}",
                from.api_path(),
                to.api_path()
            )));
        }
        let src_checkpoint = self.checkpoint_file(&src);
        fs::rename(&src.os, &dest.os).map_err(|e| {
            if let Some(refusal) = ContentsError::from_client_io(&e, to.api_path()) {
                return refusal;
            }
            if !ContentsError::is_missing_parent(&e) {
                ContentsError::from_io(&e, from.api_path(), "Unknown error renaming file")
            } else if fs::symlink_metadata(&src.os).is_err() {
                missing()
            } else {
                // The destination's directory is missing, or is a file.
                ContentsError::not_found(format!(
                    "No such parent directory: {} to move file in",
                    to.parent()
                        .map(|p| p.api_path().to_string())
                        .unwrap_or_default()
                ))
            }
        })?;
        if src_checkpoint.is_file() {
            let dest_checkpoint = self.checkpoint_file(&dest);
            if let Some(parent) = dest_checkpoint.parent() {
                let _ = fs::create_dir_all(parent);
            }
            let _ = fs::rename(&src_checkpoint, &dest_checkpoint);
        }
        Ok(())
    }

    /// DELETE `/api/contents/{path}`: to the trash (`delete_to_trash`) or for good, with its
    /// checkpoint. Non-empty directories are refused unless trashed or `always_delete_dir`.
    pub fn delete(&self, caller: &Caller<'_>, path: &CanonicalPath) -> Result<()> {
        // Who may hear of it: the readers of where the path led before it was deleted.
        let resolved = self
            .listeners
            .listening()
            .then(|| self.resolve(path).ok())
            .flatten();
        self.delete_entry(caller, path)?;
        self.listeners.report(|| {
            resolved
                .map(|r| {
                    vec![ContentsAction::new(
                        ActionKind::Delete,
                        path.api_path(),
                        vec![r],
                    )]
                })
                .unwrap_or_default()
        });
        Ok(())
    }

    fn delete_entry(&self, caller: &Caller<'_>, path: &CanonicalPath) -> Result<()> {
        if path.is_root() {
            return Err(ContentsError::bad_request("Can't delete root"));
        }
        if !self.config.allow_hidden && is_hidden(path) {
            return Err(ContentsError::bad_request(format!(
                "Cannot delete file or directory {}",
                repr_str(handler_path(path))
            )));
        }
        let loc = self
            .locate_entry(path)
            .map_err(|_| Self::get_not_found(path))?;
        let missing = || ContentsError::missing(Missing::Change, path);
        if self.hidden(&loc) {
            return Err(ContentsError::bad_request(format!(
                "Cannot delete file or directory {}",
                repr_str(handler_path(path))
            )));
        }
        let meta = fs::symlink_metadata(&loc.os).map_err(|_| missing())?;
        if !caller.access.may_read(&loc.resolved) {
            return Err(Self::get_not_found(path));
        }
        self.ensure_may_write(caller, &loc)?;
        let checkpoint = self.checkpoint_file(&loc);
        if self.config.delete_to_trash {
            if !access_writable(&loc.os) && !meta.file_type().is_symlink() {
                return Err(ContentsError::forbidden(format!(
                    "Permission denied: {}",
                    path.api_path()
                )));
            }
            let trash = self
                .config
                .trash_dir
                .clone()
                .or_else(trash::default_trash_dir)
                .ok_or_else(|| {
                    ContentsError::bad_request("send2trash failed: no trash directory")
                })?;
            trash::send_to_trash(&loc.os, &trash)
                .map_err(|e| ContentsError::bad_request(format!("send2trash failed: {e}")))?;
        } else if meta.is_dir() {
            let non_empty = fs::read_dir(&loc.os)
                .map_err(|e| ContentsError::from_io(&e, path.api_path(), "Error listing"))?
                .flatten()
                .any(|e| e.file_name() != self.config.checkpoint_dir.as_str());
            if non_empty && !self.config.always_delete_dir {
                return Err(ContentsError::bad_request(format!(
                    "Directory {} not empty",
                    path.api_path()
                )));
            }
            fs::remove_dir_all(&loc.os)
                .map_err(|e| ContentsError::from_io(&e, path.api_path(), "Error deleting"))?;
        } else {
            fs::remove_file(&loc.os)
                .map_err(|e| ContentsError::from_io(&e, path.api_path(), "Error deleting"))?;
        }
        if checkpoint.is_file() {
            let _ = fs::remove_file(checkpoint);
        }
        Ok(())
    }
}

/// One entry of a folder copy: a folder to create (`source` none) or a file to copy.
pub(super) struct CopyEntry {
    /// Where it goes, relative to the copy.
    relative: PathBuf,
    /// The file read (a symlink's target), for files.
    source: Option<PathBuf>,
    /// The file's size.
    len: u64,
}

/// What `du -s --block-size=1` says of `dir` (jupyter_server's measure before a copy): the
/// blocks of every entry, the folder itself included, symlinks not followed, a file with
/// several links counted once.
pub(super) fn disk_usage(dir: &Path) -> u64 {
    let mut seen = std::collections::HashSet::new();
    let mut total = fs::symlink_metadata(dir).map_or(0, |m| m.blocks() * 512);
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).into_iter().flatten().flatten() {
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            if meta.nlink() > 1 && !meta.is_dir() && !seen.insert((meta.dev(), meta.ino())) {
                continue;
            }
            total += meta.blocks() * 512;
            if meta.is_dir() {
                stack.push(entry.path());
            }
        }
    }
    total
}

/// A folder's size as jupyter_server's `_human_readable_size` writes it (`1.5 KB`).
pub(super) fn human_size(size: u64) -> String {
    if size == 0 {
        return "0 Bytes".into();
    }
    let units = ["Bytes", "KB", "MB", "GB", "TB", "PB"];
    // Integer log2: the same orders as Python's `int(math.log2(size) / 10)`, without libm.
    let order = ((size.ilog2() / 10) as usize).min(units.len() - 1);
    format!(
        "{} {}",
        format_g4(size as f64 / (1u64 << (order * 10)) as f64),
        units[order]
    )
}

/// Python's `format(value, ".4g")` for a positive finite value: four significant digits,
/// trailing zeros dropped, exponent notation outside 1e-4..1e4.
pub(super) fn format_g4(value: f64) -> String {
    // `{:.3e}` rounds to four significant digits and gives the exponent after rounding,
    // which is what %g decides on.
    let sci = format!("{value:.3e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let trim = |s: &str| {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s.to_string()
        }
    };
    if (-4..4).contains(&exp) {
        let decimals = usize::try_from(3 - exp).unwrap_or(0);
        trim(&format!("{value:.decimals$}"))
    } else {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{}e{sign}{:02}", trim(mantissa), exp.abs())
    }
}

#[cfg(test)]
mod tests {
    use super::{format_g4, human_size};

    #[test]
    fn sizes_read_as_jupyter_server_writes_them() {
        // Expected strings from jupyter_server's `_human_readable_size`.
        for (size, text) in [
            (0, "0 Bytes"),
            (1, "1 Bytes"),
            (1000, "1000 Bytes"),
            (1023, "1023 Bytes"),
            (1024, "1 KB"),
            (1536, "1.5 KB"),
            (1_048_575, "1024 KB"),
            (123_456_789, "117.7 MB"),
            (1 << 50, "1 PB"),
            (5 * (1 << 50) + 3, "5 PB"),
        ] {
            assert_eq!(human_size(size), text, "{size}");
        }
        // Python's `format(x, ".4g")`.
        for (value, text) in [
            (9999.6, "1e+04"),
            (20000.0, "2e+04"),
            (0.5, "0.5"),
            (1.23456, "1.235"),
            (0.0001, "0.0001"),
            (0.00001234, "1.234e-05"),
        ] {
            assert_eq!(format_g4(value), text, "{value}");
        }
    }
}
