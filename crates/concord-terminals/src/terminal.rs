//! One terminal: its shell, the PTY reader that fans output out to clients, the writer
//! that feeds keystrokes in, and the lifecycle task that ends every process it started.

use std::collections::VecDeque;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use concord_authz::Owner;
use nix::sys::signal::Signal;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Child;
use tokio::sync::{mpsc, watch, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

use crate::client::{CloseKind, CloseReason, TerminalAccess};
use crate::config::TerminalConfig;
use crate::error::TerminalError;
use crate::procs::{self, Members};
use crate::protocol;
use crate::utf8::Utf8Decoder;

/// The size a PTY starts with before any client says otherwise (terminado's default).
const INITIAL_SIZE: (u16, u16) = (24, 80);
/// Keystroke messages waiting for the shell to read them; a typist beyond this (or beyond
/// the configured bytes) waits.
const INPUT_QUEUE: usize = 256;
const READ_BUFFER: usize = 64 * 1024;

/// Lock a mutex, recovering the data if another thread panicked while holding it (the
/// state stays usable: every update leaves it consistent).
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A snapshot of one attached client, for the admin and the audit log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttachedClient {
    /// Who is attached.
    pub username: String,
    /// Whether they may type.
    pub permission: TerminalAccess,
}

/// What is known about a running terminal.
#[derive(Clone, Debug)]
pub struct TerminalInfo {
    /// The server-chosen name: "1", "2", … as terminado's `NamedTermManager` picks them.
    pub name: String,
    /// Who created it.
    pub owner: Owner,
    /// The directory the shell started in.
    pub cwd: PathBuf,
    /// The shell's process id, which is also its process group and session id.
    pub pid: u32,
    /// When it was created.
    pub created: DateTime<Utc>,
    /// The last input or output.
    pub last_activity: DateTime<Utc>,
    /// The websocket clients attached now.
    pub clients: Vec<AttachedClient>,
}

impl TerminalInfo {
    /// The REST model, exactly jupyter_server_terminals' `{"name", "last_activity"}`.
    pub fn model(&self) -> TerminalModel {
        TerminalModel {
            name: self.name.clone(),
            last_activity: jupyter_isoformat(self.last_activity),
        }
    }
}

/// A terminal as `/api/terminals` returns it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TerminalModel {
    /// The terminal's name.
    pub name: String,
    /// ISO 8601 in UTC with a `Z`, as jupyter_server's `isoformat`.
    pub last_activity: String,
}

