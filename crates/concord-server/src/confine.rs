//! Confinement and isolation of kernels and terminals: the settings, what applies on this
//! machine (Landlock, namespaces, capabilities), and the provider that turns a process owner
//! into a sandbox from the policy in force when the process starts.

use std::path::PathBuf;
use std::sync::Arc;

use concord_authz::{Identity, Owner, PolicyEngine, User};
use concord_confine::{
    ConfineConfig, ConfinementPlan, LandlockStatus, Namespaces, NetRule, Sandbox, Supervision,
    UnconfinedPolicy,
};
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
    /// empty list = no TCP at all. Unset = no restriction with the IPC kernel transport, and
    /// 80,443 with the TCP one (other kernels' ports are never reachable). Needs Landlock
    /// ABI 4.
    #[arg(
        long = "confine-tcp-connect",
        env = "CONCORD_CONFINE_TCP_CONNECT",
        value_delimiter = ','
    )]
    pub tcp_connect: Option<Vec<u16>>,
    /// Run each user's kernels and terminals as an operating-system account (concord must
    /// be root): `same-name` (the account named as the user), or `USER=ACCOUNT` /
    /// `USER=UID:GID` entries. A user without one may not start kernels or terminals.
    /// Unset: every process runs as concord's own account.
    #[arg(
        long = "confine-os-users",
        env = "CONCORD_CONFINE_OS_USERS",
        value_delimiter = ','
    )]
    pub os_users: Option<Vec<String>>,
}

/// Which operating-system account a user's processes run as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OsAccounts {
    /// Concord's own (the default).
    Concord,
    /// The account named as the user, looked up when a process starts.
    SameName,
    /// A fixed mapping, resolved at start-up.
    Mapped(std::collections::HashMap<String, concord_confine::Account>),
}

impl OsAccounts {
    /// Parse `--confine-os-users`; `root` says whether concord runs as root (it must).
    pub fn parse(entries: &[String], root: bool) -> anyhow::Result<OsAccounts> {
        let entries: Vec<&str> = entries
            .iter()
            .map(|e| e.trim())
            .filter(|e| !e.is_empty())
            .collect();
        if entries.is_empty() {
            return Ok(OsAccounts::Concord);
        }
        if !root {
            anyhow::bail!(
                "--confine-os-users needs concord to run as root (it starts processes as other accounts)"
            );
        }
        if entries == ["same-name"] {
            return Ok(OsAccounts::SameName);
        }
        let mut map = std::collections::HashMap::new();
        for entry in entries {
            let Some((user, account)) = entry.split_once('=') else {
                anyhow::bail!(
                    "--confine-os-users: {entry:?} is neither `same-name` nor USER=ACCOUNT or USER=UID:GID"
                );
            };
            let resolved = match account.split_once(':') {
                Some((uid, gid)) => {
                    let (Ok(uid), Ok(gid)) = (uid.parse::<u32>(), gid.parse::<u32>()) else {
                        anyhow::bail!("--confine-os-users: {entry:?}: UID:GID must be numbers");
                    };
                    concord_confine::Account {
                        uid,
                        gid,
                        groups: Vec::new(),
                    }
                }
                None => account_named(account)
                    .map_err(|e| anyhow::anyhow!("--confine-os-users: {e}"))?,
            };
            if resolved.uid == 0 {
                anyhow::bail!("--confine-os-users: {entry:?} maps to root, which isolates nothing");
            }
            map.insert(user.to_string(), resolved);
        }
        Ok(OsAccounts::Mapped(map))
    }

    /// The account for `username`'s processes (`None`: concord's own), or why there is none.
    pub fn account_for(&self, username: &str) -> Result<Option<concord_confine::Account>, String> {
        match self {
            OsAccounts::Concord => Ok(None),
            OsAccounts::SameName => {
                let account = account_named(username)?;
                if account.uid == 0 {
                    return Err(format!(
                        "{username} is root's account: its processes are not started"
                    ));
                }
                Ok(Some(account))
            }
            OsAccounts::Mapped(map) => map.get(username).cloned().map(Some).ok_or_else(|| {
                format!("{username} has no operating-system account (--confine-os-users)")
            }),
        }
    }

    fn describe(&self) -> &'static str {
        match self {
            OsAccounts::Concord => "concord's",
            OsAccounts::SameName => "same-name",
            OsAccounts::Mapped(_) => "mapped",
        }
    }
}

