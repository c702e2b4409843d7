//! The page: JupyterLab's `index.html` (a Jinja2 template) rendered with minijinja, and the
//! page config it embeds.

use minijinja::value::{Enumerator, Kwargs, Object, ObjectRepr, Value as JValue};
use minijinja::Environment;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::error::{LabError, LabResult};
use crate::Lab;

/// What the page config says that is the same for every request: server settings the
/// front end adapts to.
#[derive(Clone, Debug, Default)]
pub struct PageSettings {
    /// The token the page hands the front end (`token`), in token mode; `None` leaves it out
    /// and the front end relies on the login cookie and `_xsrf`.
    pub token: Option<String>,
    /// `allow_hidden_files`: whether the contents service shows hidden files.
    pub allow_hidden_files: bool,
    /// `delete_to_trash`: whether the contents service deletes to the trash.
    pub delete_to_trash: bool,
    /// Extensions or plugins the server disables (the collaboration extensions when the
    /// server's collaboration service is off), as `disabledExtensions` entries.
    pub disabled_extensions: Vec<String>,
}

/// One request for the page.
#[derive(Clone, Debug)]
pub struct PageRequest {
    /// The URL path as requested (with the base URL): `notFoundUrl` when it names no page.
    pub url_path: String,
    /// Whether the URL names a page (`/lab`, `/lab/tree/…`, `/lab/workspaces/…`, `/doc…`);
    /// `false` for anything else under `/lab`, which gets the page telling the front end so.
    pub known_url: bool,
    /// `/doc…`: single-document mode.
    pub single_document: bool,
    /// The workspace named in the URL (`default` when none).
    pub workspace: String,
    /// The path after `tree/`, decoded (empty when none).
    pub tree_path: String,
    /// `terminalsAvailable`: the terminals service runs and the caller may use it.
    pub terminals_available: bool,
}

/// The rendered page.
#[derive(Clone, Debug)]
pub struct Page {
    /// The HTML.
    pub html: String,
    /// The page tells the front end the URL was not found (and is sent as a 404).
    pub not_found: bool,
}

/// HTML escaping as Jinja2's (markupsafe): `& < > " '` only, so URLs keep their slashes.
fn markupsafe_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&#34;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A minijinja environment that renders JupyterLab's Jinja2 templates as Jinja2 does:
/// `page_config.copy()`/`update(**kw)` work, and escaping is markupsafe's.
fn jinja2_environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_unknown_method_callback(|_, value, method, args| {
        // Python's dict methods that JupyterLab's template calls on page_config.
        match value.downcast_object_ref::<PageConfig>() {
            Some(config) => config.call_dict_method(method, args),
            None => Err(minijinja::Error::from(minijinja::ErrorKind::UnknownMethod)),
        }
    });
    env.set_formatter(|out, state, value| {
        let escape =
            !matches!(state.auto_escape(), minijinja::AutoEscape::None) && !value.is_safe();
        match value.as_str() {
            Some(text) if escape => out
                .write_str(&markupsafe_escape(text))
                .map_err(|_| minijinja::Error::from(minijinja::ErrorKind::WriteFailure)),
            _ => minijinja::escape_formatter(out, state, value),
        }
    });
    for name in ["escape", "e"] {
        env.add_filter(name, |value: JValue| {
            if value.is_safe() {
                return value;
            }
            JValue::from_safe_string(markupsafe_escape(&value.to_string()))
        });
    }
    env
}

/// `page_config` as the template sees it: a map with Python's `copy()` and `update(**kw)`.
#[derive(Debug, Default)]
struct PageConfig(Mutex<BTreeMap<String, JValue>>);

impl PageConfig {
    fn entries(&self) -> BTreeMap<String, JValue> {
        self.0.lock().map(|m| m.clone()).unwrap_or_default()
    }

    fn call_dict_method(&self, method: &str, args: &[JValue]) -> Result<JValue, minijinja::Error> {
        match method {
            "copy" => Ok(JValue::from_object(PageConfig(Mutex::new(self.entries())))),
            "update" => {
                let (kwargs,): (Kwargs,) = minijinja::value::from_args(args)?;
                if let Ok(mut map) = self.0.lock() {
                    for name in kwargs.args() {
                        let v: JValue = kwargs.get(name)?;
                        map.insert(name.to_string(), v);
                    }
                }
                Ok(JValue::from(()))
            }
            _ => Err(minijinja::Error::from(minijinja::ErrorKind::UnknownMethod)),
        }
    }
}