/// jupyter_server's `isoformat`: `2024-05-01T12:00:00.123456Z`.
fn jupyter_isoformat(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// Where one client's frames go, and how it ended.
pub(crate) struct ClientLink {
    /// Bytes queued for the client and not yet taken by it.
    pub queued: AtomicUsize,
    /// Set when the terminal stops sending to this client.
    pub end: Mutex<Option<CloseReason>>,
}

struct ClientSlot {
    id: u64,
    username: String,
    permission: TerminalAccess,
    /// Rows and columns; `None` for a dimension the client has not given.
    size: (Option<u16>, Option<u16>),
    pixels: (u16, u16),
    tx: mpsc::UnboundedSender<String>,
    link: Arc<ClientLink>,
}

struct SharedState {
    history: VecDeque<String>,
    history_bytes: usize,
    clients: Vec<ClientSlot>,
    next_client_id: u64,
    last_activity: DateTime<Utc>,
    size: (u16, u16),
    /// The shell has ended: no more clients, no more output.
    ended: bool,
}

/// A running terminal, shared by the manager, its tasks and its clients.
pub(crate) struct Terminal {
    pub name: String,
    pub owner: Owner,
    pub cwd: PathBuf,
    pub pid: i32,
    pub created: DateTime<Utc>,
    /// Creation order, for listing.
    pub seq: u64,
    history_limit_bytes: usize,
    client_queue_limit_bytes: usize,
    /// How long a client's socket may take to accept a frame.
    pub write_timeout: Duration,
    state: Mutex<SharedState>,
    /// Keystrokes for the writer, each with its share of the input budget.
    input: mpsc::Sender<(Vec<u8>, OwnedSemaphorePermit)>,
    /// The input budget in bytes (permits), given back as the shell reads.
    input_budget: Arc<Semaphore>,
    /// The whole budget.
    input_budget_bytes: u32,
    /// A duplicate of the PTY master, for resizing without waiting on the writer.
    master: OwnedFd,
    terminate_requested: Notify,
    terminating: AtomicBool,
    done: watch::Sender<bool>,
}

/// Called once when a terminal has fully ended (the manager forgets it).
pub(crate) type OnFinished = Box<dyn FnOnce(&Arc<Terminal>) + Send>;

impl Terminal {
    /// Start the configured shell on a new PTY in `cwd`.
    pub(crate) fn spawn(
        name: String,
        owner: Owner,
        cwd: PathBuf,
        seq: u64,
        config: &TerminalConfig,
        on_finished: OnFinished,
        sandbox: &concord_confine::Sandbox,
    ) -> Result<Arc<Terminal>, TerminalError> {
        let command_line = config.shell_command.join(" ");
        let spawn_error = |reason: String| TerminalError::Spawn {
            command: command_line.clone(),
            reason,
        };
        if config.shell_command.is_empty() {
            return Err(spawn_error("no shell command is configured".to_string()));
        }
        // Built here, in the parent; the child only puts descriptors in place or enforces
        // Landlock.
        let launch = sandbox
            .prepare(
                &config.shell_command,
                &concord_confine::LaunchExtras::default(),
            )
            .map_err(|e| spawn_error(format!("cannot confine the shell: {e}")))?;
        let (pty, pts) = pty_process::open().map_err(|e| spawn_error(e.to_string()))?;
        if let Some(account) = &sandbox.account {
            // The shell runs as its user's account: its terminal is theirs, as after a login.
            std::os::unix::fs::fchown(&pts, Some(account.uid), Some(account.gid))
                .map_err(|e| spawn_error(format!("cannot give the terminal to its user: {e}")))?;
        }
        pty.resize(pty_process::Size::new(INITIAL_SIZE.0, INITIAL_SIZE.1))
            .map_err(|e| spawn_error(e.to_string()))?;
        let master = pty
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| spawn_error(e.to_string()))?;

        let mut command = pty_process::Command::new(&launch.program).args(&launch.args);
        if !config.inherit_env {
            command = command.env_clear();
        }
        for key in &config.env_remove {
            command = command.env_remove(key);
        }
        command = command
            .env("TERM", &config.term_type)
            .envs(&config.env)
            .envs(launch.env)
            .current_dir(&cwd)
            .kill_on_drop(true);
        let mut pre_exec = launch.pre_exec;
        let supervised = sandbox.supervision.is_some();
        // SAFETY: the closure only makes system calls (prctl, dup2, fcntl,
        // landlock_restrict_self), which are async-signal-safe, as code between fork and exec
        // must be.
        command = unsafe {
            command.pre_exec(move || {
                // Orphans of the shell's jobs are re-parented to the shell (or to its
                // supervisor, a subreaper too), which reaps them, instead of escaping to
                // init: the terminal's family stays findable.
                if !supervised {
                    nix::sys::prctl::set_child_subreaper(true).map_err(std::io::Error::from)?;
                }
                pre_exec.run()
            })
        };
        let child = command.spawn(pts).map_err(|e| spawn_error(e.to_string()))?;
        let Some(pid) = child.id().and_then(|id| i32::try_from(id).ok()) else {
            return Err(spawn_error("the shell exited at once".to_string()));
        };

        let (reader, writer) = pty.into_split();
        let (input, input_rx) = mpsc::channel(INPUT_QUEUE);
        let input_budget_bytes =
            u32::try_from(config.input_queue_bytes.min(Semaphore::MAX_PERMITS))
                .unwrap_or(u32::MAX)
                .max(1);
        let now = Utc::now();
        let terminal = Arc::new(Terminal {
            name,
            owner,
            cwd,
            pid,
            created: now,
            seq,
            // The replay is queued to a new client at once: keep it well within one
            // client's queue, or the client would be cut off by its first live output.
            history_limit_bytes: config
                .history_limit_bytes
                .min(config.client_queue_limit_bytes / 2),
            client_queue_limit_bytes: config.client_queue_limit_bytes,
            write_timeout: config.write_timeout,
            state: Mutex::new(SharedState {
                history: VecDeque::new(),
                history_bytes: 0,
                clients: Vec::new(),
                next_client_id: 0,
                last_activity: now,
                size: INITIAL_SIZE,
                ended: false,
            }),
            input,
            input_budget: Arc::new(Semaphore::new(input_budget_bytes as usize)),
            input_budget_bytes,
            master,
            terminate_requested: Notify::new(),
            terminating: AtomicBool::new(false),
            done: watch::Sender::new(false),
        });
        let reader_task = tokio::spawn(read_loop(Arc::clone(&terminal), reader));
        let writer_task = tokio::spawn(write_loop(writer, input_rx));
        tokio::spawn(lifecycle(
            Arc::clone(&terminal),
            child,
            reader_task,
            writer_task,
            config.kill_grace,
            on_finished,
        ));
        Ok(terminal)
    }

    /// A snapshot for listings.
    pub(crate) fn info(&self) -> TerminalInfo {
        let state = lock(&self.state);
        TerminalInfo {
            name: self.name.clone(),
            owner: self.owner.clone(),
            cwd: self.cwd.clone(),
            pid: self.pid.unsigned_abs(),
            created: self.created,
            last_activity: state.last_activity,
            clients: state
                .clients
                .iter()
                .map(|c| AttachedClient {
                    username: c.username.clone(),
                    permission: c.permission,
                })
                .collect(),
        }
    }

    /// Whether the terminal is ending or has ended (hidden from listings, no attaching).
    pub(crate) fn is_terminating(&self) -> bool {
        self.terminating.load(Ordering::SeqCst)
    }

    /// Ask the lifecycle task to end the terminal; the receiver turns `true` when every
    /// process is gone.
    pub(crate) fn request_termination(&self) -> watch::Receiver<bool> {
        self.terminating.store(true, Ordering::SeqCst);
        self.terminate_requested.notify_one();
        self.done.subscribe()
    }

    /// Note input or output now.
    pub(crate) fn touch(&self) {
        lock(&self.state).last_activity = Utc::now();
    }

    /// Queue keystrokes for the shell. Waits while the shell is not reading; returns false
    /// once the shell is gone.
    pub(crate) async fn write_input(&self, bytes: Vec<u8>) -> bool {
        self.touch();
        // A message larger than the whole budget takes all of it: it waits alone.
        let share = u32::try_from(bytes.len())
            .unwrap_or(u32::MAX)
            .clamp(1, self.input_budget_bytes);
        let Ok(permit) = Arc::clone(&self.input_budget)
            .acquire_many_owned(share)
            .await
        else {
            return false;
        };
        self.input.send((bytes, permit)).await.is_ok()
    }

    /// Register a client: it gets `["setup", {}]`, then the history, then live output.
    pub(crate) fn attach(
        &self,
        username: &str,
        permission: TerminalAccess,
    ) -> Result<(u64, mpsc::UnboundedReceiver<String>, Arc<ClientLink>), TerminalError> {
        let mut state = lock(&self.state);
        if state.ended || self.is_terminating() {
            return Err(TerminalError::NotFound(self.name.clone()));
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let link = Arc::new(ClientLink {
            queued: AtomicUsize::new(0),
            end: Mutex::new(None),
        });
        let mut initial = vec![protocol::setup_frame()];
        if !state.history.is_empty() {
            let replay: String = state.history.iter().map(String::as_str).collect();
            initial.push(protocol::stdout_frame(&replay));
        }
        for frame in initial {
            link.queued.fetch_add(frame.len(), Ordering::SeqCst);
            // The receiver is in our hands, so this cannot fail.
            let _ = tx.send(frame);
        }
        let id = state.next_client_id;
        state.next_client_id += 1;
        state.clients.push(ClientSlot {
            id,
            username: username.to_string(),
            permission,
            size: (None, None),
            pixels: (0, 0),
            tx,
            link: Arc::clone(&link),
        });
        Ok((id, rx, link))
    }

    /// Forget a client (its websocket closed).
    pub(crate) fn detach(&self, id: u64) {
        let mut state = lock(&self.state);
        let before = state.clients.len();
        state.clients.retain(|c| c.id != id);
        if state.clients.len() != before {
            self.resize_to_smallest(&mut state);
        }
    }

    /// A typing client's window size changed.
    pub(crate) fn set_client_size(
        &self,
        id: u64,
        size: (Option<u16>, Option<u16>),
        pixels: (Option<u16>, Option<u16>),
    ) {
        let mut state = lock(&self.state);
        if let Some(slot) = state.clients.iter_mut().find(|c| c.id == id) {
            slot.size = size;
            slot.pixels = (pixels.0.unwrap_or(0), pixels.1.unwrap_or(0));
        }
        self.resize_to_smallest(&mut state);
    }

    /// Send a frame to one client only (notices).
    pub(crate) fn send_to(&self, id: u64, frame: String) {
        let mut state = lock(&self.state);
        let limit = self.client_queue_limit_bytes;
        let mut kicked = false;
        if let Some(slot) = state.clients.iter().find(|c| c.id == id) {
            kicked = !deliver(slot, frame, limit);
        }
        if kicked {
            state.clients.retain(|c| c.id != id);
            self.resize_to_smallest(&mut state);
        }
    }

    /// Output from the shell: remember it for replay and send it to every client.
    fn publish(&self, text: &str) {
        let frame = protocol::stdout_frame(text);
        let mut state = lock(&self.state);
        state.last_activity = Utc::now();
        self.remember(&mut state, text);
        let limit = self.client_queue_limit_bytes;
        let before = state.clients.len();
        state
            .clients
            .retain(|slot| deliver(slot, frame.clone(), limit));
        if state.clients.len() != before {
            self.resize_to_smallest(&mut state);
        }
    }

    fn remember(&self, state: &mut SharedState, text: &str) {
        let limit = self.history_limit_bytes;
        if limit == 0 {
            return;
        }
        state.history_bytes += text.len();
        state.history.push_back(text.to_string());
        keep_last(&mut state.history, &mut state.history_bytes, limit);
    }

    /// terminado's rule: the PTY takes the smallest size among clients (here: among the
    /// clients that may type; watchers never change the owner's terminal).
    fn resize_to_smallest(&self, state: &mut SharedState) {
        let typists = state
            .clients
            .iter()
            .filter(|c| c.permission == TerminalAccess::Type);
        let mut smallest: Option<(u16, u16, u16, u16)> = None;
        for client in typists {
            let (Some(rows), Some(cols)) = client.size else {
                continue;
            };
            smallest = Some(match smallest {
                None => (rows, cols, client.pixels.0, client.pixels.1),
                Some((r, c, h, w)) => (
                    r.min(rows),
                    c.min(cols),
                    if rows < r { client.pixels.0 } else { h },
                    if cols < c { client.pixels.1 } else { w },
                ),
            });
        }
        let Some((rows, cols, height, width)) = smallest else {
            return;
        };
        if state.size == (rows, cols) {
            return;
        }
        let size = rustix::termios::Winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: width,
            ws_ypixel: height,
        };
        match rustix::termios::tcsetwinsize(&self.master, size) {
            Ok(()) => state.size = (rows, cols),
            Err(error) => tracing::warn!(terminal = %self.name, %error, "could not resize"),
        }
    }

    /// The shell has ended: tell every client (`["disconnect", 1]`) and let them go.
    fn end_clients(&self) {
        let mut state = lock(&self.state);
        state.ended = true;
        for slot in state.clients.drain(..) {
            let frame = protocol::disconnect_frame();
            slot.link.queued.fetch_add(frame.len(), Ordering::SeqCst);
            let _ = slot.tx.send(frame);
            *lock(&slot.link.end) = Some(CloseReason {
                kind: CloseKind::TerminalEnded,
                message: format!("Terminal {} has ended", self.name),
            });
        }
    }
}

