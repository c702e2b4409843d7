//! The server's handle on the policy: load the preset or the admin's files, reload them,
//! and open the audit log next to it.

use concord_authz::{Authorize, PolicyEngine};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::Settings;

/// The loaded policy engine and where it came from.
#[derive(Clone)]
pub struct PolicyHandle {
    engine: Arc<PolicyEngine>,
}

impl PolicyHandle {
    /// Load the policy the settings name: `--policy` (plus `--cedar-policy`), else `--preset`.
    pub fn load(settings: &Settings) -> Result<Self, Vec<String>> {
        Self::load_from(
            Some(settings.preset.as_str()),
            settings.policy.as_deref(),
            settings.cedar_policy.as_deref(),
        )
    }

    /// Load a policy file, or a preset when no file is given (default `owner-only`).
    pub fn load_from(
        preset: Option<&str>,
        file: Option<&Path>,
        cedar: Option<&Path>,
    ) -> Result<Self, Vec<String>> {
        let loaded = match (file, cedar) {
            (Some(path), cedar) => PolicyEngine::load(path, cedar),
            (None, None) => {
                PolicyEngine::from_preset(preset.unwrap_or(concord_authz::DEFAULT_PRESET))
            }
            (None, Some(cedar_path)) => PolicyEngine::from_preset_with_cedar(
                preset.unwrap_or(concord_authz::DEFAULT_PRESET),
                cedar_path,
            ),
        };
        loaded
            .map(|engine| PolicyHandle {
                engine: Arc::new(engine),
            })
            .map_err(|errors| errors.iter().map(|e| e.to_string()).collect())
    }

    /// The engine, as the pipeline uses it.
    pub fn authorizer(&self) -> Arc<dyn Authorize> {
        self.engine.clone()
    }

    /// The engine itself (for the file-system view of kernel and terminal confinement).
    pub fn engine(&self) -> Arc<PolicyEngine> {
        self.engine.clone()
    }

    /// Re-read the files; on error the previous policy stays in force.
    pub fn reload(&self) -> Result<(), Vec<String>> {
        self.engine
            .reload()
            .map_err(|errors| errors.iter().map(|e| e.to_string()).collect())
    }

    /// The files to watch for changes.
    pub fn files(&self) -> Vec<PathBuf> {
        self.engine.policy_files()
    }

    /// One line saying which policy is in force.
    pub fn describe(&self) -> String {
        self.engine.summary()
    }

    /// The policy as Cedar text.
    pub fn cedar_text(&self) -> String {
        self.engine.cedar_text()
    }
}

/// Open the audit log the settings ask for: SQLite `audit.db` in the state directory unless
/// `--audit-db false`, plus JSON lines to `--audit-log` (a file, or `-` for stdout).
pub fn open_audit_log(settings: &Settings) -> anyhow::Result<Option<concord_identity::AuditLog>> {
    use concord_identity::{AuditConfig, AuditSink};
    let mut config = AuditConfig::default_for(&settings.state_dir);
    if !settings.audit_db {
        config.sinks.clear();
    }
    if let Some(dest) = &settings.audit_log {
        config.sinks.push(if dest == "-" {
            AuditSink::Stdout
        } else {
            AuditSink::JsonLinesFile(PathBuf::from(dest))
        });
    }
    if config.sinks.is_empty() {
        return Ok(None);
    }
    Ok(Some(concord_identity::AuditLog::open(config)?))
}
