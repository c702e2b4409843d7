//! What a person reads when concord starts: the banner naming what is in force, `--help`
//! with the common options first, and log lines without colour codes when the log is not a
//! terminal.

use crate::common::server;
use std::path::Path;

/// The value of the banner line `label` (`  owner:      alice` → `alice`).
fn banner_value(out: &[&str], label: &str) -> String {
    out.iter()
        .find_map(|line| line.trim_start().strip_prefix(label))
        .map(|value| value.trim().to_string())
        .unwrap_or_else(|| panic!("no `{label}` line in {out:#?}"))
}

#[test]
fn banner_names_auth_policy_owner_directories_audit_and_confinement() {
    let s = server()
        .relative_dirs()
        .args(&[
            "--preset",
            "read-only",
            "--owner",
            "alice",
            "--audit-log",
            "audit.jsonl",
        ])
        .start();
    let out: Vec<&str> = s
        .startup_output
        .iter()
        .filter_map(|line| line.strip_prefix("out: "))
        .collect();
    assert!(banner_value(&out, "auth:").starts_with("token"), "{out:#?}");
    assert_eq!(banner_value(&out, "policy:"), "preset read-only");
    assert_eq!(banner_value(&out, "owner:"), "alice");
    let same_dir = |shown: String, dir: &Path| {
        assert_eq!(
            Path::new(&shown).canonicalize().unwrap(),
            dir.canonicalize().unwrap(),
            "{shown}"
        )
    };
    same_dir(banner_value(&out, "root:"), s.root());
    // Given relative, shown as the absolute directory it was resolved to.
    same_dir(banner_value(&out, "state:"), s.state());
    let audit = banner_value(&out, "audit log:");
    let (db, jsonl) = audit.split_once(" and ").expect(&audit);
    assert_eq!(Path::new(db), s.state().join("audit.db"));
    let jsonl = Path::new(jsonl);
    assert!(jsonl.is_absolute(), "{audit}");
    assert_eq!(jsonl.parent(), s.state().parent());
    let confinement = banner_value(&out, "confinement:");
    assert!(
        ["on: ", "off ", "partial ", "unavailable"]
            .iter()
            .any(|state| confinement.starts_with(state)),
        "{confinement}"
    );
    // One column for every value.
    let banner: Vec<&&str> = out
        .iter()
        .filter(|line| line.starts_with("  ") && !line.starts_with("    "))
        .collect();
    assert_eq!(banner.len(), 7, "{banner:#?}");
    for line in banner {
        assert!(
            line.as_bytes()[14] == b' ' && line.as_bytes()[15] != b' ',
            "not aligned: {line:?}"
        );
    }
}

#[test]
fn log_lines_to_a_pipe_have_no_colour_codes() {
    let mut s = server().start();
    s.signal(nix::sys::signal::Signal::SIGTERM);
    // The last line it logs: every line before it has been read too.
    let mut lines = s.output_until("concord stopped");
    lines.extend(s.startup_output.drain(..));
    s.terminate(10);
    let logged: Vec<&String> = lines
        .iter()
        .filter(|line| line.starts_with("err: "))
        .collect();
    assert!(logged.len() >= 2, "{lines:#?}");
    for line in logged {
        assert!(!line.contains('\u{1b}'), "colour codes in {line:?}");
    }
}
