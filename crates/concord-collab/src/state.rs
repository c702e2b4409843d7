//! The service's own small SQLite store in the state directory: file ids that survive
//! renames (as jupyter-server-fileid keeps them), the client ids of earlier loads of each
//! file (to recognise a client whose document comes from a room that no longer exists),
//! and who edited which notebook cell.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{params, Connection, OptionalExtension};

use crate::error::CollabError;

/// How many earlier loads of a file are remembered.
const GENERATIONS_KEPT: i64 = 64;

/// One user's edits of one cell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CellAuthor {
    /// The cell's id.
    pub cell_id: String,
    /// Who edited it.
    pub username: String,
    /// How many of their updates touched it.
    pub edits: u64,
    /// When they last did (RFC 3339).
    pub last_edit: String,
}

/// The store.
pub struct StateStore {
    db: Mutex<Connection>,
}

/// Normalise an API path: no leading or trailing `/`.
pub fn normalize_path(path: &str) -> String {
    path.trim_matches('/').to_string()
}

impl StateStore {
    /// Open (or create) the store at `path`.
    pub fn open(path: &Path) -> Result<Self, CollabError> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| CollabError::io(format!("cannot create {}: {e}", parent.display())))?;
        }
        Self::init(Connection::open(path)?)
    }

    /// A store in memory (tests, or a server without a state directory).
    pub fn in_memory() -> Result<Self, CollabError> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(db: Connection) -> Result<Self, CollabError> {
        db.execute_batch(
            "PRAGMA journal_mode = WAL;
             CREATE TABLE IF NOT EXISTS files (
                 id TEXT PRIMARY KEY, path TEXT NOT NULL UNIQUE);
             CREATE TABLE IF NOT EXISTS generations (
                 file_id TEXT NOT NULL, client_id INTEGER NOT NULL, seq INTEGER NOT NULL,
                 PRIMARY KEY (file_id, client_id));
             CREATE TABLE IF NOT EXISTS cell_authors (
                 file_id TEXT NOT NULL, cell_id TEXT NOT NULL, username TEXT NOT NULL,
                 edits INTEGER NOT NULL, last_edit TEXT NOT NULL,
                 PRIMARY KEY (file_id, cell_id, username));",
        )?;
        Ok(StateStore { db: Mutex::new(db) })
    }

    fn db(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.db.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The id of `path`, made if it has none; `true` when it was made now.
    pub fn index(&self, path: &str) -> Result<(String, bool), CollabError> {
        let path = normalize_path(path);
        let db = self.db();
        if let Some(id) = db
            .query_row("SELECT id FROM files WHERE path = ?1", [&path], |r| {
                r.get(0)
            })
            .optional()?
        {
            return Ok((id, false));
        }
        let id = uuid::Uuid::new_v4().to_string();
        db.execute(
            "INSERT INTO files (id, path) VALUES (?1, ?2)",
            params![id, path],
        )?;
        Ok((id, true))
    }

    /// The id of `path`, if it has one.
    pub fn id_of(&self, path: &str) -> Result<Option<String>, CollabError> {
        let path = normalize_path(path);
        Ok(self
            .db()
            .query_row("SELECT id FROM files WHERE path = ?1", [&path], |r| {
                r.get(0)
            })
            .optional()?)
    }

    /// The path of a file id, if it is known.
    pub fn path_of(&self, id: &str) -> Result<Option<String>, CollabError> {
        Ok(self
            .db()
            .query_row("SELECT path FROM files WHERE id = ?1", [id], |r| r.get(0))
            .optional()?)
    }

    /// A file or folder moved: it and everything under it keep their ids at the new path
    /// (a file that was at the destination and is replaced loses its id).
    pub fn moved(&self, old: &str, new: &str) -> Result<Vec<(String, String)>, CollabError> {
        let (old, new) = (normalize_path(old), normalize_path(new));
        let mut db = self.db();
        let tx = db.transaction()?;
        let moved: Vec<(String, String)> = {
            let mut stmt = tx.prepare(
                "SELECT id, path FROM files WHERE path = ?1 OR substr(path, 1, length(?1) + 1) = ?1 || '/'",
            )?;
            let rows = stmt.query_map([&old], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })?;
            rows.collect::<Result<_, _>>()?
        };
        let mut renamed = Vec::new();
        for (id, path) in moved {
            let new_path = format!("{new}{}", &path[old.len()..]);
            tx.execute(
                "DELETE FROM files WHERE path = ?1 AND id != ?2",
                params![new_path, id],
            )?;
            tx.execute(
                "UPDATE files SET path = ?1 WHERE id = ?2",
                params![new_path, id],
            )?;
            renamed.push((id, new_path));
        }
        tx.commit()?;
        Ok(renamed)
    }

    /// A file or folder was deleted: it and everything under it lose their ids.
    pub fn deleted(&self, path: &str) -> Result<(), CollabError> {
        let path = normalize_path(path);
        self.db().execute(
            "DELETE FROM files WHERE path = ?1 OR substr(path, 1, length(?1) + 1) = ?1 || '/'",
            [&path],
        )?;
        Ok(())
    }

    /// Remember client ids that wrote a load of a file (the loader's and the room's own).
    pub fn add_generation(&self, file_id: &str, client_ids: &[u64]) -> Result<(), CollabError> {
        let mut db = self.db();
        let tx = db.transaction()?;
        let seq: i64 = tx.query_row(
            "SELECT COALESCE(MAX(seq), 0) + 1 FROM generations WHERE file_id = ?1",
            [file_id],
            |r| r.get(0),
        )?;
        for id in client_ids {
            tx.execute(
                "INSERT OR REPLACE INTO generations (file_id, client_id, seq) VALUES (?1, ?2, ?3)",
                params![file_id, *id as i64, seq],
            )?;
        }
        tx.execute(
            "DELETE FROM generations WHERE file_id = ?1 AND seq <= ?2",
            params![file_id, seq - GENERATIONS_KEPT],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// The client ids of every remembered load of a file.
    pub fn generations(&self, file_id: &str) -> Result<Vec<u64>, CollabError> {
        let db = self.db();
        let mut stmt = db.prepare("SELECT client_id FROM generations WHERE file_id = ?1")?;
        let rows = stmt.query_map([file_id], |r| r.get::<_, i64>(0))?;
        Ok(rows
            .map(|r| r.map(|v| v as u64))
            .collect::<Result<_, _>>()?)
    }

    /// Count edits of cells by users.
    pub fn add_cell_edits(
        &self,
        file_id: &str,
        edits: &[(String, String, u64)],
        at: &str,
    ) -> Result<(), CollabError> {
        let mut db = self.db();
        let tx = db.transaction()?;
        for (cell_id, username, count) in edits {
            tx.execute(
                "INSERT INTO cell_authors (file_id, cell_id, username, edits, last_edit)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (file_id, cell_id, username)
                 DO UPDATE SET edits = edits + excluded.edits, last_edit = excluded.last_edit",
                params![file_id, cell_id, username, *count as i64, at],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Who edited which cell of a file, cell by cell.
    pub fn cell_authors(&self, file_id: &str) -> Result<Vec<CellAuthor>, CollabError> {
        let db = self.db();
        let mut stmt = db.prepare(
            "SELECT cell_id, username, edits, last_edit FROM cell_authors
             WHERE file_id = ?1 ORDER BY cell_id, username",
        )?;
        let rows = stmt.query_map([file_id], |r| {
            Ok(CellAuthor {
                cell_id: r.get(0)?,
                username: r.get(1)?,
                edits: r.get::<_, i64>(2)? as u64,
                last_edit: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
