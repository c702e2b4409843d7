//! Reading: models of files, notebooks and directories (listings filtered per caller),
//! `/files` downloads, and trusting a notebook.

use super::{is_hidden, mtime, ContentsManager, FileFormat, GetOptions, Located};
use crate::access::Caller;
use crate::actions::{ActionKind, ContentsAction};
use crate::atomic;
use crate::dirents::{self, EntryStat};
use crate::error::{ContentsError, Result};
use crate::mimetypes;
use crate::model::{Content, ContentType, Model, Timestamp};
use crate::notebook;
use crate::write_check::{access_writable, WriteCheck};
use base64::Engine;
use concord_authz::CanonicalPath;
use serde_json::Value;
use sha2::Digest;
use std::ffi::CStr;
use std::fs::{self, Metadata};
use std::io;
use std::time::SystemTime;

/// A file opened for `/files`, to be streamed from (never read whole into memory).
#[derive(Debug)]
pub struct FileDownload {
    /// The last path segment.
    pub name: String,
    /// The mimetype guessed from the name, if any.
    pub mimetype: Option<&'static str>,
    /// The open file, at its start.
    pub file: fs::File,
    /// Its size when it was opened.
    pub size: u64,
    /// Modification time (for `Last-Modified`).
    pub modified: SystemTime,
}

/// Python's `st_mtime`/`st_ctime` (`sec + nsec * 1e-9`) formatted as jupyter_server does.
pub(super) fn stat_time((secs, nanos): (i64, u32)) -> Timestamp {
    Timestamp::from_secs(secs as f64 + f64::from(nanos) * 1e-9)
}

/// Python's `base64.encodebytes`: 76-character lines, each ending in a newline.
pub(super) fn encodebytes(bytes: &[u8]) -> String {
    let flat = base64::engine::general_purpose::STANDARD.encode(bytes);
    let mut out = String::with_capacity(flat.len() + flat.len() / 76 + 1);
    for chunk in flat.as_bytes().chunks(76) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out
}

impl ContentsManager {
    /// GET `/api/contents/{path}`: a directory (listing only what the caller may read), a
    /// file or a notebook. Hidden, missing, unreadable and escaping paths are all 404 with
    /// jupyter_server's message. Reported as a `get` (of the directory only, for a listing:
    /// jupyter_server reports every entry too, which would send each entry of a shared
    /// folder a file browser polls to every reader).
    pub fn get(
        &self,
        caller: &Caller<'_>,
        path: &CanonicalPath,
        opts: &GetOptions,
    ) -> Result<Model> {
        let (loc, model) = self.located_model(caller, path, opts)?;
        self.listeners.report(|| {
            vec![ContentsAction::new(
                ActionKind::Get,
                &model.path,
                vec![loc.resolved.clone()],
            )]
        });
        Ok(model)
    }

    /// The model of `path` without content, as [`ContentsManager::get`] answers, but not
    /// reported: for the server's own look at a path (the `/view` page), which jupyter_server
    /// makes without its contents manager's `get`.
    pub fn stat(&self, caller: &Caller<'_>, path: &CanonicalPath) -> Result<Model> {
        self.located_model(caller, path, &GetOptions::metadata_only())
            .map(|(_, model)| model)
    }

    /// What `get` answers, and where it found it.
    pub(super) fn located_model(
        &self,
        caller: &Caller<'_>,
        path: &CanonicalPath,
        opts: &GetOptions,
    ) -> Result<(Located, Model)> {
        let loc = self.locate(path).map_err(|_| Self::get_not_found(path))?;
        if self.hidden(&loc) || !caller.access.may_read(&loc.resolved) {
            return Err(Self::get_not_found(path));
        }
        let model = self.model_for(caller, &loc, opts)?;
        Ok((loc, model))
    }

    pub(super) fn model_for(
        &self,
        caller: &Caller<'_>,
        loc: &Located,
        opts: &GetOptions,
    ) -> Result<Model> {
        let path = &loc.request;
        let meta = fs::metadata(&loc.os).map_err(|_| Self::get_not_found(path))?;
        if meta.is_dir() {
            if let Some(kind) = opts.kind.filter(|k| *k != ContentType::Directory) {
                return Err(ContentsError::bad_request(format!(
                    "{} is a directory, not a {}",
                    path.api_path(),
                    kind.as_str()
                ))
                .with_reason("bad type"));
            }
            self.dir_model(caller, loc, &meta, opts.content)
        } else if !meta.is_file() {
            Err(Self::get_not_found(path))
        } else if opts.kind == Some(ContentType::Notebook)
            || (opts.kind.is_none() && path.name().ends_with(".ipynb"))
        {
            self.notebook_model(caller, loc, &meta, opts)
        } else if opts.kind == Some(ContentType::Directory) {
            Err(
                ContentsError::bad_request(format!("{} is not a directory", path.api_path()))
                    .with_reason("bad type"),
            )
        } else {
            self.file_model(caller, loc, &meta, opts)
        }
    }

