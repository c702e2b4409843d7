//! Starting and stopping the server: state directories, the policy, the listener (with port
//! retries), policy reload on file change and SIGHUP, and clean shutdown on SIGINT/SIGTERM.

use anyhow::{bail, Context};
use axum::extract::DefaultBodyLimit;
use axum::Router;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};

use crate::audit::Auditor;
use crate::auth::Authenticator;
use crate::config::{AuthMode, Settings};
use crate::events::EventBus;
use crate::http::pipeline::{dispatch, Dispatcher};
use crate::policy::PolicyHandle;
use crate::state::{App, AppState};

/// Create a private directory (mode 0700) if it does not exist.
pub fn private_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create directory {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot make {} private", dir.display()))?;
    Ok(())
}

/// Bind `ip:port`, or the next free ports up to `retries` more, as jupyter_server does.
async fn bind(settings: &Settings) -> anyhow::Result<TcpListener> {
    let mut last_error = None;
    for offset in 0..=settings.port_retries {
        let port = if settings.port == 0 {
            0
        } else {
            match settings.port.checked_add(offset) {
                Some(p) => p,
                None => break,
            }
        };
        match TcpListener::bind(SocketAddr::new(settings.ip, port)).await {
            Ok(listener) => return Ok(listener),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && settings.port != 0 => {
                tracing::info!("port {port} is already in use, trying another port");
                last_error = Some(e);
            }
            Err(e) => {
                return Err(e).with_context(|| format!("cannot listen on {}:{port}", settings.ip))
            }
        }
    }
    match last_error {
        Some(e) => Err(e).context(format!(
            "ports {}..={} are all in use (--port-retries {})",
            settings.port,
            settings.port.saturating_add(settings.port_retries),
            settings.port_retries
        )),
        None => bail!("no port to try"),
    }
}

/// Run the server until SIGINT, SIGTERM or `POST /api/shutdown`.
pub async fn run(settings: Settings) -> anyhow::Result<()> {
    private_dir(&settings.state_dir)?;
    private_dir(&settings.runtime_dir)?;

    let policy = PolicyHandle::load(&settings).map_err(|errors| {
        anyhow::anyhow!(
            "the policy is invalid, the server will not start:\n{}",
            errors.join("\n")
        )
    })?;
    tracing::info!("policy: {}", policy.describe());

    let store = Arc::new(
        concord_identity::UserStore::open(&settings.state_dir)
            .context("cannot open the users database")?,
    );
    let audit = Auditor::new(crate::policy::open_audit_log(&settings)?);

    let listener = bind(&settings).await?;
    let local = listener.local_addr()?;
    let mut auth = Authenticator::new(&settings, store)?;
    auth.set_port(local.port());

    let events = Arc::new(EventBus::new());
    events.set_limits(settings.events);
    let services = crate::services::start(&settings, policy.engine(), &events, &audit).await?;
    let state = AppState::new(
        settings.clone(),
        policy.authorizer(),
        auth,
        audit,
        events,
        services,
    );
    let app: App = Arc::new(state);

    let router = Router::new()
        .fallback(dispatch)
        .with_state(Dispatcher::new(app.clone()))
        .layer(DefaultBodyLimit::max(settings.max_body_size));

    // Signal handlers are installed before the URLs are printed: whoever reads them may
    // send SIGTERM at once and must get a clean shutdown.
    let mut term = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
    let mut shutdown_requested = app.shutdown.subscribe();
    spawn_policy_reload(policy.clone(), app.clone());
    spawn_access_watch(app.clone());
    spawn_collaborators_recheck(&app);
    crate::memory::spawn_periodic_release();
    print_banner(&settings, &policy, &app.confinement.summary());
    print_urls(&settings, local);
    let stop = async move {
        tokio::select! {
            _ = int.recv() => tracing::info!("interrupted (SIGINT), shutting down"),
            _ = term.recv() => tracing::info!("terminated (SIGTERM), shutting down"),
            _ = shutdown_requested.wait_for(|stop| *stop) => {}
        }
    };
    let (stopped_tx, stopped_rx) = tokio::sync::oneshot::channel::<()>();
    let server = serve_http(listener, router, settings.header_timeout, async move {
        let _ = stopped_rx.await;
    });
    let server = tokio::spawn(server);

    stop.await;
    // Services first: ending kernels and terminals closes their websockets, which would
    // otherwise hold the graceful shutdown open.
    crate::services::stop(
        &app.events,
        &app.kernels,
        &app.terminals,
        app.collab.as_deref(),
    )
    .await;
    let _ = stopped_tx.send(());
    match tokio::time::timeout(Duration::from_secs(5), server).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!("server task failed: {e}"),
        Err(_) => tracing::warn!("connections still open after 5 s; closing them"),
    }
    tracing::info!("concord stopped");
    Ok(())
}

