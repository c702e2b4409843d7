//! The terminals service: built from its configuration, stopped at shutdown, and the
//! owner lookup the pipeline authorizes terminal names with.

use concord_authz::{CanonicalPath, Resource, ResourceType};
use concord_terminals::{TerminalInfo, TerminalManager};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::InstanceLookup;
use crate::config::TerminalsConfig;

/// Build the terminals service for the server whose root directory is `root`.
pub fn build(config: &TerminalsConfig, root: &Path) -> Arc<Terminals> {
    let manager = TerminalManager::new(config.manager.clone());
    Terminals::new(manager, root.to_path_buf(), config.max_message_size)
}

/// End every terminal and all their processes (on SIGINT/SIGTERM, `POST /api/shutdown`).
pub async fn stop(terminals: &Terminals) {
    terminals.manager.shutdown_all().await;
}

/// The running terminal service, kept in the application state.
pub struct Terminals {
    /// The manager.
    pub manager: TerminalManager,
    /// The server's root directory (a terminal's folder is a contents path under it).
    pub root: PathBuf,
    /// The largest websocket message a client may send.
    pub max_message_size: usize,
}

impl Terminals {
    /// Wrap a manager for the server whose root directory is `root`; clients may send
    /// websocket messages of up to `max_message_size` bytes.
    pub fn new(manager: TerminalManager, root: PathBuf, max_message_size: usize) -> Arc<Self> {
        Arc::new(Terminals {
            manager,
            root,
            max_message_size,
        })
    }

    /// A terminal as an authorization resource: owned by its creator, with its working
    /// directory as path when that is inside the root.
    pub fn resource(&self, info: &TerminalInfo) -> Resource {
        Resource::owned(
            ResourceType::Terminals,
            Some(info.name.clone()),
            info.owner.clone(),
            self.path_of(&info.cwd),
        )
    }

    /// The contents path of a working directory, when it is inside the root.
    pub fn path_of(&self, cwd: &Path) -> Option<CanonicalPath> {
        cwd.strip_prefix(&self.root)
            .ok()
            .and_then(Path::to_str)
            .and_then(|relative| CanonicalPath::parse(relative).ok())
    }
}

impl InstanceLookup for Terminals {
    fn lookup(&self, id: &str) -> Option<Resource> {
        self.manager.get(id).ok().map(|info| self.resource(&info))
    }
}