/// Drop the oldest output of `history` (chunks as the shell wrote them, `bytes` in all) until
/// at most `limit` bytes are left: whole chunks, then the front of the oldest one kept (at a
/// character boundary), so that the replay is the most recent output even when a line spans
/// two chunks.
fn keep_last(history: &mut VecDeque<String>, bytes: &mut usize, limit: usize) {
    while *bytes > limit {
        let excess = *bytes - limit;
        let Some(front) = history.front_mut() else {
            break;
        };
        if front.len() <= excess {
            *bytes -= front.len();
            history.pop_front();
            continue;
        }
        let mut cut = excess;
        while !front.is_char_boundary(cut) {
            cut += 1;
        }
        front.drain(..cut);
        *bytes -= cut;
        if front.is_empty() {
            history.pop_front();
        }
    }
}

/// Queue `frame` for one client; false if the client is too far behind and was cut off.
fn deliver(slot: &ClientSlot, frame: String, limit: usize) -> bool {
    let queued = slot.link.queued.load(Ordering::SeqCst);
    if queued.saturating_add(frame.len()) > limit {
        *lock(&slot.link.end) = Some(CloseReason {
            kind: CloseKind::TooSlow,
            message: format!(
                "Disconnected: this client fell more than {limit} bytes behind the terminal's output"
            ),
        });
        return false;
    }
    slot.link.queued.fetch_add(frame.len(), Ordering::SeqCst);
    // A client whose receiver is gone is removed when its registration drops.
    let _ = slot.tx.send(frame);
    true
}

