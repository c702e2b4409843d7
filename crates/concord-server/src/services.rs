//! Starting and stopping the services (contents, kernels, terminals, …) and registering
//! what the request pipeline needs from them: path resolution and owner lookups.

use crate::state::{App, AppState};

/// Start every service and register it in the state.
pub async fn start(state: &mut AppState) -> anyhow::Result<()> {
    let contents = std::sync::Arc::new(crate::api::contents::build(&state.settings)?);
    state.paths = std::sync::Arc::new(crate::api::contents::ContentsPaths(contents.clone()));
    crate::api::contents::forward_actions(&contents, state.events.clone());
    state.contents = Some(contents);
    state.lab = Some(std::sync::Arc::new(
        crate::api::lab::start(&state.settings).await,
    ));
    crate::api::events::start(state)?;
    crate::api::kernels::start(state)?;
    crate::api::terminals::start(state)?;
    Ok(())
}

/// Stop every service (kernels and terminals end their processes).
pub async fn stop(app: &App) {
    app.events.close();
    crate::api::kernels::stop(app).await;
    crate::api::terminals::stop(app).await;
}
