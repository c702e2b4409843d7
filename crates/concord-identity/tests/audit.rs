//! The audit log's sinks: SQLite rows, JSON lines, and never blocking.

use std::io::{BufRead, BufReader};
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;

use concord_authz::{Action, CanonicalPath, Decision, Identity, Resource, User};
use concord_identity::{
    AuditConfig, AuditDecision, AuditLog, AuditRecord, AuditSink, IdentityError,
    AUDIT_DATABASE_FILE,
};

fn alice() -> Identity {
    Identity {
        user: User::named("alice"),
        groups: vec!["editors".to_string()],
    }
}

fn record(i: usize) -> AuditRecord {
    let path = CanonicalPath::parse(&format!("/projects/a/file{i}.ipynb")).unwrap();
    AuditRecord::for_decision(
        &alice(),
        Action::Write,
        &Resource::contents(path),
        &Decision::allow("policy.toml:3 editors"),
        Some("192.0.2.7".parse::<IpAddr>().unwrap()),
    )
    .with_request(
        "PUT",
        &format!("/api/contents/projects/a/file{i}.ipynb?token=s3cret"),
    )
}

#[test]
fn sqlite_sink_keeps_rows_and_recent_reads_them_back() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(AuditConfig::default_for(dir.path())).unwrap();
    for i in 0..5 {
        log.record(record(i));
    }
    let denied = AuditRecord::new(
        "-",
        "execute",
        "kernels:k1 (owner bob)",
        &Decision::deny("default deny"),
        None,
    );
    log.record(denied.clone());
    log.flush();

    let recent = log.recent(3).unwrap();
    assert_eq!(recent.len(), 3);
    assert_eq!(recent[2], denied, "newest last");
    assert_eq!(recent[0], record_like(&recent[0], 3));
    assert_eq!(log.recent(100).unwrap().len(), 6);
    assert_eq!(log.written(), 6);
    assert_eq!(log.dropped(), 0);

    // Real rows in a real database, private to the server's user.
    let db = dir.path().join(AUDIT_DATABASE_FILE);
    let mode = std::fs::metadata(&db).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let conn = rusqlite::Connection::open(&db).unwrap();
    let (user, decision, route): (String, String, String) = conn
        .query_row(
            "SELECT user, decision, route FROM audit ORDER BY id LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(user, "alice");
    assert_eq!(decision, "allow");
    assert_eq!(route, "/api/contents/projects/a/file0.ipynb?token=[secret]");
    drop(log);

    // Reopening appends.
    let log = AuditLog::open(AuditConfig::default_for(dir.path())).unwrap();
    log.record(record(9));
    drop(log); // drop writes what was queued
    let count: i64 = conn
        .query_row("SELECT COUNT(*) FROM audit", [], |r| r.get(0))
        .unwrap();
    assert_eq!(count, 7);
}

/// The record `record(i)` would be, with `got`'s timestamp.
fn record_like(got: &AuditRecord, i: usize) -> AuditRecord {
    AuditRecord {
        time: got.time.clone(),
        ..record(i)
    }
}

#[test]
fn json_lines_file_sink_writes_one_object_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let log = AuditLog::open(AuditConfig {
        sinks: vec![AuditSink::JsonLinesFile(path.clone())],
        queue_capacity: 16,
    })
    .unwrap();
    log.record(record(1));
    log.record(AuditRecord::new(
        "bob",
        "read",
        "contents:/secret",
        &Decision::deny("default deny"),
        Some("::1".parse().unwrap()),
    ));
    log.flush();

    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    let first: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    let keys: Vec<&str> = first
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        vec!["action", "client", "decision", "method", "resource", "route", "rule", "time", "user"]
    );
    assert_eq!(first["decision"], "allow");
    assert_eq!(first["resource"], "contents:/projects/a/file1.ipynb");
    assert_eq!(first["method"], "PUT");
    assert!(!text.contains("s3cret"));
    let time = first["time"].as_str().unwrap();
    assert!(time.ends_with('Z'), "{time}");
    assert!(chrono::DateTime::parse_from_rfc3339(time).is_ok());
    let second: serde_json::Value = serde_json::from_str(lines[1]).unwrap();
    assert_eq!(second["decision"], "deny");
    assert_eq!(second["client"], "::1");
    assert_eq!(second["route"], serde_json::Value::Null);

    // recent() falls back to the JSON-lines file.
    let recent = log.recent(1).unwrap();
    assert_eq!(recent[0].decision, AuditDecision::Deny);
    assert_eq!(recent[0].user, "bob");
}

#[test]
fn both_sinks_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let jsonl = dir.path().join("a.jsonl");
    let db = dir.path().join("nested/dir/audit.db");
    let log = AuditLog::open(AuditConfig {
        sinks: vec![
            AuditSink::JsonLinesFile(jsonl.clone()),
            AuditSink::Sqlite(db.clone()),
        ],
        queue_capacity: 64,
    })
    .unwrap();
    for i in 0..10 {
        log.record(record(i));
    }
    log.flush();
    assert_eq!(std::fs::read_to_string(&jsonl).unwrap().lines().count(), 10);
    assert_eq!(log.recent(50).unwrap().len(), 10, "read back from SQLite");
    assert!(db.exists());
}

