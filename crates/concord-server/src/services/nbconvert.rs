//! The exports service (nbconvert): built from its configuration with the confinement's
//! sandboxes. Conversions run in the requesting user's reading sandbox (handlers); the
//! formats are listed in a sandbox that grants none of the root.

use concord_nbconvert::{Nbconvert, NbconvertConfig};
use std::sync::Arc;

use super::confine::Confinement;

/// Build the service (`None` when exports are switched off); `owner` names the listing
/// sandbox's private directories.
pub fn build(
    config: Option<&NbconvertConfig>,
    confinement: &Confinement,
    owner: &str,
) -> Option<Arc<Nbconvert>> {
    let mut config = config?.clone();
    match confinement.rootless_sandbox(owner) {
        Ok(sandbox) => config.listing_sandbox = sandbox,
        // Listing runs only the installed nbconvert, with no user's input or files; the
        // conversions themselves are refused with the reason.
        Err(why) => tracing::warn!("nbconvert's exporters are listed unconfined: {why}"),
    }
    Some(Arc::new(Nbconvert::new(config)))
}