/// Serve HTTP/1.1 connections (with upgrades, for websockets) until `stop` completes, then
/// let the connections being served finish their requests. A connection that does not
/// send a whole request head within `header_timeout` (also the idle time allowed between
/// requests on a kept-alive connection) is closed; `None` waits forever.
async fn serve_http(
    mut listener: TcpListener,
    router: Router,
    header_timeout: Option<Duration>,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) {
    use axum::serve::Listener;
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(header_timeout);
    // Told to stop: dropped; each connection task watches for that and shuts down gently.
    let (stopping_tx, stopping_rx) = tokio::sync::watch::channel(());
    // Each connection task holds a receiver: closed once every task has ended.
    let (ended_tx, ended_rx) = tokio::sync::watch::channel(());
    let mut stop = std::pin::pin!(stop);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = Listener::accept(&mut listener) => accepted,
            _ = stop.as_mut() => break,
        };
        // TCP_NODELAY: small websocket frames (an execute reply) must not wait for Nagle.
        let _ = tcp.set_nodelay(true);
        let service = tower::ServiceExt::map_request(
            router.clone(),
            move |req: hyper::Request<hyper::body::Incoming>| {
                let mut req = req.map(axum::body::Body::new);
                req.extensions_mut()
                    .insert(axum::extract::ConnectInfo(peer));
                req
            },
        );
        let service = hyper_util::service::TowerToHyperService::new(service);
        let connection = http
            .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
            .with_upgrades();
        let mut stopping = stopping_rx.clone();
        let ended = ended_rx.clone();
        tokio::spawn(async move {
            let mut connection = std::pin::pin!(connection);
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!("connection from {peer} ended: {e}");
                    }
                }
                _ = stopping.changed() => {
                    connection.as_mut().graceful_shutdown();
                    if let Err(e) = connection.await {
                        tracing::debug!("connection from {peer} ended: {e}");
                    }
                }
            }
            drop(ended);
        });
    }
    drop(listener);
    drop(stopping_tx);
    drop(ended_rx);
    ended_tx.closed().await;
}

/// What is in force, one aligned line each, so whoever starts concord sees who may get in,
/// under which policy, and where its files and records go.
fn print_banner(settings: &Settings, policy: &PolicyHandle, confinement: &str) {
    for (label, value) in banner_lines(settings, policy, confinement) {
        println!("  {label:<13}{value}");
    }
}

fn banner_lines(
    settings: &Settings,
    policy: &PolicyHandle,
    confinement: &str,
) -> Vec<(&'static str, String)> {
    let auth = match settings.auth {
        AuthMode::Token => "token (one owner; the token below logs in)".to_string(),
        AuthMode::Users => format!(
            "users (named users in {}; add them with `concord user add`)",
            settings.state_dir.join("concord.db").display()
        ),
        AuthMode::Proxy => format!(
            "proxy (user from the {} header of {})",
            settings.proxy_user_header,
            if settings.trusted_proxies.is_empty() {
                "no trusted proxy: every request is refused".to_string()
            } else {
                settings.trusted_proxies.join(", ")
            }
        ),
    };
    let mut policy_line = match &settings.policy {
        Some(file) => format!("{} ({})", file.display(), policy.describe()),
        None => format!("preset {}", settings.preset),
    };
    if let Some(cedar) = &settings.cedar_policy {
        policy_line.push_str(&format!(" + Cedar {}", cedar.display()));
    }
    let mut audit = Vec::new();
    if settings.audit_db {
        audit.push(settings.state_dir.join("audit.db").display().to_string());
    }
    match settings.audit_log.as_deref() {
        Some("-") => audit.push("standard output".to_string()),
        Some(file) => audit.push(file.to_string()),
        None => {}
    }
    let mut lines = vec![("auth:", auth), ("policy:", policy_line)];
    if settings.auth == AuthMode::Token {
        lines.push(("owner:", settings.owner.clone()));
    }
    lines.extend([
        ("root:", settings.root_dir.display().to_string()),
        ("state:", settings.state_dir.display().to_string()),
        (
            "audit log:",
            if audit.is_empty() {
                "off".to_string()
            } else {
                audit.join(" and ")
            },
        ),
        ("confinement:", confinement.to_string()),
    ]);
    lines
}

