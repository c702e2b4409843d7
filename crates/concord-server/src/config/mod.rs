//! Server settings: command-line flags, `CONCORD_*` environment variables and a TOML file.
//!
//! Precedence: flag > environment variable > config file > built-in default. Every flag of
//! `concord serve` has the same name (with `_` for `-`) as a key of the config file.
//!
//! This is the one place where options are merged: [`Settings::resolve`] layers the command
//! line (with the environment, which clap reads) over the file once, applies the defaults and
//! checks the values, and hands every service a typed configuration (`Settings::contents`,
//! `kernels`, `terminals`, `events`, `confine`, `lab`, `nbconvert`). Each service's options and their merge are
//! in the submodule named after it.

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use serde::Deserialize;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

mod collaboration;
mod confine;
mod contents;
mod events;
mod kernels;
mod lab;
mod nbconvert;
mod terminals;

pub use collaboration::{CollaborationConfig, CollaborationOptions, COLLABORATION_EXTENSIONS};
pub use confine::{ConfineOptions, ConfineSettings};
pub use contents::ContentsOptions;
pub use events::EventsOptions;
pub use kernels::{KernelTransport, KernelsConfig, KernelsOptions};
pub use lab::LabOptions;
pub use nbconvert::NbconvertOptions;
pub use terminals::{TerminalsConfig, TerminalsOptions, DEFAULT_MAX_MESSAGE_SIZE};

/// `impl $options { fn over(self, lower: Self) -> Self }`: each field from `self` (the
/// command line and environment) when set, else from `lower` (the config file).
macro_rules! layered {
    ($options:ident { $($field:ident),* $(,)? }) => {
        impl $options {
            /// These options over `lower`'s: each field from here when set, else from there.
            pub fn over(self, lower: Self) -> Self {
                $options { $($field: self.$field.or(lower.$field)),* }
            }
        }
    };
}
use layered;

/// A size in bytes of at least 1024 (smaller is an error naming `--name`), or `default`.
fn at_least_1024(name: &str, value: Option<usize>, default: usize) -> anyhow::Result<usize> {
    match value {
        Some(n) if n < 1024 => bail!("--{name} must be at least 1024 bytes"),
        Some(n) => Ok(n),
        None => Ok(default),
    }
}

/// A duration in whole seconds, at least 1 (0 is an error naming `--name`), or `default`.
fn at_least_a_second(
    name: &str,
    value: Option<u64>,
    default: Duration,
) -> anyhow::Result<Duration> {
    match value {
        Some(0) => bail!("--{name} must be at least 1 second"),
        Some(s) => Ok(Duration::from_secs(s)),
        None => Ok(default),
    }
}

/// How callers prove who they are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// One owner with a secret token (jupyter_server's default).
    Token,
    /// Named users and groups kept by concord, with a login page and API tokens.
    Users,
    /// A trusted reverse proxy names the user in a header.
    Proxy,
}