    pub(super) fn base_model(
        &self,
        request: &CanonicalPath,
        meta: &Metadata,
        kind: ContentType,
        writable: bool,
    ) -> Model {
        Self::model_of(
            request.name().to_string(),
            request.api_path().to_string(),
            &EntryStat::from(meta),
            kind,
            writable,
        )
    }

    pub(super) fn model_of(
        name: String,
        path: String,
        stat: &EntryStat,
        kind: ContentType,
        writable: bool,
    ) -> Model {
        let last_modified = stat_time(stat.mtime);
        // Most files were last changed when last written: format the time once.
        let created = if stat.ctime == stat.mtime {
            last_modified
        } else {
            stat_time(stat.ctime)
        };
        Model {
            name,
            path,
            kind,
            format: None,
            mimetype: None,
            content: None,
            created,
            last_modified,
            size: if kind == ContentType::Directory {
                None
            } else {
                Some(stat.size)
            },
            writable,
            hash: None,
            hash_algorithm: None,
            message: None,
            modified_time: stat.modified(),
        }
    }

    pub(super) fn writable(&self, caller: &Caller<'_>, loc: &Located) -> bool {
        access_writable(&loc.os) && caller.access.may_write(&loc.resolved)
    }

    pub(super) fn dir_model(
        &self,
        caller: &Caller<'_>,
        loc: &Located,
        meta: &Metadata,
        content: bool,
    ) -> Result<Model> {
        let mut model = self.base_model(
            &loc.request,
            meta,
            ContentType::Directory,
            self.writable(caller, loc),
        );
        if content {
            model.content = Some(Content::Directory(self.list(caller, loc)?));
            model.format = Some("json");
        }
        Ok(model)
    }

    /// The entries of a directory the caller may read, each without content.
    pub(super) fn list(&self, caller: &Caller<'_>, loc: &Located) -> Result<Vec<Model>> {
        struct Entry {
            name: String,
            stat: EntryStat,
            // Set for symlinks: where the entry really is.
            link_target: Option<CanonicalPath>,
        }
        let list_error =
            |e: io::Error| ContentsError::from_io(&e, loc.request.api_path(), "Error listing");
        // Entries are stat'ed and checked relative to the open directory: one path lookup
        // each, no walk of the directory's path.
        let dir = fs::File::open(&loc.os).map_err(list_error)?;
        if !dir.metadata().map_err(list_error)?.is_dir() {
            return Err(list_error(io::Error::from_raw_os_error(libc::ENOTDIR)));
        }
        // The names first, NUL-terminated in one buffer as `statx` takes them; then the
        // status of each, which for a large directory runs on several threads.
        let mut name_bytes = Vec::new();
        let mut found = Vec::new();
        dirents::read_entries(&dir, |raw_name, is_symlink| {
            let Ok(name) = raw_name.to_str() else {
                return;
            };
            if !self.should_list(name) || (!self.config.allow_hidden && name.starts_with('.')) {
                return;
            }
            found.push((name_bytes.len(), is_symlink));
            name_bytes.extend_from_slice(raw_name.to_bytes_with_nul());
        });
        let name_at = |start: usize| -> &CStr {
            name_bytes
                .get(start..)
                .and_then(|rest| CStr::from_bytes_until_nul(rest).ok())
                .unwrap_or_default()
        };
        let to_stat: Vec<&CStr> = found
            .iter()
            .filter(|(_, typed_symlink)| !typed_symlink)
            .map(|&(start, _)| name_at(start))
            .collect();
        let mut stats = dirents::stat_entries(&dir, &to_stat).into_iter();
        let mut entries = Vec::with_capacity(found.len());
        for &(start, typed_symlink) in &found {
            // `stats` holds one status per entry not typed a symlink, in order.
            let own_stat = if typed_symlink {
                None
            } else {
                let Some(stat) = stats.next().flatten() else {
                    continue;
                };
                Some(stat).filter(|s| !s.is_symlink())
            };
            let Ok(name) = name_at(start).to_str() else {
                continue;
            };
            let (stat, link_target) = match own_stat {
                Some(stat) => (stat, None),
                None => {
                    let Ok(target) = fs::canonicalize(loc.os.join(name)) else {
                        continue;
                    };
                    let Some(canonical) = self.to_canonical(&target) else {
                        continue;
                    };
                    if !self.config.allow_hidden && is_hidden(&canonical) {
                        continue;
                    }
                    let Ok(meta) = fs::metadata(&target) else {
                        continue;
                    };
                    (EntryStat::from(&meta), Some(canonical))
                }
            };
            let name = name.to_string();
            if !stat.is_file() && !stat.is_dir() {
                continue;
            }
            entries.push(Entry {
                name,
                stat,
                link_target,
            });
        }
        let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
        let readable = caller.access.readable_children(&loc.resolved, &names);
        let writable = caller.access.writable_children(&loc.resolved, &names);
        let write_check = WriteCheck::for_dir(&dir);
        let mut mimetype_memo = mimetypes::Memo::default();
        let mut out = Vec::with_capacity(entries.len());
        for (i, entry) in entries.into_iter().enumerate() {
            let (may_read, may_write) = match &entry.link_target {
                Some(target) => (
                    caller.access.may_read(target),
                    caller.access.may_write(target),
                ),
                None => (
                    readable.get(i).copied().unwrap_or(false),
                    writable.get(i).copied().unwrap_or(false),
                ),
            };
            if !may_read {
                continue;
            }
            // A name read from the directory is one segment (never `.`, `..`, or holding
            // `/` or NUL): the child's path is the parent's plus the name.
            let path = if loc.request.is_root() {
                entry.name.clone()
            } else {
                let parent = loc.request.api_path();
                let mut path = String::with_capacity(parent.len() + 1 + entry.name.len());
                path.push_str(parent);
                path.push('/');
                path.push_str(&entry.name);
                path
            };
            let kind = if entry.stat.is_dir() {
                ContentType::Directory
            } else if entry.name.ends_with(".ipynb") {
                ContentType::Notebook
            } else {
                ContentType::File
            };
            // A symlink's status is its target's: `faccessat` follows it, as os.access.
            let writable = may_write && write_check.writable(&dir, &entry.name, &entry.stat);
            let mimetype = match kind {
                ContentType::File => mimetype_memo.guess_type(&entry.name),
                _ => None,
            };
            let mut model = Self::model_of(entry.name, path, &entry.stat, kind, writable);
            model.mimetype = mimetype;
            out.push(model);
        }
        Ok(out)
    }

