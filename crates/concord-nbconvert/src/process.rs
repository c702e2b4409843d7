//! One bounded, confined run of the driver: spawn through the sandbox, feed stdin, read a
//! capped answer, kill at the time limit.

use std::ffi::OsString;
use std::process::Stdio;

use concord_confine::{LaunchExtras, Sandbox};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use crate::{Failure, NbconvertConfig, NbconvertError, NbconvertResult};

/// The Python side, passed with `-c`.
const DRIVER: &str = include_str!("driver.py");

/// Room for the answer's header line besides the export itself.
const HEADER_LIMIT: usize = 64 << 10;

/// How much of stderr is kept to explain a process that died.
const STDERR_TAIL: usize = 8 << 10;

/// Variables a process started for a user must not see: concord's settings (its token among
/// them) and the tokens of the tools around it, as for kernels.
const SECRET_VARIABLES: &[&str] = &["JUPYTER_TOKEN", "JUPYTERHUB_API_TOKEN", "JPY_API_TOKEN"];

/// The driver's answer: its header and the bytes after it.
pub(crate) struct Answer {
    pub header: Value,
    pub body: Vec<u8>,
}

enum Output {
    Complete(Vec<u8>),
    TooLarge,
}

/// Run the driver in `mode` with `input` on stdin, within the configured limits.
pub(crate) async fn run(
    config: &NbconvertConfig,
    sandbox: &Sandbox,
    mode: &str,
    input: &[u8],
) -> NbconvertResult<Answer> {
    let unavailable = |message: String| NbconvertError::new(Failure::Unavailable, message);
    // `-I`: the venv's nbconvert, whatever PYTHONPATH or the user's site-packages hold.
    let argv = vec![
        config.python.to_string_lossy().into_owned(),
        "-I".into(),
        "-c".into(),
        DRIVER.into(),
        mode.into(),
    ];
    let launch = sandbox
        .prepare(&argv, &LaunchExtras::default())
        .map_err(|e| unavailable(format!("cannot confine nbconvert: {e}")))?;
    // The private temporary directory when confined: the only place it may write.
    let cwd = sandbox
        .plan
        .as_ref()
        .map(|plan| plan.tmp.clone())
        .unwrap_or_else(std::env::temp_dir);
    let mut cmd = tokio::process::Command::new(&launch.program);
    cmd.args(&launch.args)
        .current_dir(&cwd)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    for (name, _) in std::env::vars_os() {
        if is_secret(&name) {
            cmd.env_remove(name);
        }
    }
    cmd.envs(launch.env);
    let memory_limit = config.memory_limit;
    let mut pre_exec = launch.pre_exec;
    // SAFETY: setrlimit and `PreExec::run` only make system calls: no allocation between
    // fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if let Some(bytes) = memory_limit {
                let limit = libc::rlimit {
                    rlim_cur: bytes as libc::rlim_t,
                    rlim_max: bytes as libc::rlim_t,
                };
                if libc::setrlimit(libc::RLIMIT_AS, &limit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            pre_exec.run()
        });
    }
    let mut child = cmd.spawn().map_err(|e| {
        unavailable(format!(
            "cannot run nbconvert ({}): {e}",
            config.python.display()
        ))
    })?;
    let pid = child.id().and_then(|p| i32::try_from(p).ok());
    let kill_group = move || {
        if let Some(pid) = pid {
            // SAFETY: signalling the process group the child leads (`process_group(0)`).
            unsafe { libc::kill(-pid, libc::SIGKILL) };
        }
    };
    let (stdin, stdout, stderr) = (child.stdin.take(), child.stdout.take(), child.stderr.take());
    let cap = config.output_limit.saturating_add(HEADER_LIMIT);
    let work = async {
        let write = async {
            if let Some(mut stdin) = stdin {
                // A driver that stopped early closes its end: its answer says why.
                let _ = stdin.write_all(input).await;
            }
        };
        let read = async {
            let output = read_capped(stdout, cap).await;
            if matches!(output, Output::TooLarge) {
                kill_group();
            }
            output
        };
        let (_, output, stderr) = tokio::join!(write, read, read_tail(stderr));
        let status = child.wait().await;
        (output, stderr, status)
    };
    let finished = tokio::time::timeout(config.time_limit, work).await;
    let Ok((output, stderr, status)) = finished else {
        kill_group();
        let _ = child.kill().await;
        return Err(NbconvertError::new(
            Failure::TimedOut,
            format!(
                "nbconvert took longer than the limit of {} and was stopped",
                seconds(config.time_limit)
            ),
        ));
    };
    let output = match output {
        Output::Complete(bytes) => bytes,
        Output::TooLarge => return Err(too_large(config.output_limit)),
    };
    let stderr = String::from_utf8_lossy(&stderr);
    let Some(newline) = output.iter().position(|b| *b == b'\n') else {
        return Err(died(&status, &stderr));
    };
    let header: Value = serde_json::from_slice(&output[..newline]).map_err(|_| {
        NbconvertError::new(Failure::Failed, "nbconvert answered in an unknown shape")
    })?;
    let body = output[newline + 1..].to_vec();
    if header["ok"] != Value::Bool(true) {
        let message = header["message"]
            .as_str()
            .unwrap_or("nbconvert failed")
            .to_string();
        let kind = match header["kind"].as_str() {
            Some("unknown_format") => Failure::UnknownFormat,
            Some("bad_notebook") => Failure::BadNotebook,
            Some("memory") => Failure::OutOfMemory,
            Some("too_large") => Failure::TooLarge,
            Some("unavailable") => Failure::Unavailable,
            Some("start_failed") => {
                if let Some(limit) = config.memory_limit {
                    return Err(NbconvertError::new(
                        Failure::OutOfMemory,
                        format!(
                            "nbconvert could not start within the memory limit of {limit} \
                             bytes ({message})"
                        ),
                    ));
                }
                Failure::Failed
            }
            _ => Failure::Failed,
        };
        return Err(NbconvertError::new(kind, message));
    }
    if header["length"]
        .as_u64()
        .is_some_and(|n| n != body.len() as u64)
    {
        return Err(died(&status, &stderr));
    }
    if body.len() > config.output_limit {
        return Err(too_large(config.output_limit));
    }
    Ok(Answer { header, body })
}