impl Object for PageConfig {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Map
    }

    fn get_value(self: &Arc<Self>, key: &JValue) -> Option<JValue> {
        let key = key.as_str()?;
        self.0.lock().ok()?.get(key).cloned()
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Values(self.entries().into_keys().map(JValue::from).collect())
    }
}

/// serde_json → minijinja, without minijinja's serde feature.
fn to_jinja(value: &Value) -> JValue {
    match value {
        Value::Null => JValue::from(()),
        Value::Bool(b) => JValue::from(*b),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                JValue::from(i)
            } else if let Some(u) = n.as_u64() {
                JValue::from(u)
            } else {
                JValue::from(n.as_f64().unwrap_or(0.0))
            }
        }
        Value::String(s) => JValue::from(s.as_str()),
        Value::Array(a) => JValue::from(a.iter().map(to_jinja).collect::<Vec<_>>()),
        Value::Object(o) => JValue::from(
            o.iter()
                .map(|(k, v)| (k.clone(), to_jinja(v)))
                .collect::<BTreeMap<String, JValue>>(),
        ),
    }
}

/// Kernel message types that do not change the displayed kernel status (jupyterlab_server).
const UNTRACKED_MESSAGE_TYPES: &[&str] = &[
    "comm_info_request",
    "comm_info_reply",
    "kernel_info_request",
    "kernel_info_reply",
    "shutdown_request",
    "shutdown_reply",
    "interrupt_request",
    "interrupt_reply",
    "debug_request",
    "debug_reply",
    "stream",
    "display_data",
    "update_display_data",
    "execute_input",
    "execute_result",
    "error",
    "status",
    "clear_output",
    "debug_event",
    "input_request",
    "input_reply",
];

/// Workspace names JupyterLab's URLs may carry; any other is a URL that names no page.
fn valid_workspace_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// The template environment: `Err` says why there is none (the page cannot be served).
pub(crate) fn page_environment(template: &str) -> Result<Environment<'static>, String> {
    let mut env = jinja2_environment();
    env.add_template_owned("index.html", template.to_string())
        .map_err(|e| {
            tracing::error!("JupyterLab's index.html does not parse: {e}");
            "JupyterLab's page template could not be read (see the server log).".to_string()
        })?;
    Ok(env)
}

impl Lab {
    /// `disabledExtensions`: the server's, what each enabled federated extension disables
    /// (jupyterlab_server skips a disabled extension's list), then `page_config.json`'s.
    fn disabled_extensions(&self, i: &crate::install::LabInstall) -> Vec<String> {
        let mut disabled = self.page.disabled_extensions.clone();
        for (extension, plugins) in &i.disabled_by_extensions {
            if !self.page.disabled_extensions.contains(extension) {
                disabled.extend(plugins.iter().cloned());
            }
        }
        disabled.extend(i.disabled_extensions.iter().cloned());
        disabled
    }