    pub(super) fn read_bytes(&self, loc: &Located) -> Result<Vec<u8>> {
        fs::read(&loc.os).map_err(|e| match e.kind() {
            io::ErrorKind::PermissionDenied => {
                ContentsError::forbidden(format!("Permission denied: {}", loc.request.api_path()))
            }
            _ => ContentsError::bad_request(format!(
                "Cannot read non-file {}",
                loc.request.api_path()
            )),
        })
    }

    pub(super) fn hash_fields(model: &mut Model, bytes: &[u8]) {
        model.hash = Some(hex::encode(sha2::Sha256::digest(bytes)));
        model.hash_algorithm = Some("sha256");
    }

    pub(super) fn file_model(
        &self,
        caller: &Caller<'_>,
        loc: &Located,
        meta: &Metadata,
        opts: &GetOptions,
    ) -> Result<Model> {
        let mut model = self.base_model(
            &loc.request,
            meta,
            ContentType::File,
            self.writable(caller, loc),
        );
        model.mimetype = mimetypes::guess_type(loc.request.name());
        let mut bytes = None;
        if opts.content {
            let raw = self.read_bytes(loc)?;
            let (text, format) = match (opts.format, std::str::from_utf8(&raw)) {
                (None | Some(FileFormat::Text), Ok(text)) => (text.to_string(), "text"),
                (Some(FileFormat::Text), Err(_)) => {
                    return Err(ContentsError::bad_request(format!(
                        "{} is not UTF-8 encoded",
                        loc.request.api_path()
                    ))
                    .with_reason("bad format"))
                }
                _ => (encodebytes(&raw), "base64"),
            };
            if model.mimetype.is_none() {
                model.mimetype = Some(if format == "text" {
                    "text/plain"
                } else {
                    "application/octet-stream"
                });
            }
            model.content = Some(Content::Text(text));
            model.format = Some(format);
            bytes = Some(raw);
        }
        if opts.hash {
            let raw = match bytes {
                Some(b) => b,
                None => self.read_bytes(loc)?,
            };
            Self::hash_fields(&mut model, &raw);
        }
        Ok(model)
    }

