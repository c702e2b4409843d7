//! Confinement and isolation of kernels and terminals: what applies on this machine
//! (Landlock, namespaces, capabilities) with the configured settings, and the provider that
//! turns a process owner into a sandbox from the policy in force when the process starts.

use std::path::PathBuf;
use std::sync::Arc;

use concord_authz::{FilesystemView, Identity, Owner, PolicyEngine, User};
use concord_confine::{
    ConfineConfig, ConfinementPlan, LandlockStatus, Namespaces, NetRule, Sandbox, Supervision,
    UnconfinedPolicy,
};
use serde_json::{json, Value};

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
    /// The protections in force, in words (`describe_mechanisms`).
    pub mechanisms: String,
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

impl Confinement {
    /// Build from the settings; `engine` is the policy in force (reloads included).
    pub fn new(
        settings: &crate::config::Settings,
        engine: Arc<PolicyEngine>,
    ) -> anyhow::Result<Confinement> {
        let options = &settings.confine;
        let (enabled, unconfined_policy) = (options.enabled, options.unconfined_policy);
        let status = concord_confine::status();
        let mut protected = vec![settings.state_dir.clone(), settings.runtime_dir.clone()];
        protected.extend(settings.policy.clone());
        protected.extend(settings.cedar_policy.clone());
        protected.extend(settings.config_file.clone());
        if let Some(log) = &settings.audit_log {
            if log != "-" {
                protected.push(PathBuf::from(log));
            }
        }
        let mut config = ConfineConfig::new(settings.state_dir.join("confine"), protected);
        if let Some(prefix) = concord_kernels::python_prefix_on_path() {
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
        config.exec_paths.extend(options.exec_paths.iter().cloned());
        config.extra_write_paths = options.write_paths.clone();
        config.net = options.tcp_connect.clone().map(|connect_tcp| NetRule {
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
            &options.os_users,
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
            mechanisms: what,
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

    /// What applies, in one line, for the start-up banner.
    pub fn summary(&self) -> String {
        match self.applies {
            Applies::Confined => format!("on: {}", self.mechanisms),
            Applies::Disabled => {
                "off (kernels and terminals can touch every file the server can)".to_string()
            }
            Applies::UnconfinedWarn => {
                format!("partial ({}): {}", self.missing.join("; "), self.mechanisms)
            }
            Applies::Refused => format!(
                "unavailable, kernels and terminals refused ({})",
                self.missing.join("; ")
            ),
        }
    }

    /// The sandbox for a process `owner` starts now, or why it must not start.
    pub fn sandbox_for(&self, owner: &Owner) -> Result<Sandbox, String> {
        self.sandbox_with(owner, |view| view)
    }

    /// The sandbox of a conversion (nbconvert) `owner` asks for: their kernels' sandbox
    /// without the write grants, since a conversion only reads beside the notebook.
    pub fn reading_sandbox_for(&self, owner: &Owner) -> Result<Sandbox, String> {
        self.sandbox_with(owner, |view| FilesystemView {
            write: Vec::new(),
            ..view
        })
    }

    /// A sandbox that grants none of the root, run as concord's own account, for work
    /// that reads no user's files (listing nbconvert's exporters); `username` names its
    /// private directories.
    pub fn rootless_sandbox(&self, username: &str) -> Result<Sandbox, String> {
        let owner = Owner {
            username: username.to_string(),
            groups: Vec::new(),
        };
        let plan = self.plan_for(&owner, |_| FilesystemView::default())?;
        Ok(Sandbox {
            plan,
            supervision: Some(self.supervision.clone()),
            account: None,
        })
    }

    fn sandbox_with(
        &self,
        owner: &Owner,
        narrow: impl FnOnce(FilesystemView) -> FilesystemView,
    ) -> Result<Sandbox, String> {
        let plan = self.plan_for(owner, narrow)?;
        let account = self.accounts.account_for(&owner.username)?;
        Ok(Sandbox {
            plan,
            supervision: Some(self.supervision.clone()),
            account,
        })
    }

    /// The Landlock plan for a process `owner` starts now, from their view as `narrow`
    /// leaves it (`None`: files not confined), or why it must not start.
    fn plan_for(
        &self,
        owner: &Owner,
        narrow: impl FnOnce(FilesystemView) -> FilesystemView,
    ) -> Result<Option<Arc<ConfinementPlan>>, String> {
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
        let view = narrow(self.engine.filesystem_view(&who));
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

/// The confinement as the kernels and terminals services ask for it: the sandbox of a
/// process an owner starts now.
pub fn provider(
    confinement: &Arc<Confinement>,
) -> impl Fn(&Owner) -> Result<Sandbox, String> + Clone + Send + Sync + 'static {
    let confinement = confinement.clone();
    move |owner: &Owner| confinement.sandbox_for(owner)
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
