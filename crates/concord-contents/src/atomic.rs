//! File writes that never lose the old file: a temp file in the same directory, fsync,
//! rename over the target (keeping mode and, where possible, owner); or, where a rename
//! would change ownership or the directory is not writable, jupyter_server's
//! backup-and-restore in place.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::write_check::access_writable;

/// The backup jupyter_server keeps while writing in place: `.~name` next to the file.
pub fn backup_path(path: &Path) -> PathBuf {
    sibling(path, &format!(".~{}", file_name(path)))
}

/// Where a notebook that failed to parse is moved when its backup is restored.
pub fn invalid_path(path: &Path) -> PathBuf {
    sibling(path, &format!("{}.invalid", file_name(path)))
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn sibling(path: &Path, name: &str) -> PathBuf {
    path.parent()
        .map(|p| p.join(name))
        .unwrap_or_else(|| PathBuf::from(name))
}

fn effective_uid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// Something that produces the new content into a writer (lets tests fail mid-way).
pub trait Producer {
    /// Write the content; an error aborts the save and keeps the old file.
    fn produce(&mut self, out: &mut dyn Write) -> io::Result<()>;
}

impl Producer for &[u8] {
    fn produce(&mut self, out: &mut dyn Write) -> io::Result<()> {
        out.write_all(self)
    }
}

/// Replace `path` with the produced content without ever leaving it truncated or lost.
pub fn write_atomic(path: &Path, content: &mut dyn Producer) -> io::Result<()> {
    write_atomic_with(path, content, None)
}

/// How a file is replaced: through a temp file renamed over it, or (where the rename would
/// change its owner, or the directory is not writable) in place, with a backup.
pub enum Replacement {
    /// The old file's status, if there is one: the temp file takes its mode (and owner).
    Rename(Option<fs::Metadata>),
    /// jupyter_server's backup-and-restore in place.
    InPlace,
}

/// How `path` can be replaced; an error if it is a directory.
pub fn replacement(path: &Path) -> io::Result<Replacement> {
    let old = match fs::metadata(path) {
        Ok(m) if m.is_dir() => {
            return Err(io::Error::new(
                io::ErrorKind::IsADirectory,
                "is a directory",
            ))
        }
        Ok(m) => Some(m),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    let dir = path.parent().unwrap_or(Path::new("/"));
    let euid = effective_uid();
    let owner_would_change = old.as_ref().is_some_and(|m| m.uid() != euid && euid != 0);
    if old.is_some() && (owner_would_change || !access_writable(dir)) {
        return Ok(Replacement::InPlace);
    }
    Ok(Replacement::Rename(old))
}

/// [`write_atomic`], with the temp file recorded in `journal` while it exists, so that the
/// next start removes it if the process dies before it is renamed or removed.
pub fn write_atomic_with(
    path: &Path,
    content: &mut dyn Producer,
    journal: Option<&TempJournal>,
) -> io::Result<()> {
    let old = match replacement(path)? {
        Replacement::InPlace => return write_in_place(path, content),
        Replacement::Rename(old) => old,
    };
    let mut tmp = TempFile::beside(path, journal)?;
    content.produce(tmp.file())?;
    tmp.commit(path, old.as_ref())
}

/// A temp file `.~name.XXXXXXXX.tmp` next to the file it will replace. It is removed when
/// dropped unless [`TempFile::commit`] renamed it over its target; while it exists it is
/// recorded in the journal, if there is one.
pub struct TempFile<'j> {
    path: PathBuf,
    file: File,
    journal: Option<&'j TempJournal>,
    committed: bool,
}

impl<'j> TempFile<'j> {
    /// Create a new temp file beside `target` (recorded in `journal` first).
    pub fn beside(target: &Path, journal: Option<&'j TempJournal>) -> io::Result<Self> {
        let path = sibling(
            target,
            &format!(".~{}.{:08x}.tmp", file_name(target), rand::random::<u32>()),
        );
        if let Some(j) = journal {
            j.begin(&path)?;
        }
        let created = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o666)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path);
        match created {
            Ok(file) => Ok(TempFile {
                path,
                file,
                journal,
                committed: false,
            }),
            Err(e) => {
                // Nothing was created: whatever has this name is not ours to remove.
                if let Some(j) = journal {
                    j.end(&path);
                }
                Err(e)
            }
        }
    }

    /// The open file, to write the content into.
    pub fn file(&mut self) -> &mut File {
        &mut self.file
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Make it durable and rename it over `target`: with `old`'s mode (and, as root, its
    /// owner), then the rename made durable too.
    pub fn commit(mut self, target: &Path, old: Option<&fs::Metadata>) -> io::Result<()> {
        self.file.flush()?;
        if let Some(old) = old {
            self.file
                .set_permissions(fs::Permissions::from_mode(old.mode() & 0o7777))?;
            if effective_uid() == 0 {
                std::os::unix::fs::fchown(&self.file, Some(old.uid()), Some(old.gid()))?;
            }
        }
        self.file.sync_all()?;
        fs::rename(&self.path, target)?;
        self.committed = true;
        if let Ok(d) = File::open(target.parent().unwrap_or(Path::new("/"))) {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

impl Drop for TempFile<'_> {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_file(&self.path);
        }
        if let Some(j) = self.journal {
            j.end(&self.path);
        }
    }
}