async fn read_loop(terminal: Arc<Terminal>, mut reader: pty_process::OwnedReadPty) {
    let mut buffer = vec![0u8; READ_BUFFER];
    let mut decoder = Utf8Decoder::default();
    loop {
        match reader.read(&mut buffer).await {
            Ok(0) => break,
            Ok(n) => {
                let text = decoder.decode(&buffer[..n]);
                if !text.is_empty() {
                    terminal.publish(&text);
                }
            }
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            // EIO: every process holding the PTY's other end has closed it.
            Err(_) => break,
        }
    }
    let tail = decoder.finish();
    if !tail.is_empty() {
        terminal.publish(&tail);
    }
}

async fn write_loop(
    mut writer: pty_process::OwnedWritePty,
    mut input: mpsc::Receiver<(Vec<u8>, OwnedSemaphorePermit)>,
) {
    // The permit goes back to the budget once its bytes are written.
    while let Some((bytes, _permit)) = input.recv().await {
        if writer.write_all(&bytes).await.is_err() || writer.flush().await.is_err() {
            break;
        }
    }
}

/// Kills whatever is left of a terminal if its lifecycle task is dropped before it
/// finished (runtime shut down without `shutdown_all`).
struct KillGuard {
    pid: i32,
    armed: bool,
}

impl Drop for KillGuard {
    fn drop(&mut self) {
        if self.armed {
            let mut family = procs::family(self.pid, Members::Live);
            family.push(self.pid);
            procs::signal_each(&family, Signal::SIGKILL);
        }
    }
}

