//! Kernelspec discovery, as jupyter_client does it: `kernels/<name>/kernel.json` under each
//! Jupyter data directory, first directory wins for a name. Specs are returned verbatim
//! (`serde_json::Value`) so fields we do not model (metadata, env, interrupt_mode, …) survive.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use serde_json::Value;

/// A kernelspec problem.
#[derive(Debug, thiserror::Error)]
pub enum KernelSpecError {
    /// No kernelspec with that name (or a name that cannot be one).
    #[error("no such kernel: {0}")]
    NoSuchKernel(String),
    /// No such resource file in the kernelspec's directory (or a path escaping it).
    #[error("no such kernelspec resource: {0}")]
    NoSuchResource(String),
    /// `kernel.json` is unreadable or invalid.
    #[error("kernelspec {name} is invalid: {reason}")]
    Invalid {
        /// The kernelspec name.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// One discovered kernelspec.
#[derive(Clone, Debug, PartialEq)]
pub struct KernelSpec {
    /// Directory name, lowercase as jupyter_client requires.
    pub name: String,
    /// The directory holding `kernel.json` and resources (logos, kernel.js).
    pub resource_dir: PathBuf,
    /// `kernel.json`, verbatim.
    pub spec: Value,
}

impl KernelSpec {
    /// `argv` as strings (empty when missing or malformed).
    pub fn argv(&self) -> Vec<String> {
        self.spec
            .get("argv")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// `interrupt_mode`: `message` or the default `signal`.
    pub fn interrupt_mode(&self) -> InterruptMode {
        match self.spec.get("interrupt_mode").and_then(Value::as_str) {
            Some("message") => InterruptMode::Message,
            _ => InterruptMode::Signal,
        }
    }

    /// The spec's `env` entries that are strings.
    pub fn env(&self) -> Vec<(String, String)> {
        self.spec
            .get("env")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Resource file names for the REST model: `kernel.js`, `kernel.css` and `logo-*`,
    /// keyed as jupyter_server keys them (logos without their extension).
    pub fn resources(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for fixed in ["kernel.js", "kernel.css"] {
            if self.resource_dir.join(fixed).is_file() {
                out.insert(fixed.to_string(), fixed.to_string());
            }
        }
        if let Ok(entries) = std::fs::read_dir(&self.resource_dir) {
            for entry in entries.flatten() {
                let file = entry.file_name().to_string_lossy().to_string();
                if file.starts_with("logo-") {
                    let key = match file.rfind('.') {
                        Some(i) => file[..i].to_string(),
                        None => file.clone(),
                    };
                    out.insert(key, file);
                }
            }
        }
        out
    }

    /// The REST model (`/api/kernelspecs/{name}`): `{name, spec, resources}` with resource
    /// URLs under `{base_url}kernelspecs/{name}/`.
    pub fn model(&self, base_url: &str) -> Value {
        let base = if base_url.ends_with('/') {
            base_url.to_string()
        } else {
            format!("{base_url}/")
        };
        let resources: serde_json::Map<String, Value> = self
            .resources()
            .into_iter()
            .map(|(k, file)| {
                (
                    k,
                    Value::String(format!("{base}kernelspecs/{}/{file}", self.name)),
                )
            })
            .collect();
        serde_json::json!({"name": self.name, "spec": self.spec, "resources": resources})
    }
}

/// A file of a kernelspec's directory (a logo, `kernel.js`, `kernel.css`), read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelSpecResource {
    /// The file's content.
    pub bytes: Vec<u8>,
    /// Its MIME type, guessed from its name; `text/plain` when unknown, as jupyter_server.
    pub mime_type: &'static str,
}

/// How a kernel is interrupted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InterruptMode {
    /// SIGINT to the kernel's process group.
    Signal,
    /// `interrupt_request` on the control channel.
    Message,
}

/// Finds kernelspecs in an ordered list of `kernels` directories.
#[derive(Clone, Debug)]
pub struct KernelSpecManager {
    /// Directories holding `<name>/kernel.json`, highest priority first.
    pub kernel_dirs: Vec<PathBuf>,
}

/// Whether `name` can be a kernelspec name (jupyter_client: ASCII letters, digits, `._-`).
pub fn valid_kernel_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        && name != "."
        && name != ".."
}

impl KernelSpecManager {
    /// The directories jupyter searches, in its order: `extra` (`--kernel-dir`) first, then
    /// `$JUPYTER_PATH` entries, the user data dir (`$JUPYTER_DATA_DIR` or
    /// `$XDG_DATA_HOME/jupyter` or `~/.local/share/jupyter`), `{python_prefix}/share/jupyter`,
    /// and the system dirs `/usr/local/share/jupyter`, `/usr/share/jupyter`; each with
    /// `kernels` appended (except `extra`, which are kernels dirs already).
    pub fn jupyter_dirs(extra: &[PathBuf], python_prefix: Option<&Path>) -> Self {
        let mut data_dirs: Vec<PathBuf> = Vec::new();
        if let Some(jp) = std::env::var_os("JUPYTER_PATH") {
            data_dirs.extend(std::env::split_paths(&jp).filter(|p| !p.as_os_str().is_empty()));
        }
        if let Some(d) = std::env::var_os("JUPYTER_DATA_DIR") {
            data_dirs.push(PathBuf::from(d));
        } else if let Some(x) = std::env::var_os("XDG_DATA_HOME") {
            data_dirs.push(PathBuf::from(x).join("jupyter"));
        } else if let Some(home) = std::env::var_os("HOME") {
            data_dirs.push(PathBuf::from(home).join(".local/share/jupyter"));
        }
        if let Some(prefix) = python_prefix {
            data_dirs.push(prefix.join("share/jupyter"));
        }
        data_dirs.push(PathBuf::from("/usr/local/share/jupyter"));
        data_dirs.push(PathBuf::from("/usr/share/jupyter"));
        let mut kernel_dirs: Vec<PathBuf> = extra.to_vec();
        for d in data_dirs {
            let k = d.join("kernels");
            if !kernel_dirs.contains(&k) {
                kernel_dirs.push(k);
            }
        }
        KernelSpecManager { kernel_dirs }
    }

