//! `/api/events` (jupyter_server 2.x's events API):
//!
//! - `WS /api/events/subscribe` (`events:execute`): a text frame for every event the
//!   subscriber may see, decided per event with the subscriber's identity and the policy in
//!   force then (see `crate::events`).
//! - `POST /api/events` (`events:write`): a client emits an event of a registered schema,
//!   validated as jupyter_server does. What it may claim: a contents event reaches only
//!   subscribers who may read its paths *and* only if the poster may read them too; a kernel
//!   event is about that kernel (or, for an id that is not running, a kernel of the poster's
//!   own); a gateway event reaches only the poster's own subscriptions.
//!
//! See `docs/events.md`.

use axum::body::Bytes;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use concord_authz::{Action, CanonicalPath, Identity, Owner, Resource, ResourceType};
use futures::StreamExt;

use crate::events::pyjson::PyJson;
use crate::events::{
    Audience, Ended, Event, Subscription, CONTENTS_SCHEMA, GATEWAY_CLIENT_SCHEMA,
    KERNEL_ACTIONS_SCHEMA,
};
use crate::http::error::{ApiError, ApiResult};
use crate::http::guard::Guard;
use crate::http::websocket::{self, FromClient, OpenConnection, Standing, ToClient, WriteFailed};
use crate::state::App;

/// Frames written with one flush at most, so a steady stream is never held back.
const FLUSH_EVERY: usize = 64;

/// Close code for a subscriber that fell behind or is no longer allowed (policy violation).
const CLOSE_POLICY: u16 = 1008;
/// Close code at server shutdown (going away).
const CLOSE_GOING_AWAY: u16 = 1001;