    /// The page config of one request. Server paths (`serverRoot`, `*Dir`, `rootUri`) are
    /// left out on purpose: in a shared server they would tell every user the server's file
    /// layout.
    pub fn page_config(&self, page: &PageRequest) -> LabResult<Map<String, Value>> {
        let i = self.install()?;
        let base = self.base_url.as_str();
        let full = |rel: &str| format!("{}{}", base, rel.trim_start_matches('/'));
        let not_found_url = (!page.known_url || !valid_workspace_name(&page.workspace))
            .then(|| page.url_path.clone());
        let mut c = Map::new();
        let mut put = |k: &str, v: Value| {
            c.insert(k.to_string(), v);
        };
        put("appName", json!("JupyterLab"));
        put("appNamespace", json!("lab"));
        put("appVersion", json!(i.version));
        put("appUrl", json!("/lab"));
        put("buildAvailable", json!(false));
        put("buildCheck", json!(false));
        put("cacheFiles", json!(false));
        put("copyAbsolutePath", json!(false));
        put("allow_hidden_files", json!(self.page.allow_hidden_files));
        put("delete_to_trash", json!(self.page.delete_to_trash));
        put("devMode", json!(false));
        put("disabledExtensions", json!(self.disabled_extensions(i)));
        put("exposeAppInBrowser", json!(false));
        put(
            "extensionManager",
            json!({"name": "read-only", "can_install": false, "install_path": null}),
        );
        put("federated_extensions", Value::Array(i.federated.clone()));
        put("ignorePlugins", json!([]));
        put("news", json!({"disabled": true}));
        put("notebookStartsKernel", json!(true));
        put("notebookVersion", json!("[2, 21, 1]"));
        put("preferredPath", json!("/"));
        // On for everyone: it also shows Log Out; Shut Down is hidden from those who may
        // not use it by their settings (`settings::SHUT_DOWN_COMMAND`).
        put("quitButton", json!(true));
        put("store_id", json!(0));
        put("terminalsAvailable", json!(page.terminals_available));
        put("untracked_message_types", json!(UNTRACKED_MESSAGE_TYPES));
        put("mathjaxConfig", json!("TeX-AMS_HTML-full,Safe"));
        for (key, rel) in [
            ("appUrl", "/lab"),
            ("labextensionsUrl", "/lab/extensions"),
            ("licensesUrl", "/lab/api/licenses"),
            ("listingsUrl", "/lab/api/listings"),
            ("settingsUrl", "/lab/api/settings"),
            ("themesUrl", "/lab/api/themes"),
            ("translationsApiUrl", "/lab/api/translations"),
            ("treeUrl", "/lab/tree"),
            ("workspacesApiUrl", "/lab/api/workspaces"),
        ] {
            put(key, json!(rel));
            let mut full_key = String::from("full");
            full_key.push_str(&key[..1].to_ascii_uppercase());
            full_key.push_str(&key[1..]);
            put(&full_key, json!(full(rel)));
        }
        put("fullStaticUrl", json!(full("/static/lab")));
        if let Some(token) = &self.page.token {
            put("token", json!(token));
        }
        put(
            "mode",
            json!(if page.single_document {
                "single-document"
            } else {
                "multiple-document"
            }),
        );
        put("workspace", json!(page.workspace));
        put("treePath", json!(page.tree_path));
        if let Some(url) = not_found_url {
            put("notFoundUrl", json!(url));
        }
        Ok(c)
    }

    /// The page for one request: `index.html` rendered with its page config. An error when
    /// JupyterLab is not installed or its template cannot be used, saying why.
    pub fn render_page(&self, page: &PageRequest) -> LabResult<Page> {
        let config = self.page_config(page)?;
        let env = self
            .env
            .as_ref()
            .map_err(|why| LabError::not_found(why.clone()))?;
        let not_found = config.contains_key("notFoundUrl");
        let page_config = JValue::from_object(PageConfig(Mutex::new(
            config
                .iter()
                .map(|(k, v)| (k.clone(), to_jinja(v)))
                .collect(),
        )));
        let ctx = minijinja::context! {
            page_config => page_config,
            base_url => self.base_url.clone(),
            ws_url => "",
            custom_css => false,
        };
        let html = env
            .get_template("index.html")
            .and_then(|t| t.render(ctx))
            .map_err(|e| {
                tracing::error!("rendering JupyterLab's index.html: {e:#}");
                LabError::not_found(
                    "JupyterLab's page template could not be rendered (see the server log).",
                )
            })?;
        Ok(Page { html, not_found })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_config_copy_and_update_render_the_template_shape() {
        let mut env = jinja2_environment();
        env.add_template_owned(
            "index.html",
            "{% set full = page_config.copy() %}{% set _ = full.update(baseUrl=base_url) %}{{ full | tojson }}|{{ page_config.treePath }}|{{ base_url | escape }}".to_string(),
        )
        .unwrap();
        let mut m = BTreeMap::new();
        m.insert("treePath".to_string(), JValue::from("a</script>&'b"));
        let pc = JValue::from_object(PageConfig(Mutex::new(m)));
        let out = env
            .get_template("index.html")
            .unwrap()
            .render(minijinja::context! { page_config => pc, base_url => "/x/" })
            .unwrap();
        assert!(
            out.contains("\"baseUrl\":\"/x/\"") || out.contains("\"baseUrl\": \"/x/\""),
            "{out}"
        );
        assert!(!out.contains("</script>"), "{out}");
        assert!(out.contains("\\u003c/script\\u003e"), "{out}");
        assert!(out.ends_with("|a&lt;/script&gt;&amp;&#39;b|/x/"), "{out}");
    }
}
