//! What the service did, for whoever publishes it (the server turns it into jupyter_server's
//! `contents_service` events). Each operation that answers a request reports, once it has
//! succeeded and in the order jupyter_server's `ContentsManager` emits them, the actions
//! jupyter_server would emit for it, each with the resolved paths a listener must be
//! allowed to read to hear of it.
//!
//! Listeners are called on the thread doing the operation, before it returns: the service
//! is blocking code with no runtime of its own, and an action is then published before the
//! answer to the request that caused it leaves, as jupyter_server emits during the request.

use concord_authz::CanonicalPath;
use std::sync::{Arc, RwLock};

/// An action of jupyter_server's `contents_service` event schema.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActionKind {
    /// A model was read.
    Get,
    /// A model was saved.
    Save,
    /// A file was copied (`source_path`: the source as the client named it).
    Copy,
    /// An entry was renamed or moved (`source_path`: its old path).
    Rename,
    /// An entry was deleted.
    Delete,
}

impl ActionKind {
    /// The `action` field of the event.
    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::Get => "get",
            ActionKind::Save => "save",
            ActionKind::Copy => "copy",
            ActionKind::Rename => "rename",
            ActionKind::Delete => "delete",
        }
    }
}

/// One action, with what an event about it carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContentsAction {
    /// What was done.
    pub action: ActionKind,
    /// The API path it was done to (`a/b.txt`; `""` for the root).
    pub path: String,
    /// Where it came from: a copy's source, a rename's old path.
    pub source_path: Option<String>,
    /// The resolved paths (symlinks followed) a listener must be allowed to read, every
    /// one of them, to hear of the action.
    pub readers: Vec<CanonicalPath>,
}

impl ContentsAction {
    pub(crate) fn new(action: ActionKind, path: &str, readers: Vec<CanonicalPath>) -> Self {
        ContentsAction {
            action,
            path: path.to_string(),
            source_path: None,
            readers,
        }
    }

    pub(crate) fn with_source(mut self, source: &str) -> Self {
        self.source_path = Some(source.to_string());
        self
    }
}

/// Hears the service's actions (see [`crate::ContentsManager::subscribe_actions`]).
pub trait ActionListener: Send + Sync {
    /// Whether anyone wants actions now: when no listener does, none is built.
    fn listening(&self) -> bool;
    /// The actions of one operation, in order.
    fn hear(&self, actions: &[ContentsAction]);
}

/// The listeners of one service.
#[derive(Default)]
pub(crate) struct Listeners(RwLock<Vec<Arc<dyn ActionListener>>>);

impl Listeners {
    pub(crate) fn add(&self, listener: Arc<dyn ActionListener>) {
        self.0
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(listener);
    }

    /// Whether any listener wants actions now.
    pub(crate) fn listening(&self) -> bool {
        self.0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .any(|l| l.listening())
    }

    /// Tell the listeners that want them the actions `build` makes (called only then).
    pub(crate) fn report(&self, build: impl FnOnce() -> Vec<ContentsAction>) {
        let listeners = self.0.read().unwrap_or_else(|p| p.into_inner());
        let wanting: Vec<&Arc<dyn ActionListener>> =
            listeners.iter().filter(|l| l.listening()).collect();
        if wanting.is_empty() {
            return;
        }
        let actions = build();
        if actions.is_empty() {
            return;
        }
        for listener in wanting {
            listener.hear(&actions);
        }
    }
}
