//! The services behind the handlers, one file each: built from the typed configuration
//! `config` merged, stopped at shutdown, and what the request pipeline needs from them
//! (the owner of a kernel, session or terminal id; where a contents path really leads).
//! Services never see HTTP: the handlers call them and shape the answers.

pub mod collaboration;
pub mod confine;
pub mod contents;
pub mod kernels;
pub mod nbconvert;
pub mod terminals;

use concord_authz::{CanonicalPath, PolicyEngine, Resource, ResourceType};
use concord_contents::{ContentsError, ContentsManager};
use std::collections::HashMap;
use std::sync::Arc;

use crate::audit::Auditor;
use crate::config::Settings;
use crate::events::EventBus;

/// Finds the owner (and path) of an owned instance: a kernel, session or terminal.
/// Each service that has owned instances registers one.
pub trait InstanceLookup: Send + Sync {
    /// The instance as an authorization resource, or `None` when it does not exist.
    fn lookup(&self, id: &str) -> Option<Resource>;
}

/// Turns a canonical path into the path the file system will really open (symlinks
/// resolved), so authorization is decided on it. The contents service provides it.
pub trait PathResolver: Send + Sync {
    /// The resolved path; a path that escapes the root is an error (404).
    fn resolve(&self, path: &CanonicalPath) -> Result<CanonicalPath, ContentsError>;
}

/// Every running service.
pub struct Services {
    /// The files service.
    pub contents: Arc<ContentsManager>,
    /// Symlink-aware path resolution (the files service's).
    pub paths: Arc<dyn PathResolver>,
    /// The JupyterLab front end.
    pub lab: Arc<concord_lab::Lab>,
    /// The kernels and sessions services.
    pub kernels: Arc<kernels::KernelService>,
    /// The terminals service.
    pub terminals: Arc<terminals::Terminals>,
    /// The confinement of kernels and terminals.
    pub confinement: Arc<confine::Confinement>,
    /// Exports (nbconvert); `None` when switched off.
    pub nbconvert: Option<Arc<concord_nbconvert::Nbconvert>>,
    /// Owner lookups of the owned resource types.
    pub instances: HashMap<ResourceType, Arc<dyn InstanceLookup>>,
    /// Real-time collaboration, when it is on.
    pub collaboration: Option<Arc<collaboration::Collab>>,
}

/// Start every service. `engine` is the policy in force (reloads included), from which
/// kernels and terminals are confined and collaborators' rights decided; contents and
/// kernels publish their actions on `events`; collaborative saves are recorded in `audit`.
pub async fn start(
    settings: &Settings,
    engine: Arc<PolicyEngine>,
    events: &Arc<EventBus>,
    audit: &Auditor,
) -> anyhow::Result<Services> {
    let contents = Arc::new(contents::build(settings.contents.clone())?);
    let paths: Arc<dyn PathResolver> = Arc::new(contents::ContentsPaths(contents.clone()));
    contents::forward_actions(&contents, events.clone());
    let lab = Arc::new(concord_lab::Lab::start(settings.lab.clone()).await);
    let kernels = Arc::new(kernels::build(&settings.kernels));
    kernels::forward_actions(&kernels.kernels, events.clone(), paths.clone());
    let terminals = terminals::build(&settings.terminals, &settings.root_dir);
    let confinement = Arc::new(confine::Confinement::new(settings, engine.clone())?);
    let provide = confine::provider(&confinement);
    let nbconvert = nbconvert::build(settings.nbconvert.as_ref(), &confinement, &settings.owner);
    kernels
        .kernels
        .set_confinement(Some(Arc::new(provide.clone())));
    terminals.manager.set_confinement(Some(Arc::new(provide)));
    let mut instances: HashMap<ResourceType, Arc<dyn InstanceLookup>> =
        kernels::lookups(&kernels, &paths).into_iter().collect();
    instances.insert(ResourceType::Terminals, terminals.clone());
    let collaboration = match &settings.collaboration {
        Some(config) => Some(collaboration::build(
            config.clone(),
            &contents,
            &settings.state_dir,
            engine.clone(),
            audit.clone(),
        )?),
        None => None,
    };
    Ok(Services {
        contents,
        paths,
        lab,
        kernels,
        terminals,
        confinement,
        nbconvert,
        instances,
        collaboration,
    })
}

/// Stop every service: open documents are saved, the event streams end, kernels and
/// terminals end their processes.
pub async fn stop(
    events: &EventBus,
    kernels: &kernels::KernelService,
    terminals: &terminals::Terminals,
    collab: Option<&collaboration::Collab>,
) {
    if let Some(collab) = collab {
        collaboration::stop(collab).await;
    }
    events.close();
    kernels::stop(kernels).await;
    terminals::stop(terminals).await;
}
