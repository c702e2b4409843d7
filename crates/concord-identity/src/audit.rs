//! The audit log: one record for every denial and every allowed write or execute.
//!
//! Records go to a bounded queue read by one background thread that writes them to the
//! configured sinks (an SQLite database, JSON lines to a file or stdout). Recording never
//! blocks: when the queue is full the record is dropped and counted ([`AuditLog::dropped`]).

use std::collections::VecDeque;
use std::fmt;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use concord_authz::{Action, Decision, Identity, Resource};
use rusqlite::{params, Connection};
use serde::{Deserialize, Serialize};

use crate::error::IdentityError;
use crate::redact::redact_url;
use crate::store::open_sqlite;

/// File name of the default audit database inside the state directory.
pub const AUDIT_DATABASE_FILE: &str = "audit.db";

/// Longest text kept in any record field (inputs such as usernames can be huge).
const MAX_FIELD_CHARS: usize = 2048;
/// Most records written in one batch (one SQLite transaction).
const MAX_BATCH: usize = 512;

/// Whether a request was allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuditDecision {
    /// Allowed.
    Allow,
    /// Denied.
    Deny,
}

impl AuditDecision {
    fn as_str(self) -> &'static str {
        match self {
            AuditDecision::Allow => "allow",
            AuditDecision::Deny => "deny",
        }
    }

    fn parse(s: &str) -> Self {
        if s == "allow" {
            AuditDecision::Allow
        } else {
            AuditDecision::Deny
        }
    }
}

/// One audit record; a JSON line has exactly these keys (`method` and `route` may be null;
/// `token_id` is there only for requests made with an API token).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// When, RFC 3339 in UTC with milliseconds (`2026-05-01T12:00:00.123Z`).
    pub time: String,
    /// Who (username), or `-` for an unauthenticated caller.
    pub user: String,
    /// What: `read`, `write`, `execute`, or another verb such as `login`.
    pub action: String,
    /// On what: a resource as `Resource` displays it (`contents:/a/b.ipynb`).
    pub resource: String,
    /// Allowed or denied.
    pub decision: AuditDecision,
    /// The rule that decided.
    pub rule: String,
    /// The client's address.
    pub client: Option<String>,
    /// The HTTP method, when the record comes from a request.
    pub method: Option<String>,
    /// The route or path, secrets removed.
    pub route: Option<String>,
    /// The id of the API token the request was made with (never the token itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_id: Option<i64>,
}

fn bounded(s: &str) -> String {
    if s.chars().count() <= MAX_FIELD_CHARS {
        return s.to_string();
    }
    let mut out: String = s.chars().take(MAX_FIELD_CHARS).collect();
    out.push('…');
    out
}

impl AuditRecord {
    /// A record stamped now. Fields are truncated to 2048 characters.
    pub fn new(
        user: &str,
        action: &str,
        resource: &str,
        decision: &Decision,
        client: Option<IpAddr>,
    ) -> Self {
        AuditRecord {
            time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            user: bounded(user),
            action: bounded(action),
            resource: bounded(resource),
            decision: if decision.allowed {
                AuditDecision::Allow
            } else {
                AuditDecision::Deny
            },
            rule: bounded(&decision.rule),
            client: client.map(|addr| addr.to_string()),
            method: None,
            route: None,
            token_id: None,
        }
    }

    /// The record for an authorization decision.
    pub fn for_decision(
        who: &Identity,
        action: Action,
        resource: &Resource,
        decision: &Decision,
        client: Option<IpAddr>,
    ) -> Self {
        AuditRecord::new(
            who.username(),
            action.as_str(),
            &resource.to_string(),
            decision,
            client,
        )
    }

    /// Adds the HTTP method and route (or path with query, which is passed through
    /// [`redact_url`] so no token reaches the log).
    pub fn with_request(mut self, method: &str, route: &str) -> Self {
        self.method = Some(bounded(method));
        self.route = Some(bounded(&redact_url(route)));
        self
    }

    /// Adds the id of the API token the request was made with.
    pub fn with_token(mut self, token_id: Option<i64>) -> Self {
        self.token_id = token_id;
        self
    }

    /// Whether this record should be kept: every denial and every allowed write or
    /// execute (allowed reads are not audited).
    pub fn is_auditable(&self) -> bool {
        self.decision == AuditDecision::Deny || self.action != Action::Read.as_str()
    }
}

/// Where audit records go.
pub enum AuditSink {
    /// An SQLite database (created with mode 0600); `recent` reads from it.
    Sqlite(PathBuf),
    /// JSON lines appended to a file (created with mode 0600).
    JsonLinesFile(PathBuf),
    /// JSON lines on standard output.
    Stdout,
    /// JSON lines to any writer (e.g. a pipe to a log shipper).
    JsonLinesWriter(Box<dyn Write + Send>),
}