fn print_urls(settings: &Settings, local: SocketAddr) {
    let host = if local.ip().is_unspecified() {
        "localhost".to_string()
    } else if local.is_ipv6() {
        format!("[{}]", local.ip())
    } else {
        local.ip().to_string()
    };
    let base = format!("http://{host}:{}{}", local.port(), settings.base_url);
    println!("Concord is running at:");
    match settings.auth {
        AuthMode::Token if settings.token_generated => {
            println!("    {base}?token={}", settings.token)
        }
        AuthMode::Token => println!("    {base}?token=..."),
        AuthMode::Users => println!("    {base}login"),
        AuthMode::Proxy => println!("    {base} (behind a trusted proxy)"),
    }
    println!("Press Ctrl-C to stop.");
}

/// How often the users database is asked whether another process (the CLI) changed it.
const STORE_POLL: Duration = Duration::from_millis(200);

/// How often open websockets re-check their callers anyway: tokens and sessions expire
/// without anybody changing anything.
const EXPIRY_CHECK: Duration = Duration::from_secs(30);

/// Tell open websockets to re-check their callers when another process changed the users
/// database (a token revoked, a user removed, a password changed by `concord …`), and
/// every [`EXPIRY_CHECK`]. Changes made by this server signal themselves.
fn spawn_access_watch(app: App) {
    tokio::spawn(async move {
        let store = app.auth.store().clone();
        let mut last = store.external_changes().ok();
        let mut ticks = tokio::time::interval(STORE_POLL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut since_expiry_check = Duration::ZERO;
        loop {
            ticks.tick().await;
            since_expiry_check += STORE_POLL;
            // One short query, as every request's identification makes.
            let now = store.external_changes().ok();
            if now != last || since_expiry_check >= EXPIRY_CHECK {
                last = now;
                since_expiry_check = Duration::ZERO;
                app.access_changed();
            }
        }
    });
}

/// Collaborators' rights are decided again on the signal open websockets re-check on
/// (a policy reload, a revocation, a user removed).
fn spawn_collaborators_recheck(app: &App) {
    let Some(collab) = app.collab.clone() else {
        return;
    };
    let mut changes = app.access_changes.subscribe();
    tokio::spawn(async move {
        while changes.changed().await.is_ok() {
            collab.recheck_all();
        }
    });
}

/// Reload the policy when its files change or on SIGHUP; a bad file keeps the old policy.
/// A successful reload makes open websockets re-decide what they may do.
fn spawn_policy_reload(policy: PolicyHandle, app: App) {
    // Installed now, not in the task: a SIGHUP must never kill the server.
    let hup = match signal(SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!("cannot listen for SIGHUP: {e}");
            None
        }
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel::<&'static str>(8);
    let watcher = watch_policy_files(&policy.files(), tx);
    tokio::spawn(async move {
        // Owned by the task, so the watcher lives as long as the server.
        let _watcher = watcher;
        let mut hup = hup;
        loop {
            let why = tokio::select! {
                Some(_) = async { hup.as_mut()?.recv().await } => "SIGHUP",
                Some(why) = rx.recv() => why,
                // Neither SIGHUP nor a watched file: nothing will ever ask for a reload.
                else => return,
            };
            // Editors write in several steps: wait for the burst to settle.
            tokio::time::sleep(Duration::from_millis(150)).await;
            while rx.try_recv().is_ok() {}
            match policy.reload() {
                Ok(()) => {
                    tracing::info!("policy reloaded ({why}): {}", policy.describe());
                    app.access_changed();
                }
                Err(errors) => tracing::error!(
                    "policy reload ({why}) failed; the previous policy stays in force:\n{}",
                    errors.join("\n")
                ),
            }
        }
    });
}

/// Watch the directories of the policy files; events on those files are sent to `tx`.
fn watch_policy_files(
    files: &[std::path::PathBuf],
    tx: tokio::sync::mpsc::Sender<&'static str>,
) -> Option<notify::RecommendedWatcher> {
    use notify::Watcher;
    if files.is_empty() {
        return None;
    }
    let watched = files.to_vec();
    let mut watcher =
        match notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            let Ok(event) = event else { return };
            let relevant = event.paths.iter().any(|p| {
                p.file_name().is_some() && watched.iter().any(|f| p.file_name() == f.file_name())
            });
            if relevant && !event.kind.is_access() {
                let _ = tx.try_send("file change");
            }
        }) {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!("cannot watch policy files: {e}");
                return None;
            }
        };
    for dir in files.iter().filter_map(|f| f.parent()) {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        if let Err(e) = watcher.watch(dir, notify::RecursiveMode::NonRecursive) {
            tracing::warn!("cannot watch {} for policy changes: {e}", dir.display());
        }
    }
    Some(watcher)
}
