//! The event bus behind `/api/events` (jupyter_server 2.x's events API): the registered
//! schemas, the frames subscribers receive, and who may receive each event.
//!
//! An event carries its **audience**: the resources a subscriber must be allowed to read
//! (a contents path, a rename's source, a kernel). Each subscriber decides, with its own
//! identity and the policy in force when the event reaches it, whether to pass the frame on,
//! so an event never tells anyone about a path or kernel they could not read. Publishing never
//! waits for subscribers: the bus is a bounded broadcast, and a subscriber that falls behind
//! is disconnected (see `api::events`). Nothing is built when nobody subscribes.

pub mod pyjson;

use concord_authz::{Action, Authorize, Identity, Resource};
use serde_json::Value;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use tokio::sync::{broadcast, watch};

use pyjson::{write_json_str, PyJson};

/// jupyter_server's contents events.
pub const CONTENTS_SCHEMA: &str = "https://events.jupyter.org/jupyter_server/contents_service/v1";
/// jupyter_server's kernel lifecycle events.
pub const KERNEL_ACTIONS_SCHEMA: &str =
    "https://events.jupyter.org/jupyter_server/kernel_actions/v1";
/// jupyter_server's gateway client events (registered for clients; Concord emits none).
pub const GATEWAY_CLIENT_SCHEMA: &str =
    "https://events.jupyter.org/jupyter_server/gateway_client/v1";

/// The schemas registered at start-up, as jupyter_server registers its three.
const SCHEMA_FILES: [(&str, &str); 3] = [
    (
        CONTENTS_SCHEMA,
        include_str!("../../schemas/events/contents_service-v1.json"),
    ),
    (
        GATEWAY_CLIENT_SCHEMA,
        include_str!("../../schemas/events/gateway_client-v1.json"),
    ),
    (
        KERNEL_ACTIONS_SCHEMA,
        include_str!("../../schemas/events/kernel_actions-v1.json"),
    ),
];

/// Events kept for subscribers that have not written them out yet. One that falls this far
/// behind (a client not reading its socket) is disconnected; publishers never wait.
pub const BUS_CAPACITY: usize = 1024;

/// A registered event schema: its id, version, and a validator for event data.
pub struct EventSchema {
    /// The schema's `$id`.
    pub id: &'static str,
    /// Its `version` (jupyter_events compares it as a string).
    pub version: String,
    schema: Value,
    /// Compiled when a client first posts an event: the schema compiler is large code that
    /// a server nobody posts events to need not keep resident (bench `kernels_rss`).
    validator: OnceLock<Result<jsonschema::Validator, String>>,
}

impl EventSchema {
    fn load(id: &'static str, text: &str) -> Result<EventSchema, String> {
        let schema: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let version = match schema.get("version") {
            Some(Value::String(v)) => v.clone(),
            Some(other) => other.to_string(),
            None => return Err("no version".into()),
        };
        Ok(EventSchema {
            id,
            version,
            schema,
            validator: OnceLock::new(),
        })
    }

    fn validator(&self) -> Result<&jsonschema::Validator, String> {
        self.validator
            .get_or_init(|| jsonschema::draft7::new(&self.schema).map_err(|e| e.to_string()))
            .as_ref()
            // Our own files, compiled by a test: this would be a build mistake.
            .map_err(|e| format!("event schema {} does not compile: {e}", self.id))
    }

    /// Check event data against the schema; the first error in the words of Python's
    /// `jsonschema` (`'action' is a required property`), the first line of jupyter_server's
    /// message (the rest of which is a dump of the schema).
    pub fn validate(&self, data: &Value) -> Result<(), String> {
        match self.validator()?.iter_errors(data).next() {
            None => Ok(()),
            Some(e) => Err(python_validation_message(&e)),
        }
    }
}

fn python_validation_message(e: &jsonschema::ValidationError<'_>) -> String {
    use jsonschema::error::{TypeKind, ValidationErrorKind as K};
    let instance = PyJson::from(e.instance().as_ref()).py_repr();
    match e.kind() {
        K::Required { property } => format!(
            "{} is a required property",
            PyJson::from(property).py_repr()
        ),
        K::Enum { options } => format!(
            "{instance} is not one of {}",
            PyJson::from(options.as_ref()).py_repr()
        ),
        K::Type {
            kind: TypeKind::Single(t),
        } => format!(
            "{instance} is not of type {}",
            concord_contents::python_repr(&t.to_string())
        ),
        K::Constant { expected_value } => format!(
            "{} was expected",
            PyJson::from(expected_value.as_ref()).py_repr()
        ),
        _ => e.to_string(),
    }
}