/// The options of `concord serve`, as given on the command line, in the environment or in the
/// config file. Every field is optional here; [`Settings::resolve`] applies the defaults.
#[derive(Args, Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeOptions {
    /// A TOML config file with any of these options as keys.
    #[arg(long, help_heading = "Server", env = "CONCORD_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// The address to listen on.
    #[arg(long, display_order = 1, env = "CONCORD_IP")]
    pub ip: Option<IpAddr>,
    /// The port to listen on (0 picks a free one).
    #[arg(long, display_order = 0, env = "CONCORD_PORT")]
    pub port: Option<u16>,
    /// How many following ports to try when the port is taken.
    #[arg(long, help_heading = "Server", env = "CONCORD_PORT_RETRIES")]
    pub port_retries: Option<u16>,
    /// The directory whose files the server serves.
    #[arg(long, display_order = 5, env = "CONCORD_ROOT_DIR")]
    pub root_dir: Option<PathBuf>,
    /// The URL prefix of every route, e.g. `/jupyter/`.
    #[arg(long, help_heading = "Server", env = "CONCORD_BASE_URL")]
    pub base_url: Option<String>,
    /// Log level: error, warn, info, debug or trace.
    #[arg(long, help_heading = "Server", env = "CONCORD_LOG_LEVEL")]
    pub log_level: Option<String>,
    /// How callers authenticate.
    #[arg(long, display_order = 2, env = "CONCORD_AUTH", value_enum)]
    pub auth: Option<AuthMode>,
    /// The owner's token in token mode (also read from `JUPYTER_TOKEN`); random when unset.
    #[arg(
        long,
        help_heading = "Authentication",
        env = "CONCORD_TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// The username of the token owner (default: the OS user).
    #[arg(long, help_heading = "Authentication", env = "CONCORD_OWNER")]
    pub owner: Option<String>,
    /// A built-in policy: owner-only, read-only, read-write-no-execute, temporary, classroom.
    #[arg(long, display_order = 3, env = "CONCORD_PRESET")]
    pub preset: Option<String>,
    /// A policy file (TOML); replaces the preset.
    #[arg(long, display_order = 4, env = "CONCORD_POLICY")]
    pub policy: Option<PathBuf>,
    /// Extra raw Cedar policies, added to the TOML policy or preset.
    #[arg(long, help_heading = "Policy and audit", env = "CONCORD_CEDAR_POLICY")]
    pub cedar_policy: Option<PathBuf>,
    /// Where concord keeps its state: users, audit log, cookie secret.
    #[arg(long, help_heading = "Server", env = "CONCORD_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// Where concord keeps runtime files (kernel connection files).
    #[arg(long, help_heading = "Server", env = "CONCORD_RUNTIME_DIR")]
    pub runtime_dir: Option<PathBuf>,
    /// Proxy mode: the header naming the user.
    #[arg(
        long,
        help_heading = "Authentication",
        env = "CONCORD_PROXY_USER_HEADER"
    )]
    pub proxy_user_header: Option<String>,
    /// Proxy mode: the header listing the user's groups (comma-separated).
    #[arg(
        long,
        help_heading = "Authentication",
        env = "CONCORD_PROXY_GROUPS_HEADER"
    )]
    pub proxy_groups_header: Option<String>,
    /// Proxy mode: addresses or CIDR ranges of the proxies whose headers are believed.
    #[arg(
        long,
        help_heading = "Authentication",
        env = "CONCORD_TRUSTED_PROXIES",
        value_delimiter = ','
    )]
    pub trusted_proxies: Option<Vec<String>>,
    /// Host names (besides local ones) that browsers may use to reach this server;
    /// `*` allows any (turns off DNS-rebinding protection).
    #[arg(
        long,
        help_heading = "HTTP",
        env = "CONCORD_ALLOWED_HOSTS",
        value_delimiter = ','
    )]
    pub allowed_hosts: Option<Vec<String>>,
    /// Origins (`https://example.org`) allowed to make cross-origin API requests.
    #[arg(
        long,
        help_heading = "HTTP",
        env = "CONCORD_ALLOW_ORIGIN",
        value_delimiter = ','
    )]
    pub allow_origin: Option<Vec<String>>,
    /// The largest request body accepted, in bytes.
    #[arg(long, help_heading = "HTTP", env = "CONCORD_MAX_BODY_SIZE")]
    pub max_body_size: Option<usize>,
    /// The most request-body bytes held in memory at once, over all requests (contents
    /// uploads stream to disk and count only while they pass through).
    #[arg(long, help_heading = "HTTP", env = "CONCORD_MAX_BODY_MEMORY")]
    pub max_body_memory: Option<u64>,
    /// Seconds a connection may take to send a request's headers, and stay idle between
    /// two requests; then it is closed (0: wait forever).
    #[arg(long, help_heading = "HTTP", env = "CONCORD_HEADER_TIMEOUT")]
    pub header_timeout: Option<f64>,
    /// Where to write the audit log as JSON lines: a file path, or `-` for standard output.
    #[arg(long, help_heading = "Policy and audit", env = "CONCORD_AUDIT_LOG")]
    pub audit_log: Option<String>,
    /// Keep the audit log in the SQLite database `audit.db` in the state directory.
    #[arg(long, help_heading = "Policy and audit", env = "CONCORD_AUDIT_DB")]
    pub audit_db: Option<bool>,
    /// Mark the login cookie `Secure` (set when concord sits behind HTTPS).
    #[arg(long, help_heading = "HTTP", env = "CONCORD_SECURE_COOKIE")]
    pub secure_cookie: Option<bool>,
    /// The files service (`[contents]` in the config file).
    #[command(flatten, next_help_heading = "Contents")]
    #[serde(default)]
    pub contents: ContentsOptions,
    /// The JupyterLab front end (`[lab]` in the config file).
    #[command(flatten, next_help_heading = "JupyterLab")]
    #[serde(default)]
    pub lab: LabOptions,
    /// The kernels service (`[kernels]` in the config file).
    #[command(flatten, next_help_heading = "Kernels")]
    #[serde(default)]
    pub kernels: KernelsOptions,
    /// Landlock confinement of kernels and terminals (`[confine]` in the config file).
    #[command(flatten, next_help_heading = "Confinement")]
    #[serde(default)]
    pub confine: ConfineOptions,
    /// Terminals (`[terminals]` in the config file).
    #[command(flatten, next_help_heading = "Terminals")]
    #[serde(default)]
    pub terminals: TerminalsOptions,
    /// `/api/events` (`[events]` in the config file).
    #[command(flatten, next_help_heading = "Events")]
    #[serde(default)]
    pub events: EventsOptions,
    /// Exports (`[nbconvert]` in the config file).
    #[command(flatten, next_help_heading = "Exports (nbconvert)")]
    #[serde(default)]
    pub nbconvert: NbconvertOptions,
    /// Real-time collaboration (`[collaboration]` in the config file).
    #[command(flatten, next_help_heading = "Collaboration")]
    #[serde(default)]
    pub collaboration: CollaborationOptions,
}