    /// Every valid kernelspec, by name; the first directory providing a name wins.
    /// Invalid `kernel.json` files are logged and skipped.
    pub fn find_all(&self) -> BTreeMap<String, KernelSpec> {
        let mut out = BTreeMap::new();
        for dir in &self.kernel_dirs {
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().to_lowercase();
                if out.contains_key(&name) || !valid_kernel_name(&name) {
                    continue;
                }
                let path = entry.path();
                if !path.join("kernel.json").is_file() {
                    continue;
                }
                match load_spec(&name, &path) {
                    Ok(spec) => {
                        out.insert(name, spec);
                    }
                    Err(e) => tracing::warn!("skipping kernelspec: {e}"),
                }
            }
        }
        out
    }

    /// One kernelspec by name.
    pub fn get(&self, name: &str) -> Result<KernelSpec, KernelSpecError> {
        if !valid_kernel_name(name) {
            return Err(KernelSpecError::NoSuchKernel(name.to_string()));
        }
        let lower = name.to_lowercase();
        for dir in &self.kernel_dirs {
            let path = dir.join(&lower);
            if path.join("kernel.json").is_file() {
                return load_spec(&lower, &path);
            }
        }
        Err(KernelSpecError::NoSuchKernel(name.to_string()))
    }

    /// The file `file` (a relative path) of kernelspec `name`'s directory, with its MIME
    /// type: what `/kernelspecs/{name}/{file}` serves. Only a regular file inside the
    /// directory (after resolving symlinks) is read; `..`, absolute paths, escapes and
    /// unreadable files are [`KernelSpecError::NoSuchResource`], an unknown kernelspec is
    /// [`KernelSpecError::NoSuchKernel`].
    pub fn resource(&self, name: &str, file: &str) -> Result<KernelSpecResource, KernelSpecError> {
        let path = self.resource_path(name, file)?;
        let bytes = std::fs::read(path)
            .map_err(|_| KernelSpecError::NoSuchResource(format!("{name}/{file}")))?;
        let mime_type = mime_guess::from_path(file)
            .first_raw()
            .unwrap_or("text/plain");
        Ok(KernelSpecResource { bytes, mime_type })
    }

