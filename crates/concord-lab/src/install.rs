//! Finding the installed JupyterLab as jupyterlab_server does: its application directory
//! (`<sys.prefix>/share/jupyter/lab` with `static/`, `schemas/`, `themes/`, `settings/`), the
//! federated extensions (`share/jupyter/labextensions` of every Jupyter data dir), their
//! setting schemas with the admin's overrides applied, and the page template.
//!
//! Everything is read once: the page template and extensions at start-up, the setting
//! schemas when settings are first asked for and each schema's validator when a user's
//! settings first need validating (a server nobody opened JupyterLab in keeps none of them in
//! memory). JupyterLab's files change only when it is reinstalled, and then the server is
//! restarted anyway (the page names hashed bundles).

use anyhow::Context;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

/// One setting schema: the plugin's JSON Schema with the overrides applied to its defaults.
pub struct SchemaEntry {
    /// The schema as the front end receives it.
    pub schema: Value,
    /// The version of the package that ships it (`N/A` when unknown).
    pub version: String,
    /// Draft-7 validator of user settings, compiled on first use (`None` inside when the
    /// schema itself does not compile).
    validator: OnceLock<Option<jsonschema::Validator>>,
}

impl SchemaEntry {
    /// The Draft-7 validator of user settings for plugin `id` (`None` when the schema does
    /// not compile: settings are then accepted as they are). Compiled on first use: blocking.
    pub fn validator(&self, id: &str) -> Option<&jsonschema::Validator> {
        self.validator
            .get_or_init(|| match jsonschema::draft7::new(&self.schema) {
                Ok(v) => Some(v),
                Err(e) => {
                    tracing::warn!("setting schema {id} does not compile: {e}");
                    None
                }
            })
            .as_ref()
    }
}

/// The setting schemas of the core and the federated extensions, read on first use.
pub struct SettingSchemas {
    core_dir: PathBuf,
    labextensions: Vec<PathBuf>,
    settings_dir: PathBuf,
    read: OnceLock<BTreeMap<String, SchemaEntry>>,
}

impl SettingSchemas {
    /// Schemas by plugin id, with the admin's overrides applied; read (blocking) on first use.
    pub fn get(&self) -> &BTreeMap<String, SchemaEntry> {
        self.read.get_or_init(|| {
            let overrides = read_overrides(&self.settings_dir);
            read_schemas(&self.core_dir, &self.labextensions, &overrides)
        })
    }
}

/// An installed JupyterLab, read at start-up.
pub struct LabInstall {
    /// The application directory.
    pub app_dir: PathBuf,
    /// `static/`: the built front end and the page template.
    pub static_dir: PathBuf,
    /// Roots searched for `/lab/api/themes/*`: every extension's `themes/`, then the core's.
    pub theme_roots: Vec<PathBuf>,
    /// Federated extension directories, first wins.
    pub labextensions: Vec<PathBuf>,
    /// jupyter_server's `static/favicons`, when jupyter_server is installed.
    pub favicons_dir: Option<PathBuf>,
    /// JupyterLab's version (`appVersion`).
    pub version: String,
    /// The page template (`static/index.html`, Jinja2).
    pub template: String,
    /// The page config's `federated_extensions`.
    pub federated: Vec<Value>,
    /// Each federated extension's name and directory (for its licenses).
    pub extension_dirs: Vec<(String, PathBuf)>,
    /// Plugins disabled by `page_config.json`.
    pub disabled_extensions: Vec<String>,
    /// The plugins each federated extension disables (its `disabledExtensions` metadata),
    /// by extension name: they stay enabled when that extension is itself disabled.
    pub disabled_by_extensions: Vec<(String, Vec<String>)>,
    /// Setting schemas by plugin id (`@jupyterlab/apputils-extension:themes`).
    pub schemas: SettingSchemas,
}

/// What the Python on PATH says about where Jupyter keeps things.
#[derive(Debug, Default, Deserialize)]
struct PythonPaths {
    prefix: Option<PathBuf>,
    jupyterlab_dir: Option<PathBuf>,
    labextensions: Option<Vec<PathBuf>>,
    server_static: Option<PathBuf>,
}

const PYTHON_PROBE: &str = r#"
import sys, os, json, importlib.util
out = {"prefix": sys.prefix, "jupyterlab_dir": os.environ.get("JUPYTERLAB_DIR") or None}
try:
    from jupyter_core.paths import jupyter_path
    out["labextensions"] = jupyter_path("labextensions")
except Exception:
    pass
try:
    spec = importlib.util.find_spec("jupyter_server")
    if spec and spec.submodule_search_locations:
        out["server_static"] = os.path.join(list(spec.submodule_search_locations)[0], "static")