/// `WS /api/events/subscribe`.
pub async fn subscribe(
    State(app): State<App>,
    Extension(guard): Extension<Guard>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> ApiResult<Response> {
    let ws = websocket::require_upgrade(ws)?;
    // Subscribed before the upgrade: nothing published after the 101 is missed.
    let subscription = app.events.subscribe();
    tracing::debug!(user = %guard.identity().username(), "events subscriber");
    let open = OpenConnection::new(&app);
    let standing = Standing::new(&app, guard);
    // Clients send nothing on this socket but control frames.
    let limit = subscription.limits.max_message_size;
    Ok(websocket::configure(ws, limit)
        .on_upgrade(move |socket| pump(app, open, standing, subscription, socket)))
}

/// Whether the subscriber may still receive events at all.
fn may_subscribe(guard: &Guard) -> bool {
    guard.may(Action::Execute, &Resource::service(ResourceType::Events))
}

/// Write the events the subscriber may see until either side is done, or the subscriber
/// loses the right to them (decided again at every event, and at once when credentials or
/// the policy change).
async fn pump(
    app: App,
    open: OpenConnection,
    mut standing: Standing,
    mut sub: Subscription,
    socket: WebSocket,
) {
    let _open = open;
    let who = standing.guard().identity().clone();
    let limits = sub.limits;
    let stall = limits.write_timeout;
    let mut closed = sub.closed.clone();
    let (mut messages, mut sink) = websocket::split(socket, limits.max_message_size);
    // The client sends nothing but control frames; reading notices when it leaves.
    let reader = async {
        while let Some(message) = messages.next().await {
            if let FromClient::TooBig = message {
                return Some(websocket::too_big(limits.max_message_size));
            }
        }
        None
    };
    let writer = async {
        // Frames fed to the socket but not yet flushed: a burst (a save is two events) is
        // written with one flush.
        let mut unflushed = 0usize;
        loop {
            let received = if unflushed > 0 {
                match sub.try_recv() {
                    Ok(Some(event)) => Ok(event),
                    Ok(None) => {
                        if !written(sink.flush_within(stall).await, &app, &who) {
                            return None;
                        }
                        unflushed = 0;
                        continue;
                    }
                    Err(ended) => Err(ended),
                }
            } else {
                tokio::select! {
                    r = sub.recv() => r,
                    _ = closed.wait_for(|closed| *closed) => {
                        return Some((CLOSE_GOING_AWAY, "the server is shutting down".to_string()));
                    }
                    guard = standing.changed() => {
                        match guard {
                            None => return Some(websocket::credential_revoked()),
                            Some(guard) if !may_subscribe(guard) => {
                                return Some(websocket::right_revoked("receive events"));
                            }
                            Some(_) => continue,
                        }
                    }
                }
            };
            let event = match received {
                Ok(event) => event,
                Err(Ended::Lagged { queue_bytes }) => {
                    app.events.count_lagged();
                    tracing::info!(user = %who.username(), "events subscriber too slow; disconnected");
                    return Some((
                        CLOSE_POLICY,
                        format!("too slow: more than {queue_bytes} bytes of events were waiting"),
                    ));
                }
                Err(Ended::Closed) => {
                    return Some((CLOSE_GOING_AWAY, "the server is shutting down".to_string()))
                }
            };
            let guard = standing.guard();
            if !event.visible_to(&who, |r| guard.may(Action::Read, r)) {
                continue;
            }
            // The subscription itself is re-decided too: a reload that takes events:execute
            // away ends the stream at the next event it would have carried, if the change
            // was not noticed before.
            if !may_subscribe(guard) {
                return Some(websocket::right_revoked("receive events"));
            }
            let frame = ToClient::Text(event.frame.as_str().to_string());
            if !written(sink.feed_within(frame, stall).await, &app, &who) {
                return None;
            }
            unflushed += 1;
            if unflushed >= FLUSH_EVERY {
                if !written(sink.flush_within(stall).await, &app, &who) {
                    return None;
                }
                unflushed = 0;
            }
        }
    };
    let end = tokio::select! {
        r = reader => r,
        r = writer => r,
    };
    sink.send_close(end).await;
}

/// Whether a write to the socket completed; one that took longer than the write timeout is
/// counted as a subscriber that stopped reading (one that failed: the client left).
fn written(r: Result<(), WriteFailed>, app: &App, who: &Identity) -> bool {
    match r {
        Ok(()) => true,
        Err(WriteFailed::Gone) => false,
        Err(WriteFailed::Stalled) => {
            app.events.count_lagged();
            tracing::info!(user = %who.username(), "events subscriber stopped reading; disconnected");
            false
        }
    }
}

/// jupyter_server's wording of a body that does not parse.
fn invalid_json() -> ApiError {
    ApiError::bad_request("Invalid JSON in body of request")
}

/// The checks of jupyter_server's `validate_model` on the payload, with its messages; returns
/// the `(schema_id, data)` of a valid payload.
fn validate_payload<'p>(
    app: &App,
    payload: &'p PyJson,
) -> ApiResult<(&'static str, &'p [(String, PyJson)])> {
    // jupyter_server checks the keys of a set, in an order that changes between runs; a
    // payload missing several keys is told about one of them, here always the first.
    const REQUIRED: [&str; 3] = ["schema_id", "version", "data"];
    for key in REQUIRED {
        let present = match payload {
            PyJson::Object(_) => payload.get(key).is_some(),
            PyJson::Array(items) => items.iter().any(|i| i.as_str() == Some(key)),
            PyJson::Str(s) => s.contains(key),
            other => {
                return Err(ApiError::bad_request(format!(
                    "argument of type '{}' is not iterable",
                    other.type_name()
                )))
            }
        };
        if !present {
            return Err(ApiError::bad_request(format!(
                "Missing `{key}` in the JSON request body."
            )));
        }
    }
    let (Some(schema_id), Some(version), Some(data)) = (
        payload.get("schema_id"),
        payload.get("version"),
        payload.get("data"),
    ) else {
        // A list or string holding the three names passed the checks above, as in Python.
        return Err(ApiError::bad_request(format!(
            "'{}' object has no attribute 'get'",
            payload.type_name()
        )));
    };
    let schema = match schema_id {
        PyJson::Array(_) | PyJson::Object(_) => {
            return Err(ApiError::bad_request(format!(
                "unhashable type: '{}'",
                schema_id.type_name()
            )))
        }
        PyJson::Str(id) => app.events.schema(id),
        _ => None,
    };
    let Some(schema) = schema else {
        // Python's KeyError prints its message quoted.
        return Err(ApiError::bad_request(concord_contents::python_repr(
            &format!(
                "The requested schema, {}, was not found in the schema registry. Are you sure it was previously registered?",
                schema_id.py_str()
            ),
        )));
    };
    let version = version.py_str();
    if version != schema.version {
        return Err(ApiError::bad_request(format!(
            "Unregistered version: {}≠{} for `{}`",
            concord_contents::python_repr(&version),
            concord_contents::python_repr(&schema.version),
            schema.id
        )));
    }
    if let Some(timestamp) = payload.get("timestamp") {
        if !timestamp.as_str().is_some_and(valid_timestamp) {
            return Err(ApiError::bad_request(
                "HTTP 400: Bad Request (Failed to parse timestamp from JSON request body,\n            an ISO format datetime string with UTC offset is expected,\n            for example, 2022-05-26T13:50:00+05:00Z)",
            ));
        }
    }
    // jupyter_server validates only when someone listens; Concord always does, so the
    // answer does not depend on whether other users are subscribed.
    schema
        .validate(&data.to_value())
        .map_err(ApiError::bad_request)?;
    match data {
        PyJson::Object(entries) => Ok((schema.id, entries)),
        // Every registered schema requires an object; validation said so already.
        other => Err(ApiError::bad_request(format!(
            "{} is not of type 'object'",
            other.py_repr()
        ))),
    }
}

