//! Black-box test harness: a real `concord` process on 127.0.0.1 with its own temporary
//! root and state directories, stopped (SIGTERM, then SIGKILL) when the handle drops.
#![allow(dead_code)]

pub mod events;
pub mod jupyter;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The `concord` binary built for these tests.
pub fn concord_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_concord"))
}

/// Run `concord ARGS…` to completion; returns (exit code, stdout, stderr).
pub fn run_cli(args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    use std::io::Write;
    let mut child = Command::new(concord_bin())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn concord");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    } else {
        drop(child.stdin.take());
    }
    let out = child.wait_with_output().expect("wait concord");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Options for starting a server.
pub struct ServerBuilder {
    args: Vec<String>,
    envs: Vec<(String, String)>,
    root: tempfile::TempDir,
    state: tempfile::TempDir,
    token: Option<String>,
    relative_dirs: bool,
    run_as: Option<(u32, u32)>,
}

impl ServerBuilder {
    /// Start the server in the directory above its root and state directories and name
    /// them relative to it (`--root-dir NAME --state-dir NAME`).
    pub fn relative_dirs(mut self) -> Self {
        self.relative_dirs = true;
        self
    }

    /// Run the server as this uid and gid (the test runs as root); its directories are
    /// given to that user when it starts.
    pub fn run_as(mut self, uid: u32, gid: u32) -> Self {
        self.run_as = Some((uid, gid));
        self
    }

    /// Add command-line arguments.
    pub fn args(mut self, args: &[&str]) -> Self {
        self.args.extend(args.iter().map(|s| s.to_string()));
        self
    }

    /// Set an environment variable.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.envs.push((key.into(), value.into()));
        self
    }

    /// Token mode with this token (instead of the default random one).
    pub fn token(mut self, token: &str) -> Self {
        self.token = Some(token.to_string());
        self
    }

    /// The root directory, to put files in before starting.
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// The state directory, to add users before starting.
    pub fn state(&self) -> &Path {
        self.state.path()
    }

    /// Run `concord user …` against this server's state directory.
    pub fn user_cmd(&self, args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
        let mut full: Vec<&str> = vec!["user"];
        full.extend_from_slice(args);
        let state = self.state.path().to_str().unwrap().to_string();
        full.push("--state-dir");
        full.push(&state);
        run_cli(&full, stdin)
    }

    /// Add a user with a password and groups.
    /// Users authenticate as themselves (`--auth users`) and `policy` (TOML) decides what
    /// they may do; it is written to the state dir as `policy.toml`.
    pub fn users_with_policy(self, policy: &str) -> Self {
        let path = self.state().join("policy.toml");
        std::fs::write(&path, policy).unwrap();
        let path = path.to_str().unwrap().to_string();
        self.args(&["--auth", "users", "--policy", &path])
    }

    /// An API token for `user`, issued with `concord user token`.
    pub fn issue_token(&self, user: &str) -> String {
        let (code, out, err) = self.user_cmd(&["token", user, "--note", "test"], None);
        assert_eq!(code, 0, "{err}");
        out.trim().to_string()
    }

    pub fn add_user(&self, name: &str, password: &str, groups: &[&str]) {
        let groups = groups.join(",");
        let mut args = vec!["add", name];
        if !groups.is_empty() {
            args.push("--groups");
            args.push(&groups);
        }
        let (code, out, err) = self.user_cmd(&args, Some(&format!("{password}\n")));
        assert_eq!(code, 0, "user add {name}: {out} {err}");
    }

    /// Start the server and wait until it prints its URL.
    pub fn start(self) -> Server {
        let mut cmd = Command::new(concord_bin());
        cmd.arg("--ip").arg("127.0.0.1");
        if !self.args.iter().any(|a| a == "--port") {
            cmd.arg("--port").arg("0");
        }
        let (root, state) = if self.relative_dirs {
            let parent = self.root.path().parent().unwrap();
            assert_eq!(Some(parent), self.state.path().parent());
            cmd.current_dir(parent);
            (
                PathBuf::from(self.root.path().file_name().unwrap()),
                PathBuf::from(self.state.path().file_name().unwrap()),
            )
        } else {
            (
                self.root.path().to_path_buf(),
                self.state.path().to_path_buf(),
            )
        };
        cmd.arg("--root-dir")
            .arg(root)
            .arg("--state-dir")
            .arg(state)
            .args(&self.args)
            .env_remove("JUPYTER_TOKEN")
            .env_remove("CONCORD_TOKEN")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(t) = &self.token {
            cmd.env("CONCORD_TOKEN", t);
        }
        for (k, v) in &self.envs {
            cmd.env(k, v);
        }
        if let Some((uid, gid)) = self.run_as {
            use std::os::unix::process::CommandExt;
            for dir in [self.root.path(), self.state.path()] {
                let status = Command::new("chown")
                    .arg("-R")
                    .arg(format!("{uid}:{gid}"))
                    .arg(dir)
                    .status()
                    .expect("chown");
                assert!(status.success(), "chown {}", dir.display());
            }
            cmd.uid(uid).gid(gid).env("HOME", self.state.path());
        }
        let mut child = cmd.spawn().expect("spawn concord serve");
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel::<String>();
        let tx2 = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(format!("out: {line}"));
            }
        });
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[concord] {line}");
                let _ = tx2.send(format!("err: {line}"));
            }
        });
        let mut seen = Vec::new();
        let url = loop {
            match rx.recv_timeout(Duration::from_secs(60)) {
                Ok(line) => {
                    if let Some(pos) = line.find("http://") {
                        if line.starts_with("out:") {
                            break line[pos..].trim().to_string();
                        }
                    }
                    seen.push(line);
                }
                Err(_) => {
                    let _ = child.kill();
                    let status = child.wait();
                    panic!(
                        "concord did not start ({status:?}); output:\n{}",
                        seen.join("\n")
                    );
                }
            }
        };
        // `http://127.0.0.1:PORT/base/?token=T` or `…/login`
        let base = match url.find("?token=") {
            Some(i) => url[..i].to_string(),
            None => url
                .trim_end_matches("login")
                .trim_end_matches(" (behind a trusted proxy)")
                .to_string(),
        };
        let token = url.find("?token=").map(|i| url[i + 7..].to_string());
        let token = match token.as_deref() {
            Some("...") => self.token.clone(),
            Some(t) => Some(t.to_string()),
            None => None,
        };
        Server {
            child: Some(child),
            base,
            token,
            root: self.root,
            state: self.state,
            startup_output: seen,
            output: rx,
        }
    }
}