except Exception:
    pass
print(json.dumps(out))
"#;

async fn probe_python() -> PythonPaths {
    for python in ["python3", "python"] {
        let run = tokio::process::Command::new(python)
            .arg("-c")
            .arg(PYTHON_PROBE)
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .output();
        match tokio::time::timeout(Duration::from_secs(30), run).await {
            Ok(Ok(out)) if out.status.success() => {
                if let Ok(paths) = serde_json::from_slice::<PythonPaths>(&out.stdout) {
                    return paths;
                }
            }
            _ => continue,
        }
    }
    PythonPaths::default()
}

impl LabInstall {
    /// Find and read JupyterLab: in `app_dir` and `labextensions` when given, else where the
    /// `python3` on PATH says. The error says what is missing and how to fix it.
    pub async fn discover(
        app_dir: Option<&Path>,
        labextensions: Option<&[PathBuf]>,
    ) -> Result<LabInstall, String> {
        let need_python = app_dir.is_none() || labextensions.is_none();
        let python = if need_python {
            probe_python().await
        } else {
            PythonPaths::default()
        };
        let app_dir = match (app_dir, &python.jupyterlab_dir, &python.prefix) {
            (Some(dir), _, _) => dir.to_path_buf(),
            (None, Some(dir), _) => dir.clone(),
            (None, None, Some(prefix)) => prefix.join("share/jupyter/lab"),
            (None, None, None) => {
                return Err(
                    "JupyterLab was not found: no python3 on PATH to ask where it is \
                    installed. Install it (pip install jupyterlab) in the Python environment on \
                    PATH, or start concord with --lab-app-dir <prefix>/share/jupyter/lab."
                        .to_string(),
                )
            }
        };
        let labextensions = match (labextensions, python.labextensions) {
            (Some(dirs), _) => dirs.to_vec(),
            (None, Some(dirs)) => dirs,
            (None, None) => app_dir
                .parent()
                .map(|p| vec![p.join("labextensions")])
                .unwrap_or_default(),
        };
        let favicons_dir = python
            .server_static
            .map(|s| s.join("favicons"))
            .filter(|d| d.is_dir());
        tokio::task::spawn_blocking(move || {
            LabInstall::read(app_dir, labextensions, favicons_dir).map_err(|e| format!("{e:#}"))
        })
        .await
        .map_err(|e| format!("reading JupyterLab failed: {e}"))?
    }

    pub(crate) fn read(
        app_dir: PathBuf,
        labextensions: Vec<PathBuf>,
        favicons_dir: Option<PathBuf>,
    ) -> anyhow::Result<LabInstall> {
        let static_dir = app_dir.join("static");
        let template_path = static_dir.join("index.html");
        let template = std::fs::read_to_string(&template_path).map_err(|_| {
            anyhow::anyhow!(
                "JupyterLab is not installed at {}: {} is missing. Install it (pip install \
                 jupyterlab) in the Python environment on PATH, or point --lab-app-dir at \
                 <prefix>/share/jupyter/lab.",
                app_dir.display(),
                template_path.display()
            )
        })?;
        let version = read_json(&static_dir.join("package.json"))
            .ok()
            .and_then(|p| p.get("version").and_then(Value::as_str).map(String::from))
            .unwrap_or_else(|| "unknown".to_string());
        let labextensions: Vec<PathBuf> =
            labextensions.into_iter().filter(|d| d.is_dir()).collect();
        let (federated, disabled_by_extensions, extension_dirs) =
            federated_extensions(&labextensions);
        let mut disabled_extensions = Vec::new();
        let settings_dir = app_dir.join("settings");
        let page_config_path = settings_dir.join("page_config.json");
        // Usually absent: checked first, as an error value would capture a backtrace (anyhow,
        // under RUST_BACKTRACE), unwinding through code and tables nothing else needs.
        if let Some(page_config) = page_config_path
            .is_file()
            .then(|| read_json5(&page_config_path).ok())
            .flatten()
        {
            if let Some(list) = page_config
                .get("disabledExtensions")
                .and_then(Value::as_array)
            {
                disabled_extensions
                    .extend(list.iter().filter_map(|v| v.as_str().map(String::from)));
            }
        }
        let schemas = SettingSchemas {
            core_dir: app_dir.join("schemas"),
            labextensions: labextensions.clone(),
            settings_dir,
            read: OnceLock::new(),
        };
        let mut theme_roots = Vec::new();
        for dir in &labextensions {
            find_dirs_named(dir, "themes", 5, &mut theme_roots);
        }
        theme_roots.push(app_dir.join("themes"));
        Ok(LabInstall {
            app_dir,
            static_dir,
            theme_roots,
            labextensions,
            favicons_dir,
            version,
            template,
            federated,
            extension_dirs,
            disabled_extensions,
            disabled_by_extensions,
            schemas,
        })
    }
}