impl fmt::Debug for AuditSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuditSink::Sqlite(path) => f.debug_tuple("Sqlite").field(path).finish(),
            AuditSink::JsonLinesFile(path) => f.debug_tuple("JsonLinesFile").field(path).finish(),
            AuditSink::Stdout => f.write_str("Stdout"),
            AuditSink::JsonLinesWriter(_) => f.write_str("JsonLinesWriter(..)"),
        }
    }
}

impl AuditSink {
    /// Parses a sink as given on the command line or in the config: `sqlite` (`audit.db` in
    /// `state_dir`), `sqlite:<path>`, `file:<path>`, `stdout`. `none` gives `None`.
    pub fn from_spec(spec: &str, state_dir: &Path) -> Result<Option<AuditSink>, IdentityError> {
        let spec = spec.trim();
        let sink = match spec {
            "none" => return Ok(None),
            "sqlite" => AuditSink::Sqlite(state_dir.join(AUDIT_DATABASE_FILE)),
            "stdout" | "-" => AuditSink::Stdout,
            _ => match spec.split_once(':') {
                Some(("sqlite", path)) if !path.is_empty() => AuditSink::Sqlite(path.into()),
                Some(("file", path)) if !path.is_empty() => AuditSink::JsonLinesFile(path.into()),
                _ => return Err(IdentityError::BadAuditSink(spec.to_string())),
            },
        };
        Ok(Some(sink))
    }
}

/// Audit log settings.
#[derive(Debug)]
pub struct AuditConfig {
    /// Where records go; empty disables auditing.
    pub sinks: Vec<AuditSink>,
    /// Records that may wait for the writer before new ones are dropped.
    pub queue_capacity: usize,
}

impl AuditConfig {
    /// The default: `audit.db` in the state directory, a queue of 8192 records.
    pub fn default_for(state_dir: &Path) -> Self {
        AuditConfig {
            sinks: vec![AuditSink::Sqlite(state_dir.join(AUDIT_DATABASE_FILE))],
            queue_capacity: 8192,
        }
    }
}

const AUDIT_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS audit (
    id       INTEGER PRIMARY KEY,
    time     TEXT NOT NULL,
    user     TEXT NOT NULL,
    action   TEXT NOT NULL,
    resource TEXT NOT NULL,
    decision TEXT NOT NULL,
    rule     TEXT NOT NULL,
    client   TEXT,
    method   TEXT,
    route    TEXT,
    token_id INTEGER
);
CREATE INDEX IF NOT EXISTS audit_time ON audit(time);
";

/// Adds the columns later versions added to an audit table created before them.
fn upgrade_audit_table(conn: &Connection) -> Result<(), IdentityError> {
    let mut stmt = conn.prepare("SELECT name FROM pragma_table_info('audit')")?;
    let columns = stmt
        .query_map([], |row| row.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    if !columns.iter().any(|c| c == "token_id") {
        conn.execute_batch("ALTER TABLE audit ADD COLUMN token_id INTEGER")?;
    }
    Ok(())
}

enum OpenSink {
    Sqlite(Connection),
    Lines(Box<dyn Write + Send>),
}

impl OpenSink {
    fn write(&mut self, records: &[AuditRecord]) -> Result<(), String> {
        match self {
            OpenSink::Sqlite(conn) => {
                let tx = conn.transaction().map_err(|e| e.to_string())?;
                {
                    let mut insert = tx
                        .prepare_cached(
                            "INSERT INTO audit (time, user, action, resource, decision, rule, client, method, route, token_id)
                             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                        )
                        .map_err(|e| e.to_string())?;
                    for r in records {
                        insert
                            .execute(params![
                                r.time,
                                r.user,
                                r.action,
                                r.resource,
                                r.decision.as_str(),
                                r.rule,
                                r.client,
                                r.method,
                                r.route,
                                r.token_id
                            ])
                            .map_err(|e| e.to_string())?;
                    }
                }
                tx.commit().map_err(|e| e.to_string())
            }
            OpenSink::Lines(out) => {
                let mut buf = Vec::with_capacity(records.len() * 256);
                for r in records {
                    serde_json::to_writer(&mut buf, r).map_err(|e| e.to_string())?;
                    buf.push(b'\n');
                }
                out.write_all(&buf).map_err(|e| e.to_string())?;
                out.flush().map_err(|e| e.to_string())
            }
        }
    }
}

enum Message {
    Record(Box<AuditRecord>),
    Flush(SyncSender<()>),
}

#[derive(Default)]
struct Counters {
    dropped: AtomicU64,
    failed: AtomicU64,
    written: AtomicU64,
    /// Records sent and not yet taken by the writer (bounded by the queue capacity).
    queued: AtomicUsize,
}

/// The audit log: cheap to call from request handlers; share one (`Arc<AuditLog>`).
pub struct AuditLog {
    // An unbounded channel with the bound kept by `Counters::queued`: a bounded std channel
    // allocates and initialises all its slots up front (192 KiB for 8192 records).
    sender: Option<Sender<Message>>,
    capacity: usize,
    counters: Arc<Counters>,
    writer: Option<Writer>,
    readable: Option<ReadBack>,
}

/// The writer thread and a channel that disconnects when it finishes.
struct Writer {
    thread: JoinHandle<()>,
    /// In a mutex only so that `AuditLog` is `Sync`; used once, in `drop`.
    finished: std::sync::Mutex<Receiver<()>>,
}

/// How long dropping an [`AuditLog`] waits for queued records to be written.
const DROP_WAIT: Duration = Duration::from_secs(10);

#[derive(Clone, Debug)]
enum ReadBack {
    Sqlite(PathBuf),
    JsonLines(PathBuf),
}

impl fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditLog")
            .field("readable", &self.readable)
            .field("dropped", &self.dropped())
            .finish_non_exhaustive()
    }
}

