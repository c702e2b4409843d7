//! Real-time collaboration: the `concord-collab` service built from its configuration, the
//! files it edits reached through the contents service (`ContentsDocuments`), its reports
//! turned into audit records, renames and deletes made through the contents service passed
//! on, and the participants' rights re-decided when the policy or a document's path changes.

use base64::Engine;
use concord_authz::{Action, Authorize, CanonicalPath, Decision, Identity, Resource};
use concord_collab::document::{DocKind, FileContent};
use concord_collab::{
    BoxFuture, CloseReason, CollabConfig, CollabError, CollabObserver, Collaboration,
    DocumentStore, FileStamp, ParticipantInfo, Permission, RefusedChanges, SaveRecord, SavedFile,
    StateStore, StoredFile,
};
use concord_contents::{
    ActionKind, ActionListener, AllowAll, Caller, Content, ContentType, ContentsAction,
    ContentsError, ContentsManager, Field, FileFormat, GetOptions, SaveModel,
};
use concord_identity::AuditRecord;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use crate::audit::Auditor;

/// The collaboration service as the server runs it: the service, and who each connected
/// participant is (their groups decide their rights when the policy changes).
pub struct Collab {
    /// The service.
    pub service: Collaboration,
    authz: Arc<dyn Authorize>,
    identities: Mutex<HashMap<u64, Identity>>,
}

/// Build the collaboration service: files through `contents`, file ids in
/// `collaboration.db` in the state directory, saves and refusals to `audit`; renames and
/// deletes the contents service reports reach it.
pub fn build(
    config: CollabConfig,
    contents: &Arc<ContentsManager>,
    state_dir: &Path,
    authz: Arc<dyn Authorize>,
    audit: Auditor,
) -> anyhow::Result<Arc<Collab>> {
    let state = StateStore::open(&state_dir.join("collaboration.db"))
        .map_err(|e| anyhow::anyhow!("collaboration: {}", e.message))?;
    let service = Collaboration::new(
        config,
        Arc::new(ContentsDocuments(contents.clone())),
        state,
        Arc::new(AuditObserver(audit)),
    );
    let collab = Arc::new(Collab {
        service,
        authz,
        identities: Mutex::new(HashMap::new()),
    });
    contents.subscribe_actions(Arc::new(MovesAndDeletes(Arc::downgrade(&collab))));
    Ok(collab)
}

/// Save every open document and close every participant (server shutdown).
pub async fn stop(collab: &Collab) {
    collab.service.shutdown().await;
}

impl Collab {
    /// What `identity` may do in a document at `path`: edit with write, view with read
    /// only, nothing without read. Not audited: the caller's opening of the room was.
    pub fn permission_of(&self, identity: &Identity, path: &CanonicalPath) -> Option<Permission> {
        let resource = Resource::contents(path.clone());
        if self
            .authz
            .authorize(identity, Action::Write, &resource)
            .allowed
        {
            Some(Permission::Edit)
        } else if self
            .authz
            .authorize(identity, Action::Read, &resource)
            .allowed
        {
            Some(Permission::View)
        } else {
            None
        }
    }

    /// Remember who a participant is, until [`Collab::left`].
    pub fn joined(&self, participant: u64, identity: Identity) {
        self.identities.lock().insert(participant, identity);
    }

    /// A participant's connection ended.
    pub fn left(&self, participant: u64) {
        self.identities.lock().remove(&participant);
    }

    /// Re-decide every participant's rights (after a policy reload).
    pub fn recheck_all(&self) {
        self.recheck(self.service.participants());
    }

    /// Re-decide these participants' rights at their document's current path: no read
    /// closes their socket, read only makes them viewers, write makes them editors again.
    pub fn recheck(&self, participants: Vec<ParticipantInfo>) {
        for participant in participants {
            let identity = self.identities.lock().get(&participant.id).cloned();
            let Some(identity) = identity else { continue };
            let permission = CanonicalPath::parse(&participant.path)
                .ok()
                .and_then(|path| self.permission_of(&identity, &path));
            match permission {
                None => {
                    self.service.close(participant.id, CloseReason::revoked());
                }
                Some(permission) if permission != participant.permission => {
                    self.service.set_permission(participant.id, permission);
                }
                Some(_) => {}
            }
        }
    }
}