/// Who may receive an event.
#[derive(Clone, Debug, PartialEq)]
pub enum Audience {
    /// Subscribers allowed to read every one of these resources, decided when the event
    /// reaches them.
    Readers(Vec<Resource>),
    /// Only the subscriptions of this user (events about nothing the policy knows of).
    User(String),
}

/// One event, ready for subscribers.
#[derive(Debug)]
pub struct Event {
    /// The websocket text frame: `{"schema_id": …, **data}` as jupyter_server writes it.
    pub frame: String,
    /// Who may receive it.
    pub audience: Audience,
}

impl Event {
    /// Whether `who` may receive this event under the policy in force now.
    pub fn visible_to(&self, authz: &dyn Authorize, who: &Identity) -> bool {
        match &self.audience {
            Audience::Readers(resources) => resources
                .iter()
                .all(|r| authz.authorize(who, Action::Read, r).allowed),
            Audience::User(username) => who.username() == username,
        }
    }
}

/// `{"schema_id": "<id>", "<k>": "<v>", …}` as Python's `json.dumps` writes it.
pub fn frame(schema_id: &str, fields: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(96 + fields.len() * 32);
    out.push_str("{\"schema_id\": ");
    write_json_str(schema_id, &mut out);
    for (k, v) in fields {
        out.push_str(", ");
        write_json_str(k, &mut out);
        out.push_str(": ");
        write_json_str(v, &mut out);
    }
    out.push('}');
    out
}

/// A contents event (`action` on `path`, from `source_path`), for readers of `audience`.
pub fn contents_event(
    action: &str,
    path: &str,
    source_path: Option<&str>,
    audience: Vec<Resource>,
) -> Event {
    let frame = match source_path {
        Some(source) => frame(
            CONTENTS_SCHEMA,
            &[("action", action), ("path", path), ("source_path", source)],
        ),
        None => frame(CONTENTS_SCHEMA, &[("action", action), ("path", path)]),
    };
    Event {
        frame,
        audience: Audience::Readers(audience),
    }
}

/// What a subscriber holds: the stream of events and the bus's end. Counted as a
/// subscriber until dropped.
pub struct Subscription {
    /// Events from now on.
    pub events: broadcast::Receiver<Arc<Event>>,
    /// Becomes true when the server shuts down.
    pub closed: watch::Receiver<bool>,
    _counted: Counted,
}