/// The server's settings with every default applied.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Listen address.
    pub ip: IpAddr,
    /// First port to try.
    pub port: u16,
    /// How many following ports to try.
    pub port_retries: u16,
    /// Absolute, canonical root directory.
    pub root_dir: PathBuf,
    /// URL prefix, always starting and ending with `/`.
    pub base_url: String,
    /// Log filter.
    pub log_level: String,
    /// Authentication mode.
    pub auth: AuthMode,
    /// Token mode's token (never empty).
    pub token: String,
    /// Whether the token was generated (and must be printed).
    pub token_generated: bool,
    /// Username of the token owner.
    pub owner: String,
    /// Preset name, used when no policy file is given.
    pub preset: String,
    /// Policy file.
    pub policy: Option<PathBuf>,
    /// Raw Cedar policy file.
    pub cedar_policy: Option<PathBuf>,
    /// State directory (created, mode 0700).
    pub state_dir: PathBuf,
    /// Runtime directory (created, mode 0700).
    pub runtime_dir: PathBuf,
    /// Proxy user header (lowercase).
    pub proxy_user_header: String,
    /// Proxy groups header (lowercase).
    pub proxy_groups_header: String,
    /// Trusted proxy addresses or ranges.
    pub trusted_proxies: Vec<String>,
    /// Extra allowed Host names.
    pub allowed_hosts: Vec<String>,
    /// Allowed cross-origin origins.
    pub allow_origin: Vec<String>,
    /// Request body limit in bytes.
    pub max_body_size: usize,
    /// Request-body bytes held in memory at once, over all requests.
    pub max_body_memory: u64,
    /// How long a connection may take to send a request head (`None`: no limit).
    pub header_timeout: Option<std::time::Duration>,
    /// Audit JSON-lines destination.
    pub audit_log: Option<String>,
    /// Whether the audit log goes to SQLite.
    pub audit_db: bool,
    /// Whether cookies carry `Secure`.
    pub secure_cookie: bool,
    /// The config file, when one was given.
    pub config_file: Option<PathBuf>,
    /// The files service.
    pub contents: concord_contents::ContentsConfig,
    /// The kernels and sessions services.
    pub kernels: KernelsConfig,
    /// The terminals service.
    pub terminals: TerminalsConfig,
    /// `/api/events`.
    pub events: crate::events::EventLimits,
    /// The confinement of kernels and terminals.
    pub confine: ConfineSettings,
    /// The JupyterLab front end.
    pub lab: concord_lab::LabConfig,
    /// Exports; `None` when switched off.
    pub nbconvert: Option<concord_nbconvert::NbconvertConfig>,
    /// Real-time collaboration (`None`: off).
    pub collaboration: CollaborationConfig,
}