/// The files the service edits, read and written through the contents service. The
/// server authorized the room's path before anyone joined; the service acts for the room,
/// so the contents service is asked with every path allowed.
struct ContentsDocuments(Arc<ContentsManager>);

/// The name the contents service is told for the room's own reads and writes.
const ROOM_CALLER: &str = "concord-collaboration";

fn collab_error(e: ContentsError) -> CollabError {
    CollabError {
        kind: e.kind,
        message: e.message,
    }
}

fn api_path(path: &str) -> Result<CanonicalPath, CollabError> {
    CanonicalPath::parse(path).map_err(|_| CollabError::not_found(format!("no file {path:?}")))
}

/// Run a blocking contents operation off the async threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, CollabError> + Send + 'static,
) -> Result<T, CollabError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|_| CollabError::io("the contents operation failed unexpectedly"))?
}

impl ContentsDocuments {
    fn read(cm: &ContentsManager, path: &str, kind: DocKind) -> Result<StoredFile, CollabError> {
        let canonical = api_path(path)?;
        let caller = Caller::new(ROOM_CALLER, &AllowAll);
        let options = GetOptions {
            content: true,
            kind: Some(match kind {
                DocKind::Notebook => ContentType::Notebook,
                DocKind::Text | DocKind::Blob => ContentType::File,
            }),
            format: match kind {
                DocKind::Notebook => None,
                DocKind::Text => Some(FileFormat::Text),
                DocKind::Blob => Some(FileFormat::Base64),
            },
            hash: false,
        };
        let model = cm
            .get(&caller, &canonical, &options)
            .map_err(collab_error)?;
        let content = match (kind, model.content) {
            (DocKind::Notebook, Some(Content::Notebook(notebook))) => {
                FileContent::Notebook(notebook)
            }
            (DocKind::Text, Some(Content::Text(text))) => {
                FileContent::Text(text.replace("\r\n", "\n"))
            }
            (DocKind::Blob, Some(Content::Text(encoded))) => {
                let compact: String = encoded.split_whitespace().collect();
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(compact)
                    .map_err(|e| CollabError::io(format!("{path}: bad base64 content: {e}")))?;
                FileContent::Binary(bytes)
            }
            _ => {
                return Err(CollabError::invalid(format!(
                    "{path} cannot be opened as a {kind:?} document"
                )))
            }
        };
        Ok(StoredFile {
            content,
            last_modified: model.modified_time.into(),
        })
    }

    fn write(
        cm: &ContentsManager,
        path: &str,
        content: FileContent,
    ) -> Result<SavedFile, CollabError> {
        let canonical = api_path(path)?;
        let caller = Caller::new(ROOM_CALLER, &AllowAll);
        let (kind, format, value) = match content {
            FileContent::Notebook(notebook) => ("notebook", "json", notebook),
            FileContent::Text(text) => ("file", "text", serde_json::Value::String(text)),
            FileContent::Binary(bytes) => (
                "file",
                "base64",
                serde_json::Value::String(base64::engine::general_purpose::STANDARD.encode(bytes)),
            ),
        };
        let mut model = SaveModel::new(kind, Some(value));
        model.format = Field::Given(format.to_string());
        let body = concord_contents::Body::Model(model);
        cm.put(&caller, &canonical, body).map_err(collab_error)?;
        // The saved file's hash (the front end compares it with its own to know the server
        // saved), as jupyter-server-ydoc asks for it after a save.
        let options = GetOptions {
            content: false,
            kind: None,
            format: None,
            hash: true,
        };
        let model = cm.stat(&caller, &canonical).map_err(collab_error)?;
        let hashed = cm.get(&caller, &canonical, &options).ok();
        Ok(SavedFile {
            last_modified: model.modified_time.into(),
            hash: hashed.and_then(|m| m.hash),
        })
    }
}