fn is_secret(name: &OsString) -> bool {
    let name = name.to_string_lossy();
    name.starts_with("CONCORD_") || SECRET_VARIABLES.contains(&name.as_ref())
}

fn too_large(limit: usize) -> NbconvertError {
    NbconvertError::new(
        Failure::TooLarge,
        format!("the export is larger than the limit of {limit} bytes"),
    )
}

fn seconds(d: std::time::Duration) -> String {
    format!("{} s", d.as_secs_f64())
}

/// A process that ended without a complete answer: out of memory, killed, or crashed.
fn died(status: &std::io::Result<std::process::ExitStatus>, stderr: &str) -> NbconvertError {
    if stderr.contains("MemoryError") || stderr.contains("Cannot allocate memory") {
        return NbconvertError::new(
            Failure::OutOfMemory,
            "nbconvert ran out of memory and was stopped",
        );
    }
    let last = stderr
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    let status = match status {
        Ok(s) => s.to_string(),
        Err(e) => e.to_string(),
    };
    tracing::warn!(%status, "nbconvert stopped without answering: {stderr}");
    NbconvertError::new(
        Failure::Failed,
        format!("nbconvert failed: the process stopped ({status}) {last}")
            .trim_end()
            .to_string(),
    )
}

/// Everything the reader gives, unless it is more than `cap` bytes.
async fn read_capped(reader: Option<impl AsyncRead + Unpin>, cap: usize) -> Output {
    let mut bytes = Vec::new();
    let Some(reader) = reader else {
        return Output::Complete(bytes);
    };
    let mut limited = reader.take(cap as u64 + 1);
    if limited.read_to_end(&mut bytes).await.is_err() {
        return Output::Complete(bytes);
    }
    if bytes.len() > cap {
        Output::TooLarge
    } else {
        Output::Complete(bytes)
    }
}

/// The last [`STDERR_TAIL`] bytes the reader gives (it is read to its end so the process
/// never blocks on a full pipe).
async fn read_tail(reader: Option<impl AsyncRead + Unpin>) -> Vec<u8> {
    let mut tail = Vec::new();
    let Some(mut reader) = reader else {
        return tail;
    };
    let mut chunk = [0u8; 4096];
    while let Ok(n) = reader.read(&mut chunk).await {
        if n == 0 {
            break;
        }
        tail.extend_from_slice(&chunk[..n]);
        if tail.len() > 2 * STDERR_TAIL {
            tail.drain(..tail.len() - STDERR_TAIL);
        }
    }
    if tail.len() > STDERR_TAIL {
        tail.drain(..tail.len() - STDERR_TAIL);
    }
    tail
}
