//! Kernel processes: launching an incarnation (connection file, sandbox, environment),
//! connecting its channels and waiting until it is ready, its heartbeat, stopping it, and
//! the restarter that brings back a kernel that died.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::channels::{drop_unread_input, iopub_task, reader_task, writer_task, Liveness};
use super::client::{fail_pending, Unanswered};
use super::connection::{create_private_dir, remove_files, write_private_file, PORT_NAMES};
use super::{Kernel, KernelActionKind, KernelError, KernelManager};
use crate::hub::{lock, Pending, Route};
use crate::kernelspec::resolve_python;
use crate::transport::Transport;
use crate::wire::{Message, Signer};
use crate::ws::Channel;

/// One launched process and the tasks serving it.
pub(super) struct Incarnation {
    generation: u64,
    pub(super) pid: i32,
    files: Vec<PathBuf>,
    tasks: Vec<JoinHandle<()>>,
    exited: watch::Receiver<bool>,
    intentional: Arc<AtomicBool>,
    ready_at: Instant,
}

/// A kernelspec argument with the connection file and resource directory filled in.
fn substitute(arg: &str, conn_file: &Path, resource_dir: &Path) -> String {
    arg.replace("{connection_file}", &conn_file.to_string_lossy())
        .replace("{resource_dir}", &resource_dir.to_string_lossy())
}

impl KernelManager {
    /// Launch a new incarnation of `k` and wait for readiness. Caller holds the lifecycle lock.
    pub(super) async fn launch(&self, k: &Arc<Kernel>) -> Result<(), KernelError> {
        let cfg = &self.inner.config;
        create_private_dir(&cfg.runtime_dir)?;
        let kernel_dir = self.kernel_dir(&k.id);
        create_private_dir(&kernel_dir)?;
        let generation = {
            let mut st = lock(&k.state);
            st.generation += 1;
            st.execution_state = "starting".into();
            st.reason = None;
            st.generation
        };
        let (mut info, mut files) = self.endpoints(&k.id, generation)?;
        info["kernel_name"] = json!(k.name);
        let key = info["key"].as_str().unwrap_or_default().to_string();
        let conn_file = self.connection_file(&k.id);
        write_private_file(&conn_file, info.to_string().as_bytes())?;
        if let Some(account) = &k.sandbox.account {
            // The kernel runs as its user's account: its directory is theirs.
            concord_confine::give(&[kernel_dir.as_path(), conn_file.as_path()], account)
                .map_err(|e| KernelError::StartFailed(e.to_string()))?;
        }
        files.push(conn_file.clone());

        let argv = resolve_python(&k.spec.argv(), &k.spec.resource_dir);
        let argv: Vec<String> = argv
            .iter()
            .map(|a| substitute(a, &conn_file, &k.spec.resource_dir))
            .collect();
        if argv.is_empty() {
            return Err(KernelError::StartFailed("kernelspec argv is empty".into()));
        }
        // The kernel may read its own connection file and bind its own ports or sockets,
        // nothing else of the runtime directory.
        let ipc = info["transport"] == "ipc";
        let extras = concord_confine::LaunchExtras {
            read_files: vec![conn_file.clone()],
            bind_tcp: PORT_NAMES
                .iter()
                .filter(|_| !ipc)
                .filter_map(|n| info[*n].as_u64().and_then(|p| u16::try_from(p).ok()))
                .collect(),
            socket_dirs: if ipc {
                vec![kernel_dir.clone()]
            } else {
                Vec::new()
            },
            visible: vec![kernel_dir.clone()],
        };
        let launch = k.sandbox.prepare(&argv, &extras).map_err(|e| {
            remove_files(&files);
            KernelError::StartFailed(format!("cannot confine the kernel: {e}"))
        })?;
        let mut cmd = tokio::process::Command::new(&launch.program);
        cmd.args(&launch.args)
            .current_dir(&k.cwd)
            .stdin(std::process::Stdio::null())
            .process_group(0)
            .kill_on_drop(true)
            .env("JPY_PARENT_PID", std::process::id().to_string());
        for name in &cfg.env_remove {
            cmd.env_remove(name);
        }
        // The request's variables first: the kernelspec's, then the confinement's, win
        // (as jupyter_client lets the spec's `env` override the caller's).
        for (name, value) in &k.env {
            cmd.env(name, value);
        }
        for (name, value) in k.spec.env() {
            cmd.env(name, expand_env(&value));
        }
        cmd.envs(launch.env);
        let mut pre_exec = launch.pre_exec;
        // SAFETY: `run` only makes system calls (dup2, fcntl, prctl, landlock_restrict_self):
        // no allocation between fork and exec.
        unsafe {
            cmd.pre_exec(move || pre_exec.run());
        }
        let program = &argv[0];
        let mut child = cmd.spawn().map_err(|e| {
            remove_files(&files);
            KernelError::StartFailed(format!("cannot run {program}: {e}"))
        })?;
        let pid = child.id().map(|p| p as i32).unwrap_or(0);
        self.inner.counters.started.fetch_add(1, Ordering::Relaxed);
        tracing::info!(kernel = %k.id, pid, name = %k.name, "kernel started");

        let intentional = Arc::new(AtomicBool::new(false));
        let (exit_tx, exit_rx) = watch::channel(false);
        let mut tasks = Vec::new();
        {
            let mgr = self.clone();
            let kk = k.clone();
            let intentional = intentional.clone();
            tasks.push(tokio::spawn(async move {
                let status = child.wait().await;
                let _ = exit_tx.send(true);
                if !intentional.load(Ordering::SeqCst) {
                    tracing::warn!(kernel = %kk.id, ?status, "kernel process died");
                    mgr.inner.counters.deaths.fetch_add(1, Ordering::Relaxed);
                    let mgr2 = mgr.clone();
                    // A separate task: handling the death aborts this one.
                    tokio::spawn(async move { mgr2.handle_death(kk, generation).await });
                }
            }));
        }
        *lock(&k.incarnation) = Some(Incarnation {
            generation,
            pid,
            files,
            tasks,
            exited: exit_rx.clone(),
            intentional,
            ready_at: Instant::now(),
        });

        let ready = self.connect_and_wait(k, &info, &key, exit_rx).await;
        if let Err(e) = ready {
            tracing::warn!(kernel = %k.id, "kernel failed to start: {e}");
            self.stop_incarnation(k, false).await;
            lock(&k.state).reason = Some(e.to_string());
            return Err(e);
        }
        if let Some(inc) = lock(&k.incarnation).as_mut() {
            inc.ready_at = Instant::now();
        }
        Ok(())
    }