impl ServeOptions {
    /// Make every path option absolute, relative to `cwd` (the directory concord started
    /// in): kernels, terminals and the confinement receive these paths, and a kernel runs
    /// in another directory, where a relative path would name something else.
    pub fn make_paths_absolute(&mut self, cwd: &Path) {
        let one = |p: &mut Option<PathBuf>| {
            if let Some(path) = p {
                *path = absolute(cwd, path);
            }
        };
        let many = |p: &mut Option<Vec<PathBuf>>| {
            for path in p.iter_mut().flatten() {
                *path = absolute(cwd, path);
            }
        };
        one(&mut self.config);
        one(&mut self.root_dir);
        one(&mut self.policy);
        one(&mut self.cedar_policy);
        one(&mut self.state_dir);
        one(&mut self.runtime_dir);
        if let Some(log) = self.audit_log.as_mut().filter(|log| log.as_str() != "-") {
            *log = absolute(cwd, Path::new(log.as_str()))
                .to_string_lossy()
                .into_owned();
        }
        one(&mut self.contents.trash_dir);
        one(&mut self.lab.lab_app_dir);
        // A bare name (`python3`) is looked up on PATH; a path with a slash is a file.
        if let Some(python) = self.nbconvert.python.as_mut() {
            if python.components().count() > 1 {
                *python = absolute(cwd, python);
            }
        }
        many(&mut self.lab.labextensions_dir);
        many(&mut self.kernels.kernel_dir);
        many(&mut self.confine.exec_paths);
        many(&mut self.confine.write_paths);
    }

    /// Read a config file; unknown keys are an error naming the file and line.
    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        toml::from_str(&text).map_err(|e| {
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
            match line {
                Some(line) => anyhow::anyhow!("{}:{line}: {}", path.display(), e.message()),
                None => anyhow::anyhow!("{}: {}", path.display(), e.message()),
            }
        })
    }
}

/// Fill `$field` from the command line/environment, else the file, else `$default`.
macro_rules! pick {
    ($cli:ident, $file:ident, $field:ident, $default:expr) => {
        $cli.$field
            .clone()
            .or($file.$field.clone())
            .unwrap_or_else(|| $default)
    };
}