    /// Where the file behind `/kernelspecs/{name}/{file}` is: a regular file inside the
    /// spec's directory (after resolving symlinks); `..`, absolute paths and escapes are "no
    /// such resource".
    fn resource_path(&self, name: &str, file: &str) -> Result<PathBuf, KernelSpecError> {
        let spec = self.get(name)?;
        let missing = || KernelSpecError::NoSuchResource(format!("{name}/{file}"));
        let rel = Path::new(file);
        if file.is_empty()
            || file.contains('\0')
            || !rel.components().all(|c| matches!(c, Component::Normal(_)))
        {
            return Err(missing());
        }
        let root = spec.resource_dir.canonicalize().map_err(|_| missing())?;
        let target = root.join(rel).canonicalize().map_err(|_| missing())?;
        if !target.starts_with(&root) || !target.is_file() {
            return Err(missing());
        }
        Ok(target)
    }
}

fn load_spec(name: &str, dir: &Path) -> Result<KernelSpec, KernelSpecError> {
    let invalid = |reason: String| KernelSpecError::Invalid {
        name: name.to_string(),
        reason,
    };
    let raw = std::fs::read(dir.join("kernel.json")).map_err(|e| invalid(e.to_string()))?;
    let spec: Value = serde_json::from_slice(&raw).map_err(|e| invalid(e.to_string()))?;
    let argv_ok = spec
        .get("argv")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty() && a.iter().all(Value::is_string));
    if !argv_ok {
        return Err(invalid("argv must be a non-empty list of strings".into()));
    }
    Ok(KernelSpec {
        name: name.to_string(),
        resource_dir: dir.to_path_buf(),
        spec,
    })
}

/// Resolve `argv[0]` the way jupyter_client does for the native Python kernel: when it is
/// `python` or `python3` and the spec lives under `{prefix}/share/jupyter/kernels/…` of a
/// Python environment, use that environment's `bin/python` (jupyter_client uses
/// `sys.executable`, i.e. the interpreter of the environment the server runs from). Other
/// argv are returned unchanged.
pub fn resolve_python(argv: &[String], spec_dir: &Path) -> Vec<String> {
    let mut out = argv.to_vec();
    if let Some(first) = out.first_mut() {
        if first == "python" || first == "python3" {
            // spec_dir = {prefix}/share/jupyter/kernels/{name}
            if let Some(prefix) = spec_dir.ancestors().nth(4) {
                let candidate = prefix.join("bin/python");
                if candidate.is_file() {
                    *first = candidate.to_string_lossy().to_string();
                }
            }
        }
    }
    out
}

