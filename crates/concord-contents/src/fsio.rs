//! File writes that never lose the old file: a temp file in the same directory, fsync,
//! rename over the target (keeping mode and, where possible, owner); or, where a rename
//! would change ownership or the directory is not writable, jupyter_server's
//! backup-and-restore in place.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
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
    if old.is_some() && (owner_would_change || !dir_writable(dir)) {
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

/// A directory entry's status as `statx` reports it, with what deciding `writable` from it
/// (instead of asking `faccessat` once more per entry) needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryStat {
    /// File type and permission bits (`st_mode`).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Size in bytes.
    pub size: u64,
    /// Modification time: seconds and nanoseconds since the epoch.
    pub mtime: (i64, u32),
    /// Inode change time: seconds and nanoseconds since the epoch.
    pub ctime: (i64, u32),
    /// The device holding the entry (`st_dev`).
    pub dev: u64,
    /// `stx_attributes` (immutable, mount root, ...), as far as `attributes_mask` says the
    /// file system reports them.
    attributes: u64,
    attributes_mask: u64,
}

const STATX_ATTR_IMMUTABLE: u64 = 0x10;
const STATX_ATTR_MOUNT_ROOT: u64 = 0x2000;

impl EntryStat {
    /// `statx` of `name` in the open directory `dir` (one path lookup); a final symlink is
    /// followed only when `follow` is set.
    pub fn at(dir: &fs::File, name: &std::ffi::CStr, follow: bool) -> io::Result<EntryStat> {
        use std::os::fd::AsRawFd;
        let flags = if follow { 0 } else { libc::AT_SYMLINK_NOFOLLOW };
        // SAFETY: all-zero bytes are a valid `statx` (plain integers).
        let mut buf: libc::statx = unsafe { std::mem::zeroed() };
        // SAFETY: `dir` is an open descriptor, `name` a valid NUL-terminated string and
        // `buf` a writable `statx` for the duration of the call.
        let rc = unsafe {
            libc::statx(
                dir.as_raw_fd(),
                name.as_ptr(),
                flags | libc::AT_STATX_SYNC_AS_STAT,
                libc::STATX_BASIC_STATS,
                &mut buf,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(EntryStat {
            mode: u32::from(buf.stx_mode),
            uid: buf.stx_uid,
            gid: buf.stx_gid,
            size: buf.stx_size,
            mtime: (buf.stx_mtime.tv_sec, buf.stx_mtime.tv_nsec),
            ctime: (buf.stx_ctime.tv_sec, buf.stx_ctime.tv_nsec),
            dev: libc::makedev(buf.stx_dev_major, buf.stx_dev_minor),
            attributes: buf.stx_attributes,
            attributes_mask: buf.stx_attributes_mask,
        })
    }

    /// Whether the entry is a directory.
    pub fn is_dir(&self) -> bool {
        self.mode & libc::S_IFMT == libc::S_IFDIR
    }

    /// Whether the entry is a symbolic link.
    pub fn is_symlink(&self) -> bool {
        self.mode & libc::S_IFMT == libc::S_IFLNK
    }

    /// Whether the entry is a regular file.
    pub fn is_file(&self) -> bool {
        self.mode & libc::S_IFMT == libc::S_IFREG
    }

    /// The modification time.
    pub fn modified(&self) -> std::time::SystemTime {
        use std::time::{Duration, UNIX_EPOCH};
        let (secs, nanos) = self.mtime;
        let whole = if secs >= 0 {
            UNIX_EPOCH.checked_add(Duration::from_secs(secs.unsigned_abs()))
        } else {
            UNIX_EPOCH.checked_sub(Duration::from_secs(secs.unsigned_abs()))
        };
        whole
            .and_then(|t| t.checked_add(Duration::from_nanos(u64::from(nanos))))
            .unwrap_or(UNIX_EPOCH)
    }
}

/// Below this many names, `stat_entries` stays on the calling thread: starting a thread
/// costs about as much as 20-50 `statx` calls.
const PARALLEL_STAT_MIN: usize = 2048;

/// At most this many threads `statx` one directory's entries.
const PARALLEL_STAT_THREADS: usize = 4;

/// `EntryStat::at` (not following symlinks) for each of `names` in the open directory `dir`,
/// in order; `None` where it failed. A large directory is split over the machine's cores:
/// its listing is mostly the kernel's path lookups, which run in parallel.
pub fn stat_entries(dir: &fs::File, names: &[&std::ffi::CStr]) -> Vec<Option<EntryStat>> {
    let stat_chunk = |chunk: &[&std::ffi::CStr]| -> Vec<Option<EntryStat>> {
        chunk
            .iter()
            .map(|name| EntryStat::at(dir, name, false).ok())
            .collect()
    };
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(PARALLEL_STAT_THREADS);
    if names.len() < PARALLEL_STAT_MIN || threads < 2 {
        return stat_chunk(names);
    }
    let chunk_len = names.len().div_ceil(threads);
    let mut chunks = names.chunks(chunk_len);
    let first = chunks.next().unwrap_or_default();
    std::thread::scope(|scope| {
        let others: Vec<_> = chunks
            .map(|chunk| {
                let thread = std::thread::Builder::new()
                    .name("concord-stat".into())
                    .spawn_scoped(scope, move || stat_chunk(chunk));
                (chunk, thread.ok())
            })
            .collect();
        let mut out = stat_chunk(first);
        for (chunk, thread) in others {
            // A thread that could not start (or panicked: `statx` cannot) leaves its
            // chunk to this one.
            match thread.map(|t| t.join()) {
                Some(Ok(stats)) => out.extend(stats),
                _ => out.extend(stat_chunk(chunk)),
            }
        }
        out
    })
}

impl From<&fs::Metadata> for EntryStat {
    /// The status std already read; without `statx` attributes, so `WriteCheck` leaves
    /// such an entry to `faccessat`.
    fn from(meta: &fs::Metadata) -> Self {
        EntryStat {
            mode: meta.mode(),
            uid: meta.uid(),
            gid: meta.gid(),
            size: meta.len(),
            mtime: (meta.mtime(), meta.mtime_nsec().clamp(0, 999_999_999) as u32),
            ctime: (meta.ctime(), meta.ctime_nsec().clamp(0, 999_999_999) as u32),
            dev: meta.dev(),
            attributes: 0,
            attributes_mask: 0,
        }
    }
}

/// Decides `os.access(entry, W_OK)` — what jupyter_server reports as `writable` — for the
/// entries of one directory from their `statx` data, as the kernel's generic permission
/// check would; an entry whose answer is not certain that way is asked with `faccessat`.
///
/// Certain means: the directory's mount is writable and its file system (ext2/3/4, XFS,
/// tmpfs) uses the generic check, no security module that vets each inode access
/// (SELinux, Smack) is active, and the entry is on that same mount, not immutable and not
/// owned by an unmapped id. Then `access(2)`, which uses the *real* uid, gid and the
/// supplementary groups, allows a write when:
/// - the caller is real root holding `CAP_DAC_OVERRIDE`: always;
/// - the caller owns the entry: the owner's `w` bit (ACLs never apply to the owner);
/// - otherwise, with no group bits (so no ACL is consulted): the group's `w` bit for a
///   member of the entry's group, else the others' `w` bit.
///
/// A refusal is certain only when no capability could override it.
pub struct WriteCheck {
    /// Whether this directory's entries can be decided from their status at all.
    enabled: bool,
    dir_dev: u64,
    uid: u32,
    gid: u32,
    groups: Vec<u32>,
    /// Real root with `CAP_DAC_OVERRIDE`: every mode allows a write.
    overrides: bool,
    /// Some `CAP_DAC_OVERRIDE` is held: a refusal by mode may not be final.
    may_override: bool,
    overflow: (u32, u32),
}

impl WriteCheck {
    /// The check for the entries of the open directory `dir`.
    pub fn for_dir(dir: &fs::File) -> WriteCheck {
        use std::os::fd::AsRawFd;
        // SAFETY: all-zero bytes are a valid `statfs` (plain integers).
        let mut fs_info: libc::statfs = unsafe { std::mem::zeroed() };
        // SAFETY: `dir` is an open descriptor and `fs_info` writable for the call.
        let generic = unsafe { libc::fstatfs(dir.as_raw_fd(), &mut fs_info) } == 0
            && GENERIC_PERMISSION_FS.contains(&(fs_info.f_type as i64));
        // SAFETY: all-zero bytes are a valid `statvfs` (plain integers).
        let mut mount_info: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: `dir` is an open descriptor and `mount_info` writable for the call.
        let writable_mount = unsafe { libc::fstatvfs(dir.as_raw_fd(), &mut mount_info) } == 0
            && mount_info.f_flag & libc::ST_RDONLY == 0;
        let fs_ok = generic && writable_mount;
        let dir_dev = dir.metadata().map(|m| m.dev()).ok();
        // SAFETY: getuid and getgid have no preconditions and cannot fail.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        let groups = supplementary_groups();
        let (effective, permitted) = dac_override_capability();
        WriteCheck {
            enabled: fs_ok && dir_dev.is_some() && groups.is_some() && !inode_lsm_active(),
            dir_dev: dir_dev.unwrap_or(0),
            uid,
            gid,
            groups: groups.unwrap_or_default(),
            overrides: uid == 0 && effective && permitted,
            may_override: effective || (uid == 0 && permitted),
            overflow: overflow_ids(),
        }
    }

    /// Whether any entry of this directory can be decided from its status (else every
    /// entry is asked with `faccessat`).
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// `Some(writable)` when the entry's status decides it as surely as `access(2)`;
    /// `None` when only `access(2)` can tell.
    pub fn decide(&self, st: &EntryStat) -> Option<bool> {
        let reported = STATX_ATTR_IMMUTABLE | STATX_ATTR_MOUNT_ROOT;
        if !self.enabled
            || st.attributes_mask & reported != reported
            || st.attributes & reported != 0
            || st.dev != self.dir_dev
            || st.uid == self.overflow.0
            || st.gid == self.overflow.1
        {
            return None;
        }
        if self.overrides {
            return Some(true);
        }
        let allowed = if st.uid == self.uid {
            st.mode & 0o200 != 0
        } else if st.mode & 0o070 != 0 {
            // Group bits may be an ACL's mask: the ACL decides.
            return None;
        } else if st.gid == self.gid || self.groups.contains(&st.gid) {
            false
        } else {
            st.mode & 0o002 != 0
        };
        match allowed {
            false if self.may_override => None,
            _ => Some(allowed),
        }
    }

    /// Whether the process may write the entry `name` of `dir` whose status is `st`:
    /// decided from `st` when certain, else asked with `faccessat`.
    pub fn writable(&self, dir: &fs::File, name: &str, st: &EntryStat) -> bool {
        self.decide(st)
            .unwrap_or_else(|| access_writable_in(dir, name))
    }
}

/// File systems whose permission check is the kernel's generic one (mode bits, POSIX ACLs,
/// capabilities) and whose `statx` reports the immutable and mount-root attributes.
const GENERIC_PERMISSION_FS: [i64; 3] = [
    0xEF53,      // ext2/3/4
    0x5846_5342, // XFS
    0x0102_1994, // tmpfs
];

fn supplementary_groups() -> Option<Vec<u32>> {
    // SAFETY: with a zero size getgroups only counts the groups.
    let n = unsafe { libc::getgroups(0, std::ptr::null_mut()) };
    let mut groups = vec![0; usize::try_from(n).ok()?];
    // SAFETY: `groups` has room for `n` ids.
    let got = unsafe { libc::getgroups(n, groups.as_mut_ptr()) };
    groups.truncate(usize::try_from(got).ok()?);
    Some(groups)
}

/// Whether `CAP_DAC_OVERRIDE` is in the process's effective and permitted sets (`access(2)`
/// gives real root its permitted set). Unknown counts as held: refusals are then checked.
fn dac_override_capability() -> (bool, bool) {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const VERSION_3: u32 = 0x2008_0522;
    const CAP_DAC_OVERRIDE: u32 = 1 << 1;
    let mut header = Header {
        version: VERSION_3,
        pid: 0,
    };
    let mut data = [Data::default(); 2];
    // SAFETY: capget with version 3 writes two `Data` records, which `data` has room for.
    let rc = unsafe { libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) };
    if rc != 0 {
        return (true, false);
    }
    (
        data[0].effective & CAP_DAC_OVERRIDE != 0,
        data[0].permitted & CAP_DAC_OVERRIDE != 0,
    )
}

/// Whether a security module that vets every inode permission check (SELinux, Smack) is
/// active: its refusals are not visible in the mode bits. Decided once per process.
fn inode_lsm_active() -> bool {
    static ACTIVE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ACTIVE.get_or_init(|| {
        let listed = fs::read_to_string("/sys/kernel/security/lsm")
            .map(|l| {
                l.split(',')
                    .any(|m| matches!(m.trim(), "selinux" | "smack"))
            })
            .unwrap_or(false);
        // Inside a container the list may be hidden: look for the modules' own traces.
        let context = fs::read_to_string("/proc/self/attr/current")
            .map(|c| c.contains(':'))
            .unwrap_or(false);
        listed
            || context
            || Path::new("/sys/fs/selinux/enforce").exists()
            || Path::new("/sys/fs/smackfs").exists()
            || fs::read_to_string("/proc/self/attr/selinux/current").is_ok_and(|c| !c.is_empty())
            || fs::read_to_string("/proc/self/attr/smack/current").is_ok_and(|c| !c.is_empty())
    })
}

/// The uid and gid `statx` shows for an id unmapped in this user namespace (writes to
/// such an inode are refused whatever its mode).
fn overflow_ids() -> (u32, u32) {
    static IDS: std::sync::OnceLock<(u32, u32)> = std::sync::OnceLock::new();
    *IDS.get_or_init(|| {
        let read = |p: &str| {
            fs::read_to_string(p)
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(65534)
        };
        (
            read("/proc/sys/kernel/overflowuid"),
            read("/proc/sys/kernel/overflowgid"),
        )
    })
}

/// The entries of an open directory, read with `getdents64` into one buffer: no
/// allocation per entry, and the names come NUL-terminated, ready for `statx`.
pub struct DirEntries<'a> {
    dir: &'a fs::File,
    buf: Vec<u8>,
    pos: usize,
    len: usize,
    done: bool,
}

