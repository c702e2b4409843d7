//! The files service: built from its configuration, and the symlink-aware path resolution
//! the request pipeline authorizes with.

use concord_authz::CanonicalPath;
use concord_contents::{ContentsConfig, ContentsError, ContentsManager};
use std::sync::Arc;

use super::PathResolver;

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
