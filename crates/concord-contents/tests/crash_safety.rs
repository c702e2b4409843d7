//! A save that fails or is killed half-way never loses or truncates the old file.

use concord_contents::atomic::{write_atomic, write_atomic_with, Producer, TempJournal};
use concord_contents::{
    AllowAll, Caller, CanonicalPath, ContentsConfig, ContentsManager, GetOptions,
};
use std::io::{self, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Writes `good` bytes, then fails (or, with `hang`, stops forever) before finishing.
struct Interrupted {
    good: usize,
    hang: bool,
}

impl Producer for Interrupted {
    fn produce(&mut self, out: &mut dyn Write) -> io::Result<()> {
        out.write_all(&vec![b'N'; self.good])?;
        out.flush()?;
        if self.hang {
            loop {
                std::thread::sleep(Duration::from_secs(60));
            }
        }
        Err(io::Error::other("disk on fire"))
    }
}

fn old_content() -> Vec<u8> {
    b"{\"cells\": [], \"metadata\": {}, \"nbformat\": 4, \"nbformat_minor\": 5}\n".to_vec()
}

fn assert_old_file_intact(dir: &Path) {
    let target = dir.join("nb.ipynb");
    assert_eq!(std::fs::read(&target).unwrap(), old_content());
    let cm = ContentsManager::new(ContentsConfig::new(dir)).unwrap();
    let model = cm
        .get(
            &Caller::new("u", &AllowAll),
            &CanonicalPath::parse("nb.ipynb").unwrap(),
            &GetOptions::from_query(None, None, None, None).unwrap(),
        )
        .unwrap();
    assert_eq!(model.size, Some(old_content().len() as u64));
}

#[test]
fn failing_writer_keeps_old_file() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("nb.ipynb");
    std::fs::write(&target, old_content()).unwrap();
    for good in [0, 1, 10, 100_000] {
        let err = write_atomic(&target, &mut Interrupted { good, hang: false }).unwrap_err();
        assert_eq!(err.to_string(), "disk on fire");
        assert_old_file_intact(dir.path());
    }
    // Nothing left behind but the file itself.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
}

/// The child half of `killed_writer_keeps_old_file`: start a save that never finishes.
#[test]
fn crash_child() {
    let Ok(target) = std::env::var("CONCORD_CRASH_TARGET") else {
        return;
    };
    let journal = std::env::var("CONCORD_CRASH_JOURNAL")
        .ok()
        .map(|j| TempJournal::open(Path::new(&j)).unwrap().0);
    let _ = write_atomic_with(
        Path::new(&target),
        &mut Interrupted {
            good: 1 << 20,
            hang: true,
        },
        journal.as_ref(),
    );
}

/// Kill a child half-way through a save of `target` (journaled in `journal` if given);
/// returns whether it got half-way.
fn kill_writer_half_way(dir: &Path, target: &Path, journal: Option<&Path>) -> bool {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
        .env("CONCORD_CRASH_TARGET", target)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(j) = journal {
        command.env("CONCORD_CRASH_JOURNAL", j);
    }
    let mut child = command.spawn().unwrap();
    // Wait until the child has written its megabyte into the temp file, then kill it.
    let started = Instant::now();
    let written = loop {
        let partial = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .filter(|e| e.path() != target)
            .any(|e| e.metadata().map(|m| m.len() >= 1 << 20).unwrap_or(false));
        if partial || started.elapsed() > Duration::from_secs(60) {
            break partial;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    child.kill().unwrap();
    child.wait().unwrap();
    written
}

#[test]
fn temp_file_of_a_killed_journaled_writer_is_removed_when_the_journal_is_opened() {
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let journal = state.path().join("temp-files");
    let target = dir.path().join("nb.ipynb");
    std::fs::write(&target, old_content()).unwrap();
    assert!(kill_writer_half_way(dir.path(), &target, Some(&journal)));
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        2,
        "the temp file is left"
    );
    let (_journal, removed) = TempJournal::open(&journal).unwrap();
    assert_eq!(removed.len(), 1, "{removed:?}");
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(names, ["nb.ipynb"]);
    assert_old_file_intact(dir.path());
}

#[test]
fn killed_writer_keeps_old_file() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("nb.ipynb");
    std::fs::write(&target, old_content()).unwrap();
    let written = kill_writer_half_way(dir.path(), &target, None);
    assert!(written, "the child never got half-way through its write");
    assert_old_file_intact(dir.path());
    // The next save succeeds despite the leftover temp file.
    write_atomic(&target, &mut &b"new"[..]).unwrap();
    assert_eq!(std::fs::read(&target).unwrap(), b"new");
}