impl AuditLog {
    /// Opens the sinks (errors now, not later) and starts the writer thread.
    pub fn open(config: AuditConfig) -> Result<Self, IdentityError> {
        let mut sinks = Vec::with_capacity(config.sinks.len());
        let mut readable = None;
        for sink in config.sinks {
            match sink {
                AuditSink::Sqlite(path) => {
                    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                        crate::store::ensure_state_dir(parent)?;
                    }
                    let conn = open_sqlite(&path)?;
                    conn.execute_batch(AUDIT_SCHEMA)?;
                    upgrade_audit_table(&conn)?;
                    readable = Some(ReadBack::Sqlite(path));
                    sinks.push(OpenSink::Sqlite(conn));
                }
                AuditSink::JsonLinesFile(path) => {
                    let file = fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .mode(0o600)
                        .open(&path)
                        .map_err(|e| IdentityError::io(&path, e))?;
                    if readable.is_none() {
                        readable = Some(ReadBack::JsonLines(path));
                    }
                    sinks.push(OpenSink::Lines(Box::new(file)));
                }
                AuditSink::Stdout => sinks.push(OpenSink::Lines(Box::new(std::io::stdout()))),
                AuditSink::JsonLinesWriter(writer) => sinks.push(OpenSink::Lines(writer)),
            }
        }
        let counters = Arc::new(Counters::default());
        if sinks.is_empty() {
            return Ok(AuditLog {
                sender: None,
                capacity: 0,
                counters,
                writer: None,
                readable: None,
            });
        }
        let (sender, receiver) = mpsc::channel();
        let thread_counters = Arc::clone(&counters);
        let (finished_sender, finished) = mpsc::sync_channel::<()>(0);
        let thread = std::thread::Builder::new()
            .name("concord-audit".to_string())
            .spawn(move || {
                write_loop(receiver, sinks, &thread_counters);
                drop(finished_sender);
            })
            .map_err(|e| IdentityError::io("audit writer thread", e))?;
        let writer = Writer {
            thread,
            finished: std::sync::Mutex::new(finished),
        };
        Ok(AuditLog {
            sender: Some(sender),
            capacity: config.queue_capacity.max(1),
            counters,
            writer: Some(writer),
            readable,
        })
    }

    /// An audit log that records nothing.
    pub fn disabled() -> Self {
        AuditLog {
            sender: None,
            capacity: 0,
            counters: Arc::new(Counters::default()),
            writer: None,
            readable: None,
        }
    }

    /// Queues a record; never blocks. When the queue is full the record is dropped and
    /// counted.
    pub fn record(&self, record: AuditRecord) {
        let Some(sender) = &self.sender else { return };
        let queued = &self.counters.queued;
        let sent = queued.fetch_add(1, Ordering::AcqRel) < self.capacity
            && sender.send(Message::Record(Box::new(record))).is_ok();
        if !sent {
            queued.fetch_sub(1, Ordering::AcqRel);
            let before = self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            if before.is_power_of_two() || before == 0 {
                tracing::warn!(
                    dropped = before + 1,
                    "audit queue full; dropping audit records"
                );
            }
        }
    }

    /// Records dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.counters.dropped.load(Ordering::Relaxed)
    }

    /// Records a sink failed to write (counted once per sink).
    pub fn failed_writes(&self) -> u64 {
        self.counters.failed.load(Ordering::Relaxed)
    }

    /// Records written (counted once per record, after every sink had its turn).
    pub fn written(&self) -> u64 {
        self.counters.written.load(Ordering::Relaxed)
    }

    /// Waits until every record queued before this call has been written. Blocks: for
    /// shutdown and tests, not for request handling.
    pub fn flush(&self) {
        let Some(sender) = &self.sender else { return };
        let (ack, done) = mpsc::sync_channel(1);
        if sender.send(Message::Flush(ack)).is_ok() {
            let _ = done.recv();
        }
    }

    /// The last `n` records, oldest first, from the SQLite sink (or else the JSON-lines
    /// file sink). Records still queued are not included; call [`AuditLog::flush`] first.
    pub fn recent(&self, n: usize) -> Result<Vec<AuditRecord>, IdentityError> {
        match &self.readable {
            Some(ReadBack::Sqlite(path)) => recent_from_sqlite(path, n),
            Some(ReadBack::JsonLines(path)) => recent_from_json_lines(path, n),
            None => Err(IdentityError::AuditNotQueryable),
        }
    }
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        // Closing the channel ends the writer after it has written what is queued. A sink
        // stuck for good (a pipe nobody reads) must not hang shutdown, so the wait is bounded.
        self.sender.take();
        if let Some(writer) = self.writer.take() {
            let finished = writer
                .finished
                .into_inner()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            match finished.recv_timeout(DROP_WAIT) {
                Err(RecvTimeoutError::Timeout) => {
                    tracing::error!("audit sink stuck; queued audit records may be lost");
                }
                Ok(()) | Err(RecvTimeoutError::Disconnected) => {
                    let _ = writer.thread.join();
                }
            }
        }
    }
}