fn read_json(path: &Path) -> anyhow::Result<Value> {
    let text = std::fs::read_to_string(path).with_context(|| path.display().to_string())?;
    serde_json::from_str(&text).with_context(|| path.display().to_string())
}

fn read_json5(path: &Path) -> anyhow::Result<Value> {
    let text = std::fs::read_to_string(path).with_context(|| path.display().to_string())?;
    json5::from_str(&text).with_context(|| path.display().to_string())
}

/// Sorted entries of a directory (missing → empty).
fn sorted_entries(dir: &Path) -> Vec<PathBuf> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    entries.sort();
    entries
}

/// Every extension's `package.json` under one labextensions dir: `name/` and `@scope/name/`.
fn extension_dirs(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in sorted_entries(root) {
        let is_scope = entry
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with('@'));
        if is_scope {
            out.extend(sorted_entries(&entry).into_iter().filter(|p| p.is_dir()));
        } else if entry.is_dir() {
            out.push(entry);
        }
    }
    out
}

/// The page config's `federated_extensions` (jupyterlab_server's `get_federated_extensions`):
/// the first directory holding an extension wins.
type Federated = (
    Vec<Value>,
    Vec<(String, Vec<String>)>,
    Vec<(String, PathBuf)>,
);

fn federated_extensions(labextensions: &[PathBuf]) -> Federated {
    let mut seen = std::collections::HashSet::new();
    let mut federated = Vec::new();
    let mut disabled = Vec::new();
    let mut dirs = Vec::new();
    for root in labextensions {
        for dir in extension_dirs(root) {
            let Ok(package) = read_json(&dir.join("package.json")) else {
                continue;
            };
            let Some(name) = package.get("name").and_then(Value::as_str) else {
                continue;
            };
            let Some(lab) = package.get("jupyterlab") else {
                continue;
            };
            let Some(build) = lab.get("_build").and_then(Value::as_object) else {
                continue;
            };
            if !seen.insert(name.to_string()) {
                continue;
            }
            let mut entry = Map::new();
            entry.insert("name".into(), Value::from(name));
            for key in ["load", "extension", "mimeExtension", "style"] {
                if let Some(v) = build.get(key) {
                    entry.insert(key.into(), v.clone());
                }
            }
            entry.insert(
                "entrypoints".into(),
                build.get("entrypoints").cloned().unwrap_or(Value::Null),
            );
            federated.push(Value::Object(entry));
            dirs.push((name.to_string(), dir.clone()));
            if let Some(list) = lab.get("disabledExtensions").and_then(Value::as_array) {
                let plugins = list.iter().filter_map(|v| v.as_str().map(String::from));
                disabled.push((name.to_string(), plugins.collect()));
            }
        }
    }
    (federated, disabled, dirs)
}