    /// Connect to the new process's channels, start the channel tasks, and wait until it
    /// answers kernel_info; then start its heartbeat.
    async fn connect_and_wait(
        &self,
        k: &Arc<Kernel>,
        info: &Value,
        key: &str,
        mut exited: watch::Receiver<bool>,
    ) -> Result<(), KernelError> {
        let cfg = &self.inner.config;
        let signer = Signer::new(key.as_bytes().to_vec());
        let transport = self.inner.transport.clone();
        let identity = uuid::Uuid::new_v4().simple().to_string();
        let connect = async {
            let iopub = transport
                .subscriber(&Self::endpoint(info, "iopub_port"))
                .await?;
            let shell = transport
                .dealer(&Self::endpoint(info, "shell_port"), identity.as_bytes())
                .await?;
            let control = transport
                .dealer(&Self::endpoint(info, "control_port"), identity.as_bytes())
                .await?;
            // stdin must share shell's identity: the kernel routes input_request by it.
            let stdin = transport
                .dealer(&Self::endpoint(info, "stdin_port"), identity.as_bytes())
                .await?;
            Ok::<_, crate::transport::TransportError>((iopub, shell, control, stdin))
        };
        let (iopub, shell, control, stdin) = tokio::select! {
            r = connect => r.map_err(|e| KernelError::StartFailed(e.to_string()))?,
            _ = exited.wait_for(|e| *e) => {
                return Err(KernelError::StartFailed("the kernel process exited during startup".into()))
            }
            _ = tokio::time::sleep(cfg.kernel_info_timeout) => {
                return Err(KernelError::StartFailed("timed out connecting to the kernel".into()))
            }
        };
        lock(&k.last_idle_parent).clear();
        let liveness = match lock(&k.incarnation).as_ref() {
            Some(inc) => Liveness {
                pid: inc.pid,
                exited: exited.clone(),
                intentional: inc.intentional.clone(),
            },
            None => return Err(KernelError::StartFailed("the kernel was stopped".into())),
        };
        let mut tasks = Vec::new();
        tasks.push(tokio::spawn(iopub_task(
            k.clone(),
            iopub,
            signer.clone(),
            liveness.clone(),
        )));
        for (i, (channel, (tx, rx))) in [
            (Channel::Shell, shell),
            (Channel::Control, control),
            (Channel::Stdin, stdin),
        ]
        .into_iter()
        .enumerate()
        {
            tasks.push(tokio::spawn(reader_task(
                k.clone(),
                channel,
                rx,
                signer.clone(),
                liveness.clone(),
            )));
            tasks.push(tokio::spawn(writer_task(
                k.inboxes[i].clone(),
                k.outboxes.bytes.clone(),
                tx,
                signer.clone(),
            )));
        }
        if let Some(inc) = lock(&k.incarnation).as_mut() {
            inc.tasks.extend(tasks);
        }

        // Readiness: kernel_info_request on shell until a reply and an iopub idle status
        // for our latest request arrived (the latter proves the subscription is live and
        // leaves the kernel settled), as jupyter_server's nudge does. A new request is sent
        // only when nothing came back for 0.5 s.
        let deadline = Instant::now() + cfg.kernel_info_timeout;
        let (reply_tx, mut reply_rx) = mpsc::unbounded_channel::<Message>();
        let mut sent = 0usize;
        let mut replies = 0usize;
        let mut last_id = String::new();
        loop {
            if replies == sent || sent == 0 {
                let req = Message::new_server_message(
                    "kernel_info_request",
                    &k.id,
                    "",
                    Bytes::from_static(b"{}"),
                    json!({}),
                );
                last_id = req.info.msg_id.clone();
                k.hub.register(
                    &last_id,
                    Pending {
                        route: Route::Internal(reply_tx.clone()),
                        channel: Channel::Shell,
                        msg_type: req.info.msg_type.clone(),
                        parent: Bytes::new(),
                    },
                );
                if k.outboxes.send(Channel::Shell, req).is_ok() {
                    sent += 1;
                }
            }
            let settle = Instant::now() + Duration::from_millis(500);
            loop {
                tokio::select! {
                    r = reply_rx.recv() => { if r.is_some() { replies += 1; } }
                    _ = tokio::time::sleep(Duration::from_millis(20)) => {}
                    _ = exited.wait_for(|e| *e) => {
                        return Err(KernelError::StartFailed("the kernel process exited during startup".into()));
                    }
                }
                let idle_for_last = *lock(&k.last_idle_parent) == last_id;
                if replies == sent && idle_for_last {
                    lock(&k.state).execution_state = "idle".into();
                    break;
                }
                if Instant::now() >= settle {
                    break;
                }
            }
            if replies == sent && *lock(&k.last_idle_parent) == last_id {
                break;
            }
            if Instant::now() >= deadline {
                return Err(KernelError::StartFailed(format!(
                    "no kernel_info reply within {:?}",
                    cfg.kernel_info_timeout
                )));
            }
        }
        // Heartbeat only once the kernel is up.
        let hb = tokio::spawn(heartbeat_task(
            k.clone(),
            transport.clone(),
            Self::endpoint(info, "hb_port"),
            cfg.heartbeat_interval,
            cfg.heartbeat_misses,
        ));
        if let Some(inc) = lock(&k.incarnation).as_mut() {
            inc.tasks.push(hb);
        }
        Ok(())
    }

