//! Landlock confinement of kernels and terminals (issue 7): the settings, what applies on
//! this machine, and the provider that turns a process owner into a confinement plan from
//! the policy in force when the process starts.

use std::path::PathBuf;
use std::sync::Arc;

use concord_authz::{Identity, Owner, PolicyEngine, User};
use concord_confine::{ConfineConfig, ConfinementPlan, LandlockStatus, NetRule, UnconfinedPolicy};
use serde_json::{json, Value};

/// `[confine]` options (command line, environment, config file).
#[derive(clap::Args, Clone, Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfineOptions {
    /// Confine kernels and terminals with Landlock to what their user may touch (default true).
    #[arg(long = "confine", env = "CONCORD_CONFINE")]
    pub enabled: Option<bool>,
    /// When Landlock is unavailable: `refuse` to start kernels and terminals (default) or
    /// start them unconfined with a `warn`ing.
    #[arg(long = "unconfined-policy", env = "CONCORD_UNCONFINED_POLICY")]
    pub unconfined_policy: Option<UnconfinedPolicy>,
    /// Extra read-and-execute paths for confined processes (other interpreters' prefixes).
    #[arg(
        long = "confine-exec-path",
        env = "CONCORD_CONFINE_EXEC_PATHS",
        value_delimiter = ','
    )]
    pub exec_paths: Option<Vec<PathBuf>>,
    /// Extra read-write paths for confined processes (e.g. /dev/shm).
    #[arg(
        long = "confine-write-path",
        env = "CONCORD_CONFINE_WRITE_PATHS",
        value_delimiter = ','
    )]
    pub write_paths: Option<Vec<PathBuf>>,
    /// Restrict TCP: only these ports may be connected to (plus a kernel's own ports bound);
    /// empty list = no TCP at all. Unset = no network restriction. Needs Landlock ABI 4.
    #[arg(
        long = "confine-tcp-connect",
        env = "CONCORD_CONFINE_TCP_CONNECT",
        value_delimiter = ','
    )]
    pub tcp_connect: Option<Vec<u16>>,
}

/// What applies to kernels and terminals started from now on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applies {
    /// Confined by Landlock.
    Confined,
    /// Confinement switched off by the admin.
    Disabled,
    /// Landlock unavailable: started unconfined, with a warning.
    UnconfinedWarn,
    /// Landlock unavailable: refused.
    Refused,
}

impl Applies {
    /// The word used in `/api/status` and the log.
    pub fn as_str(self) -> &'static str {
        match self {
            Applies::Confined => "confined",
            Applies::Disabled => "disabled",
            Applies::UnconfinedWarn => "unconfined",
            Applies::Refused => "refused",
        }
    }
}

/// The confinement service: settings, Landlock's status, and the policy engine.
pub struct Confinement {
    /// Landlock on this machine.
    pub status: LandlockStatus,
    /// What applies.
    pub applies: Applies,
    /// The setting for an unavailable Landlock.
    pub unconfined_policy: UnconfinedPolicy,
    config: ConfineConfig,
    root: PathBuf,
    engine: Arc<PolicyEngine>,
}

/// What applies for `enabled`, `policy` and a Landlock `status`.
pub fn applies(enabled: bool, policy: UnconfinedPolicy, status: &LandlockStatus) -> Applies {
    match (enabled, status.available, policy) {
        (false, _, _) => Applies::Disabled,
        (true, true, _) => Applies::Confined,
        (true, false, UnconfinedPolicy::Warn) => Applies::UnconfinedWarn,
        (true, false, UnconfinedPolicy::Refuse) => Applies::Refused,
    }
}

/// Read the options: (enabled, unconfined policy).
pub fn settings_of(settings: &crate::config::Settings) -> (bool, UnconfinedPolicy) {
    let (cli, file) = (&settings.cli.confine, &settings.file.confine);
    (
        cli.enabled.or(file.enabled).unwrap_or(true),
        cli.unconfined_policy
            .or(file.unconfined_policy)
            .unwrap_or_default(),
    )
}