/// Whether `name` is one of [`TempFile`]'s names: `.~<name>.<8 hex digits>.tmp`.
pub fn is_temp_name(name: &[u8]) -> bool {
    let Some(rest) = name.strip_prefix(b".~") else {
        return false;
    };
    let Some(rest) = rest.strip_suffix(b".tmp") else {
        return false;
    };
    rest.len() > 9
        && rest[rest.len() - 9] == b'.'
        && rest[rest.len() - 8..]
            .iter()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
}

/// A record, in the state directory, of the temp files that exist right now: each is
/// written down (and synced) before it is created and struck off once renamed or removed.
/// After a crash, the next start removes the temp files still listed, without walking the
/// root, and never touches anything but a regular file with a temp file's name.
///
/// The file holds lines `+<hex path>` and `-<hex path>`; it is emptied whenever no temp
/// file is in progress, so it stays small.
pub struct TempJournal {
    state: std::sync::Mutex<JournalState>,
}

struct JournalState {
    file: File,
    in_progress: usize,
}

impl TempJournal {
    /// Open (or create) the journal `path`, removing the temp files a previous process left
    /// listed in it. Returns the journal and the paths it removed.
    pub fn open(path: &Path) -> io::Result<(TempJournal, Vec<PathBuf>)> {
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o600)
            .open(path)?;
        let mut text = Vec::new();
        io::Read::read_to_end(&mut file, &mut text)?;
        let mut listed: Vec<PathBuf> = Vec::new();
        for line in text.split(|b| *b == b'\n') {
            let (sign, hex_path) = match line.split_first() {
                Some((sign, rest)) => (*sign, rest),
                None => continue,
            };
            let Ok(bytes) = hex::decode(hex_path) else {
                continue;
            };
            let entry = PathBuf::from(std::ffi::OsString::from_vec(bytes));
            match sign {
                b'+' => listed.push(entry),
                b'-' => {
                    if let Some(i) = listed.iter().position(|p| *p == entry) {
                        listed.swap_remove(i);
                    }
                }
                _ => {}
            }
        }
        let mut removed = Vec::new();
        for leftover in listed {
            let is_ours = leftover
                .file_name()
                .is_some_and(|n| is_temp_name(n.as_bytes()));
            let is_file = fs::symlink_metadata(&leftover).is_ok_and(|m| m.file_type().is_file());
            if is_ours && is_file && fs::remove_file(&leftover).is_ok() {
                removed.push(leftover);
            }
        }
        file.set_len(0)?;
        file.sync_all()?;
        let journal = TempJournal {
            state: std::sync::Mutex::new(JournalState {
                file,
                in_progress: 0,
            }),
        };
        Ok((journal, removed))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, JournalState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Record `path` before it is created (synced: it must be on disk before the file is).
    fn begin(&self, path: &Path) -> io::Result<()> {
        let mut state = self.state();
        let line = format!("+{}\n", hex::encode(path.as_os_str().as_bytes()));
        state.file.write_all(line.as_bytes())?;
        state.file.sync_data()?;
        state.in_progress += 1;
        Ok(())
    }

    /// Strike `path` off: it was renamed or removed (or never created).
    fn end(&self, path: &Path) {
        let mut state = self.state();
        state.in_progress = state.in_progress.saturating_sub(1);
        if state.in_progress == 0 {
            let _ = state.file.set_len(0);
        } else {
            let line = format!("-{}\n", hex::encode(path.as_os_str().as_bytes()));
            let _ = state.file.write_all(line.as_bytes());
        }
    }
}

/// jupyter_server's `atomic_writing`: copy the old file to `.~name`, write in place, and
/// put the copy back if anything fails. Without a writable directory the old content is
/// kept in memory instead.
fn write_in_place(path: &Path, content: &mut dyn Producer) -> io::Result<()> {
    let backup = backup_path(path);
    let on_disk_backup = fs::copy(path, &backup).is_ok();
    let in_memory = if on_disk_backup {
        None
    } else {
        Some(fs::read(path)?)
    };
    let result = (|| {
        let mut file = OpenOptions::new().write(true).truncate(true).open(path)?;
        content.produce(&mut file)?;
        file.flush()?;
        file.sync_all()
    })();
    match (&result, on_disk_backup) {
        (Ok(()), true) => {
            let _ = fs::remove_file(&backup);
        }
        (Err(_), true) => {
            // Copy back rather than rename so the file keeps its inode and owner.
            if fs::copy(&backup, path).is_ok() {
                let _ = fs::remove_file(&backup);
            }
        }
        (Err(_), false) => {
            if let Some(old) = &in_memory {
                let _ = fs::write(path, old);
            }
        }
        (Ok(()), false) => {}
    }
    result
}

/// The content of an open file (or any reader), copied as it is read.
pub struct CopyFrom<R>(pub R);

impl<R: io::Read> Producer for CopyFrom<R> {
    fn produce(&mut self, out: &mut dyn Write) -> io::Result<()> {
        io::copy(&mut self.0, out).map(|_| ())
    }
}

/// Copy a file's bytes and timestamps as `shutil.copy2` (used for checkpoints), streamed.
pub fn copy_with_times(src: &Path, dst: &Path, journal: Option<&TempJournal>) -> io::Result<()> {
    let meta = fs::metadata(src)?;
    write_atomic_with(dst, &mut CopyFrom(File::open(src)?), journal)?;
    let file = OpenOptions::new().write(true).open(dst)?;
    file.set_modified(meta.modified()?)?;
    Ok(())
}
