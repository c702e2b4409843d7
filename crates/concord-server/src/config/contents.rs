//! `[contents]`: the options of the files service and their merge into its
//! [`ContentsConfig`].

use concord_contents::ContentsConfig;
use std::path::{Path, PathBuf};

/// Settings of the files service (`[contents]` in the config file).
#[derive(clap::Args, Clone, Debug, Default, serde::Deserialize)]
pub struct ContentsOptions {
    /// Serve and accept hidden (dot) files and directories.
    #[arg(long, env = "CONCORD_ALLOW_HIDDEN")]
    pub allow_hidden: Option<bool>,
    /// Move deleted files to the trash instead of deleting them.
    #[arg(long, env = "CONCORD_DELETE_TO_TRASH")]
    pub delete_to_trash: Option<bool>,
    /// Delete non-empty directories (when not using the trash).
    #[arg(long, env = "CONCORD_ALWAYS_DELETE_DIR")]
    pub always_delete_dir: Option<bool>,
    /// Largest file a save or upload may write, in bytes.
    #[arg(long, env = "CONCORD_MAX_SAVE_BYTES")]
    pub max_save_bytes: Option<u64>,
    /// Largest directory a copy may duplicate, in MB.
    #[arg(long, env = "CONCORD_MAX_COPY_FOLDER_SIZE_MB")]
    pub max_copy_folder_size_mb: Option<u64>,
    /// Accept notebooks that fail validation (saved, with a `message`), as jupyter_server.
    #[arg(long, env = "CONCORD_ACCEPT_INVALID_NOTEBOOKS")]
    pub accept_invalid_notebooks: Option<bool>,
    /// The trash directory (default: the freedesktop trash of the server's user).
    #[arg(long, env = "CONCORD_TRASH_DIR")]
    pub trash_dir: Option<PathBuf>,
}

super::layered!(ContentsOptions {
    allow_hidden,
    delete_to_trash,
    always_delete_dir,
    max_save_bytes,
    max_copy_folder_size_mb,
    accept_invalid_notebooks,
    trash_dir,
});

impl ContentsOptions {
    /// The files service's configuration (defaults applied) for `root`, keeping its own
    /// state (trust database) under `state_dir`.
    pub fn resolve(self, root: &Path, state_dir: &Path) -> ContentsConfig {
        let mut config = ContentsConfig::new(root);
        config.allow_hidden = self.allow_hidden.unwrap_or(false);
        config.delete_to_trash = self.delete_to_trash.unwrap_or(true);
        config.always_delete_dir = self.always_delete_dir.unwrap_or(false);
        config.max_save_bytes = self.max_save_bytes;
        if let Some(mb) = self.max_copy_folder_size_mb {
            config.max_copy_folder_bytes = mb * 1024 * 1024;
        }
        config.reject_invalid_notebooks = !self.accept_invalid_notebooks.unwrap_or(false);
        config.trash_dir = self.trash_dir;
        config.state_dir = Some(state_dir.join("contents"));
        config
    }
}
