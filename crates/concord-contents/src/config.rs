//! The service's settings (jupyter_server's `ContentsManager` / `FileContentsManager` traits).

use std::path::PathBuf;

/// Settings of a [`crate::ContentsManager`]; `ContentsConfig::new(root)` gives
/// jupyter_server's defaults.
#[derive(Clone, Debug)]
pub struct ContentsConfig {
    /// The directory served as `/`.
    pub root_dir: PathBuf,
    /// Serve and accept hidden (dot) files (`ContentsManager.allow_hidden`, default false).
    pub allow_hidden: bool,
    /// Names left out of listings (`ContentsManager.hide_globs`).
    pub hide_globs: Vec<String>,
    /// Deleting moves to the trash (`FileContentsManager.delete_to_trash`, default true).
    pub delete_to_trash: bool,
    /// Delete non-empty directories without the trash (`always_delete_dir`, default false).
    pub always_delete_dir: bool,
    /// The trash directory; `None` is the user's freedesktop trash (`~/.local/share/Trash`).
    pub trash_dir: Option<PathBuf>,
    /// Largest file or notebook a save, upload (all chunks together) or copy may write.
    pub max_save_bytes: Option<u64>,
    /// Largest directory a copy may duplicate (`max_copy_folder_size_mb`, default 500 MB).
    pub max_copy_folder_bytes: u64,
    /// Checkpoint directory next to each file (`FileCheckpoints.checkpoint_dir`).
    pub checkpoint_dir: String,
    /// Where the service keeps its own state (trust database, checkpoints of files in
    /// read-only directories). `None`: trust is kept in memory.
    pub state_dir: Option<PathBuf>,
    /// Base name of new notebooks (`Untitled`).
    pub untitled_notebook: String,
    /// Base name of new files (`untitled`).
    pub untitled_file: String,
    /// Base name of new directories (`Untitled Folder`).
    pub untitled_directory: String,
    /// Refuse to save a notebook that fails schema validation (400 naming the problem).
    /// jupyter_server saves it and returns the problem in `message`; Concord refuses by
    /// default so a broken client cannot write a notebook other clients cannot open.
    pub reject_invalid_notebooks: bool,
}

impl ContentsConfig {
    /// jupyter_server's defaults for a root directory.
    pub fn new(root_dir: impl Into<PathBuf>) -> Self {
        ContentsConfig {
            root_dir: root_dir.into(),
            allow_hidden: false,
            hide_globs: ["__pycache__", "*.pyc", "*.pyo", ".DS_Store", "*~"]
                .map(String::from)
                .to_vec(),
            delete_to_trash: true,
            always_delete_dir: false,
            trash_dir: None,
            max_save_bytes: None,
            max_copy_folder_bytes: 500 * 1024 * 1024,
            checkpoint_dir: ".ipynb_checkpoints".into(),
            state_dir: None,
            untitled_notebook: "Untitled".into(),
            untitled_file: "untitled".into(),
            untitled_directory: "Untitled Folder".into(),
            reject_invalid_notebooks: true,
        }
    }
}
