//! The contents service: jupyter_server's `AsyncLargeFileManager` + `FileCheckpoints` +
//! the contents handlers' request logic, confined to a root and checked per path.

use crate::access::Caller;
use crate::config::ContentsConfig;
use crate::error::{ContentsError, ErrorKind, Result};
use crate::fsio::Producer;
use crate::fsio::{self, access_writable, DirEntries, EntryStat, WriteCheck};
use crate::model::{format_time, Checkpoint, Content, ContentType, Model, Timestamp};
use crate::notebook;
use crate::pyfmt::{repr_str, Glob};
use crate::trust::TrustStore;
use crate::upload::{self, RequestBody};
use crate::{mimetypes, trash};
use base64::Engine;
use concord_authz::CanonicalPath;
use serde_json::{Map, Value};
use sha2::Digest;
use std::ffi::CStr;
use std::fs::{self, Metadata, OpenOptions};
use std::io::{self, Seek, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// What a GET asks for (`type`, `format`, `content`, `hash` query parameters).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GetOptions {
    /// Include the content (`content=1`, the default).
    pub content: bool,
    /// Requested type; `None` decides from the path.
    pub kind: Option<ContentType>,
    /// Requested file format: `text` or `base64`; `None` tries text then base64.
    pub format: Option<FileFormat>,
    /// Include `hash` and `hash_algorithm` (`hash=1`).
    pub hash: bool,
}

impl GetOptions {
    /// Parse the raw query parameters as jupyter_server's handler does.
    pub fn from_query(
        kind: Option<&str>,
        format: Option<&str>,
        content: Option<&str>,
        hash: Option<&str>,
    ) -> Result<GetOptions> {
        let format = match format {
            None => None,
            Some("text") => Some(FileFormat::Text),
            Some("base64") => Some(FileFormat::Base64),
            Some(other) => {
                return Err(ContentsError::bad_request(format!(
                    "Format {} is invalid",
                    repr_str(other)
                )))
            }
        };
        let content = match content.unwrap_or("1") {
            "1" => true,
            "0" => false,
            other => {
                return Err(ContentsError::bad_request(format!(
                    "Content {} is invalid",
                    repr_str(other)
                )))
            }
        };
        let hash = match hash.unwrap_or("0") {
            "1" => true,
            "0" => false,
            other => {
                return Err(ContentsError::bad_request(format!(
                    "Hash argument {} is invalid. It must be '0' or '1'.",
                    repr_str(other)
                )))
            }
        };
        Ok(GetOptions {
            content,
            kind: ContentType::from_param(kind),
            format,
            hash,
        })
    }

    /// A model without content (what listings and saves return).
    pub fn metadata_only() -> GetOptions {
        GetOptions {
            content: false,
            ..GetOptions::default()
        }
    }
}

/// The encoding of file content in a model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileFormat {
    /// UTF-8 text.
    Text,
    /// Base64 (with Python's `encodebytes` line breaks).
    Base64,
}

/// The result of a PUT: the model, and whether a new file was created (201) or an existing
/// one saved (200).
#[derive(Clone, Debug)]
pub struct SaveOutcome {
    /// The saved entry, without content.
    pub model: Model,
    /// `true` → 201 Created, `false` → 200.
    pub created: bool,
}

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
    journal: Option<fsio::TempJournal>,
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

/// Python's `st_mtime`/`st_ctime` (`sec + nsec * 1e-9`) formatted as jupyter_server does.
fn stat_time((secs, nanos): (i64, u32)) -> Timestamp {
    Timestamp::from_secs(secs as f64 + f64::from(nanos) * 1e-9)
}

/// Python's `base64.encodebytes`: 76-character lines, each ending in a newline.
fn encodebytes(bytes: &[u8]) -> String {
    let flat = base64::engine::general_purpose::STANDARD.encode(bytes);
    let mut out = String::with_capacity(flat.len() + flat.len() / 76 + 1);
    for chunk in flat.as_bytes().chunks(76) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out
}

/// Python's `base64.decodebytes`: characters outside the alphabet are skipped.
fn decodebytes(text: &str) -> std::result::Result<Vec<u8>, String> {
    let filtered: String = text
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '+' || *c == '/' || *c == '=')
        .collect();
    let trimmed = filtered.split('=').next().unwrap_or("");
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent)
            .with_decode_allow_trailing_bits(true),
    );
    engine
        .decode(trimmed)
        .map_err(|_| "Incorrect padding".to_string())
}

/// One chunk of an upload: decoded in memory, or spooled to disk as it arrived.
enum ChunkContent<'j> {
    Bytes(Vec<u8>),
    Spooled(upload::Spool<'j>),
}

