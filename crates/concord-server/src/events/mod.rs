//! The event bus behind `/api/events` (jupyter_server 2.x's events API): the registered
//! schemas, the frames subscribers receive, and who may receive each event.
//!
//! An event carries its **audience**: the resources a subscriber must be allowed to read
//! (a contents path, a rename's source, a kernel). Each subscriber decides, with its own
//! identity and the policy in force when the event reaches it, whether to pass the frame on,
//! so an event never tells anyone about a path or kernel they could not read. Publishing never
//! waits for subscribers: each has its own queue, bounded in bytes (each event is held once,
//! shared by the queues it is in), and a subscriber past its budget is disconnected (see
//! `handlers::events`). Nothing is built when nobody subscribes.

pub mod pyjson;

use concord_authz::{Identity, Resource};
use parking_lot::{Mutex, RwLock};
use serde_json::Value;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::sync::{mpsc, watch};

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

/// What the bus holds for its subscribers, and how long it waits for them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventLimits {
    /// Bytes of events queued for one subscriber before it is disconnected as too slow.
    pub queue_bytes: usize,
    /// How long a subscriber's socket may take to accept a frame.
    pub write_timeout: Duration,
    /// The largest websocket message a subscriber may send (it has nothing to send).
    pub max_message_size: usize,
}

impl Default for EventLimits {
    fn default() -> Self {
        EventLimits {
            queue_bytes: 1 << 20,
            write_timeout: Duration::from_secs(10),
            max_message_size: 64 * 1024,
        }
    }
}