fn write_loop(receiver: Receiver<Message>, mut sinks: Vec<OpenSink>, counters: &Counters) {
    let mut batch: Vec<AuditRecord> = Vec::with_capacity(MAX_BATCH);
    while let Ok(first) = receiver.recv() {
        let mut acks = Vec::new();
        let mut next = Some(first);
        while let Some(message) = next {
            match message {
                Message::Record(record) => {
                    counters.queued.fetch_sub(1, Ordering::AcqRel);
                    batch.push(*record);
                }
                // Everything queued before the flush is in `batch` or already written.
                Message::Flush(ack) => acks.push(ack),
            }
            next = if batch.len() < MAX_BATCH {
                receiver.try_recv().ok()
            } else {
                None
            };
        }
        if !batch.is_empty() {
            for sink in &mut sinks {
                if let Err(e) = sink.write(&batch) {
                    counters
                        .failed
                        .fetch_add(batch.len() as u64, Ordering::Relaxed);
                    tracing::error!(error = %e, records = batch.len(), "could not write audit records");
                }
            }
            counters
                .written
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
            batch.clear();
        }
        for ack in acks {
            let _ = ack.send(());
        }
    }
}

fn recent_from_sqlite(path: &Path, n: usize) -> Result<Vec<AuditRecord>, IdentityError> {
    let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let mut stmt = conn.prepare(
        "SELECT time, user, action, resource, decision, rule, client, method, route, token_id
         FROM (SELECT * FROM audit ORDER BY id DESC LIMIT ?1) ORDER BY id",
    )?;
    let limit = i64::try_from(n).unwrap_or(i64::MAX);
    let records = stmt
        .query_map([limit], |row| {
            let decision: String = row.get(4)?;
            Ok(AuditRecord {
                time: row.get(0)?,
                user: row.get(1)?,
                action: row.get(2)?,
                resource: row.get(3)?,
                decision: AuditDecision::parse(&decision),
                rule: row.get(5)?,
                client: row.get(6)?,
                method: row.get(7)?,
                route: row.get(8)?,
                token_id: row.get(9)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(records)
}

fn recent_from_json_lines(path: &Path, n: usize) -> Result<Vec<AuditRecord>, IdentityError> {
    let file = fs::File::open(path).map_err(|e| IdentityError::io(path, e))?;
    let mut last: VecDeque<AuditRecord> = VecDeque::with_capacity(n.min(4096));
    for line in BufReader::new(file).lines() {
        let line = line.map_err(|e| IdentityError::io(path, e))?;
        // Lines from other writers (or a torn last line) are skipped.
        if let Ok(record) = serde_json::from_str::<AuditRecord>(&line) {
            if last.len() == n {
                last.pop_front();
            }
            if n > 0 {
                last.push_back(record);
            }
        }
    }
    Ok(last.into())
}