impl Settings {
    /// Merge command line/environment options over the config file and the defaults.
    pub fn resolve(mut cli: ServeOptions) -> anyhow::Result<Settings> {
        // Paths are made absolute once, here, relative to where concord was started.
        let cwd = std::env::current_dir().context("cannot read the current directory")?;
        cli.make_paths_absolute(&cwd);
        let mut file = match &cli.config {
            Some(path) => ServeOptions::from_file(path)?,
            None => ServeOptions::default(),
        };
        file.make_paths_absolute(&cwd);
        let root_dir = pick!(cli, file, root_dir, PathBuf::from("."));
        let root_dir = std::fs::canonicalize(&root_dir)
            .with_context(|| format!("root directory {} does not exist", root_dir.display()))?;
        if !root_dir.is_dir() {
            bail!("root directory {} is not a directory", root_dir.display());
        }
        let (token, token_generated) = match cli
            .token
            .clone()
            .or_else(|| std::env::var("JUPYTER_TOKEN").ok())
            .or(file.token.clone())
        {
            Some(t) if t.is_empty() => bail!(
                "an empty token would let anyone in: set a token, or use --auth users or --auth proxy"
            ),
            Some(t) => (t, false),
            None => (hex::encode(rand::random::<[u8; 24]>()), true),
        };
        let state_dir = absolute(&cwd, &pick!(cli, file, state_dir, default_state_dir()));
        let runtime_dir = pick!(cli, file, runtime_dir, state_dir.join("runtime"));
        // The services' option groups, each layered once and turned into its typed config.
        let contents = cli
            .contents
            .clone()
            .over(file.contents.clone())
            .resolve(&root_dir, &state_dir);
        let events = cli.events.clone().over(file.events.clone()).resolve()?;
        let nbconvert = cli
            .nbconvert
            .clone()
            .over(file.nbconvert.clone())
            .resolve()?;
        let kernel_options = cli.kernels.clone().over(file.kernels.clone());
        let confine = cli
            .confine
            .clone()
            .over(file.confine.clone())
            .resolve(kernel_options.uses_tcp());
        // A kernel never listens where confined processes may connect.
        let reserved_ports = confine.tcp_connect.clone().unwrap_or_default();
        let kernels =
            kernel_options.resolve(&root_dir, &runtime_dir, reserved_ports, secret_env_names())?;
        let terminals = cli
            .terminals
            .clone()
            .over(file.terminals.clone())
            .resolve(&root_dir, secret_env_names())?;
        let auth = pick!(cli, file, auth, AuthMode::Token);
        let base_url = normalize_base_url(&pick!(cli, file, base_url, "/".to_string()))?;
        let mut lab = cli.lab.clone().over(file.lab.clone()).resolve(
            &state_dir,
            &base_url,
            (auth == AuthMode::Token).then(|| token.clone()),
            &contents,
        );
        let collaboration = cli
            .collaboration
            .clone()
            .over(file.collaboration.clone())
            .resolve()?;
        if collaboration.is_none() {
            lab.page.disabled_extensions = COLLABORATION_EXTENSIONS.map(String::from).to_vec();
        }
        Ok(Settings {
            ip: pick!(cli, file, ip, IpAddr::from([127, 0, 0, 1])),
            port: pick!(cli, file, port, 8888),
            port_retries: pick!(cli, file, port_retries, 50),
            root_dir,
            base_url,
            log_level: pick!(cli, file, log_level, "info".to_string()),
            auth,
            token,
            token_generated,
            owner: pick!(cli, file, owner, default_owner()),
            preset: pick!(cli, file, preset, "owner-only".to_string()),
            policy: cli.policy.clone().or(file.policy.clone()),
            cedar_policy: cli.cedar_policy.clone().or(file.cedar_policy.clone()),
            state_dir,
            runtime_dir,
            proxy_user_header: pick!(cli, file, proxy_user_header, "x-forwarded-user".to_string())
                .to_ascii_lowercase(),
            proxy_groups_header: pick!(
                cli,
                file,
                proxy_groups_header,
                "x-forwarded-groups".to_string()
            )
            .to_ascii_lowercase(),
            trusted_proxies: pick!(cli, file, trusted_proxies, Vec::new()),
            allowed_hosts: pick!(cli, file, allowed_hosts, Vec::new()),
            allow_origin: pick!(cli, file, allow_origin, Vec::new()),
            max_body_size: pick!(cli, file, max_body_size, 256 * 1024 * 1024),
            max_body_memory: pick!(cli, file, max_body_memory, 256 * 1024 * 1024),
            header_timeout: seconds_or_forever(
                "header_timeout",
                pick!(cli, file, header_timeout, 30.0),
            )?,
            audit_log: cli.audit_log.clone().or(file.audit_log.clone()),
            audit_db: pick!(cli, file, audit_db, true),
            secure_cookie: pick!(cli, file, secure_cookie, false),
            config_file: cli.config.clone(),
            contents,
            kernels,
            terminals,
            events,
            confine,
            lab,
            nbconvert,
            collaboration,
        })
    }
}

/// A duration option in seconds: 0 is "no limit"; negative or not a number is an error.
fn seconds_or_forever(name: &str, secs: f64) -> anyhow::Result<Option<std::time::Duration>> {
    if secs == 0.0 {
        return Ok(None);
    }
    std::time::Duration::try_from_secs_f64(secs)
        .map(Some)
        .map_err(|_| anyhow::anyhow!("{name} must be a number of seconds >= 0, not {secs}"))
}

/// `jupyter` → `/jupyter/`; `/` stays `/`. Refuses characters that would break URLs.
pub fn normalize_base_url(raw: &str) -> anyhow::Result<String> {
    let trimmed = raw.trim_matches('/');
    if trimmed
        .chars()
        .any(|c| c.is_whitespace() || matches!(c, '?' | '#' | '"' | '<' | '>' | '\\'))
    {
        bail!("invalid base URL {raw:?}");
    }
    Ok(if trimmed.is_empty() {
        "/".to_string()
    } else {
        format!("/{trimmed}/")
    })
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

/// `path` if it is absolute, else `cwd/path`.
fn absolute(cwd: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        cwd.join(path)
    }
}