/// A running server.
pub struct Server {
    child: Option<Child>,
    /// `http://127.0.0.1:PORT/` (with the base URL).
    pub base: String,
    /// The owner token in token mode.
    pub token: Option<String>,
    root: tempfile::TempDir,
    state: tempfile::TempDir,
    /// What the server printed before its URL (`out: …` and `err: …` lines).
    pub startup_output: Vec<String>,
    output: mpsc::Receiver<String>,
}

/// A new server builder with fresh temporary directories.
pub fn server() -> ServerBuilder {
    ServerBuilder {
        args: Vec::new(),
        envs: Vec::new(),
        root: tempfile::tempdir().unwrap(),
        state: tempfile::tempdir().unwrap(),
        token: None,
        relative_dirs: false,
        run_as: None,
    }
}

impl Server {
    /// The absolute URL of a path relative to the base URL (`api/status`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path.trim_start_matches('/'))
    }

    /// `host:port`.
    pub fn host(&self) -> String {
        self.base
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap()
            .to_string()
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// The state directory.
    pub fn state(&self) -> &Path {
        self.state.path()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// A client that sends the owner token in the Authorization header.
    pub fn owner(&self) -> reqwest::Client {
        token_client(self.token.as_deref().expect("token mode"))
    }

    /// A client without credentials that keeps cookies and does not follow redirects.
    pub fn browser(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
    }

    /// A browser-like client logged in through the form (users mode); returns it with the
    /// `_xsrf` value to echo in `X-XSRFToken`.
    pub async fn login(&self, username: &str, password: &str) -> (reqwest::Client, String) {
        let client = self.browser();
        let xsrf = self.xsrf(&client).await;
        let resp = client
            .post(self.url("login"))
            .form(&[
                ("username", username),
                ("password", password),
                ("_xsrf", &xsrf),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 302, "login of {username} failed");
        (client, xsrf)
    }

    /// Load the login page to get an `_xsrf` cookie; returns its value.
    pub async fn xsrf(&self, client: &reqwest::Client) -> String {
        let resp = client.get(self.url("login")).send().await.unwrap();
        let cookie = resp
            .headers()
            .get_all(reqwest::header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|c| c.starts_with("_xsrf="))
            .map(|c| c["_xsrf=".len()..].split(';').next().unwrap().to_string());
        let body = resp.text().await.unwrap();
        cookie.unwrap_or_else(|| {
            // Already set: read it back from the form.
            let i = body.find("name=\"_xsrf\" value=\"").expect("xsrf field") + 20;
            body[i..].split('"').next().unwrap().to_string()
        })
    }

    /// Lines the server prints from now until one containing `needle` (included), or
    /// panics after 30 s.
    pub fn output_until(&self, needle: &str) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            match self.output.recv_timeout(Duration::from_secs(30)) {
                Ok(line) => {
                    let done = line.contains(needle);
                    lines.push(line);
                    if done {
                        return lines;
                    }
                }
                Err(_) => panic!("no line with {needle:?} in:\n{}", lines.join("\n")),
            }
        }
    }

    /// Lines the server printed so far.
    pub fn drain_output(&self) -> Vec<String> {
        self.output.try_iter().collect()
    }

    /// Send a signal to the server.
    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.pid() as i32);
        nix::sys::signal::kill(pid, sig).unwrap();
    }

    /// SIGKILL the server (nothing of it runs any more) and give back its directories, to
    /// start another server on them.
    pub fn kill_keeping_dirs(mut self) -> ServerBuilder {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let placeholder = || tempfile::tempdir().unwrap();
        ServerBuilder {
            args: Vec::new(),
            envs: Vec::new(),
            root: std::mem::replace(&mut self.root, placeholder()),
            state: std::mem::replace(&mut self.state, placeholder()),
            token: self.token.clone(),
            relative_dirs: false,
            run_as: None,
        }
    }

    /// SIGTERM and wait up to `secs` for the exit; returns the exit status.
    pub fn terminate(&mut self, secs: u64) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        for _ in 0..secs * 20 {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        child.wait().ok();
        None
    }
}

impl Server {
    /// SIGKILL the server (it runs none of its shutdown), then start a new one on the same
    /// root and state directories, with the same token and `args`.
    pub fn crash_and_restart(self, args: &[&str]) -> Server {
        self.kill_keeping_dirs().args(args).start()
    }

    /// The `/metrics` text, as seen by the holder of `token`.
    pub async fn metrics(&self, token: &str) -> String {
        token_client(token)
            .get(self.url("metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.terminate(5);
    }
}

/// A client that sends `token` in the Authorization header and does not follow redirects.
pub fn token_client(token: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("token {token}").parse().unwrap(),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}
