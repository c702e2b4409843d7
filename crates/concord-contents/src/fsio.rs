//! File writes that never lose the old file: a temp file in the same directory, fsync,
//! rename over the target (keeping mode and, where possible, owner); or, where a rename
//! would change ownership or the directory is not writable, jupyter_server's
//! backup-and-restore in place.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

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
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

fn dir_writable(dir: &Path) -> bool {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `c` is a valid NUL-terminated path for the duration of the call.
    unsafe { libc::access(c.as_ptr(), libc::W_OK) == 0 }
}

/// Whether the process may write `path` (`os.access(path, W_OK)`).
pub fn access_writable(path: &Path) -> bool {
    dir_writable(path)
}

/// Whether the process may write the entry `name` of the open directory `dir`
/// (`os.access(dir/name, W_OK)` without walking the directory's path again).
pub fn access_writable_in(dir: &fs::File, name: &str) -> bool {
    use std::os::fd::AsRawFd;
    let Ok(c) = std::ffi::CString::new(name) else {
        return false;
    };
    // SAFETY: `dir` is an open descriptor and `c` a valid NUL-terminated name for the
    // duration of the call.
    unsafe { libc::faccessat(dir.as_raw_fd(), c.as_ptr(), libc::W_OK, 0) == 0 }
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
    if old.is_some() && (owner_would_change || !dir_writable(dir)) {
        return write_in_place(path, content);
    }
    let tmp = sibling(
        path,
        &format!(".~{}.{:08x}.tmp", file_name(path), rand::random::<u32>()),
    );
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o666)
            .open(&tmp)?;
        content.produce(&mut file)?;
        file.flush()?;
        if let Some(old) = &old {
            file.set_permissions(fs::Permissions::from_mode(old.mode() & 0o7777))?;
            if euid == 0 {
                std::os::unix::fs::fchown(&file, Some(old.uid()), Some(old.gid()))?;
            }
        }
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, path)?;
        // Make the rename itself durable.
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
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

/// Copy a file's bytes and timestamps as `shutil.copy2` (used for checkpoints).
pub fn copy_with_times(src: &Path, dst: &Path) -> io::Result<()> {
    let meta = fs::metadata(src)?;
    let bytes = fs::read(src)?;
    write_atomic(dst, &mut bytes.as_slice())?;
    let file = OpenOptions::new().write(true).open(dst)?;
    file.set_modified(meta.modified()?)?;
    Ok(())
}