/// The state directory as the commands other than `serve` find it: `flag` (the command
/// line or environment), else the config file's, else the default.
pub fn state_dir(flag: Option<PathBuf>, config: Option<&Path>) -> anyhow::Result<PathBuf> {
    let file = match config {
        Some(path) => ServeOptions::from_file(path)?,
        None => ServeOptions::default(),
    };
    Ok(flag.or(file.state_dir).unwrap_or_else(default_state_dir))
}

/// `$XDG_DATA_HOME/concord`, else `~/.local/share/concord`.
pub fn default_state_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("concord");
    }
    match std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        Some(home) => PathBuf::from(home).join(".local/share/concord"),
        None => PathBuf::from(".concord"),
    }
}

fn default_owner() -> String {
    std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .or_else(|| {
            nix::unistd::User::from_uid(nix::unistd::getuid())
                .ok()
                .flatten()
                .map(|u| u.name)
        })
        .unwrap_or_else(|| "owner".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_url_is_normalized() {
        assert_eq!(normalize_base_url("").unwrap(), "/");
        assert_eq!(normalize_base_url("jupyter").unwrap(), "/jupyter/");
        assert_eq!(normalize_base_url("/a/b/").unwrap(), "/a/b/");
        assert!(normalize_base_url("/a b/").is_err());
    }

    #[test]
    fn config_file_unknown_key_names_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("concord.toml");
        std::fs::write(&path, "port = 9999\n\nbogus = 1\n").unwrap();
        let err = ServeOptions::from_file(&path).unwrap_err().to_string();
        assert!(err.contains(":3:"), "{err}");
    }

    #[test]
    fn every_path_option_is_made_absolute_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("concord.toml");
        std::fs::write(
            &path,
            "runtime_dir = \"file-rt\"\ncedar_policy = \"c.cedar\"\n\
             [kernels]\nkernel_dir = [\"file-k\"]\n",
        )
        .unwrap();
        let rel = |s: &str| Some(PathBuf::from(s));
        let mut cli = ServeOptions {
            config: Some(path),
            root_dir: Some(dir.path().to_path_buf()),
            state_dir: rel("st"),
            policy: rel("p.toml"),
            audit_log: Some("logs/audit.jsonl".into()),
            ..Default::default()
        };
        cli.contents.trash_dir = rel("trash");
        cli.lab.lab_app_dir = rel("lab");
        cli.lab.labextensions_dir = Some(vec!["ext".into(), "/abs/ext".into()]);
        cli.confine.exec_paths = Some(vec!["x".into()]);
        cli.confine.write_paths = Some(vec!["w".into()]);
        let s = Settings::resolve(cli).unwrap();
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(s.state_dir, cwd.join("st"));
        assert_eq!(s.runtime_dir, cwd.join("file-rt"));
        assert_eq!(s.policy, Some(cwd.join("p.toml")));
        assert_eq!(s.cedar_policy, Some(cwd.join("c.cedar")));
        assert_eq!(
            s.audit_log.as_deref(),
            cwd.join("logs/audit.jsonl").to_str()
        );
        assert_eq!(s.contents.trash_dir, Some(cwd.join("trash")));
        assert_eq!(s.lab.app_dir, Some(cwd.join("lab")));
        assert_eq!(
            s.lab.labextensions_dirs,
            Some(vec![cwd.join("ext"), "/abs/ext".into()])
        );
        assert_eq!(s.confine.exec_paths, vec![cwd.join("x")]);
        assert_eq!(s.confine.write_paths, vec![cwd.join("w")]);
        assert_eq!(s.kernels.kernel_dirs, vec![cwd.join("file-k")]);
        let stdout = ServeOptions {
            audit_log: Some("-".into()),
            ..Default::default()
        };
        let mut kept = stdout.clone();
        kept.make_paths_absolute(&cwd);
        assert_eq!(kept.audit_log.as_deref(), Some("-"));
    }

    #[test]
    fn flag_beats_file_beats_default() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("concord.toml");
        std::fs::write(
            &path,
            format!(
                "port = 9999\nip = \"127.0.0.2\"\nroot_dir = {:?}\ntoken = \"t\"\n",
                dir.path()
            ),
        )
        .unwrap();
        let cli = ServeOptions {
            config: Some(path),
            port: Some(7000),
            ..Default::default()
        };
        let s = Settings::resolve(cli).unwrap();
        assert_eq!(s.port, 7000);
        assert_eq!(s.ip.to_string(), "127.0.0.2");
        assert_eq!(s.port_retries, 50);
    }

    #[test]
    fn service_options_are_layered_once_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("concord.toml");
        std::fs::write(
            &path,
            format!(
                "root_dir = {:?}\n[contents]\nallow_hidden = true\ndelete_to_trash = false\n\
                 [kernels]\ncull_interval = 7\nkernel_transport = \"tcp\"\n\
                 [terminals]\nmax_terminals = 3\n[events]\nqueue_bytes = 4096\n",
                dir.path()
            ),
        )
        .unwrap();
        let mut cli = ServeOptions {
            config: Some(path.clone()),
            ..Default::default()
        };
        cli.contents.delete_to_trash = Some(true);
        cli.kernels.cull_interval = Some(9);
        let s = Settings::resolve(cli).unwrap();
        assert!(s.contents.allow_hidden, "from the file");
        assert!(s.contents.delete_to_trash, "the flag wins");
        assert_eq!(s.kernels.manager.cull_interval, Duration::from_secs(9));
        assert_eq!(s.kernels.max_message_size, 10 << 20, "the default");
        assert_eq!(s.terminals.manager.max_terminals, Some(3));
        assert_eq!(s.events.queue_bytes, 4096);
        // The TCP transport restricts confined processes to the web's ports by default,
        // and kernels never listen there.
        assert_eq!(s.confine.tcp_connect, Some(vec![80, 443]));
        assert_eq!(s.kernels.manager.reserved_ports, vec![80, 443]);
        let mut cli = ServeOptions {
            config: Some(path),
            ..Default::default()
        };
        cli.terminals.write_timeout = Some(0);
        let err = Settings::resolve(cli).unwrap_err().to_string();
        assert!(
            err.contains("--terminal-write-timeout must be at least 1 second"),
            "{err}"
        );
    }

    #[test]
    fn nbconvert_options_are_layered_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("concord.toml");
        std::fs::write(
            &path,
            format!(
                "root_dir = {:?}\n[nbconvert]\ntime_limit = 5\nmemory_limit = 0\n\
                 output_limit = 2048\npython = \"venv/bin/python\"\n",
                dir.path()
            ),
        )
        .unwrap();
        let mut cli = ServeOptions {
            config: Some(path.clone()),
            ..Default::default()
        };
        cli.nbconvert.output_limit = Some(4096);
        let s = Settings::resolve(cli).unwrap();
        let nbconvert = s.nbconvert.expect("on by default");
        assert_eq!(nbconvert.time_limit, Duration::from_secs(5));
        assert_eq!(nbconvert.memory_limit, None, "0 is no limit");
        assert_eq!(nbconvert.output_limit, 4096, "the flag wins");
        assert_eq!(nbconvert.concurrency, 2, "the default");
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(nbconvert.python, cwd.join("venv/bin/python"));
        for (adjust, message) in [
            (
                (|o: &mut NbconvertOptions| o.time_limit = Some(0)) as fn(&mut NbconvertOptions),
                "--nbconvert-time-limit must be at least 1 second",
            ),
            (
                |o: &mut NbconvertOptions| o.output_limit = Some(10),
                "--nbconvert-output-limit must be at least 1024 bytes",
            ),
            (
                |o: &mut NbconvertOptions| o.concurrency = Some(0),
                "--nbconvert-concurrency must be at least 1",
            ),
        ] {
            let mut cli = ServeOptions {
                config: Some(path.clone()),
                ..Default::default()
            };
            adjust(&mut cli.nbconvert);
            let err = Settings::resolve(cli).unwrap_err().to_string();
            assert!(err.contains(message), "{err}");
        }
        let mut cli = ServeOptions {
            config: Some(path),
            ..Default::default()
        };
        cli.nbconvert.enabled = Some(false);
        assert!(Settings::resolve(cli).unwrap().nbconvert.is_none());
    }
}