/// `recursive_update` of jupyterlab_server: objects merge, anything else replaces.
pub fn recursive_update(target: &mut Value, update: &Value) {
    match (target, update) {
        (Value::Object(t), Value::Object(u)) => {
            for (k, v) in u {
                match t.get_mut(k) {
                    Some(existing) if existing.is_object() && v.is_object() => {
                        recursive_update(existing, v)
                    }
                    _ => {
                        t.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (t, u) => *t = u.clone(),
    }
}

/// The default overrides: concord's own, then the admin's `settings/overrides.d/*.json[5]`,
/// then `settings/overrides.json[5]`, merged in that order.
fn read_overrides(settings_dir: &Path) -> Value {
    // Concord's own default, under the admin's: concord serves no news feed
    // (`/lab/api/news`), so JupyterLab should not ask every user whether to fetch it.
    let mut overrides = serde_json::json!({
        "@jupyterlab/apputils-extension:notification": {"fetchNews": "false"}
    });
    let mut paths: Vec<PathBuf> = sorted_entries(&settings_dir.join("overrides.d"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "json" || e == "json5"))
        .collect();
    paths.push(settings_dir.join("overrides.json"));
    paths.push(settings_dir.join("overrides.json5"));
    for path in paths {
        if !path.exists() {
            continue;
        }
        match read_json5(&path) {
            Ok(v) if v.is_object() => recursive_update(&mut overrides, &v),
            Ok(_) => tracing::warn!("{}: overrides must be a JSON object", path.display()),
            Err(e) => tracing::warn!("ignoring JupyterLab overrides: {e:#}"),
        }
    }
    overrides
}

/// Apply overrides to a schema's `properties.*.default` (jupyterlab_server's `_override`).
fn apply_overrides(id: &str, schema: &mut Value, overrides: &Value) {
    let Some(defaults) = overrides.get(id).and_then(Value::as_object) else {
        return;
    };
    let Some(properties) = schema
        .as_object_mut()
        .map(|s| {
            s.entry("properties")
                .or_insert_with(|| Value::Object(Map::new()))
        })
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    for (key, value) in defaults {
        match properties.get_mut(key).and_then(Value::as_object_mut) {
            Some(prop) => {
                let default = prop.entry("default").or_insert(Value::Null);
                if default.is_object() {
                    recursive_update(default, value);
                } else {
                    *default = value.clone();
                }
            }
            None => {
                let mut prop = Map::new();
                prop.insert("default".into(), value.clone());
                properties.insert(key.clone(), Value::Object(prop));
            }
        }
    }
}

/// Walk `root` for `*.json` schemas; ids are `<dir relative to root>:<file stem>`.
fn collect_schema_files(root: &Path, dir: &Path, depth: usize, out: &mut Vec<(String, PathBuf)>) {
    if depth == 0 {
        return;
    }
    for entry in sorted_entries(dir) {
        if entry.is_dir() {
            collect_schema_files(root, &entry, depth - 1, out);
        } else if entry.extension().is_some_and(|e| e == "json") {
            let (Ok(rel_dir), Some(stem)) = (
                entry.parent().unwrap_or(root).strip_prefix(root),
                entry.file_stem().and_then(|s| s.to_str()),
            ) else {
                continue;
            };
            let Some(rel_dir) = rel_dir.to_str() else {
                continue;
            };
            if rel_dir.is_empty() {
                continue;
            }
            out.push((format!("{rel_dir}:{stem}"), entry));
        }
    }
}

fn schema_entry(id: &str, path: &Path, overrides: &Value) -> Option<SchemaEntry> {
    let mut schema = match read_json(path) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("skipping setting schema {id}: {e:#}");
            return None;
        }
    };
    apply_overrides(id, &mut schema, overrides);
    let version = path
        .parent()
        .map(|d| d.join("package.json.orig"))
        .filter(|p| p.is_file())
        .and_then(|p| read_json(&p).ok())
        .and_then(|p| p.get("version").and_then(Value::as_str).map(String::from))
        .unwrap_or_else(|| "N/A".to_string());
    Some(SchemaEntry {
        schema,
        version,
        validator: OnceLock::new(),
    })
}

/// Core schemas, then each extension's `schemas/` (an extension's schema replaces a core one
/// of the same id, and the first extension directory wins, as in jupyterlab_server).
fn read_schemas(
    core_dir: &Path,
    labextensions: &[PathBuf],
    overrides: &Value,
) -> BTreeMap<String, SchemaEntry> {
    let mut schemas = BTreeMap::new();
    let mut files = Vec::new();
    collect_schema_files(core_dir, core_dir, 4, &mut files);
    for (id, path) in files {
        if let Some(entry) = schema_entry(&id, &path, overrides) {
            schemas.insert(id, entry);
        }
    }
    let mut federated = std::collections::HashSet::new();
    for root in labextensions {
        for dir in extension_dirs(root) {
            let schemas_dir = dir.join("schemas");
            let mut files = Vec::new();
            collect_schema_files(&schemas_dir, &schemas_dir, 4, &mut files);
            for (id, path) in files {
                if !federated.insert(id.clone()) {
                    continue;
                }
                if let Some(entry) = schema_entry(&id, &path, overrides) {
                    schemas.insert(id, entry);
                }
            }
        }
    }
    schemas
}

/// Directories called `name` below `dir` (not below a match), at most `depth` levels down.
fn find_dirs_named(dir: &Path, name: &str, depth: usize, out: &mut Vec<PathBuf>) {
    if depth == 0 {
        return;
    }
    for entry in sorted_entries(dir) {
        if !entry.is_dir() {
            continue;
        }
        if entry.file_name().is_some_and(|n| n == name) {
            out.push(entry);
        } else {
            find_dirs_named(&entry, name, depth - 1, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn overrides_replace_and_merge_defaults() {
        let mut schema = json!({"properties": {
            "theme": {"type": "string", "default": "Light"},
            "map": {"type": "object", "default": {"a": 1, "b": 2}}
        }});
        let overrides = json!({"x:y": {"theme": "Dark", "map": {"b": 3}, "new": true}});
        apply_overrides("x:y", &mut schema, &overrides);
        assert_eq!(schema["properties"]["theme"]["default"], "Dark");
        assert_eq!(
            schema["properties"]["map"]["default"],
            json!({"a": 1, "b": 3})
        );
        assert_eq!(schema["properties"]["new"]["default"], true);
    }
}