    /// Stop the current incarnation (if any). `restart` tells the kernel it will come back.
    pub(super) async fn stop_incarnation(&self, k: &Arc<Kernel>, restart: bool) {
        let Some(inc) = lock(&k.incarnation).take() else {
            return;
        };
        inc.intentional.store(true, Ordering::SeqCst);
        let mut exited = inc.exited.clone();
        let wait = self.inner.config.shutdown_wait;
        if !*exited.borrow() {
            let req = Message::new_server_message(
                "shutdown_request",
                &k.id,
                "",
                Bytes::from_static(b"{}"),
                json!({"restart": restart}),
            );
            let _ = k.outboxes.send(Channel::Control, req);
            let gone = tokio::time::timeout(wait / 2, exited.wait_for(|e| *e))
                .await
                .is_ok();
            if !gone {
                let _ = killpg(Pid::from_raw(inc.pid), Signal::SIGTERM);
                let gone = tokio::time::timeout(wait / 2, exited.wait_for(|e| *e))
                    .await
                    .is_ok();
                if !gone {
                    let _ = killpg(Pid::from_raw(inc.pid), Signal::SIGKILL);
                    let _ = tokio::time::timeout(wait, exited.wait_for(|e| *e)).await;
                }
            }
        }
        // The kernel is gone; children it left in its group go too.
        let _ = killpg(Pid::from_raw(inc.pid), Signal::SIGKILL);
        for t in &inc.tasks {
            t.abort();
        }
        remove_files(&inc.files);
        tracing::info!(kernel = %k.id, pid = inc.pid, "kernel stopped");
    }