/// `POST /api/events {schema_id, version, data, timestamp?}`: 204, the event delivered to
/// the subscribers who may see it.
pub async fn post(
    State(app): State<App>,
    Extension(guard): Extension<Guard>,
    body: Bytes,
) -> ApiResult<Response> {
    if body.is_empty() {
        return Err(ApiError::bad_request("No JSON data provided"));
    }
    let payload = PyJson::parse(&body).map_err(|_| invalid_json())?;
    if payload == PyJson::Null {
        return Err(ApiError::bad_request("No JSON data provided"));
    }
    let (schema_id, data) = validate_payload(&app, &payload)?;
    // `{"schema_id": …, **data}` cannot be built in Python when data has its own
    // `schema_id`: jupyter_server answers 204 and delivers nothing; so does Concord.
    if data.iter().any(|(k, _)| k == "schema_id") {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    app.events.emit(|| {
        let audience = posted_audience(&app, &guard, schema_id, data)?;
        let mut entries = Vec::with_capacity(data.len() + 1);
        entries.push(("schema_id".to_string(), PyJson::Str(schema_id.to_string())));
        entries.extend(data.iter().cloned());
        let event = Event {
            frame: PyJson::Object(entries).dumps(),
            audience,
        };
        // The poster must be able to see what it claims: nobody learns of a path or kernel
        // through someone who could not read it.
        if event.visible_to(guard.identity(), |r| guard.may(Action::Read, r)) {
            Some(event)
        } else {
            tracing::debug!(user = %guard.identity().username(), "posted event about something the poster may not read: not delivered");
            None
        }
    });
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Who may receive a client's event; `None` when it names a path that does not parse or
/// resolve (delivered to nobody).
fn posted_audience(
    app: &App,
    guard: &Guard,
    schema_id: &str,
    data: &[(String, PyJson)],
) -> Option<Audience> {
    let field = |key: &str| {
        data.iter()
            .find(|(k, _)| k == key)
            .and_then(|(_, v)| v.as_str())
    };
    match schema_id {
        CONTENTS_SCHEMA => {
            let mut resources = Vec::new();
            for key in ["path", "source_path"] {
                if let Some(raw) = field(key) {
                    let path = CanonicalPath::parse(raw).ok()?;
                    resources.push(Resource::contents(app.paths.resolve(&path).ok()?));
                }
            }
            Some(Audience::Readers(resources))
        }
        KERNEL_ACTIONS_SCHEMA => {
            let id = field("kernel_id");
            let running = id.and_then(|id| {
                app.instances
                    .get(&ResourceType::Kernels)
                    .and_then(|lookup| lookup.lookup(id))
            });
            let kernel = running.unwrap_or_else(|| {
                Resource::owned(
                    ResourceType::Kernels,
                    id.map(str::to_string),
                    Owner::of(guard.identity()),
                    None,
                )
            });
            Some(Audience::Readers(vec![kernel]))
        }
        GATEWAY_CLIENT_SCHEMA => Some(Audience::User(guard.identity().username().to_string())),
        _ => None,
    }
}

/// Whether `text` parses with Python's `strptime(text, "%Y-%m-%dT%H:%M:%S%zZ")` (as
/// jupyter_server parses the timestamp) into a valid date, time and UTC offset.
fn valid_timestamp(text: &str) -> bool {
    parse_timestamp(text.as_bytes()).is_some()
}

fn parse_timestamp(b: &[u8]) -> Option<()> {
    let mut i = 0;
    let year = fixed_digits(b, &mut i, 4)?;
    literal(b, &mut i, b'-')?;
    let month = field(b, &mut i, 12, false)?;
    literal(b, &mut i, b'-')?;
    let day = field(b, &mut i, 31, false)?;
    // Literals match case-insensitively in strptime.
    if !matches!(b.get(i), Some(b'T' | b't')) {
        return None;
    }
    i += 1;
    let hour = field(b, &mut i, 23, true)?;
    literal(b, &mut i, b':')?;
    let minute = field(b, &mut i, 59, true)?;
    literal(b, &mut i, b':')?;
    // strptime's %S accepts 60 and 61, which datetime() then refuses.
    let second = field(b, &mut i, 61, true)?;
    // %z: `Z` (case-sensitive), or ±HH[:]MM[[:]SS[.ffffff]].
    let offset = if b.get(i) == Some(&b'Z') {
        i += 1;
        0
    } else {
        let sign = *b.get(i)?;
        if sign != b'+' && sign != b'-' {
            return None;
        }
        i += 1;
        let hours = fixed_digits(b, &mut i, 2)?;
        let _ = literal(b, &mut i, b':');
        let minutes = fixed_digits(b, &mut i, 2)?;
        if minutes > 59 {
            return None;
        }
        let mut seconds = 0;
        // Optional seconds, only when two digits follow (the trailing `Z` is not one).
        let save = i;
        let _ = literal(b, &mut i, b':');
        match fixed_digits(b, &mut i, 2) {
            Some(s) if s <= 59 => {
                seconds = s;
                if literal(b, &mut i, b'.').is_some() {
                    let start = i;
                    while i < b.len() && i - start < 6 && b[i].is_ascii_digit() {
                        i += 1;
                    }
                    if i == start {
                        return None;
                    }
                }
            }
            _ => i = save,
        }
        hours * 3600 + minutes * 60 + seconds
    };
    // The literal `Z` after %z (strptime matches literals case-insensitively).
    if !matches!(b.get(i), Some(b'Z' | b'z')) || i + 1 != b.len() {
        return None;
    }
    let valid = year >= 1
        && chrono::NaiveDate::from_ymd_opt(year as i32, month, day).is_some()
        && hour <= 23
        && minute <= 59
        && second <= 59
        && offset < 24 * 3600;
    valid.then_some(())
}

fn literal(b: &[u8], i: &mut usize, c: u8) -> Option<()> {
    if b.get(*i) == Some(&c) {
        *i += 1;
        Some(())
    } else {
        None
    }
}

fn fixed_digits(b: &[u8], i: &mut usize, n: usize) -> Option<u32> {
    let digits = b.get(*i..*i + n)?;
    if !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    *i += n;
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// One or two digits up to `max` (two when they make a valid value, as strptime's regex
/// tries first); `zero` says whether 0 is allowed.
fn field(b: &[u8], i: &mut usize, max: u32, zero: bool) -> Option<u32> {
    let mut j = *i;
    if let Some(two) = fixed_digits(b, &mut j, 2) {
        if two <= max && (zero || two > 0) {
            *i = j;
            return Some(two);
        }
    }
    let one = fixed_digits(b, i, 1)?;
    (zero || one > 0).then_some(one)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_as_strptime_parses_them() {
        for ok in [
            "2022-05-26T13:50:00+05:00Z",
            "2022-05-26T13:50:00+0500Z",
            "2022-05-26T13:50:00ZZ",
            "2022-05-26T13:50:00Zz",
            "2022-5-6T3:5:0-23:59Z",
            "2022-05-26T13:50:00+05:00:30.123Z",
            "2022-05-26t13:50:00+05:00Z",
        ] {
            assert!(valid_timestamp(ok), "{ok}");
        }
        for bad in [
            "2022-05-26T13:50:00Z",
            "2022-05-26T13:50:00+05:00",
            "2022-05-26 13:50:00+05:00Z",
            "2022-02-30T13:50:00+05:00Z",
            "2022-05-26T24:50:00+05:00Z",
            "2022-05-26T13:50:60+05:00Z",
            "2022-05-26T13:50:00+24:00Z",
            "2022-05-26T13:50:00zZ",
            "22-05-26T13:50:00+05:00Z",
            "",
        ] {
            assert!(!valid_timestamp(bad), "{bad}");
        }
    }
}
