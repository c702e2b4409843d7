//! A real jupyter_server from the project's venv, for differential tests: the same request
//! goes to both servers and the answers are compared.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The venv's python: `$CONCORD_TEST_PYTHON`, else `<workspace>/.venv/bin/python`.
pub fn venv_python() -> PathBuf {
    if let Some(p) = std::env::var_os("CONCORD_TEST_PYTHON") {
        return PathBuf::from(p);
    }
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python");
    assert!(
        p.exists(),
        "{} is missing: run the README's set-up command first (it creates the venv with \
         jupyter_server, jupyterlab and ipykernel)",
        p.display()
    );
    p
}

/// A running jupyter_server; killed on drop.
pub struct Jupyter {
    child: Child,
    /// `http://127.0.0.1:PORT/`
    pub base: String,
    /// Its token.
    pub token: String,
}

impl Jupyter {
    /// Start jupyter_server on a free loopback port, serving `root`.
    pub fn start(root: &Path, extra_args: &[&str]) -> Jupyter {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let token = format!("jtok{port}");
        let runtime = tempfile::tempdir().unwrap().keep();
        let mut child = Command::new(venv_python())
            .args([
                "-m",
                "jupyter_server",
                "--no-browser",
                "--ServerApp.ip=127.0.0.1",
            ])
            .arg(format!("--ServerApp.port={port}"))
            .arg("--ServerApp.port_retries=0")
            .arg("--ServerApp.allow_root=True")
            .arg(format!("--IdentityProvider.token={token}"))
            .arg(format!("--ServerApp.root_dir={}", root.display()))
            .args(extra_args)
            .env("JUPYTER_RUNTIME_DIR", &runtime)
            .env("JUPYTER_CONFIG_DIR", runtime.join("config"))
            .env("JUPYTER_DATA_DIR", runtime.join("data"))
            .env("JUPYTER_NO_CONFIG", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start jupyter_server");
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if std::env::var_os("CONCORD_TEST_VERBOSE").is_some() {
                    eprintln!("[jupyter] {line}");
                }
            }
        });
        let base = format!("http://127.0.0.1:{port}/");
        let j = Jupyter { child, base, token };
        for _ in 0..600 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return j;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("jupyter_server did not start on port {port}");
    }

    /// A client sending its token.
    pub fn client(&self) -> reqwest::Client {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            reqwest::header::AUTHORIZATION,
            format!("token {}", self.token).parse().unwrap(),
        );
        reqwest::Client::builder()
            .default_headers(headers)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
    }

    /// The absolute URL of a path relative to the root.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path.trim_start_matches('/'))
    }
}

impl Drop for Jupyter {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        for _ in 0..100 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