/// The prefix of the first `python3` (or `python`) on `PATH`: its `bin` directory's parent,
/// as jupyter's `sys.prefix` is for a venv (the venv's `share/jupyter/kernels` then holds
/// its kernelspec). Symlinks are not followed: a venv's `python3` links to the system one.
pub fn python_prefix_on_path() -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    for dir in std::env::split_paths(&path) {
        for exe in ["python3", "python"] {
            let candidate = dir.join(exe);
            let executable = std::fs::metadata(&candidate)
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false);
            if executable {
                return dir.parent().map(Path::to_path_buf);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_spec(dir: &Path, name: &str, json: &str) -> PathBuf {
        let d = dir.join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("kernel.json"), json).unwrap();
        d
    }

    #[test]
    fn discovery_order_verbatim_and_resources() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let d = write_spec(
            a.path(),
            "k1",
            r#"{"argv":["x","{connection_file}"],"display_name":"A","future_field":{"x":1}}"#,
        );
        std::fs::write(d.join("logo-64x64.png"), b"png").unwrap();
        write_spec(b.path(), "k1", r#"{"argv":["y"],"display_name":"B"}"#);
        write_spec(b.path(), "k2", r#"{"argv":["z"],"display_name":"C"}"#);
        write_spec(b.path(), "broken", r#"{"argv": "nope"}"#);
        let m = KernelSpecManager {
            kernel_dirs: vec![a.path().into(), b.path().into()],
        };
        let all = m.find_all();
        assert_eq!(all.keys().collect::<Vec<_>>(), vec!["k1", "k2"]);
        assert_eq!(all["k1"].spec["display_name"], "A");
        assert_eq!(all["k1"].spec["future_field"]["x"], 1);
        let model = all["k1"].model("/base/");
        assert_eq!(
            model["resources"]["logo-64x64"],
            "/base/kernelspecs/k1/logo-64x64.png"
        );
        assert!(matches!(
            m.get("broken"),
            Err(KernelSpecError::Invalid { .. })
        ));
        assert!(matches!(
            m.get("nope"),
            Err(KernelSpecError::NoSuchKernel(_))
        ));
        assert!(matches!(
            m.get("../k1"),
            Err(KernelSpecError::NoSuchKernel(_))
        ));
    }

    #[test]
    fn resources_cannot_escape() {
        let a = tempfile::tempdir().unwrap();
        let d = write_spec(a.path(), "k", r#"{"argv":["x"]}"#);
        std::fs::write(d.join("logo-32x32.png"), b"png").unwrap();
        std::fs::write(a.path().join("secret.txt"), b"s").unwrap();
        std::os::unix::fs::symlink(a.path().join("secret.txt"), d.join("link.txt")).unwrap();
        let m = KernelSpecManager {
            kernel_dirs: vec![a.path().into()],
        };
        assert!(m.resource_path("k", "logo-32x32.png").is_ok());
        for bad in [
            "../secret.txt",
            "/etc/passwd",
            "link.txt",
            "",
            "./logo-32x32.png",
            "nope",
        ] {
            assert!(
                matches!(
                    m.resource_path("k", bad),
                    Err(KernelSpecError::NoSuchResource(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn resources_are_read_with_their_mime_type() {
        let a = tempfile::tempdir().unwrap();
        let d = write_spec(a.path(), "k", r#"{"argv":["x"]}"#);
        std::fs::write(d.join("logo-64x64.png"), b"\x89PNG").unwrap();
        std::fs::write(d.join("kernel.js"), b"define([], {})").unwrap();
        std::fs::write(d.join("notes.unknownext"), b"n").unwrap();
        std::fs::create_dir(d.join("sub")).unwrap();
        std::fs::write(d.join("sub/kernel.css"), b"body {}").unwrap();
        let m = KernelSpecManager {
            kernel_dirs: vec![a.path().into()],
        };
        let logo = m.resource("k", "logo-64x64.png").unwrap();
        assert_eq!(logo.bytes, b"\x89PNG");
        assert_eq!(logo.mime_type, "image/png");
        let js = m.resource("K", "kernel.js").unwrap();
        assert_eq!(js.bytes, b"define([], {})");
        assert!(js.mime_type.ends_with("javascript"), "{}", js.mime_type);
        assert_eq!(
            m.resource("k", "notes.unknownext").unwrap().mime_type,
            "text/plain"
        );
        assert_eq!(
            m.resource("k", "sub/kernel.css").unwrap().mime_type,
            "text/css"
        );
        assert!(matches!(
            m.resource("nope", "kernel.js"),
            Err(KernelSpecError::NoSuchKernel(_))
        ));
        for missing in ["sub", "missing.png", "../k/kernel.js", "sub/../kernel.js"] {
            assert!(
                matches!(
                    m.resource("k", missing),
                    Err(KernelSpecError::NoSuchResource(_))
                ),
                "{missing}"
            );
        }
    }

    #[test]
    fn python_argv_is_resolved_inside_a_prefix() {
        let prefix = tempfile::tempdir().unwrap();
        let spec_dir = prefix.path().join("share/jupyter/kernels/python3");
        std::fs::create_dir_all(&spec_dir).unwrap();
        std::fs::create_dir_all(prefix.path().join("bin")).unwrap();
        let argv = vec![
            "python".to_string(),
            "-m".into(),
            "ipykernel_launcher".into(),
        ];
        // No interpreter there yet: unchanged.
        assert_eq!(resolve_python(&argv, &spec_dir), argv);
        std::fs::write(prefix.path().join("bin/python"), b"").unwrap();
        let resolved = resolve_python(&argv, &spec_dir);
        assert_eq!(
            resolved[0],
            prefix.path().join("bin/python").to_string_lossy()
        );
        let other = vec!["/usr/bin/env".to_string(), "python".into()];
        assert_eq!(resolve_python(&other, &spec_dir), other);
    }
}