    /// The restarter: an unexpected exit of generation `generation`.
    fn handle_death(
        &self,
        k: Arc<Kernel>,
        generation: u64,
    ) -> futures::future::BoxFuture<'static, ()> {
        // Boxed with an explicit `Send`: launch → exit watcher → handle_death → launch is a
        // cycle the compiler cannot prove `Send` through opaque types.
        let mgr = self.clone();
        Box::pin(async move { mgr.handle_death_inner(k, generation).await })
    }

    async fn handle_death_inner(&self, k: Arc<Kernel>, generation: u64) {
        let guard = k.lifecycle.lock().await;
        let current = lock(&k.incarnation).as_ref().map(|i| i.generation);
        if current != Some(generation) || lock(&k.state).removed {
            return;
        }
        let stable = lock(&k.incarnation)
            .as_ref()
            .is_some_and(|i| i.ready_at.elapsed() >= self.inner.config.stable_start_time);
        self.stop_incarnation(&k, false).await;
        drop_unread_input(&k).await;
        let gives_up = {
            let mut st = lock(&k.state);
            if stable {
                st.restart_count = 0;
            }
            st.restart_count >= self.inner.config.restart_limit
        };
        // Before `restarting`: front ends drop what they wait for when they see it.
        fail_pending(
            &k,
            Unanswered::Died {
                restarting: !gives_up,
            },
        );
        loop {
            let attempt = {
                let mut st = lock(&k.state);
                st.restart_count += 1;
                st.restart_count
            };
            if attempt > self.inner.config.restart_limit {
                tracing::error!(kernel = %k.id, "kernel died and could not be restarted; giving up");
                // What was sent while it was being restarted.
                drop_unread_input(&k).await;
                fail_pending(&k, Unanswered::Died { restarting: false });
                {
                    let mut st = lock(&k.state);
                    st.execution_state = "dead".into();
                    st.reason = Some("kernel died and the restart limit was reached".into());
                    st.removed = true;
                }
                k.push_status("dead");
                lock(&self.inner.kernels).remove(&k.id);
                self.remove_kernel_dir(&k.id);
                k.hub.close_all("kernel died");
                return;
            }
            tracing::warn!(kernel = %k.id, attempt, "restarting dead kernel");
            self.inner
                .counters
                .auto_restarts
                .fetch_add(1, Ordering::Relaxed);
            k.set_state("restarting");
            k.push_status("restarting");
            // Each attempt is a restart event, as jupyter_client's restarter calls
            // `restart_kernel` (a kernel that finally stays dead is removed without one).
            let result = self.launch(&k).await;
            self.report(KernelActionKind::Restart, &k, &result);
            match result {
                Ok(()) => break,
                Err(e) => tracing::warn!(kernel = %k.id, "restart failed: {e}"),
            }
        }
        drop(guard);
    }
}

/// A kernelspec's `env` value with `${VAR}` replaced from the server's environment.
fn expand_env(value: &str) -> String {
    // jupyter_client substitutes ${VAR} from the server's environment in kernelspec env.
    let mut out = String::new();
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find('}') {
            Some(end) => {
                let name = &after[..end];
                match std::env::var(name) {
                    Ok(v) => out.push_str(&v),
                    Err(_) => out.push_str(&rest[start..start + 3 + end]),
                }
                rest = &after[end + 1..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// Pings the kernel's heartbeat: one ping per `interval`, each to be answered within its
/// interval (a new connection included: the socket may be gone). After `max_misses` missed
/// in a row the kernel is hung: it is killed, and the restarter takes over. A kernel that
/// stops answering is thus declared dead `max_misses` intervals after the first ping it
/// missed, between `max_misses - 1` and `max_misses + 1` intervals after it stopped.
async fn heartbeat_task(
    k: Arc<Kernel>,
    transport: Arc<dyn Transport>,
    endpoint: String,
    interval: Duration,
    max_misses: u32,
) {
    let mut misses = 0u32;
    let mut probe = None;
    let mut next = tokio::time::Instant::now() + interval;
    loop {
        tokio::time::sleep_until(next).await;
        // A round late to start (a busy machine) still gives the kernel time to answer.
        let deadline = (next + interval).max(tokio::time::Instant::now() + interval / 2);
        next = deadline;
        let answered = tokio::time::timeout_at(deadline, async {
            if probe.is_none() {
                probe = transport.heartbeat(&endpoint).await.ok();
            }
            match probe.as_mut() {
                Some(p) => p.ping().await.is_ok(),
                None => false,
            }
        })
        .await
        .unwrap_or(false);
        if answered {
            misses = 0;
            continue;
        }
        // Connect afresh: the connection may be to a heartbeat socket that is gone.
        probe = None;
        misses += 1;
        tracing::warn!(kernel = %k.id, misses, "kernel heartbeat missed");
        if misses >= max_misses {
            tracing::error!(kernel = %k.id, "kernel stopped answering heartbeats; killing it");
            if let Some(pid) = k.pid() {
                // The exit watcher sees the death and the restarter takes over.
                let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
            }
            return;
        }
    }
}