impl ChunkContent<'_> {
    fn len(&self) -> u64 {
        match self {
            ChunkContent::Bytes(b) => b.len() as u64,
            ChunkContent::Spooled(s) => s.len,
        }
    }
}

/// Counts what passes through to `out`.
struct CountingWriter<W: Write> {
    out: W,
    len: u64,
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.out.write(buf)?;
        self.len += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// Remove `-Copy<digits>.` → `.` (jupyter_server's `copy_pat`).
fn strip_copy_suffix(name: &str) -> String {
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
                let (journal, removed) =
                    fsio::TempJournal::open(&dir.join("temp-files")).map_err(|e| {
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
        })
    }

    /// The settings in force.
    pub fn config(&self) -> &ContentsConfig {
        &self.config
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

    // ---------------------------------------------------------------- GET

    /// GET `/api/contents/{path}`: a directory (listing only what the caller may read), a
    /// file or a notebook. Hidden, missing, unreadable and escaping paths are all 404 with
    /// jupyter_server's message.
    pub fn get(
        &self,
        caller: &Caller<'_>,
        path: &CanonicalPath,
        opts: &GetOptions,
    ) -> Result<Model> {
        let loc = self.locate(path).map_err(|_| Self::get_not_found(path))?;
        if self.hidden(&loc) || !caller.access.may_read(&loc.resolved) {
            return Err(Self::get_not_found(path));
        }
        self.model_for(caller, &loc, opts)
    }

    fn model_for(&self, caller: &Caller<'_>, loc: &Located, opts: &GetOptions) -> Result<Model> {
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

    fn base_model(
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

    fn model_of(
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

    fn writable(&self, caller: &Caller<'_>, loc: &Located) -> bool {
        access_writable(&loc.os) && caller.access.may_write(&loc.resolved)
    }

    fn dir_model(
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
    fn list(&self, caller: &Caller<'_>, loc: &Located) -> Result<Vec<Model>> {
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
        let mut reader = DirEntries::new(&dir);
        while let Some(entry) = reader.next_entry() {
            let Ok(name) = entry.name.to_str() else {
                continue;
            };
            if !self.should_list(name) || (!self.config.allow_hidden && name.starts_with('.')) {
                continue;
            }
            found.push((name_bytes.len(), entry.is_symlink));
            name_bytes.extend_from_slice(entry.name.to_bytes_with_nul());
        }
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
        let mut stats = fsio::stat_entries(&dir, &to_stat).into_iter();
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

    fn read_bytes(&self, loc: &Located) -> Result<Vec<u8>> {
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

    fn hash_fields(model: &mut Model, bytes: &[u8]) {
        model.hash = Some(hex::encode(sha2::Sha256::digest(bytes)));
        model.hash_algorithm = Some("sha256");
    }

    fn file_model(
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
    fn read_notebook_file(&self, loc: &Located) -> Result<(notebook::CheckedNotebook, Vec<u8>)> {
        let raw = self.read_bytes(loc)?;
        let text = std::str::from_utf8(&raw).map_err(|_| {
            ContentsError::bad_request(format!("{} is not UTF-8 encoded", loc.request.api_path()))
                .with_reason("bad format")
        })?;
        match notebook::read_notebook(text) {
            Ok(nb) => Ok((nb, raw)),
            Err(unreadable) => {
                let backup = fsio::backup_path(&loc.os);
                if backup.is_file() {
                    fs::rename(&loc.os, fsio::invalid_path(&loc.os))
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
    fn record_trust(&self, caller: &Caller<'_>, nb: &Value) -> Result<()> {
        self.trust
            .sign(caller.username, nb)
            .map_err(|e| ContentsError::internal(format!("Recording trust failed: {e}")))
    }

    fn notebook_model(
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

    // ---------------------------------------------------------------- PUT

    /// PUT `/api/contents/{path}` with the parsed JSON body: save an existing file, create or
    /// upload a new one (including chunked uploads), or (empty body) a new untitled entry in
    /// the directory `path`.
    pub fn put(
        &self,
        caller: &Caller<'_>,
        path: &CanonicalPath,
        body: Option<Value>,
    ) -> Result<SaveOutcome> {
        match body_object(body)? {
            Some(model) => self.put_model(caller, path, model, None),
            None => Ok(SaveOutcome {
                model: self.new_untitled(caller, path, None, None)?,
                created: true,
            }),
        }
    }

    /// [`ContentsManager::put`] reading the body as it arrives: a file's `content` string
    /// goes to disk as it is read (into the temp file that then replaces the target, when
    /// the model names the file's type and format before its content), so memory does not
    /// grow with the size of an upload. `body` is told which parts are kept in memory.
    pub fn put_stream(
        &self,
        caller: &Caller<'_>,
        path: &CanonicalPath,
        body: &mut dyn RequestBody,
    ) -> Result<SaveOutcome> {
        // Beside the target when the target can be replaced by a rename of it.
        let beside = self.locate(path).ok().filter(|loc| {
            !self.hidden(loc)
                && caller.access.may_write(&loc.resolved)
                && matches!(fsio::replacement(&loc.os), Ok(fsio::Replacement::Rename(_)))
        });
        let mut open_spool = |_: &Map<String, Value>| -> Result<upload::SpoolFile<'_>> {
            if let Some(loc) = &beside {
                if let Ok(tmp) = fsio::TempFile::beside(&loc.os, self.journal.as_ref()) {
                    return Ok(upload::SpoolFile::Beside(tmp));
                }
            }
            let dir = self
                .config
                .state_dir
                .clone()
                .unwrap_or_else(std::env::temp_dir);
            tempfile::tempfile_in(&dir)
                .map(upload::SpoolFile::Detached)
                .map_err(|e| ContentsError::internal(format!("Cannot hold the upload: {e}")))
        };
        let parsed = upload::read_put_body(body, self.config.max_save_bytes, &mut open_spool);
        match parsed {
            Ok(upload::PutBody::Empty) => self.put(caller, path, None),
            Ok(upload::PutBody::Value(value)) => self.put(caller, path, Some(value)),
            Ok(upload::PutBody::Model { model, content }) => {
                self.put_model(caller, path, model, Some(content))
            }
            Err(upload::ReadError::Invalid) => Err(ContentsError::bad_request(
                "Invalid JSON in body of request",
            )),
            Err(upload::ReadError::TooLarge) => {
                let limit = self.config.max_save_bytes.unwrap_or(u64::MAX);
                Err(ContentsError::too_large(format!(
                    "File too large: the content exceeds the limit of {limit} bytes"
                )))
            }
            Err(upload::ReadError::Refused(e)) => Err(e),
            Err(upload::ReadError::Spool(e)) => {
                Err(
                    ContentsError::from_client_io(&e, path.api_path()).unwrap_or_else(|| {
                        ContentsError::internal(format!(
                            "Unexpected error while saving file: {} {e}",
                            path.api_path()
                        ))
                    }),
                )
            }
        }
    }

    fn put_model(
        &self,
        caller: &Caller<'_>,
        path: &CanonicalPath,
        mut model: Map<String, Value>,
        spooled: Option<upload::Spool<'_>>,
    ) -> Result<SaveOutcome> {
        if model.get("copy_from").is_some_and(truthy) {
            return Err(ContentsError::bad_request(
                "Cannot copy with PUT, only POST",
            ));
        }
        let refuse_hidden = || {
            ContentsError::bad_request(format!(
                "Cannot create file or directory {}",
                repr_str(handler_path(path))
            ))
        };
        if !self.config.allow_hidden {
            if let Some(body_path) = model
                .get("path")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
            {
                if is_hidden(&parse_body_path(body_path)?) {
                    return Err(refuse_hidden());
                }
            }
        }
        let loc = self.locate(path)?;
        if self.hidden(&loc) {
            return Err(refuse_hidden());
        }
        self.ensure_may_write(caller, &loc)?;
        normalise_type(&mut model);
        let exists = fs::metadata(&loc.os).map(|m| m.is_file()).unwrap_or(false);
        if exists {
            let model = self.save(caller, &loc, model, spooled)?;
            Ok(SaveOutcome {
                model,
                created: false,
            })
        } else {
            let created = !self.staging_path(&loc.os).exists();
            let model = self.new_entry(caller, &loc, model, spooled)?;
            Ok(SaveOutcome { model, created })
        }
    }

    /// jupyter_server's `new`: fill in a type and empty content, then save.
    fn new_entry(
        &self,
        caller: &Caller<'_>,
        loc: &Located,
        mut model: Map<String, Value>,
        spooled: Option<upload::Spool<'_>>,
    ) -> Result<Model> {
        if !model.contains_key("type") {
            let kind = if loc.request.name().ends_with(".ipynb") {
                "notebook"
            } else {
                "file"
            };
            model.insert("type".into(), Value::from(kind));
        }
        let kind = model
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("file")
            .to_string();
        if !model.contains_key("content") && kind != "directory" {
            if kind == "notebook" {
                model.insert("content".into(), notebook::new_notebook());
                model.insert("format".into(), Value::from("json"));
            } else {
                model.insert("content".into(), Value::from(""));
                model.insert("type".into(), Value::from("file"));
                model.insert("format".into(), Value::from("text"));
            }
        }
        self.save(caller, loc, model, spooled)
    }

    fn save(
        &self,
        caller: &Caller<'_>,
        loc: &Located,
        mut model: Map<String, Value>,
        spooled: Option<upload::Spool<'_>>,
    ) -> Result<Model> {
        if let Some(chunk) = model.get("chunk").filter(|c| !c.is_null()) {
            let chunk = chunk
                .as_i64()
                .ok_or_else(|| ContentsError::bad_request("chunk must be an integer"))?;
            return self.save_chunk(caller, loc, &model, chunk, spooled);
        }
        let kind = model
            .get("type")
            .and_then(Value::as_str)
            .ok_or_else(|| ContentsError::bad_request("No file type provided"))?;
        if !model.contains_key("content") && kind != "directory" {
            return Err(ContentsError::bad_request("No file content provided"));
        }
        let mut message = None;
        match kind {
            "notebook" => {
                let content = match spooled {
                    Some(string) => Value::String(
                        string
                            .into_string()
                            .map_err(|e| self.write_error(loc, &e))?,
                    ),
                    None => model.shift_remove("content").unwrap_or(Value::Null),
                };
                message = self.save_notebook(caller, loc, content)?;
            }
            "file" => match spooled {
                Some(spool) => {
                    let spool = self.decoded_spool(loc, &model, spool)?;
                    self.check_size(spool.len)?;
                    self.write_spool(loc, spool)?;
                }
                None => {
                    let bytes = self.decode_file_content(loc, &model)?;
                    self.check_size(bytes.len() as u64)?;
                    self.write(loc, &bytes)?;
                }
            },
            "directory" => self.save_directory(loc)?,
            other => {
                return Err(ContentsError::bad_request(format!(
                    "Unhandled contents type: {other}"
                )))
            }
        }
        let mut saved = self.model_for(caller, loc, &GetOptions::metadata_only())?;
        saved.message = message;
        Ok(saved)
    }

    fn decode_file_content(&self, loc: &Located, model: &Map<String, Value>) -> Result<Vec<u8>> {
        let format = model.get("format").and_then(Value::as_str);
        if !matches!(format, Some("text") | Some("base64")) {
            return Err(ContentsError::bad_request(
                "Must specify format of file contents as 'text' or 'base64'",
            ));
        }
        let encoding_error = |why: &str| {
            ContentsError::bad_request(format!(
                "Encoding error saving {}: {why}",
                loc.request.api_path()
            ))
        };
        let text = model
            .get("content")
            .and_then(Value::as_str)
            .ok_or_else(|| encoding_error("content must be a string"))?;
        if format == Some("text") {
            Ok(text.as_bytes().to_vec())
        } else {
            decodebytes(text).map_err(|e| encoding_error(&e))
        }
    }

    fn write(&self, loc: &Located, bytes: &[u8]) -> Result<()> {
        self.refuse_directory(loc)?;
        fsio::write_atomic_with(&loc.os, &mut &bytes[..], self.journal.as_ref())
            .map_err(|e| self.write_error(loc, &e))
    }

    fn refuse_directory(&self, loc: &Located) -> Result<()> {
        if fs::metadata(&loc.os).is_ok_and(|m| m.is_dir()) {
            return Err(ContentsError::bad_request(format!(
                "Cannot save {}: it is a directory",
                loc.request.api_path()
            )));
        }
        Ok(())
    }

    /// A spooled `content` as the file's bytes: checked against the model's format as
    /// [`Self::decode_file_content`] checks, decoded now if it was spooled as the string.
    fn decoded_spool<'j>(
        &'j self,
        loc: &Located,
        model: &Map<String, Value>,
        mut spool: upload::Spool<'j>,
    ) -> Result<upload::Spool<'j>> {
        let format = upload::Format::of(model).ok_or_else(|| {
            ContentsError::bad_request("Must specify format of file contents as 'text' or 'base64'")
        })?;
        let bad_encoding = || {
            ContentsError::bad_request(format!(
                "Encoding error saving {}: Incorrect padding",
                loc.request.api_path()
            ))
        };
        if spool.bad_encoding && spool.decoded == Some(format) {
            return Err(bad_encoding());
        }
        match (spool.decoded, format) {
            (Some(done), _) if done == format => return Ok(spool),
            (Some(_), _) => {
                // Decoded as the format named before the content; another named after it.
                return Err(ContentsError::bad_request(format!(
                    "Encoding error saving {}: the model names two formats",
                    loc.request.api_path()
                )));
            }
            (None, upload::Format::Text) => {
                spool.decoded = Some(upload::Format::Text);
                return Ok(spool);
            }
            (None, upload::Format::Base64) => {}
        }
        // The string was spooled before its format was known: decode it into another file.
        let mut decoded = match fsio::TempFile::beside(&loc.os, self.journal.as_ref()) {
            Ok(tmp) => upload::SpoolFile::Beside(tmp),
            Err(_) => upload::SpoolFile::Detached(
                tempfile::tempfile_in(
                    self.config
                        .state_dir
                        .clone()
                        .unwrap_or_else(std::env::temp_dir),
                )
                .map_err(|e| self.write_error(loc, &e))?,
            ),
        };
        let out = match &mut decoded {
            upload::SpoolFile::Beside(tmp) => tmp.file(),
            upload::SpoolFile::Detached(file) => file,
        };
        let mut counted = CountingWriter { out, len: 0 };
        let source = spool.reader().map_err(|e| self.write_error(loc, &e))?;
        upload::DecodeFrom(source)
            .produce(&mut counted)
            .map_err(|e| {
                if upload::is_bad_padding(&e) {
                    bad_encoding()
                } else {
                    self.write_error(loc, &e)
                }
            })?;
        let len = counted.len;
        Ok(upload::Spool {
            file: decoded,
            decoded: Some(format),
            len,
            bad_encoding: false,
        })
    }

    /// Replace the file with a spool of its decoded bytes: the spool itself is renamed over
    /// it when it was written beside it; otherwise it is copied, as any save.
    fn write_spool(&self, loc: &Located, spool: upload::Spool<'_>) -> Result<()> {
        self.refuse_directory(loc)?;
        let replacement = fsio::replacement(&loc.os).map_err(|e| self.write_error(loc, &e))?;
        match (spool.file, replacement) {
            (upload::SpoolFile::Beside(tmp), fsio::Replacement::Rename(old))
                if tmp.path().parent() == loc.os.parent() =>
            {
                tmp.commit(&loc.os, old.as_ref())
            }
            (upload::SpoolFile::Beside(mut tmp), _) => {
                let source = tmp.file();
                source.seek(io::SeekFrom::Start(0)).and_then(|_| {
                    fsio::write_atomic_with(
                        &loc.os,
                        &mut fsio::CopyFrom(source),
                        self.journal.as_ref(),
                    )
                })
            }
            (upload::SpoolFile::Detached(mut file), _) => {
                file.seek(io::SeekFrom::Start(0)).and_then(|_| {
                    fsio::write_atomic_with(
                        &loc.os,
                        &mut fsio::CopyFrom(&mut file),
                        self.journal.as_ref(),
                    )
                })
            }
        }
        .map_err(|e| self.write_error(loc, &e))
    }

    fn write_error(&self, loc: &Located, e: &io::Error) -> ContentsError {
        if ContentsError::is_missing_parent(e) {
            // A parent that is missing, or is a file (ENOTDIR).
            ContentsError::missing(Missing::Save, &loc.request)
        } else {
            ContentsError::from_io(
                e,
                loc.request.api_path(),
                "Unexpected error while saving file",
            )
        }
    }

    /// Validate, sign (per user) and write a notebook; returns the validation message when
    /// invalid notebooks are accepted.
    fn save_notebook(
        &self,
        caller: &Caller<'_>,
        loc: &Located,
        content: Value,
    ) -> Result<Option<String>> {
        let mut nb = content;
        notebook::check_structure(&nb)
            .map_err(|why| ContentsError::bad_request(format!("Invalid notebook model: {why}")))?;
        let message = notebook::validate(&mut nb);
        if let (Some(m), true) = (&message, self.config.reject_invalid_notebooks) {
            return Err(ContentsError::bad_request(m.clone()).with_reason("invalid notebook"));
        }
        let trusted = notebook::check_cells(&mut nb);
        notebook::strip_transient(&mut nb);
        if trusted {
            // Sign the form a later read produces (lines rejoined, transient fields gone):
            // the same signature as `nb`'s unless reading back could differ.
            if notebook::signs_as_written(&nb) {
                self.record_trust(caller, &nb)?;
            } else {
                let text = notebook::notebook_file_text(&nb);
                if let Ok(reread) = notebook::read_notebook(&text) {
                    self.record_trust(caller, &reread.nb)?;
                }
            }
        }
        let bytes = notebook::notebook_into_file_text(nb).into_bytes();
        self.check_size(bytes.len() as u64)?;
        self.write(loc, &bytes)?;
        // One checkpoint should always exist for notebooks.
        if !self.checkpoint_file(loc).is_file() {
            self.create_checkpoint_at(loc)?;
        }
        Ok(message)
    }

    fn save_directory(&self, loc: &Located) -> Result<()> {
        match fs::metadata(&loc.os) {
            Ok(m) if m.is_dir() => Ok(()),
            Ok(_) => Err(ContentsError::bad_request(format!(
                "Not a directory: {}",
                loc.request.api_path()
            ))),
            Err(_) => fs::create_dir(&loc.os).map_err(|e| match e.kind() {
                io::ErrorKind::NotFound | io::ErrorKind::NotADirectory => {
                    ContentsError::not_found(format!(
                        "No such parent directory: {} to create directory in",
                        loc.request
                            .parent()
                            .map(|p| p.api_path().to_string())
                            .unwrap_or_default()
                    ))
                }
                _ => ContentsError::from_io(&e, loc.request.api_path(), "Error creating directory"),
            }),
        }
    }

    fn staging_path(&self, os: &Path) -> PathBuf {
        let name = os
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        os.with_file_name(format!(".~{name}.upload"))
    }

    /// Chunked upload (jupyter_server's `LargeFileManager`): chunk 1 starts, later chunks
    /// append, chunk -1 appends and finishes. Chunks collect in a hidden staging file that
    /// replaces the target atomically at the end, so an abandoned upload never damages it.
    fn save_chunk(
        &self,
        caller: &Caller<'_>,
        loc: &Located,
        model: &Map<String, Value>,
        chunk: i64,
        spooled: Option<upload::Spool<'_>>,
    ) -> Result<Model> {
        let kind = model
            .get("type")
            .and_then(Value::as_str)
            .ok_or_else(|| ContentsError::bad_request("No file type provided"))?;
        if kind != "file" {
            return Err(ContentsError::bad_request(format!(
                "File type \"{kind}\" is not supported for large file transfer"
            )));
        }
        if !model.contains_key("content") {
            return Err(ContentsError::bad_request("No file content provided"));
        }
        let mut content = match spooled {
            Some(spool) => ChunkContent::Spooled(self.decoded_spool(loc, model, spool)?),
            None => ChunkContent::Bytes(self.decode_file_content(loc, model)?),
        };
        self.refuse_directory(loc)?;
        let staging = self.staging_path(&loc.os);
        let io_err = |e: io::Error| self.write_error(loc, &e);
        if chunk == 1 {
            let _ = fs::remove_file(&staging);
        } else if !staging.exists() {
            // Appending without a first chunk appends to the file itself, as jupyter_server does.
            if let Ok(existing) = fs::File::open(&loc.os) {
                fsio::write_atomic_with(
                    &staging,
                    &mut fsio::CopyFrom(existing),
                    self.journal.as_ref(),
                )
                .map_err(io_err)?;
            }
        }
        let already = fs::metadata(&staging).map(|m| m.len()).unwrap_or(0);
        if let Err(e) = self.check_size(already + content.len()) {
            let _ = fs::remove_file(&staging);
            return Err(e);
        }
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o666)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&staging)
            .map_err(io_err)?;
        match &mut content {
            ChunkContent::Bytes(bytes) => file.write_all(bytes),
            ChunkContent::Spooled(spool) => spool
                .reader()
                .and_then(|source| io::copy(source, &mut file).map(|_| ())),
        }
        .and_then(|_| file.flush())
        .map_err(io_err)?;
        drop(content);
        if chunk == -1 {
            file.sync_all().map_err(io_err)?;
            if let Ok(old) = fs::metadata(&loc.os) {
                let _ = file.set_permissions(fs::Permissions::from_mode(old.mode() & 0o7777));
            }
            drop(file);
            fs::rename(&staging, &loc.os).map_err(io_err)?;
            return self.model_for(caller, loc, &GetOptions::metadata_only());
        }
        drop(file);
        let meta = fs::metadata(&staging).map_err(io_err)?;
        let writable = access_writable(&staging) && caller.access.may_write(&loc.resolved);
        let mut model = self.base_model(&loc.request, &meta, ContentType::File, writable);
        model.mimetype = mimetypes::guess_type(loc.request.name());
        Ok(model)
    }

    // ---------------------------------------------------------------- POST

    /// POST `/api/contents/{path}` with the parsed JSON body: a new untitled file, notebook
    /// or directory in the directory `path` (`type`, `ext`), or a copy of `copy_from` into
    /// it. The caller must be able to read `copy_from`; this is checked here.
    pub fn post(
        &self,
        caller: &Caller<'_>,
        path: &CanonicalPath,
        body: Option<Value>,
    ) -> Result<Model> {
        if let Ok(loc) = self.locate(path) {
            if fs::metadata(&loc.os).is_ok_and(|m| m.is_file()) {
                return Err(ContentsError::bad_request(
                    "Cannot POST to files, use PUT instead.",
                ));
            }
        }
        let Some(model) = body_object(body)? else {
            return self.new_untitled(caller, path, None, None);
        };
        if let Some(from) = model.get("copy_from").filter(|v| truthy(v)) {
            let from = from
                .as_str()
                .ok_or_else(|| ContentsError::bad_request("copy_from must be a string"))?;
            let from = parse_body_path(from)?;
            if !self.config.allow_hidden && (is_hidden(path) || is_hidden(&from)) {
                return Err(ContentsError::bad_request(format!(
                    "Cannot copy file or directory {}",
                    repr_str(handler_path(path))
                )));
            }
            return self.copy(caller, &from, path);
        }
        let ext = model.get("ext").and_then(Value::as_str);
        let kind = model.get("type").and_then(Value::as_str);
        self.new_untitled(caller, path, kind, ext)
    }

    fn exists_entry(os: &Path) -> bool {
        fs::symlink_metadata(os).is_ok()
    }

    /// jupyter_server's `increment_filename`: `Untitled.ipynb`, `Untitled1.ipynb`, ...
    fn increment_filename(&self, filename: &str, dir_os: &Path, insert: &str) -> String {
        let (mut base, mut suffix) = match filename.rfind('.') {
            Some(i) => (&filename[..i], &filename[i..]),
            None => (filename, ""),
        };
        if suffix != ".ipynb" {
            (base, suffix) = match filename.find('.') {
                Some(i) => (&filename[..i], &filename[i..]),
                None => (filename, ""),
            };
        }
        let mut i = 0u64;
        loop {
            let name = if i == 0 {
                format!("{base}{suffix}")
            } else {
                format!("{base}{insert}{i}{suffix}")
            };
            if !Self::exists_entry(&dir_os.join(&name)) {
                return name;
            }
            i += 1;
        }
    }

    /// A new untitled entry in directory `dir`.
    pub fn new_untitled(
        &self,
        caller: &Caller<'_>,
        dir: &CanonicalPath,
        kind: Option<&str>,
        ext: Option<&str>,
    ) -> Result<Model> {
        let no_dir = || ContentsError::missing(Missing::CreateIn, dir);
        let loc = self.locate(dir).map_err(|_| no_dir())?;
        if self.hidden(&loc) {
            return Err(ContentsError::bad_request(format!(
                "Cannot create file or directory {}",
                repr_str(handler_path(dir))
            )));
        }
        if !fs::metadata(&loc.os).is_ok_and(|m| m.is_dir())
            || !caller.access.may_read(&loc.resolved)
        {
            return Err(no_dir());
        }
        let mut ext = ext.unwrap_or("").to_string();
        let kind = match ContentType::from_param(kind) {
            Some(k) => k,
            None if ext == ".ipynb" => ContentType::Notebook,
            None => ContentType::File,
        };
        let (untitled, insert) = match kind {
            ContentType::Directory => (&self.config.untitled_directory, " "),
            ContentType::Notebook => {
                ext = ".ipynb".into();
                (&self.config.untitled_notebook, "")
            }
            ContentType::File => (&self.config.untitled_file, ""),
        };
        let name = self.increment_filename(&format!("{untitled}{ext}"), &loc.os, insert);
        let request = dir
            .child(&name)
            .map_err(|_| ContentsError::bad_request(format!("Invalid file name: {name}")))?;
        let target = Located {
            resolved: loc.resolved.child(&name).unwrap_or(request.clone()),
            os: loc.os.join(&name),
            request,
        };
        if !self.config.allow_hidden && is_hidden(&target.request) {
            return Err(ContentsError::bad_request(format!(
                "Cannot create file or directory {}",
                repr_str(handler_path(&target.request))
            )));
        }
        self.ensure_may_write(caller, &target)?;
        let mut model = Map::new();
        model.insert("type".into(), Value::from(kind.as_str()));
        self.new_entry(caller, &target, model, None)
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
            let mut model = Map::new();
            model.insert("type".into(), Value::from("notebook"));
            model.insert("content".into(), nb);
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
    fn copy_dir(&self, caller: &Caller<'_>, src: &Located, dest: &Located) -> Result<()> {
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
                Some(from) => fsio::copy_with_times(from, &to, self.journal.as_ref()).map(|_| ()),
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
    fn copy_plan(&self, caller: &Caller<'_>, src: &Located) -> Result<Vec<CopyEntry>> {
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
    fn create_missing_parents(&self, caller: &Caller<'_>, dest: &Located) -> Result<()> {
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

    // ---------------------------------------------------------------- PATCH

    /// PATCH `/api/contents/{path}` with the parsed JSON body `{"path": new_path}`: rename or
    /// move. Needs write on both paths (the new one is checked here).
    pub fn patch(
        &self,
        caller: &Caller<'_>,
        path: &CanonicalPath,
        body: Option<Value>,
    ) -> Result<Model> {
        let model = match body {
            None => return Err(ContentsError::bad_request("JSON body missing")),
            Some(Value::Object(m)) => m,
            Some(_) => return Err(ContentsError::bad_request("JSON body must be an object")),
        };
        let new_path = match model.get("path") {
            None | Some(Value::Null) => path.clone(),
            Some(Value::String(s)) => parse_body_path(s)?,
            Some(_) => return Err(ContentsError::bad_request("path must be a string")),
        };
        if !self.config.allow_hidden && (is_hidden(path) || is_hidden(&new_path)) {
            return Err(ContentsError::bad_request(format!(
                "Cannot rename file or directory {}",
                repr_str(handler_path(path))
            )));
        }
        if new_path != *path {
            self.rename(caller, path, &new_path)?;
        }
        self.get(caller, &new_path, &GetOptions::metadata_only())
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

    // ---------------------------------------------------------------- DELETE

    /// DELETE `/api/contents/{path}`: to the trash (`delete_to_trash`) or for good, with its
    /// checkpoint. Non-empty directories are refused unless trashed or `always_delete_dir`.
    pub fn delete(&self, caller: &Caller<'_>, path: &CanonicalPath) -> Result<()> {
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

    // ---------------------------------------------------------------- checkpoints

    /// Where `loc`'s checkpoint lives: `dir/.ipynb_checkpoints/name-checkpoint.ext`, or under
    /// the state directory (else the system temp dir) when `dir` is not writable.
    fn checkpoint_file(&self, loc: &Located) -> PathBuf {
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

    fn checkpoint_target(&self, caller: &Caller<'_>, path: &CanonicalPath) -> Result<Located> {
        let loc = self.locate(path).map_err(|_| Self::get_not_found(path))?;
        if self.hidden(&loc) || !caller.access.may_read(&loc.resolved) {
            return Err(Self::get_not_found(path));
        }
        Ok(loc)
    }

    fn checkpoint_model(file: &Path) -> Result<Checkpoint> {
        let meta = fs::metadata(file)
            .map_err(|e| ContentsError::internal(format!("Reading checkpoint failed: {e}")))?;
        Ok(Checkpoint {
            id: "checkpoint".into(),
            last_modified: format_time(mtime(&meta)),
        })
    }

    fn no_such_checkpoint(path: &CanonicalPath, id: &str) -> ContentsError {
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

    fn create_checkpoint_at(&self, loc: &Located) -> Result<Checkpoint> {
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
        fsio::copy_with_times(&loc.os, &file, self.journal.as_ref()).map_err(|e| {
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

    fn checkpoint_for_id(
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
        fsio::copy_with_times(&file, &loc.os, self.journal.as_ref())
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

    // ---------------------------------------------------------------- trust

    /// POST `…/trust`: the caller trusts this notebook (recorded for them only).
    pub fn trust(&self, caller: &Caller<'_>, path: &CanonicalPath) -> Result<()> {
        let opts = GetOptions {
            content: true,
            kind: Some(ContentType::Notebook),
            ..Default::default()
        };
        let model = self.get(caller, path, &opts)?;
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
            .map_err(|e| ContentsError::internal(format!("Recording trust failed: {e}")))
    }
}

/// One entry of a folder copy: a folder to create (`source` none) or a file to copy.
struct CopyEntry {
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
fn disk_usage(dir: &Path) -> u64 {
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
fn human_size(size: u64) -> String {
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
fn format_g4(value: f64) -> String {
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

fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// A request body as jupyter_server's `if model:` sees it: absent or falsy → `None`.
fn body_object(body: Option<Value>) -> Result<Option<Map<String, Value>>> {
    match body {
        None => Ok(None),
        Some(v) if !truthy(&v) => Ok(None),
        Some(Value::Object(m)) => Ok(Some(m)),
        Some(_) => Err(ContentsError::bad_request("JSON body must be an object")),
    }
}

fn normalise_type(model: &mut Map<String, Value>) {
    let kind = model.get("type");
    let keep = match kind {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => ["", "directory", "file", "notebook"].contains(&s.as_str()),
        Some(_) => false,
    };
    if !keep {
        model.insert("type".into(), Value::from("file"));
    }
}

/// Parse a request body as jupyter_server's `get_json_body`: empty → `None`; anything that
/// is not JSON → 400 "Invalid JSON in body of request". The `Content-Type` is ignored.
pub fn parse_json_body(body: &[u8]) -> Result<Option<Value>> {
    if body.is_empty() {
        return Ok(None);
    }
    serde_json::from_slice(body)
        .map(Some)
        .map_err(|_| ContentsError::bad_request("Invalid JSON in body of request"))
}

#[allow(dead_code)]
fn _kind_is_used(k: ErrorKind) -> u16 {
    k.status_code()
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
