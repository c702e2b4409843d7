//! The terminal manager: names, owners, limits, culling and shutdown.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use chrono::Utc;
use concord_authz::Owner;

use crate::client::{TerminalAccess, TerminalClient};
use crate::config::TerminalConfig;
use crate::error::TerminalError;
use crate::terminal::{lock, Terminal, TerminalInfo};

/// Creates, lists, ends and attaches to terminals. Cheap to clone (shared inside).
///
/// The manager does not decide policy: the server authorizes every call first (execute
/// to create or type, read to watch, ownership for listing) and passes the result in.
#[derive(Clone)]
pub struct TerminalManager {
    inner: Arc<ManagerInner>,
}

struct ManagerInner {
    config: TerminalConfig,
    terminals: Mutex<HashMap<String, Arc<Terminal>>>,
    next_seq: AtomicU64,
    shutting_down: AtomicBool,
    culler_started: AtomicBool,
    confiner: std::sync::RwLock<Option<ConfinementProvider>>,
}

/// Gives the sandbox of a shell its owner starts, or why none can be given (the start is
/// then refused). Set by the server, which knows the policy.
pub type ConfinementProvider =
    Arc<dyn Fn(&Owner) -> Result<concord_confine::Sandbox, String> + Send + Sync>;

impl TerminalManager {
    /// A manager with no terminals yet.
    pub fn new(config: TerminalConfig) -> Self {
        TerminalManager {
            inner: Arc::new(ManagerInner {
                config,
                terminals: Mutex::new(HashMap::new()),
                next_seq: AtomicU64::new(0),
                shutting_down: AtomicBool::new(false),
                culler_started: AtomicBool::new(false),
                confiner: std::sync::RwLock::new(None),
            }),
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &TerminalConfig {
        &self.inner.config
    }

    /// Start the configured shell for `owner` in `cwd` (already authorized by the server;
    /// `None`: the configured default). The name is the smallest free "1", "2", … as in
    /// terminado; nothing from the client chooses the command, environment or name.
    /// Must be called inside a tokio runtime.
    pub async fn create(
        &self,
        owner: Owner,
        cwd: Option<&Path>,
    ) -> Result<TerminalInfo, TerminalError> {
        self.create_limited(owner, cwd, None).await
    }

    /// [`create`](Self::create), refused when `owner` already holds `limit.max` terminals
    /// (the policy's per-user limit, on top of the configured ones).
    pub async fn create_limited(
        &self,
        owner: Owner,
        cwd: Option<&Path>,
        limit: Option<&concord_authz::Limit>,
    ) -> Result<TerminalInfo, TerminalError> {
        let provider = self
            .inner
            .confiner
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let sandbox = match provider {
            Some(provide) => provide(&owner).map_err(|reason| TerminalError::Spawn {
                command: self.inner.config.shell_command.join(" "),
                reason,
            })?,
            None => concord_confine::Sandbox::direct(),
        };
        self.spawn(owner, cwd, &sandbox, limit).await
    }

    /// Confine every shell started from now on with `provider`'s plan for its owner.
    pub fn set_confinement(&self, provider: Option<ConfinementProvider>) {
        *self
            .inner
            .confiner
            .write()
            .unwrap_or_else(|e| e.into_inner()) = provider;
    }

    /// [`create`](Self::create), with the shell started in `sandbox`.
    pub async fn create_confined(
        &self,
        owner: Owner,
        cwd: Option<&Path>,
        sandbox: &concord_confine::Sandbox,
    ) -> Result<TerminalInfo, TerminalError> {
        self.spawn(owner, cwd, sandbox, None).await
    }

    async fn spawn(
        &self,
        owner: Owner,
        cwd: Option<&Path>,
        sandbox: &concord_confine::Sandbox,
        limit: Option<&concord_authz::Limit>,
    ) -> Result<TerminalInfo, TerminalError> {
        let inner = &self.inner;
        if inner.shutting_down.load(Ordering::SeqCst) {
            return Err(TerminalError::ShuttingDown);
        }
        let cwd = cwd.unwrap_or(&inner.config.default_cwd);
        let cwd = check_cwd(cwd)?;

        let terminal = {
            let mut terminals = lock(&inner.terminals);
            // Checked again under the lock: `shutdown_all` sets the flag before it takes
            // the lock to collect the terminals, so none can slip in after it.
            if inner.shutting_down.load(Ordering::SeqCst) {
                return Err(TerminalError::ShuttingDown);
            }
            // Terminals still ending count: their processes are still there.
            if let Some(limit) = inner.config.max_terminals {
                if terminals.len() >= limit {
                    return Err(TerminalError::TooManyTerminals(limit));
                }
            }
            let owned = terminals
                .values()
                .filter(|t| t.owner.username == owner.username)
                .count();
            if let Some(limit) = inner.config.max_terminals_per_user {
                if owned >= limit {
                    return Err(TerminalError::TooManyForUser {
                        username: owner.username.clone(),
                        limit,
                    });
                }
            }
            if let Some(limit) = limit {
                if owned >= limit.max as usize {
                    return Err(TerminalError::LimitReached(limit.refusal(&owner.username)));
                }
            }
            let name = (1u64..)
                .map(|n| n.to_string())
                .find(|name| !terminals.contains_key(name))
                .unwrap_or_default();
            let weak = Arc::downgrade(inner);
            let terminal = Terminal::spawn(
                name.clone(),
                owner,
                cwd,
                inner.next_seq.fetch_add(1, Ordering::SeqCst),
                &inner.config,
                Box::new(move |ended| forget(&weak, ended)),
                sandbox,
            )?;
            terminals.insert(name, Arc::clone(&terminal));
            terminal
        };
        tracing::info!(
            terminal = %terminal.name,
            owner = %terminal.owner.username,
            cwd = %terminal.cwd.display(),
            pid = terminal.pid,
            "terminal started"
        );
        self.start_culler();
        Ok(terminal.info())
    }

    /// Every running terminal, oldest first. The server keeps those the caller may see.
    pub fn list(&self) -> Vec<TerminalInfo> {
        let mut terminals: Vec<Arc<Terminal>> = lock(&self.inner.terminals)
            .values()
            .filter(|t| !t.is_terminating())
            .cloned()
            .collect();
        terminals.sort_by_key(|t| t.seq);
        terminals.iter().map(|t| t.info()).collect()
    }

    /// One terminal.
    pub fn get(&self, name: &str) -> Result<TerminalInfo, TerminalError> {
        Ok(self.running(name)?.info())
    }

    /// End a terminal and every process it started; returns when they are all gone.
    pub async fn delete(&self, name: &str) -> Result<(), TerminalError> {
        let terminal = self.running(name)?;
        let mut done = terminal.request_termination();
        // The sender lives inside the terminal we hold, so this only ends with `true`.
        let _ = done.wait_for(|finished| *finished).await;
        Ok(())
    }

    /// End every terminal (the server is exiting); refuses new ones from now on.
    pub async fn shutdown_all(&self) {
        self.inner.shutting_down.store(true, Ordering::SeqCst);
        let terminals: Vec<Arc<Terminal>> = lock(&self.inner.terminals).values().cloned().collect();
        if !terminals.is_empty() {
            tracing::info!(count = terminals.len(), "shutting down terminals");
        }
        let mut waits = tokio::task::JoinSet::new();
        for terminal in terminals {
            let mut done = terminal.request_termination();
            waits.spawn(async move {
                let _ = done.wait_for(|finished| *finished).await;
                drop(terminal);
            });
        }
        while waits.join_next().await.is_some() {}
    }

    /// Attach a websocket client as `username` (for the log and listings) with the
    /// permission the server decided.
    pub fn attach(
        &self,
        name: &str,
        username: &str,
        permission: TerminalAccess,
    ) -> Result<TerminalClient, TerminalError> {
        let terminal = self.running(name)?;
        let (id, rx, link) = terminal.attach(username, permission)?;
        tracing::info!(terminal = %name, username, ?permission, "client attached");
        Ok(TerminalClient::new(terminal, id, permission, rx, link))
    }

    fn running(&self, name: &str) -> Result<Arc<Terminal>, TerminalError> {
        lock(&self.inner.terminals)
            .get(name)
            .filter(|t| !t.is_terminating())
            .cloned()
            .ok_or_else(|| TerminalError::NotFound(name.to_string()))
    }

    /// jupyter_server_terminals starts its culler with the first terminal.
    fn start_culler(&self) {
        let Some(timeout) = self.inner.config.cull_inactive_timeout else {
            return;
        };
        if self.inner.culler_started.swap(true, Ordering::SeqCst) {
            return;
        }
        let interval = if self.inner.config.cull_interval.is_zero() {
            std::time::Duration::from_secs(300)
        } else {
            self.inner.config.cull_interval
        };
        let weak = Arc::downgrade(&self.inner);
        tracing::info!(?timeout, ?interval, "culling idle terminals");
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                if inner.shutting_down.load(Ordering::SeqCst) {
                    return;
                }
                let manager = TerminalManager { inner };
                manager.cull_idle(timeout).await;
            }
        });
    }

    /// End terminals with no input or output for longer than `timeout`.
    async fn cull_idle(&self, timeout: std::time::Duration) {
        let now = Utc::now();
        for info in self.list() {
            let idle = (now - info.last_activity).to_std().unwrap_or_default();
            if idle > timeout {
                tracing::warn!(
                    terminal = %info.name,
                    idle_seconds = idle.as_secs(),
                    "culling terminal due to inactivity"
                );
                let _ = self.delete(&info.name).await;
            }
        }
    }
}

/// Remove an ended terminal from the manager, if the manager still exists and the name
/// still means this terminal.
fn forget(manager: &Weak<ManagerInner>, ended: &Arc<Terminal>) {
    if let Some(inner) = manager.upgrade() {
        let mut terminals = lock(&inner.terminals);
        if terminals
            .get(&ended.name)
            .is_some_and(|t| Arc::ptr_eq(t, ended))
        {
            terminals.remove(&ended.name);
        }
    }
}

fn check_cwd(cwd: &Path) -> Result<std::path::PathBuf, TerminalError> {
    let invalid = |reason: &str| {
        tracing::warn!(cwd = %cwd.display(), "cannot start a terminal: {reason}");
        TerminalError::InvalidCwd {
            path: cwd.display().to_string(),
            reason: reason.to_string(),
        }
    };
    if !cwd.is_absolute() {
        return Err(invalid("not an absolute path"));
    }
    match std::fs::metadata(cwd) {
        Ok(meta) if meta.is_dir() => Ok(cwd.to_path_buf()),
        Ok(_) => Err(invalid("not a directory")),
        Err(error) => Err(invalid(&error.to_string())),
    }
}