    /// Read and parse a notebook; a file that does not parse is replaced by its `.~name`
    /// backup when one is left over from an interrupted save (moved aside as `.invalid`).
    pub(super) fn read_notebook_file(
        &self,
        loc: &Located,
    ) -> Result<(notebook::CheckedNotebook, Vec<u8>)> {
        let raw = self.read_bytes(loc)?;
        let text = std::str::from_utf8(&raw).map_err(|_| {
            ContentsError::bad_request(format!("{} is not UTF-8 encoded", loc.request.api_path()))
                .with_reason("bad format")
        })?;
        match notebook::read_notebook(text) {
            Ok(nb) => Ok((nb, raw)),
            Err(unreadable) => {
                let backup = atomic::backup_path(&loc.os);
                if backup.is_file() {
                    fs::rename(&loc.os, atomic::invalid_path(&loc.os))
                        .and_then(|_| fs::rename(&backup, &loc.os))
                        .map_err(|e| {
                            ContentsError::from_io(&e, loc.request.api_path(), "Restoring backup")
                        })?;
                    return self.read_notebook_file(loc);
                }
                Err(ContentsError::bad_request(format!(
                    "Unreadable Notebook: {} {}",
                    loc.request.api_path(),
                    unreadable.0
                )))
            }
        }
    }

    /// Record that the caller trusts `nb` (in its signed form: as a read produces it).
    pub(super) fn record_trust(&self, caller: &Caller<'_>, nb: &Value) -> Result<()> {
        self.trust
            .sign(caller.username, nb)
            .map_err(|e| ContentsError::internal(format!("Recording trust failed: {e}")))
    }

    pub(super) fn notebook_model(
        &self,
        caller: &Caller<'_>,
        loc: &Located,
        meta: &Metadata,
        opts: &GetOptions,
    ) -> Result<Model> {
        let mut model = self.base_model(
            &loc.request,
            meta,
            ContentType::Notebook,
            self.writable(caller, loc),
        );
        let mut bytes = None;
        if opts.content {
            let (checked, raw) = self.read_notebook_file(loc)?;
            let mut nb = checked.nb;
            // A read notebook is already in its signed form (transient fields stripped).
            let trusted = self.trust.is_trusted(caller.username, &nb);
            notebook::mark_cells(&mut nb, trusted);
            model.content = Some(Content::Notebook(nb));
            model.format = Some("json");
            model.message = checked.validation_message;
            bytes = Some(raw);
        }
        if opts.hash {
            let raw = match bytes {
                Some(b) => b,
                None => self.read_bytes(loc)?,
            };
            Self::hash_fields(&mut model, &raw);
        }
        Ok(model)
    }

    /// `/files/{path}`: a regular file the caller may read, opened.
    pub fn read_file(&self, caller: &Caller<'_>, path: &CanonicalPath) -> Result<FileDownload> {
        let loc = self.locate(path).map_err(|_| Self::get_not_found(path))?;
        if self.hidden(&loc) || !caller.access.may_read(&loc.resolved) {
            return Err(Self::get_not_found(path));
        }
        let meta = fs::metadata(&loc.os).map_err(|_| Self::get_not_found(path))?;
        if !meta.is_file() {
            return Err(Self::get_not_found(path));
        }
        let file = fs::File::open(&loc.os).map_err(|e| match e.kind() {
            io::ErrorKind::PermissionDenied => {
                ContentsError::forbidden(format!("Permission denied: {}", loc.request.api_path()))
            }
            _ => Self::get_not_found(path),
        })?;
        // The status of what was opened: a swap after the check above shows here.
        let meta = file.metadata().map_err(|_| Self::get_not_found(path))?;
        if !meta.is_file() {
            return Err(Self::get_not_found(path));
        }
        Ok(FileDownload {
            name: path.name().to_string(),
            mimetype: mimetypes::guess_type(path.name()),
            file,
            size: meta.len(),
            modified: mtime(&meta),
        })
    }

    /// POST `…/trust`: the caller trusts this notebook (recorded for them only). Reported as
    /// the `get` jupyter_server's `trust_notebook` reads it with.
    pub fn trust(&self, caller: &Caller<'_>, path: &CanonicalPath) -> Result<()> {
        let opts = GetOptions {
            content: true,
            kind: Some(ContentType::Notebook),
            ..Default::default()
        };
        let (loc, model) = self.located_model(caller, path, &opts)?;
        let Some(Content::Notebook(mut nb)) = model.content else {
            return Err(ContentsError::bad_request(format!(
                "{} is not a notebook",
                path.api_path()
            )));
        };
        notebook::mark_cells(&mut nb, true);
        notebook::check_cells(&mut nb);
        notebook::strip_transient(&mut nb);
        self.trust
            .sign(caller.username, &nb)
            .map_err(|e| ContentsError::internal(format!("Recording trust failed: {e}")))?;
        self.listeners.report(|| {
            vec![ContentsAction::new(
                ActionKind::Get,
                path.api_path(),
                vec![loc.resolved],
            )]
        });
        Ok(())
    }
}
