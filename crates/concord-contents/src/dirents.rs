//! A directory's entries as a listing reads them: names from `getdents64` into one buffer,
//! then each entry's status with `statx` relative to the open directory (on several
//! threads for a large directory).

use rustix::fs::{AtFlags, FileType, RawDir, StatxAttributes, StatxFlags};
use std::ffi::CStr;
use std::fs;
use std::os::unix::fs::MetadataExt;

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
    pub(crate) attributes: StatxAttributes,
    pub(crate) attributes_mask: StatxAttributes,
}

impl EntryStat {
    /// `statx` of `name` in the open directory `dir` (one path lookup); a final symlink is
    /// followed only when `follow` is set.
    pub fn at(dir: &fs::File, name: &CStr, follow: bool) -> std::io::Result<EntryStat> {
        let flags = if follow {
            AtFlags::STATX_SYNC_AS_STAT
        } else {
            AtFlags::SYMLINK_NOFOLLOW | AtFlags::STATX_SYNC_AS_STAT
        };
        let st = rustix::fs::statx(dir, name, flags, StatxFlags::BASIC_STATS)?;
        Ok(EntryStat {
            mode: u32::from(st.stx_mode),
            uid: st.stx_uid,
            gid: st.stx_gid,
            size: st.stx_size,
            mtime: (st.stx_mtime.tv_sec, st.stx_mtime.tv_nsec),
            ctime: (st.stx_ctime.tv_sec, st.stx_ctime.tv_nsec),
            dev: rustix::fs::makedev(st.stx_dev_major, st.stx_dev_minor),
            attributes: st.stx_attributes,
            attributes_mask: st.stx_attributes_mask,
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
pub fn stat_entries(dir: &fs::File, names: &[&CStr]) -> Vec<Option<EntryStat>> {
    let stat_chunk = |chunk: &[&CStr]| -> Vec<Option<EntryStat>> {
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
            attributes: StatxAttributes::empty(),
            attributes_mask: StatxAttributes::empty(),
        }
    }
}

/// Call `each` with the name of every entry of the open directory `dir` (from its current
/// position: its start, when just opened) and whether the directory says it is a symlink
/// (`d_type`; file systems that do not report types say "unknown": check the entry's own
/// status). The entries are read with `getdents64` into one buffer: no allocation per
/// entry, and the names come NUL-terminated, ready for `statx`. `.` and `..` are left out;
/// a read that fails ends the listing.
pub fn read_entries(dir: &fs::File, mut each: impl FnMut(&CStr, bool)) {
    let mut buffer: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut entries = RawDir::new(dir, buffer.spare_capacity_mut());
    while let Some(Ok(entry)) = entries.next() {
        let name = entry.file_name();
        if !matches!(name.to_bytes(), b"." | b"..") {
            each(name, entry.file_type() == FileType::Symlink);
        }
    }
}
