//! Moving deleted files to a freedesktop.org trash, as send2trash does on Linux.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

/// The user's home trash: `$XDG_DATA_HOME/Trash`, else `~/.local/share/Trash`.
pub fn default_trash_dir() -> Option<PathBuf> {
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(x).join("Trash"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share/Trash"))
}

fn encode_path(path: &Path) -> String {
    use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};
    const SET: &AsciiSet = &CONTROLS
        .add(b' ')
        .add(b'"')
        .add(b'#')
        .add(b'%')
        .add(b'<')
        .add(b'>')
        .add(b'?')
        .add(b'`')
        .add(b'{')
        .add(b'}');
    utf8_percent_encode(&path.to_string_lossy(), SET).to_string()
}

fn mount_point(path: &Path) -> PathBuf {
    let dev = fs::symlink_metadata(path).map(|m| m.dev()).ok();
    let mut current = path.to_path_buf();
    while let Some(parent) = current.parent() {
        if fs::metadata(parent).map(|m| m.dev()).ok() != dev {
            break;
        }
        current = parent.to_path_buf();
    }
    current
}

/// Move `path` into the trash at `trash` (with `files/` and `info/` as the spec says); when
/// the trash is on another file system, use the volume's `.Trash-$uid` as send2trash does.
pub fn send_to_trash(path: &Path, trash: &Path) -> io::Result<()> {
    match trash_into(path, trash) {
        Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {
            let uid = rustix::process::getuid().as_raw();
            let top = mount_point(path).join(format!(".Trash-{uid}"));
            trash_into(path, &top)
        }
        other => other,
    }
}

fn trash_into(path: &Path, trash: &Path) -> io::Result<()> {
    let files = trash.join("files");
    let info = trash.join("info");
    for dir in [&files, &info] {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| io::Error::other("nothing to trash"))?;
    let (stem, ext) = match name.rfind('.') {
        Some(i) if i > 0 => (&name[..i], &name[i..]),
        _ => (name.as_str(), ""),
    };
    for n in 1..10_000 {
        let candidate = if n == 1 {
            name.clone()
        } else {
            format!("{stem} {n}{ext}")
        };
        let info_path = info.join(format!("{candidate}.trashinfo"));
        let mut file = match OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&info_path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        };
        let date = chrono::Local::now().format("%Y-%m-%dT%H:%M:%S");
        let absolute = std::path::absolute(path)?;
        write!(
            file,
            "[Trash Info]\nPath={}\nDeletionDate={date}\n",
            encode_path(&absolute)
        )?;
        drop(file);
        if let Err(e) = fs::rename(path, files.join(&candidate)) {
            let _ = fs::remove_file(&info_path);
            return Err(e);
        }
        return Ok(());
    }
    Err(io::Error::other("could not find a free name in the trash"))
}
