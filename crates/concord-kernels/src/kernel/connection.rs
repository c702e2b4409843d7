//! Where a kernel is reached: the runtime directory this server owns, each kernel's own
//! directory in it, its connection file (key and endpoints), and its ports or sockets.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::{KernelError, KernelManager, TransportKind};
use crate::wire::Signer;

/// The connection file's port fields, one per kernel socket.
pub(super) const PORT_NAMES: [&str; 5] = [
    "shell_port",
    "iopub_port",
    "stdin_port",
    "control_port",
    "hb_port",
];

impl KernelManager {
    /// A kernel's own directory in the runtime directory: its connection file and, with the
    /// IPC transport, its sockets. Short: Unix socket paths are limited to 107 bytes.
    pub(super) fn kernel_dir(&self, id: &str) -> PathBuf {
        let short: String = id.chars().filter(|c| *c != '-').take(12).collect();
        self.inner.config.runtime_dir.join(format!("k-{short}"))
    }

    /// Where a kernel's connection file is (for `jupyter console --existing` and friends).
    pub fn connection_file(&self, id: &str) -> PathBuf {
        self.kernel_dir(id).join(format!("kernel-{id}.json"))
    }

    /// Remove a kernel's directory (its connection file and sockets) once it is gone.
    pub(super) fn remove_kernel_dir(&self, id: &str) {
        let dir = self.kernel_dir(id);
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(kernel = %id, "cannot remove {}: {e}", dir.display());
            }
        }
    }

    /// A new connection description (key, transport, ports or socket names) for a kernel's
    /// incarnation `generation`, and the files its sockets will be.
    pub(super) fn endpoints(
        &self,
        id: &str,
        generation: u64,
    ) -> Result<(Value, Vec<PathBuf>), KernelError> {
        let cfg = &self.inner.config;
        let key = Signer::random_key();
        let mut info = json!({
            "key": key,
            "signature_scheme": "hmac-sha256",
            "kernel_name": "",
        });
        let mut files = Vec::new();
        match cfg.transport {
            TransportKind::Ipc => {
                // In the kernel's own directory, which no other kernel can see. Short names:
                // Unix socket paths are limited to 107 bytes.
                let base = self.kernel_dir(id).join(format!("ipc-{generation}"));
                info["transport"] = json!("ipc");
                info["ip"] = json!(base.to_string_lossy());
                for (i, n) in PORT_NAMES.iter().enumerate() {
                    let port = i + 1;
                    info[*n] = json!(port);
                    let f = PathBuf::from(format!("{}-{port}", base.to_string_lossy()));
                    let _ = std::fs::remove_file(&f);
                    files.push(f);
                }
            }
            TransportKind::Tcp => {
                info["transport"] = json!("tcp");
                info["ip"] = json!(cfg.ip);
                let mut listeners = Vec::new();
                for n in PORT_NAMES {
                    let (l, port) = free_port(&cfg.ip, &cfg.reserved_ports)?;
                    info[n] = json!(port);
                    listeners.push(l);
                }
            }
        }
        Ok((info, files))
    }

    /// The address of the `port_name` socket described in `info`.
    pub(super) fn endpoint(info: &Value, port_name: &str) -> String {
        let transport = info["transport"].as_str().unwrap_or("tcp");
        let ip = info["ip"].as_str().unwrap_or("127.0.0.1");
        let port = info[port_name].as_u64().unwrap_or(0);
        match transport {
            "ipc" => format!("ipc://{ip}-{port}"),
            _ => format!("tcp://{ip}:{port}"),
        }
    }
}

/// The name of the lock file that marks a runtime directory as in use by a server.
const RUNTIME_LOCK: &str = ".concord-runtime.lock";

/// Take the runtime directory for this server and remove what an earlier server left there
/// (connection files and sockets of kernels that died with it, after a crash). Another live
/// server holding the directory keeps its files: nothing is removed then.
pub(super) fn claim_runtime_dir(dir: &Path) -> Option<nix::fcntl::Flock<std::fs::File>> {
    use nix::fcntl::{Flock, FlockArg};
    if let Err(e) = create_private_dir(dir) {
        tracing::warn!("{e}");
        return None;
    }
    let file = match std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(RUNTIME_LOCK))
    {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!("cannot lock the runtime directory {}: {e}", dir.display());
            return None;
        }
    };
    let lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => lock,
        Err(_) => {
            tracing::warn!(
                "another server uses the runtime directory {}: its files are left alone",
                dir.display()
            );
            return None;
        }
    };
    let mut removed = 0;
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_name() == RUNTIME_LOCK {
                continue;
            }
            let path = entry.path();
            let gone = match entry.file_type() {
                Ok(t) if t.is_dir() => std::fs::remove_dir_all(&path),
                _ => std::fs::remove_file(&path),
            };
            match gone {
                Ok(()) => removed += 1,
                Err(e) => tracing::warn!("cannot remove the stale {}: {e}", path.display()),
            }
        }
    }
    if removed > 0 {
        tracing::info!(
            "removed {removed} stale entries from the runtime directory {}",
            dir.display()
        );
    }
    Some(lock)
}

/// Create `dir` (and its parents) with mode 0700 unless it exists.
pub(super) fn create_private_dir(dir: &Path) -> Result<(), KernelError> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| {
            // The server's own directories are for its log, not for the client's answer.
            tracing::error!("cannot create the runtime directory {}: {e}", dir.display());
            KernelError::StartFailed(format!("cannot create the kernels' runtime directory: {e}"))
        })
}

/// Write a new file readable by its owner only, replacing any file at `path`.
pub(super) fn write_private_file(path: &Path, data: &[u8]) -> Result<(), KernelError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::remove_file(path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| KernelError::StartFailed(format!("connection file: {e}")))?;
    f.write_all(data)
        .map_err(|e| KernelError::StartFailed(format!("connection file: {e}")))
}

/// A free TCP port on `ip` that is not one of `reserved` (ports confined processes may
/// connect to: a kernel must never listen on one of them). The listener holds the port until
/// the connection file is written.
fn free_port(ip: &str, reserved: &[u16]) -> Result<(std::net::TcpListener, u16), KernelError> {
    for _ in 0..64 {
        let l = std::net::TcpListener::bind((ip, 0))
            .map_err(|e| KernelError::StartFailed(format!("no free port: {e}")))?;
        let port = l
            .local_addr()
            .map_err(|e| KernelError::StartFailed(e.to_string()))?
            .port();
        if !reserved.contains(&port) {
            return Ok((l, port));
        }
    }
    Err(KernelError::StartFailed(
        "no free port outside the reserved ones".into(),
    ))
}

pub(super) fn remove_files(files: &[PathBuf]) {
    for f in files {
        let _ = std::fs::remove_file(f);
    }
}