#[test]
fn recording_never_blocks_when_the_sink_is_stuck() {
    // A pipe nobody reads: once its buffer (64 KiB) is full the writer thread blocks in
    // write(), and the queue fills up. record() must still return at once, dropping.
    let (reader, writer) = std::io::pipe().unwrap();
    let log = AuditLog::open(AuditConfig {
        sinks: vec![AuditSink::JsonLinesWriter(Box::new(writer))],
        queue_capacity: 8,
    })
    .unwrap();
    const TOTAL: u64 = 20_000;
    for i in 0..TOTAL {
        log.record(record(i as usize));
    }
    let dropped = log.dropped();
    assert!(
        dropped > 0,
        "a stuck sink must make records drop, not block"
    );

    // Unstick it: everything not dropped arrives, as whole JSON lines.
    let drain = std::thread::spawn(move || {
        BufReader::new(reader)
            .lines()
            .map(|line| {
                serde_json::from_str::<AuditRecord>(&line.unwrap()).unwrap();
            })
            .count() as u64
    });
    drop(log); // writes what is queued, closes the pipe
    let received = drain.join().unwrap();
    assert_eq!(received + dropped, TOTAL);
}

#[test]
fn sink_specs_and_disabled_logs() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path();
    assert!(matches!(
        AuditSink::from_spec("sqlite", state).unwrap(),
        Some(AuditSink::Sqlite(p)) if p == state.join(AUDIT_DATABASE_FILE)
    ));
    assert!(matches!(
        AuditSink::from_spec("file:/var/log/concord.jsonl", state).unwrap(),
        Some(AuditSink::JsonLinesFile(p)) if p.to_str() == Some("/var/log/concord.jsonl")
    ));
    assert!(matches!(
        AuditSink::from_spec("stdout", state).unwrap(),
        Some(AuditSink::Stdout)
    ));
    assert!(AuditSink::from_spec("none", state).unwrap().is_none());
    for bad in ["", "syslog", "file:", "sqlite:"] {
        let err = AuditSink::from_spec(bad, state).unwrap_err();
        assert!(matches!(err, IdentityError::BadAuditSink(_)), "{bad}");
    }

    let log = AuditLog::disabled();
    log.record(record(0));
    log.flush();
    assert!(matches!(
        log.recent(1).unwrap_err(),
        IdentityError::AuditNotQueryable
    ));

    // An unwritable sink is an error at open, not later.
    let err = AuditLog::open(AuditConfig {
        sinks: vec![AuditSink::JsonLinesFile(state.join("missing/dir/a.jsonl"))],
        queue_capacity: 4,
    })
    .unwrap_err();
    assert!(err.to_string().contains("missing/dir/a.jsonl"), "{err}");
}

#[test]
fn what_is_audited_and_field_bounds() {
    let allow_read = AuditRecord::new("a", "read", "contents:/x", &Decision::allow("r"), None);
    let deny_read = AuditRecord::new("a", "read", "contents:/x", &Decision::deny("r"), None);
    let allow_write = AuditRecord::new("a", "write", "contents:/x", &Decision::allow("r"), None);
    let allow_exec = AuditRecord::new("a", "execute", "kernels:k", &Decision::allow("r"), None);
    assert!(!allow_read.is_auditable());
    assert!(deny_read.is_auditable());
    assert!(allow_write.is_auditable());
    assert!(allow_exec.is_auditable());

    let huge = "u".repeat(100_000);
    let rec = AuditRecord::new(&huge, "login", "api", &Decision::deny("throttled"), None)
        .with_request("POST", &format!("/login?{huge}"));
    assert!(rec.user.chars().count() <= 2049);
    assert!(rec.route.unwrap().chars().count() <= 2049);
}

#[test]
fn records_carry_the_token_id_and_old_audit_databases_gain_the_column() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    {
        // An audit table as concord wrote it before records carried a token id.
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch(
            "CREATE TABLE audit (id INTEGER PRIMARY KEY, time TEXT NOT NULL, user TEXT NOT NULL,
                action TEXT NOT NULL, resource TEXT NOT NULL, decision TEXT NOT NULL,
                rule TEXT NOT NULL, client TEXT, method TEXT, route TEXT);
             INSERT INTO audit (time, user, action, resource, decision, rule)
                VALUES ('2026-01-01T00:00:00.000Z', 'carol', 'write', 'contents:/a', 'allow', 'r');",
        )
        .unwrap();
    }
    let lines = dir.path().join("audit.jsonl");
    let log = AuditLog::open(AuditConfig {
        sinks: vec![
            AuditSink::Sqlite(db.clone()),
            AuditSink::JsonLinesFile(lines.clone()),
        ],
        queue_capacity: 16,
    })
    .unwrap();
    log.record(record(1).with_token(Some(42)));
    log.record(record(2));
    log.flush();

    let recent = log.recent(10).unwrap();
    assert_eq!(recent.len(), 3);
    assert_eq!(recent[0].user, "carol");
    assert_eq!(recent[0].token_id, None);
    assert_eq!(recent[1].token_id, Some(42));
    assert_eq!(recent[2].token_id, None);

    let text = std::fs::read_to_string(&lines).unwrap();
    let json: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(json[0]["token_id"], 42);
    assert!(json[1].get("token_id").is_none());
}
