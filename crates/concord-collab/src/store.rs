//! What the collaboration service needs from the server: reading and writing files
//! (the server implements it over its contents service, with the room's path already
//! authorized).

use std::future::Future;
use std::pin::Pin;

use crate::document::{DocKind, FileContent};
use crate::error::CollabError;

/// A boxed future (the store is used as a trait object).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A file's last-modified time, as the contents service reports it.
pub type FileStamp = chrono::DateTime<chrono::Utc>;

/// A file read from disk.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredFile {
    /// Its content.
    pub content: FileContent,
    /// Its last-modified time.
    pub last_modified: FileStamp,
}

/// What a save reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SavedFile {
    /// The file's new last-modified time.
    pub last_modified: FileStamp,
    /// The contents service's hash of the saved file, if it computes one (the front end
    /// compares it with its own to know the file was saved by the server).
    pub hash: Option<String>,
}

/// Files by path, as the contents service serves them. Paths are API paths
/// (`dir/name.ipynb`). A missing file is an error of kind `NotFound`; a file that may not
/// be written (read-only on disk) is refused by `save`.
pub trait DocumentStore: Send + Sync + 'static {
    /// Read a file for a document of `kind` (notebook as JSON, text as UTF-8, binary).
    fn load(&self, path: String, kind: DocKind) -> BoxFuture<'_, Result<StoredFile, CollabError>>;
    /// Write a file atomically.
    fn save(
        &self,
        path: String,
        content: FileContent,
    ) -> BoxFuture<'_, Result<SavedFile, CollabError>>;
    /// The file's last-modified time, without reading it (polled to notice changes made
    /// outside the room: a REST save, another program).
    fn last_modified(&self, path: String) -> BoxFuture<'_, Result<FileStamp, CollabError>>;
}