async fn lifecycle(
    terminal: Arc<Terminal>,
    mut child: Child,
    mut reader: JoinHandle<()>,
    writer: JoinHandle<()>,
    grace: Duration,
    on_finished: OnFinished,
) {
    let mut guard = KillGuard {
        pid: terminal.pid,
        armed: true,
    };
    tokio::select! {
        status = child.wait() => {
            tracing::info!(terminal = %terminal.name, ?status, "terminal shell exited");
        }
        () = terminal.terminate_requested.notified() => {
            tracing::info!(terminal = %terminal.name, "ending terminal");
        }
    }
    terminal.terminating.store(true, Ordering::SeqCst);
    end_processes(&mut child, terminal.pid, grace).await;
    // Output written just before the end is still in the PTY: let the reader drain it. A
    // process that escaped the session may keep the PTY open; do not wait for it forever.
    if tokio::time::timeout(grace, &mut reader).await.is_err() {
        reader.abort();
    }
    writer.abort();
    terminal.end_clients();
    guard.armed = false;
    on_finished(&terminal);
    terminal.done.send_replace(true);
}

/// End every process of the terminal whose shell is `pid`, children before the shell so
/// that the shell (a subreaper) reaps them and none is left a zombie:
/// 1. its jobs and daemons (outside the shell's process group): SIGHUP, then SIGTERM, then
///    SIGKILL, waiting up to `grace` between steps;
/// 2. subshells in the shell's own group (prompt helpers, command substitutions): SIGKILL.
///    They share the shell's job table, and an interactive bash subshell answers SIGHUP by
///    hanging up its whole process group, the shell included, before the shell could reap;
/// 3. the shell: SIGHUP, SIGTERM, SIGKILL;
/// 4. anything that appeared meanwhile: SIGKILL.
async fn end_processes(child: &mut Child, pid: i32, grace: Duration) {
    const STEPS: [Signal; 3] = [Signal::SIGHUP, Signal::SIGTERM, Signal::SIGKILL];
    for signal in STEPS {
        let jobs = procs::family(pid, Members::LiveJobs);
        if jobs.is_empty() {
            break;
        }
        procs::signal_each(&jobs, signal);
        // Stopped jobs only act on a signal once they run again.
        procs::signal_each(&jobs, Signal::SIGCONT);
        wait_until(grace, || procs::family(pid, Members::LiveJobs).is_empty()).await;
    }
    let subshells = procs::family(pid, Members::LiveInShellGroup);
    procs::signal_each(&subshells, Signal::SIGKILL);
    if matches!(child.try_wait(), Ok(None)) {
        // Give the shell a moment to reap what ended, so none is left a zombie.
        wait_until(grace, || {
            procs::family(pid, Members::LiveAndZombies).is_empty()
        })
        .await;
        for signal in STEPS {
            if !matches!(child.try_wait(), Ok(None)) {
                break;
            }
            procs::signal_one(pid, signal);
            procs::signal_one(pid, Signal::SIGCONT);
            if tokio::time::timeout(grace, child.wait()).await.is_ok() {
                break;
            }
        }
    }
    // Anything started while the shell was going down.
    for _ in 0..50 {
        let left = procs::family(pid, Members::Live);
        if left.is_empty() {
            return;
        }
        procs::signal_each(&left, Signal::SIGKILL);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tracing::warn!(pid, "processes of an ended terminal could not be killed");
}

/// Poll `done` every few milliseconds for at most `limit`.
async fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !done() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remember_all(chunks: &[&str], limit: usize) -> String {
        let (mut history, mut bytes) = (VecDeque::new(), 0);
        for chunk in chunks {
            bytes += chunk.len();
            history.push_back(chunk.to_string());
            keep_last(&mut history, &mut bytes, limit);
            assert_eq!(bytes, history.iter().map(String::len).sum::<usize>());
            assert!(bytes <= limit);
            assert!(history.iter().all(|c| !c.is_empty()));
        }
        history.iter().map(String::as_str).collect()
    }

    #[test]
    fn the_history_is_the_most_recent_output_even_across_chunks() {
        // "LAST4" split over two reads, the first mostly older output: the replay keeps all
        // of it (dropping whole chunks used to leave only "ST4", as the bash test saw).
        let read = format!("{}\r\nLA", "y".repeat(3000));
        let replay = remember_all(&[&read, "ST4\r\n$ "], 16);
        assert_eq!(replay, "yyyyy\r\nLAST4\r\n$ ");
        // One chunk larger than the limit keeps its end.
        assert_eq!(remember_all(&["abcdef"], 3), "def");
        // Never half a character.
        assert_eq!(remember_all(&["aé", "b"], 2), "b");
        assert_eq!(remember_all(&["é", "bc"], 3), "bc");
        assert_eq!(remember_all(&["é", "bc"], 4), "ébc");
    }
}