/// The operating-system account `name`: its ids and groups.
fn account_named(name: &str) -> Result<concord_confine::Account, String> {
    use nix::unistd::{getgrouplist, User};
    let user = User::from_name(name)
        .map_err(|e| format!("cannot look up the account {name}: {e}"))?
        .ok_or_else(|| format!("no operating-system account named {name}"))?;
    let cname = std::ffi::CString::new(name).map_err(|_| format!("bad account name {name:?}"))?;
    let groups = getgrouplist(&cname, user.gid)
        .map_err(|e| format!("cannot list the groups of {name}: {e}"))?;
    Ok(concord_confine::Account {
        uid: user.uid.as_raw(),
        gid: user.gid.as_raw(),
        groups: groups.into_iter().map(|g| g.as_raw()).collect(),
    })
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

/// The confinement service: settings, what this machine offers, and the policy engine.
pub struct Confinement {
    /// Landlock on this machine.
    pub status: LandlockStatus,
    /// What applies.
    pub applies: Applies,
    /// The setting for an unavailable protection.
    pub unconfined_policy: UnconfinedPolicy,
    /// The protections this machine cannot give (empty: every one applies), in words.
    pub missing: Vec<String>,
    /// Whether kernels and terminals run in namespaces of their own.
    pub namespaces: bool,
    /// Whether TCP is restricted for confined processes.
    pub tcp_restricted: bool,
    /// The accounts processes run as.
    pub accounts: OsAccounts,
    config: ConfineConfig,
    supervision: Arc<Supervision>,
    root: PathBuf,
    engine: Arc<PolicyEngine>,
}

/// What applies when confinement is `enabled`, with `policy` for what this machine cannot
/// give (`missing`).
pub fn applies(enabled: bool, policy: UnconfinedPolicy, missing: &[String]) -> Applies {
    match (enabled, missing.is_empty(), policy) {
        (false, _, _) => Applies::Disabled,
        (true, true, _) => Applies::Confined,
        (true, false, UnconfinedPolicy::Warn) => Applies::UnconfinedWarn,
        (true, false, UnconfinedPolicy::Refuse) => Applies::Refused,
    }
}

/// Names of the server's environment variables its kernels and terminals must not inherit:
/// its settings (the token among them) and the tokens of the Jupyter tools around it.
pub fn secret_env_names() -> Vec<String> {
    std::env::vars_os()
        .filter_map(|(key, _)| key.into_string().ok())
        .filter(|key| {
            key.starts_with("CONCORD_")
                || matches!(
                    key.as_str(),
                    "JUPYTER_TOKEN" | "JUPYTERHUB_API_TOKEN" | "JPY_API_TOKEN"
                )
        })
        .collect()
}

/// The TCP ports confined processes may connect to, or `None` when TCP is not restricted:
/// the configured list, else with the TCP kernel transport (where other kernels listen on
/// loopback ports) only the web's.
pub fn tcp_connect_ports(settings: &crate::config::Settings) -> Option<Vec<u16>> {
    let (cli, file) = (&settings.cli.confine, &settings.file.confine);
    cli.tcp_connect
        .clone()
        .or(file.tcp_connect.clone())
        .or_else(|| crate::api::kernels::uses_tcp_transport(settings).then(|| vec![80, 443]))
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
        config.net = tcp_connect_ports(settings).map(|connect_tcp| NetRule {
            bind_tcp: Vec::new(),
            connect_tcp,
        });
        let namespaces = Namespaces::for_current_user(
            [&settings.state_dir, &settings.runtime_dir]
                .into_iter()
                .map(|d| d.canonicalize().unwrap_or_else(|_| d.clone()))
                .collect(),
        );
        let supervision = Supervision::concord(Some(namespaces));
        let mut missing = Vec::new();
        if !status.available {
            missing.push(status.detail.clone());
        }
        let namespaces_work = match concord_confine::probe_namespaces(&supervision) {
            Ok(()) => true,
            Err(why) => {
                missing.push(format!("no namespaces for kernels and terminals ({why})"));
                false
            }
        };
        if config.net.is_some() && !status.network {
            missing.push(format!(
                "TCP cannot be restricted (Landlock ABI {} or later needed, this kernel has {})",
                concord_confine::NET_ABI,
                status.abi
            ));
        }
        let applies = applies(enabled, unconfined_policy, &missing);
        // Without namespaces (switched off, or not available), processes are still
        // supervised: their whole tree ends with them and with the server.
        let supervision = Arc::new(if enabled && namespaces_work {
            supervision
        } else {
            Supervision::concord(None)
        });
        let what = describe_mechanisms(&status, enabled && namespaces_work, config.net.is_some());
        match applies {
            Applies::Confined => tracing::info!("kernels and terminals are confined: {what}"),
            Applies::Disabled => {
                tracing::warn!(
                    "confinement is off: kernels and terminals can touch every file the server can"
                )
            }
            Applies::UnconfinedWarn => tracing::warn!(
                "{}: kernels and terminals start with less isolation (unconfined_policy = warn): {what}",
                missing.join("; ")
            ),
            Applies::Refused => tracing::warn!(
                "{}: kernels and terminals will be refused (unconfined_policy = refuse)",
                missing.join("; ")
            ),
        }
        let accounts = OsAccounts::parse(
            &cli.os_users
                .clone()
                .or(file.os_users.clone())
                .unwrap_or_default(),
            // SAFETY: geteuid has no preconditions.
            unsafe { libc::geteuid() } == 0,
        )?;
        if accounts != OsAccounts::Concord {
            tracing::info!(
                "kernels and terminals run as their users' accounts ({})",
                accounts.describe()
            );
        }
        Ok(Confinement {
            accounts,
            tcp_restricted: config.net.is_some() && status.network,
            namespaces: enabled && namespaces_work,
            status,
            applies,
            unconfined_policy,
            missing,
            config,
            supervision,
            root: settings.root_dir.clone(),
            engine,
        })
    }

    /// The sandbox for a process `owner` starts now, or why it must not start.
    pub fn sandbox_for(&self, owner: &Owner) -> Result<Sandbox, String> {
        let plan = self.plan_for(owner)?;
        let account = self.accounts.account_for(&owner.username)?;
        Ok(Sandbox {
            plan,
            supervision: Some(self.supervision.clone()),
            account,
        })
    }

    /// The Landlock plan for a process `owner` starts now (`None`: files not confined), or
    /// why it must not start.
    fn plan_for(&self, owner: &Owner) -> Result<Option<Arc<ConfinementPlan>>, String> {
        match self.applies {
            Applies::Disabled => return Ok(None),
            Applies::UnconfinedWarn => {
                tracing::warn!(user = %owner.username, "starting a process with less isolation: {}", self.missing.join("; "));
                if !self.status.available {
                    return Ok(None);
                }
            }
            Applies::Refused => {
                return Err(format!(
                    "{}; the server refuses kernels and terminals it cannot isolate (unconfined_policy = refuse)",
                    self.missing.join("; ")
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

    /// What applies, for the status endpoint.
    pub fn to_json(&self) -> Value {
        let enforced = self.applies == Applies::Confined || self.applies == Applies::UnconfinedWarn;
        json!({
            "applies": self.applies.as_str(),
            "landlock_abi": self.status.abi,
            "landlock_available": self.status.available,
            "unconfined_policy": self.unconfined_policy.as_str(),
            "detail": self.status.detail,
            "isolation": {
                "namespaces": self.namespaces,
                "landlock_scopes": enforced && self.status.available && self.status.abi >= concord_confine::SCOPE_ABI,
                "tcp_restricted": enforced && self.tcp_restricted,
                "capabilities": if self.supervision.drop_capabilities && self.accounts == OsAccounts::Concord { "file-only" } else { "none" },
                "accounts": self.accounts.describe(),
                "missing": self.missing,
            },
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
        move |owner: &Owner| c.sandbox_for(owner)
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
    let mut missing: Vec<String> = Vec::new();
    if !status.available {
        missing.push(status.detail.clone());
    }
    // The state directory is not known here: the probe hides nothing.
    let supervision = Supervision::concord(Some(Namespaces::for_current_user(Vec::new())));
    let namespaces = match concord_confine::probe_namespaces(&supervision) {
        Ok(()) => true,
        Err(why) => {
            missing.push(format!("no namespaces for kernels and terminals ({why})"));
            false
        }
    };
    let applies = applies(enabled, policy, &missing);
    println!(
        "confinement: {} ({}; unconfined_policy = {policy})",
        applies.as_str(),
        describe_mechanisms(&status, namespaces, false)
    );
    for why in &missing {
        println!("  missing: {why}");
    }
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

/// The protections in force, in words, for the log at start-up.
fn describe_mechanisms(status: &LandlockStatus, namespaces: bool, tcp: bool) -> String {
    let mut parts = Vec::new();
    if status.available {
        parts.push(format!("files by Landlock (ABI {})", status.abi));
        if status.abi >= concord_confine::SCOPE_ABI {
            parts.push("signals and abstract sockets by Landlock scopes".to_string());
        }
        if tcp && status.network {
            parts.push("TCP by Landlock".to_string());
        }
    }
    if namespaces {
        parts.push(
            "processes, mounts and IPC by namespaces of their own (own /proc, concord's directories hidden)"
                .to_string(),
        );
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        parts.push("capabilities reduced to files".to_string());
    }
    if parts.is_empty() {
        "nothing".to_string()
    } else {
        parts.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::OsAccounts;

    fn entries(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn os_accounts_are_parsed_and_checked() {
        assert_eq!(OsAccounts::parse(&[], false).unwrap(), OsAccounts::Concord);
        let err = OsAccounts::parse(&entries(&["same-name"]), false).unwrap_err();
        assert!(
            err.to_string().contains("needs concord to run as root"),
            "{err}"
        );
        assert_eq!(
            OsAccounts::parse(&entries(&["same-name"]), true).unwrap(),
            OsAccounts::SameName
        );
        let mapped =
            OsAccounts::parse(&entries(&["alice=40001:40002", " bob=40003:40003 "]), true).unwrap();
        let alice = mapped.account_for("alice").unwrap().unwrap();
        assert_eq!((alice.uid, alice.gid), (40001, 40002));
        let err = mapped.account_for("carol").unwrap_err();
        assert!(
            err.contains("carol has no operating-system account"),
            "{err}"
        );
        for bad in ["alice", "alice=x:1", "alice=0:0", "alice=root"] {
            assert!(OsAccounts::parse(&entries(&[bad]), true).is_err(), "{bad}");
        }
        // `same-name` of a user named like root is never root.
        assert!(OsAccounts::SameName.account_for("root").is_err());
    }
}