/// What holding one event costs besides its frame (the event, its audience, a queue
/// entry): counting it makes a byte budget bound the number of small events too.
const EVENT_OVERHEAD: usize = 256;

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
    /// The bytes this event is counted for in a subscriber's budget.
    pub fn footprint(&self) -> usize {
        let audience = match &self.audience {
            Audience::Readers(resources) => resources.len() * EVENT_OVERHEAD,
            Audience::User(name) => name.len(),
        };
        EVENT_OVERHEAD + self.frame.len() + audience
    }

    /// Whether `who` may receive this event, `may_read` deciding (under the policy in force
    /// now, narrowed to the caller's token scope) whether they may read a resource.
    pub fn visible_to(&self, who: &Identity, may_read: impl Fn(&Resource) -> bool) -> bool {
        match &self.audience {
            Audience::Readers(resources) => resources.iter().all(may_read),
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

/// An event in one subscriber's queue, counted in the bus's buffered bytes while there.
struct Queued {
    event: Arc<Event>,
    bytes: usize,
    buffered: Arc<AtomicU64>,
}

impl Drop for Queued {
    fn drop(&mut self) {
        self.buffered
            .fetch_sub(self.bytes as u64, Ordering::Relaxed);
    }
}

/// The bus's end of one subscription.
struct Subscriber {
    tx: mpsc::UnboundedSender<Queued>,
    /// Bytes queued and not yet taken.
    queued: Arc<AtomicUsize>,
    /// Set when the subscriber went past its budget (its queue is then dropped).
    lagged: Arc<AtomicBool>,
}

/// Why a subscription yields no more events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    /// More than `queue_bytes` of events waited for it: it is disconnected.
    Lagged {
        /// The budget it went past.
        queue_bytes: usize,
    },
    /// The bus is gone.
    Closed,
}

/// What a subscriber holds: its queue of events and the bus's end. Counted as a subscriber
/// until dropped.
pub struct Subscription {
    events: mpsc::UnboundedReceiver<Queued>,
    queued: Arc<AtomicUsize>,
    lagged: Arc<AtomicBool>,
    /// The limits in force when it subscribed.
    pub limits: EventLimits,
    /// Becomes true when the server shuts down.
    pub closed: watch::Receiver<bool>,
    _counted: Counted,
}

impl Subscription {
    /// The next event; waits for one.
    pub async fn recv(&mut self) -> Result<Arc<Event>, Ended> {
        if self.lagged.load(Ordering::Acquire) {
            return Err(self.lagged_end());
        }
        match self.events.recv().await {
            Some(queued) => Ok(self.take(queued)),
            None if self.lagged.load(Ordering::Acquire) => Err(self.lagged_end()),
            None => Err(Ended::Closed),
        }
    }

    /// The next event if one is waiting.
    pub fn try_recv(&mut self) -> Result<Option<Arc<Event>>, Ended> {
        if self.lagged.load(Ordering::Acquire) {
            return Err(self.lagged_end());
        }
        match self.events.try_recv() {
            Ok(queued) => Ok(Some(self.take(queued))),
            Err(mpsc::error::TryRecvError::Empty) => Ok(None),
            Err(mpsc::error::TryRecvError::Disconnected) if self.lagged.load(Ordering::Acquire) => {
                Err(self.lagged_end())
            }
            Err(mpsc::error::TryRecvError::Disconnected) => Err(Ended::Closed),
        }
    }

    fn take(&self, queued: Queued) -> Arc<Event> {
        self.queued.fetch_sub(queued.bytes, Ordering::AcqRel);
        Arc::clone(&queued.event)
    }

    /// The end of a subscriber past its budget: what was queued for it is freed now.
    fn lagged_end(&mut self) -> Ended {
        self.events.close();
        while let Ok(queued) = self.events.try_recv() {
            self.queued.fetch_sub(queued.bytes, Ordering::AcqRel);
        }
        Ended::Lagged {
            queue_bytes: self.limits.queue_bytes,
        }
    }
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
    queues: Mutex<Vec<Subscriber>>,
    /// Open subscriptions: an atomic, so that publishers learn "nobody listens" without
    /// taking the lock.
    subscribers: Arc<AtomicUsize>,
    limits: RwLock<EventLimits>,
    schemas: Vec<EventSchema>,
    closed: watch::Sender<bool>,
    emitted: AtomicU64,
    lagged: AtomicU64,
    /// Bytes queued for subscribers now.
    buffered: Arc<AtomicU64>,
}

impl Default for EventBus {
    fn default() -> Self {
        Self::new()
    }
}

impl EventBus {
    /// A bus with jupyter_server's three schemas registered and the default limits.
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
            queues: Mutex::new(Vec::new()),
            subscribers: Arc::new(AtomicUsize::new(0)),
            limits: RwLock::new(EventLimits::default()),
            schemas,
            closed: watch::channel(false).0,
            emitted: AtomicU64::new(0),
            lagged: AtomicU64::new(0),
            buffered: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Set the limits of the subscriptions made from now on.
    pub fn set_limits(&self, limits: EventLimits) {
        *self.limits.write() = limits;
    }

    /// The limits of new subscriptions.
    pub fn limits(&self) -> EventLimits {
        *self.limits.read()
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
    /// called otherwise). Never waits: a subscriber past its budget is dropped (its
    /// subscription then ends with [`Ended::Lagged`]). An event larger than the whole
    /// budget still goes to a subscriber with nothing queued.
    pub fn emit<I: IntoIterator<Item = Event>>(&self, build: impl FnOnce() -> I) {
        if !self.has_subscribers() {
            return;
        }
        let events: Vec<(Arc<Event>, usize)> = build()
            .into_iter()
            .map(|event| {
                let bytes = event.footprint();
                (Arc::new(event), bytes)
            })
            .collect();
        if events.is_empty() {
            return;
        }
        let budget = self.limits().queue_bytes;
        self.queues.lock().retain(|sub| {
            if sub.tx.is_closed() {
                return false;
            }
            for (event, bytes) in &events {
                let queued = sub.queued.load(Ordering::Acquire);
                if queued > 0 && queued.saturating_add(*bytes) > budget {
                    sub.lagged.store(true, Ordering::Release);
                    return false;
                }
                sub.queued.fetch_add(*bytes, Ordering::AcqRel);
                self.buffered.fetch_add(*bytes as u64, Ordering::Relaxed);
                let _ = sub.tx.send(Queued {
                    event: Arc::clone(event),
                    bytes: *bytes,
                    buffered: Arc::clone(&self.buffered),
                });
            }
            true
        });
        self.emitted
            .fetch_add(events.len() as u64, Ordering::Relaxed);
    }

    /// Receive every event published from now on.
    pub fn subscribe(&self) -> Subscription {
        let (tx, events) = mpsc::unbounded_channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let lagged = Arc::new(AtomicBool::new(false));
        let mut queues = self.queues.lock();
        // Those who left since the last event.
        queues.retain(|sub| !sub.tx.is_closed());
        queues.push(Subscriber {
            tx,
            queued: Arc::clone(&queued),
            lagged: Arc::clone(&lagged),
        });
        drop(queues);
        self.subscribers.fetch_add(1, Ordering::Relaxed);
        Subscription {
            events,
            queued,
            lagged,
            limits: self.limits(),
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
             # TYPE concord_event_subscribers_lagged_total counter\nconcord_event_subscribers_lagged_total {}\n\
             # HELP concord_event_buffered_bytes Bytes of events queued for subscribers.\n\
             # TYPE concord_event_buffered_bytes gauge\nconcord_event_buffered_bytes {}\n",
            self.subscribers.load(Ordering::Relaxed),
            self.emitted.load(Ordering::Relaxed),
            self.lagged.load(Ordering::Relaxed),
            self.buffered.load(Ordering::Relaxed),
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
        assert!(matches!(sub.try_recv(), Ok(Some(_))));
        drop(sub);
        assert!(!bus.has_subscribers());
        bus.emit(|| -> Option<Event> { panic!("built after the last subscriber left") });
    }

    /// A subscriber that does not take its events is dropped once they exceed its budget
    /// (the others go on), and what it held is given back.
    #[tokio::test]
    async fn a_subscriber_past_its_budget_is_dropped_and_its_queue_freed() {
        let bus = EventBus::new();
        let event = || contents_event("get", "a/b", None, vec![]);
        let one = event().footprint();
        bus.set_limits(EventLimits {
            queue_bytes: 3 * one,
            ..EventLimits::default()
        });
        let mut slow = bus.subscribe();
        let mut fast = bus.subscribe();
        for _ in 0..5 {
            bus.emit(|| Some(event()));
            assert!(matches!(fast.try_recv(), Ok(Some(_))));
        }
        assert_eq!(
            slow.recv().await.err(),
            Some(Ended::Lagged {
                queue_bytes: 3 * one
            })
        );
        assert_eq!(bus.buffered.load(Ordering::Relaxed), 0);
        bus.emit(|| Some(event()));
        assert!(fast.recv().await.is_ok());
        drop((slow, fast));
        let _again = bus.subscribe();
        assert_eq!(bus.queues.lock().len(), 1, "those who left are forgotten");
    }
}