impl Confinement {
    /// Build from the settings; `engine` is the policy in force (reloads included).
    pub fn new(
        settings: &crate::config::Settings,
        engine: Arc<PolicyEngine>,
    ) -> anyhow::Result<Confinement> {
        let (cli, file) = (&settings.cli.confine, &settings.file.confine);
        let (enabled, unconfined_policy) = settings_of(settings);
        let status = concord_confine::status();
        let applies = applies(enabled, unconfined_policy, &status);
        let mut protected = vec![settings.state_dir.clone(), settings.runtime_dir.clone()];
        protected.extend(settings.policy.clone());
        protected.extend(settings.cedar_policy.clone());
        protected.extend(settings.cli.config.clone());
        if let Some(log) = &settings.audit_log {
            if log != "-" {
                protected.push(PathBuf::from(log));
            }
        }
        let mut config = ConfineConfig::new(settings.state_dir.join("confine"), protected);
        if let Some(prefix) = crate::api::kernels::python_prefix_on_path() {
            for exe in ["python3", "python"] {
                let python = prefix.join("bin").join(exe);
                if python.exists() {
                    if let Err(e) = config.add_python_prefixes(&python) {
                        tracing::warn!("confinement: {e}");
                    }
                    break;
                }
            }
        }
        config.exec_paths.extend(
            cli.exec_paths
                .clone()
                .or(file.exec_paths.clone())
                .unwrap_or_default(),
        );
        config.extra_write_paths = cli
            .write_paths
            .clone()
            .or(file.write_paths.clone())
            .unwrap_or_default();
        config.net = cli
            .tcp_connect
            .clone()
            .or(file.tcp_connect.clone())
            .map(|connect_tcp| NetRule {
                bind_tcp: Vec::new(),
                connect_tcp,
            });
        match applies {
            Applies::Confined => tracing::info!(
                "kernels and terminals are confined by Landlock ({})",
                status.detail
            ),
            Applies::Disabled => {
                tracing::warn!(
                    "confinement is off: kernels and terminals can touch every file the server can"
                )
            }
            Applies::UnconfinedWarn => tracing::warn!(
                "{}: kernels and terminals start UNCONFINED (unconfined_policy = warn)",
                status.detail
            ),
            Applies::Refused => tracing::warn!(
                "{}: kernels and terminals will be refused (unconfined_policy = refuse)",
                status.detail
            ),
        }
        Ok(Confinement {
            status,
            applies,
            unconfined_policy,
            config,
            root: settings.root_dir.clone(),
            engine,
        })
    }

    /// The plan for a process `owner` starts now (`None`: unconfined), or why it must not
    /// start.
    pub fn plan_for(&self, owner: &Owner) -> Result<Option<Arc<ConfinementPlan>>, String> {
        match self.applies {
            Applies::Disabled => return Ok(None),
            Applies::UnconfinedWarn => {
                tracing::warn!(user = %owner.username, "starting an unconfined process: {}", self.status.detail);
                return Ok(None);
            }
            Applies::Refused => {
                return Err(format!(
                    "{}; the server refuses unconfined kernels and terminals (unconfined_policy = refuse)",
                    self.status.detail
                ))
            }
            Applies::Confined => {}
        }
        let who = Identity {
            user: User::named(&owner.username),
            groups: owner.groups.clone(),
        };
        let view = self.engine.filesystem_view(&who);
        let plan = ConfinementPlan::build(&view, &self.root, &owner.username, &self.config)
            .map_err(|e| format!("cannot confine the process: {e}"))?;
        for note in view.notes.iter().chain(&plan.notes) {
            tracing::info!(user = %owner.username, "confinement: {note}");
        }
        Ok(Some(Arc::new(plan)))
    }

    /// For `/api/status`.
    pub fn to_json(&self) -> Value {
        json!({
            "applies": self.applies.as_str(),
            "landlock_abi": self.status.abi,
            "landlock_available": self.status.available,
            "unconfined_policy": self.unconfined_policy.as_str(),
            "detail": self.status.detail,
        })
    }
}

/// Install the provider on the kernels and terminals services.
pub fn install(
    state: &mut crate::state::AppState,
    engine: Arc<PolicyEngine>,
) -> anyhow::Result<()> {
    let confinement = Arc::new(Confinement::new(&state.settings, engine)?);
    let provide = {
        let c = confinement.clone();
        move |owner: &Owner| c.plan_for(owner)
    };
    if let Some(kernels) = &state.kernels {
        kernels
            .kernels
            .set_confinement(Some(Arc::new(provide.clone())));
    }
    if let Some(terminals) = &state.terminals {
        terminals.manager.set_confinement(Some(Arc::new(provide)));
    }
    state.confinement = Some(confinement);
    Ok(())
}

/// For `concord policy check`: whether confinement applies on this machine (with
/// `CONCORD_CONFINE` / `CONCORD_UNCONFINED_POLICY` as the server would read them from the
/// environment) and what `who`'s kernels and terminals may touch on disk.
pub fn print_check(engine: &PolicyEngine, who: &Identity) {
    let enabled = std::env::var("CONCORD_CONFINE")
        .map(|v| !matches!(v.as_str(), "false" | "0" | "no" | "off"))
        .unwrap_or(true);
    let policy = std::env::var("CONCORD_UNCONFINED_POLICY")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_default();
    let status = concord_confine::status();
    let applies = applies(enabled, policy, &status);
    println!(
        "confinement: {} ({}; unconfined_policy = {policy})",
        applies.as_str(),
        status.detail
    );
    if applies == Applies::Confined {
        let view = engine.filesystem_view(who);
        let lines = concord_confine::describe_view(&view);
        if lines.is_empty() {
            println!("  on disk: none of the root");
        }
        for line in lines {
            println!("  on disk: {line}");
        }
        for note in view.notes {
            println!("  note: {note}");
        }
    }
}
