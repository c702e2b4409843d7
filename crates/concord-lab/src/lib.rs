//! The JupyterLab front end as a service, without HTTP: finding the installed JupyterLab and
//! its federated extensions (`install.rs`), the page and its page config (`page.rs`), the files
//! the front end loads, opened for sending (`files.rs`), per-user settings (`settings.rs`),
//! workspaces (`workspaces.rs`) and front-end config sections (`sections.rs`) kept in small
//! files (`store.rs`), and the translations, listings, news and update answers.
//!
//! JupyterLab itself is not part of concord: the installed `jupyterlab` package is found at
//! start-up and served as it is. A [`LabConfig`] goes in, a [`Lab`] comes out; every failure
//! is a [`LabError`] whose [`ErrorKind`] the server maps to a status code. Operations marked
//! blocking touch the file system: call them from `tokio::task::spawn_blocking`.

mod error;
mod files;
mod install;
mod page;
mod sections;
mod settings;
mod store;
mod workspaces;

pub use error::{ErrorKind, LabError, LabResult};
pub use files::{Caching, LabFile, ThemeAsset, JAVASCRIPT};
pub use page::{Page, PageRequest, PageSettings};
pub use sections::ConfigScope;
pub use settings::Abilities;

use minijinja::Environment;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::SystemTime;

use install::LabInstall;
use store::LabStore;

/// What the service needs to know, merged from the server's options.
#[derive(Clone, Debug, Default)]
pub struct LabConfig {
    /// JupyterLab's application directory (`<prefix>/share/jupyter/lab`); `None`: found with
    /// the `python3` on PATH, as jupyterlab_server.
    pub app_dir: Option<PathBuf>,
    /// Directories of federated extensions (`share/jupyter/labextensions`), first wins;
    /// `None`: Jupyter's data path as the `python3` on PATH reports it.
    pub labextensions_dirs: Option<Vec<PathBuf>>,
    /// The server's state directory: per-user state lives under its `lab/`.
    pub state_dir: PathBuf,
    /// The server's base URL (`/` or `/prefix/`): the page config's full URLs and theme CSS
    /// are built on it.
    pub base_url: String,
    /// What the page config says for every request.
    pub page: PageSettings,
}

/// The JupyterLab service: the installation (or why there is none) and the per-user store.
pub struct Lab {
    install: Result<LabInstall, String>,
    /// The page template, or why the page cannot be served.
    env: Result<Environment<'static>, String>,
    store: LabStore,
    base_url: String,
    page: PageSettings,
}

impl Lab {
    /// Find JupyterLab as the config says and open the per-user store. A missing JupyterLab
    /// is not an error here: the server still serves the REST API, and the page explains.
    pub async fn start(config: LabConfig) -> Lab {
        let install = LabInstall::discover(
            config.app_dir.as_deref(),
            config.labextensions_dirs.as_deref(),
        )
        .await;
        let env = match &install {
            Ok(i) => {
                tracing::info!(
                    "JupyterLab {} from {} ({} federated extensions)",
                    i.version,
                    i.app_dir.display(),
                    i.federated.len()
                );
                page::page_environment(&i.template)
            }
            Err(why) => {
                tracing::warn!("{why}");
                Err(why.clone())
            }
        };
        Lab {
            install,
            env,
            store: LabStore::new(&config.state_dir),
            base_url: config.base_url,
            page: config.page,
        }
    }

    /// The installation, or not found saying why there is none.
    fn install(&self) -> LabResult<&LabInstall> {
        self.install
            .as_ref()
            .map_err(|why| LabError::not_found(why.clone()))
    }

    /// The installed JupyterLab's version (`appVersion`).
    pub fn version(&self) -> LabResult<&str> {
        Ok(&self.install()?.version)
    }

    /// The page config's `federated_extensions`: one entry per extension found, the first
    /// directory holding an extension winning.
    pub fn federated_extensions(&self) -> LabResult<&[Value]> {
        Ok(&self.install()?.federated)
    }

    /// The installed language packs (English is built in).
    pub fn translations() -> Value {
        json!({
            "data": {"en": {"displayName": "English", "nativeName": "English"}},
            "message": ""
        })
    }

    /// One locale's translations: English needs no pack; other locales are reported as not
    /// installed, in the answer's `message` (not an error, as jupyterlab_server).
    pub fn translation(locale: &str) -> Value {
        let message = match locale {
            "default" | "en" | "en_US" | "en-US" => String::new(),
            other => format!("Language pack '{other}' not installed!"),
        };
        json!({"data": {}, "message": message})
    }

    /// The extension manager's allow and block lists (none).
    pub fn listings() -> Value {
        json!({
            "blocked_extensions_uris": [],
            "allowed_extensions_uris": [],
            "blocked_extensions": [],
            "allowed_extensions": []
        })
    }

    /// "Check for updates": concord never calls out to PyPI (jupyterlab's
    /// `NeverCheckForUpdate`), so there is never a notification.
    pub fn update_check() -> Value {
        json!({ "notification": null })
    }

    /// The news feed: concord serves none (page config `news.disabled`), so the list is
    /// empty, as jupyterlab's handler answers without a `news_url`.
    pub fn news() -> Value {
        json!({ "news": [] })
    }
}

/// One level of percent-decoding, as the URL carried it.
fn decoded(raw: &str) -> String {
    percent_encoding::percent_decode_str(raw)
        .decode_utf8_lossy()
        .into_owned()
}

/// A file time as jupyter_server writes it (ISO 8601, microseconds, `Z`), `null` if unknown.
fn iso(t: Option<SystemTime>) -> Value {
    match t {
        Some(t) => json!(chrono::DateTime::<chrono::Utc>::from(t)
            .format("%Y-%m-%dT%H:%M:%S%.6fZ")
            .to_string()),
        None => Value::Null,
    }
}