/// One unit of the bus's subscriber count, given back on drop.
struct Counted(Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The server's event bus.
pub struct EventBus {
    tx: broadcast::Sender<Arc<Event>>,
    /// Open subscriptions: an atomic, so that publishers learn "nobody listens" without
    /// touching the broadcast's lock.
    subscribers: Arc<AtomicUsize>,
    schemas: Vec<EventSchema>,
    closed: watch::Sender<bool>,
    emitted: AtomicU64,
    lagged: AtomicU64,
}

impl Default for EventBus {
    fn default() -> Self {
        Self::new()
    }
}

impl EventBus {
    /// A bus with jupyter_server's three schemas registered.
    pub fn new() -> Self {
        let schemas = SCHEMA_FILES
            .iter()
            .filter_map(|(id, text)| match EventSchema::load(id, text) {
                Ok(s) => Some(s),
                Err(e) => {
                    // Our own files; a test loads them, so this is a build mistake.
                    tracing::error!("event schema {id} does not load: {e}");
                    None
                }
            })
            .collect();
        EventBus {
            tx: broadcast::channel(BUS_CAPACITY).0,
            subscribers: Arc::new(AtomicUsize::new(0)),
            schemas,
            closed: watch::channel(false).0,
            emitted: AtomicU64::new(0),
            lagged: AtomicU64::new(0),
        }
    }

    /// The registered schema with this id.
    pub fn schema(&self, id: &str) -> Option<&EventSchema> {
        self.schemas.iter().find(|s| s.id == id)
    }

    /// Whether anyone is subscribed (events are built only then).
    pub fn has_subscribers(&self) -> bool {
        self.subscribers.load(Ordering::Relaxed) > 0
    }

    /// Publish the events `build` makes, in order, if anyone is subscribed (`build` is not
    /// called otherwise). Never waits.
    pub fn emit<I: IntoIterator<Item = Event>>(&self, build: impl FnOnce() -> I) {
        if !self.has_subscribers() {
            return;
        }
        for event in build() {
            if self.tx.send(Arc::new(event)).is_ok() {
                self.emitted.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Receive every event published from now on.
    pub fn subscribe(&self) -> Subscription {
        self.subscribers.fetch_add(1, Ordering::Relaxed);
        Subscription {
            events: self.tx.subscribe(),
            closed: self.closed.subscribe(),
            _counted: Counted(self.subscribers.clone()),
        }
    }

    /// Count a subscriber disconnected for falling behind.
    pub fn count_lagged(&self) {
        self.lagged.fetch_add(1, Ordering::Relaxed);
    }

    /// End every subscription (server shutdown).
    pub fn close(&self) {
        self.closed.send_replace(true);
    }

    /// The bus's figures for `/metrics`.
    pub fn prometheus_text(&self) -> String {
        format!(
            "# HELP concord_event_subscribers Open /api/events/subscribe websockets.\n\
             # TYPE concord_event_subscribers gauge\nconcord_event_subscribers {}\n\
             # HELP concord_events_emitted_total Events published to subscribers.\n\
             # TYPE concord_events_emitted_total counter\nconcord_events_emitted_total {}\n\
             # HELP concord_event_subscribers_lagged_total Subscribers disconnected for falling behind.\n\
             # TYPE concord_event_subscribers_lagged_total counter\nconcord_event_subscribers_lagged_total {}\n",
            self.subscribers.load(Ordering::Relaxed),
            self.emitted.load(Ordering::Relaxed),
            self.lagged.load(Ordering::Relaxed),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_three_schemas_load_and_compile() {
        let bus = EventBus::new();
        for (id, _) in SCHEMA_FILES {
            let schema = bus.schema(id).expect("registered");
            assert_eq!(schema.version, "1");
            assert!(schema.validator().is_ok(), "{id}");
        }
    }

    #[test]
    fn validation_errors_read_like_python_jsonschema() {
        let bus = EventBus::new();
        let contents = bus.schema(CONTENTS_SCHEMA).unwrap();
        assert_eq!(
            contents.validate(&json!({})),
            Err("'action' is a required property".into())
        );
        assert_eq!(
            contents.validate(&json!({"action": "fly", "path": "x"})),
            Err("'fly' is not one of ['get', 'create', 'save', 'upload', 'rename', 'copy', 'delete']".into())
        );
        assert_eq!(
            contents.validate(&json!({"action": "save", "path": 5})),
            Err("5 is not of type 'string'".into())
        );
        assert_eq!(
            contents.validate(&json!("str")),
            Err("'str' is not of type 'object'".into())
        );
        assert!(contents
            .validate(&json!({"action": "save", "path": "x", "extra": 1}))
            .is_ok());
        let kernels = bus.schema(KERNEL_ACTIONS_SCHEMA).unwrap();
        // kernel_id is required except for a failed start.
        assert_eq!(
            kernels.validate(&json!({"action": "shutdown", "msg": "m"})),
            Err("'kernel_id' is a required property".into())
        );
        assert!(kernels
            .validate(&json!({"action": "start", "msg": "m"}))
            .is_ok());
        assert!(kernels
            .validate(&json!({"action": "start", "msg": "m", "status": "error"}))
            .is_ok());
        assert!(kernels
            .validate(&json!({"action": "start", "msg": "m", "status": "success"}))
            .is_err());
    }

    #[test]
    fn frames_are_written_as_json_dumps_writes_them() {
        assert_eq!(
            contents_event("rename", "b/é.txt", Some("a.txt"), vec![]).frame,
            r#"{"schema_id": "https://events.jupyter.org/jupyter_server/contents_service/v1", "action": "rename", "path": "b/\u00e9.txt", "source_path": "a.txt"}"#
        );
    }

    #[test]
    fn nothing_is_built_without_subscribers() {
        let bus = EventBus::new();
        bus.emit(|| -> Option<Event> { panic!("built without subscribers") });
        let mut sub = bus.subscribe();
        bus.emit(|| Some(contents_event("get", "", None, vec![])));
        assert!(sub.events.try_recv().is_ok());
        drop(sub);
        assert!(!bus.has_subscribers());
        bus.emit(|| -> Option<Event> { panic!("built after the last subscriber left") });
    }
}
