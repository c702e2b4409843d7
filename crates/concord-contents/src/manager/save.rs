//! Writing: PUT (save, create, upload, chunked upload) and new untitled entries.

use super::{
    handler_path, is_hidden, parse_body_path, ContentsManager, GetOptions, Located, Missing,
};
use crate::access::Caller;
use crate::atomic::{self, Producer};
use crate::error::{ContentsError, Result};
use crate::mimetypes;
use crate::model::{ContentType, Model};
use crate::notebook;
use crate::pyfmt::repr_str;
use crate::request::{Body, Field, SaveModel};
use crate::upload::{self, RequestBody};
use crate::write_check::access_writable;
use base64::Engine;
use concord_authz::CanonicalPath;
use serde_json::{Map, Value};
use std::fs::{self, OpenOptions};
use std::io::{self, Seek, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The result of a PUT: the model, and whether a new file was created (201) or an existing
/// one saved (200).
#[derive(Clone, Debug)]
pub struct SaveOutcome {
    /// The saved entry, without content.
    pub model: Model,
    /// `true` → 201 Created, `false` → 200.
    pub created: bool,
}

/// Python's `base64.decodebytes`: characters outside the alphabet are skipped.
pub(super) fn decodebytes(text: &str) -> std::result::Result<Vec<u8>, String> {
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
pub(super) enum ChunkContent<'j> {
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
pub(super) struct CountingWriter<W: Write> {
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

impl ContentsManager {
    /// PUT `/api/contents/{path}` with its body: save an existing file, create or upload a
    /// new one (including chunked uploads), or (no model) a new untitled entry in the
    /// directory `path`. Reported as a save (each chunk of an upload too, as jupyter_server
    /// reports them).
    pub fn put(
        &self,
        caller: &Caller<'_>,
        path: &CanonicalPath,
        body: Body<SaveModel>,
    ) -> Result<SaveOutcome> {
        let outcome = self.put_body(caller, path, body)?;
        self.report_saved(&outcome.model.path);
        Ok(outcome)
    }

    fn put_body(
        &self,
        caller: &Caller<'_>,
        path: &CanonicalPath,
        body: Body<SaveModel>,
    ) -> Result<SaveOutcome> {
        match body.into_model()? {
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
        let outcome = self.put_streamed_body(caller, path, body)?;
        self.report_saved(&outcome.model.path);
        Ok(outcome)
    }

    fn put_streamed_body(
        &self,
        caller: &Caller<'_>,
        path: &CanonicalPath,
        body: &mut dyn RequestBody,
    ) -> Result<SaveOutcome> {
        // Beside the target when the target can be replaced by a rename of it.
        let beside = self.locate(path).ok().filter(|loc| {
            !self.hidden(loc)
                && caller.access.may_write(&loc.resolved)
                && matches!(
                    atomic::replacement(&loc.os),
                    Ok(atomic::Replacement::Rename(_))
                )
        });
        let mut open_spool = |_: &Map<String, Value>| -> Result<upload::SpoolFile<'_>> {
            if let Some(loc) = &beside {
                if let Ok(tmp) = atomic::TempFile::beside(&loc.os, self.journal.as_ref()) {
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
            Ok(upload::PutBody::Empty) => self.put_body(caller, path, Body::Empty),
            Ok(upload::PutBody::Value(value)) => {
                self.put_body(caller, path, Body::from_value(Some(value)))
            }
            Ok(upload::PutBody::Model { model, content }) => {
                self.put_model(caller, path, SaveModel::from_map(model), Some(content))
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

    pub(super) fn put_model(
        &self,
        caller: &Caller<'_>,
        path: &CanonicalPath,
        mut model: SaveModel,
        spooled: Option<upload::Spool<'_>>,
    ) -> Result<SaveOutcome> {
        if model.copy_from.is_truthy() {
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
            if let Some(body_path) = model.path.as_str().filter(|s| !s.is_empty()) {
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
    pub(super) fn new_entry(
        &self,
        caller: &Caller<'_>,
        loc: &Located,
        mut model: SaveModel,
        spooled: Option<upload::Spool<'_>>,
    ) -> Result<Model> {
        if !model.kind.is_present() {
            let kind = if loc.request.name().ends_with(".ipynb") {
                "notebook"
            } else {
                "file"
            };
            model.kind = Field::Given(kind.to_string());
        }
        let kind = model.kind.as_str().unwrap_or("file").to_string();
        if !model.content.is_present() && kind != "directory" {
            if kind == "notebook" {
                model.content = Field::Given(notebook::new_notebook());
                model.format = Field::Given("json".to_string());
            } else {
                model.content = Field::Given(Value::from(""));
                model.kind = Field::Given("file".to_string());
                model.format = Field::Given("text".to_string());
            }
        }
        self.save(caller, loc, model, spooled)
    }

    pub(super) fn save(
        &self,
        caller: &Caller<'_>,
        loc: &Located,
        mut model: SaveModel,
        spooled: Option<upload::Spool<'_>>,
    ) -> Result<Model> {
        match model.chunk {
            Field::Absent | Field::Null => {}
            Field::Given(chunk) => return self.save_chunk(caller, loc, &model, chunk, spooled),
            Field::Other(_) => return Err(ContentsError::bad_request("chunk must be an integer")),
        }
        let kind = model
            .kind
            .as_str()
            .ok_or_else(|| ContentsError::bad_request("No file type provided"))?
            .to_string();
        let kind = kind.as_str();
        if !model.content.is_present() && kind != "directory" {
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
                    None => match std::mem::take(&mut model.content) {
                        Field::Given(content) => content,
                        _ => Value::Null,
                    },
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

    pub(super) fn decode_file_content(&self, loc: &Located, model: &SaveModel) -> Result<Vec<u8>> {
        let format = model.format.as_str();
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
            .content
            .given()
            .and_then(Value::as_str)
            .ok_or_else(|| encoding_error("content must be a string"))?;
        if format == Some("text") {
            Ok(text.as_bytes().to_vec())
        } else {
            decodebytes(text).map_err(|e| encoding_error(&e))
        }
    }

    pub(super) fn write(&self, loc: &Located, bytes: &[u8]) -> Result<()> {
        self.refuse_directory(loc)?;
        atomic::write_atomic_with(&loc.os, &mut &bytes[..], self.journal.as_ref())
            .map_err(|e| self.write_error(loc, &e))
    }

    pub(super) fn refuse_directory(&self, loc: &Located) -> Result<()> {
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
    pub(super) fn decoded_spool<'j>(
        &'j self,
        loc: &Located,
        model: &SaveModel,
        mut spool: upload::Spool<'j>,
    ) -> Result<upload::Spool<'j>> {
        let format = upload::Format::named(model.format.as_str()).ok_or_else(|| {
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
        let mut decoded = match atomic::TempFile::beside(&loc.os, self.journal.as_ref()) {
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
    pub(super) fn write_spool(&self, loc: &Located, spool: upload::Spool<'_>) -> Result<()> {
        self.refuse_directory(loc)?;
        let replacement = atomic::replacement(&loc.os).map_err(|e| self.write_error(loc, &e))?;
        match (spool.file, replacement) {
            (upload::SpoolFile::Beside(tmp), atomic::Replacement::Rename(old))
                if tmp.path().parent() == loc.os.parent() =>
            {
                tmp.commit(&loc.os, old.as_ref())
            }
            (upload::SpoolFile::Beside(mut tmp), _) => {
                let source = tmp.file();
                source.seek(io::SeekFrom::Start(0)).and_then(|_| {
                    atomic::write_atomic_with(
                        &loc.os,
                        &mut atomic::CopyFrom(source),
                        self.journal.as_ref(),
                    )
                })
            }
            (upload::SpoolFile::Detached(mut file), _) => {
                file.seek(io::SeekFrom::Start(0)).and_then(|_| {
                    atomic::write_atomic_with(
                        &loc.os,
                        &mut atomic::CopyFrom(&mut file),
                        self.journal.as_ref(),
                    )
                })
            }
        }
        .map_err(|e| self.write_error(loc, &e))
    }

    pub(super) fn write_error(&self, loc: &Located, e: &io::Error) -> ContentsError {
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
    pub(super) fn save_notebook(
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

    pub(super) fn save_directory(&self, loc: &Located) -> Result<()> {
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

    pub(super) fn staging_path(&self, os: &Path) -> PathBuf {
        let name = os
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        os.with_file_name(format!(".~{name}.upload"))
    }

    /// Chunked upload (jupyter_server's `LargeFileManager`): chunk 1 starts, later chunks
    /// append, chunk -1 appends and finishes. Chunks collect in a hidden staging file that
    /// replaces the target atomically at the end, so an abandoned upload never damages it.
    pub(super) fn save_chunk(
        &self,
        caller: &Caller<'_>,
        loc: &Located,
        model: &SaveModel,
        chunk: i64,
        spooled: Option<upload::Spool<'_>>,
    ) -> Result<Model> {
        let kind = model
            .kind
            .as_str()
            .ok_or_else(|| ContentsError::bad_request("No file type provided"))?;
        if kind != "file" {
            return Err(ContentsError::bad_request(format!(
                "File type \"{kind}\" is not supported for large file transfer"
            )));
        }
        if !model.content.is_present() {
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
                atomic::write_atomic_with(
                    &staging,
                    &mut atomic::CopyFrom(existing),
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

    pub(super) fn exists_entry(os: &Path) -> bool {
        fs::symlink_metadata(os).is_ok()
    }

    /// jupyter_server's `increment_filename`: `Untitled.ipynb`, `Untitled1.ipynb`, ...
    pub(super) fn increment_filename(&self, filename: &str, dir_os: &Path, insert: &str) -> String {
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
        self.new_entry(caller, &target, SaveModel::new(kind.as_str(), None), None)
    }
}

/// jupyter_server saves a model of any other `type` as a file.
pub(super) fn normalise_type(model: &mut SaveModel) {
    let keep = match &model.kind {
        Field::Absent | Field::Null => true,
        Field::Given(s) => ["", "directory", "file", "notebook"].contains(&s.as_str()),
        Field::Other(_) => false,
    };
    if !keep {
        model.kind = Field::Given("file".to_string());
    }
}