/// One directory entry as `getdents64` reports it.
pub struct RawDirEntry<'a> {
    /// The name, never `.` or `..`.
    pub name: &'a std::ffi::CStr,
    /// Whether the directory says the entry is a symlink (`d_type`; file systems that do
    /// not report types say "unknown": check the entry's own status).
    pub is_symlink: bool,
}

impl<'a> DirEntries<'a> {
    /// Read `dir` from its current position (its start, when just opened).
    pub fn new(dir: &'a fs::File) -> Self {
        DirEntries {
            dir,
            buf: vec![0; 64 * 1024],
            pos: 0,
            len: 0,
            done: false,
        }
    }

    /// The next entry; `None` at the end or when reading fails.
    pub fn next_entry(&mut self) -> Option<RawDirEntry<'_>> {
        use std::os::fd::AsRawFd;
        // Offsets in a `linux_dirent64`: d_ino u64, d_off i64, d_reclen u16, d_type u8,
        // then the NUL-terminated name.
        const RECLEN_AT: usize = 16;
        const TYPE_AT: usize = 18;
        const NAME_AT: usize = 19;
        loop {
            if self.pos >= self.len {
                if self.done {
                    return None;
                }
                // SAFETY: `dir` is an open descriptor and `buf` is writable for its length.
                let n = unsafe {
                    libc::syscall(
                        libc::SYS_getdents64,
                        self.dir.as_raw_fd(),
                        self.buf.as_mut_ptr(),
                        self.buf.len(),
                    )
                };
                if n <= 0 {
                    self.done = true;
                    return None;
                }
                self.pos = 0;
                self.len = usize::try_from(n).unwrap_or(0).min(self.buf.len());
                continue;
            }
            let record = &self.buf[self.pos..self.len];
            let reclen = match record.get(RECLEN_AT..RECLEN_AT + 2) {
                Some(b) => usize::from(u16::from_ne_bytes([b[0], b[1]])),
                None => 0,
            };
            if reclen <= NAME_AT || reclen > record.len() {
                // A malformed record: stop rather than misread.
                self.done = true;
                self.len = 0;
                return None;
            }
            let d_type = record[TYPE_AT];
            let name = &record[NAME_AT..reclen];
            let name_len = name.iter().position(|&b| b == 0);
            let start = self.pos + NAME_AT;
            self.pos += reclen;
            let Some(name_len) = name_len else { continue };
            if matches!(&name[..name_len], b"." | b"..") {
                continue;
            }
            let name =
                std::ffi::CStr::from_bytes_with_nul(&self.buf[start..=start + name_len]).ok()?;
            return Some(RawDirEntry {
                name,
                is_symlink: d_type == libc::DT_LNK,
            });
        }
    }
}