impl DocumentStore for ContentsDocuments {
    fn load(&self, path: String, kind: DocKind) -> BoxFuture<'_, Result<StoredFile, CollabError>> {
        let cm = self.0.clone();
        Box::pin(blocking(move || ContentsDocuments::read(&cm, &path, kind)))
    }

    fn save(
        &self,
        path: String,
        content: FileContent,
    ) -> BoxFuture<'_, Result<SavedFile, CollabError>> {
        let cm = self.0.clone();
        Box::pin(blocking(move || {
            ContentsDocuments::write(&cm, &path, content)
        }))
    }

    fn last_modified(&self, path: String) -> BoxFuture<'_, Result<FileStamp, CollabError>> {
        let cm = self.0.clone();
        Box::pin(blocking(move || {
            let canonical = api_path(&path)?;
            let caller = Caller::new(ROOM_CALLER, &AllowAll);
            let model = cm.stat(&caller, &canonical).map_err(collab_error)?;
            Ok(model.modified_time.into())
        }))
    }
}

/// The service's reports, as audit records: one per editor per save (batched by the
/// service, never per keystroke), and a viewer's or a forger's first refused message.
struct AuditObserver(Auditor);

fn contents_resource(path: &str) -> String {
    format!("contents:/{}", path.trim_start_matches('/'))
}

impl CollabObserver for AuditObserver {
    fn changes_refused(&self, event: &RefusedChanges) {
        let rule = format!(
            "collaboration: {} dropped (room {})",
            event.what, event.room
        );
        self.0.record_event(AuditRecord::new(
            &event.username,
            Action::Write.as_str(),
            &contents_resource(&event.path),
            &Decision::deny(rule),
            None,
        ));
    }

    fn awareness_refused(&self, event: &RefusedChanges) {
        let rule = format!(
            "collaboration: {} dropped (room {})",
            event.what, event.room
        );
        self.0.record_event(AuditRecord::new(
            &event.username,
            "awareness",
            &contents_resource(&event.path),
            &Decision::deny(rule),
            None,
        ));
    }

    fn document_saved(&self, record: &SaveRecord) {
        for editor in &record.editors {
            let mut rule = format!(
                "collaboration save of file {}: {} updates, {} bytes",
                record.file_id, editor.updates, editor.bytes
            );
            if !editor.cells.is_empty() {
                rule.push_str(&format!(", cells {}", editor.cells.join(",")));
            }
            self.0.record_event(AuditRecord::new(
                &editor.username,
                Action::Write.as_str(),
                &contents_resource(&record.path),
                &Decision::allow(rule),
                None,
            ));
        }
    }

    fn save_failed(&self, path: &str, error: &CollabError) {
        tracing::warn!("collaboration: saving {path} failed: {error}");
    }
}

/// Renames and deletes made through the contents service reach the collaboration service:
/// file ids follow a rename (and the moved rooms' participants are re-decided at the new
/// path), a delete closes the rooms under it.
struct MovesAndDeletes(std::sync::Weak<Collab>);

impl ActionListener for MovesAndDeletes {
    fn listening(&self) -> bool {
        self.0.strong_count() > 0
    }

    fn hear(&self, actions: &[ContentsAction]) {
        let Some(collab) = self.0.upgrade() else {
            return;
        };
        for action in actions {
            match (action.action, &action.source_path) {
                (ActionKind::Rename, Some(old)) => {
                    match collab.service.file_moved(old, &action.path) {
                        Ok(moved) => collab.recheck(moved),
                        Err(e) => tracing::warn!(
                            "collaboration: following the move of {old} to {}: {e}",
                            action.path
                        ),
                    }
                }
                (ActionKind::Delete, _) => {
                    if let Err(e) = collab.service.file_deleted(&action.path) {
                        tracing::warn!(
                            "collaboration: forgetting the deleted {}: {e}",
                            action.path
                        );
                    }
                }
                _ => {}
            }
        }
    }
}
