//! The files service: built from its configuration, the symlink-aware path resolution the
//! request pipeline authorizes with, and the adapter from the actions the service reports to
//! the event bus.

use concord_authz::{CanonicalPath, Resource};
use concord_contents::{
    ActionListener, ContentsAction, ContentsConfig, ContentsError, ContentsManager,
};
use std::sync::Arc;

use super::PathResolver;
use crate::events::{contents_event, EventBus};

/// Build the files service.
pub fn build(config: ContentsConfig) -> anyhow::Result<ContentsManager> {
    ContentsManager::new(config).map_err(|e| anyhow::anyhow!("contents: {}", e.message))
}

/// The contents service resolves symlinks for the pipeline.
pub struct ContentsPaths(pub Arc<ContentsManager>);

impl PathResolver for ContentsPaths {
    fn resolve(&self, path: &CanonicalPath) -> Result<CanonicalPath, ContentsError> {
        self.0.resolve(path)
    }
}

/// Publish the contents service's actions on the event bus as jupyter_server's
/// `contents_service` events, each for the readers of the resolved paths it names.
pub fn forward_actions(contents: &ContentsManager, bus: Arc<EventBus>) {
    contents.subscribe_actions(Arc::new(ActionsToEvents(bus)));
}

struct ActionsToEvents(Arc<EventBus>);

impl ActionListener for ActionsToEvents {
    fn listening(&self) -> bool {
        self.0.has_subscribers()
    }

    fn hear(&self, actions: &[ContentsAction]) {
        self.0.emit(|| {
            actions
                .iter()
                .map(|a| {
                    let audience = a.readers.iter().cloned().map(Resource::contents).collect();
                    contents_event(
                        a.action.as_str(),
                        &a.path,
                        a.source_path.as_deref(),
                        audience,
                    )
                })
                .collect::<Vec<_>>()
        });
    }
}
