//! What a person reads when concord starts: the banner naming what is in force, `--help`
//! with the common options first, and log lines without colour codes when the log is not a
//! terminal.

use crate::common::{run_cli, server};
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
    lines.append(&mut s.startup_output);
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

#[test]
fn help_shows_the_common_options_first_and_groups_the_rest() {
    let (code, out, err) = run_cli(&["--help"], None);
    assert_eq!(code, 0, "{err}");
    let options = out
        .split("\nOptions:\n")
        .nth(1)
        .unwrap_or_else(|| panic!("no Options heading in {out}"));
    // Option lines are indented at most 6 columns; their descriptions further.
    let first: Vec<&str> = options
        .lines()
        .take_while(|line| line.is_empty() || line.starts_with(' '))
        .filter(|line| line.len() - line.trim_start().len() <= 6)
        .filter_map(|line| line.trim_start().strip_prefix("--"))
        .filter_map(|line| line.split([' ', '=', '<']).next())
        .take(6)
        .collect();
    assert_eq!(
        first,
        ["port", "ip", "auth", "preset", "policy", "root-dir"],
        "{out}"
    );
    let mut at = 0;
    for heading in [
        "Server:",
        "Authentication:",
        "Policy and audit:",
        "HTTP:",
        "Contents:",
        "JupyterLab:",
        "Kernels:",
        "Confinement:",
        "Terminals:",
        "Events:",
    ] {
        let found = out[at..]
            .find(&format!("\n{heading}\n"))
            .unwrap_or_else(|| panic!("no {heading} heading after the previous one in {out}"));
        at += found + 1;
    }
}

#[tokio::test]
async fn browser_pages_get_html_error_pages_and_the_api_keeps_json() {
    let s = server().start();
    std::fs::write(s.root().join("here.txt"), "x").unwrap();
    let owner = s.owner();
    let is_html = |r: &reqwest::Response| {
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    };
    for (path, detail) in [
        ("tree", "Not Found"),
        ("no/such/page", "Not Found"),
        (
            "files/missing.txt",
            // As the route words a missing file (minijinja escapes the quotes and slash).
            "file or directory &#x27;&#x2f;missing.txt&#x27; does not exist",
        ),
    ] {
        let r = owner.get(s.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 404, "{path}");
        assert!(is_html(&r), "{path}");
        let page = r.text().await.unwrap();
        assert!(page.contains("<h1>404 : Not Found</h1>"), "{path}: {page}");
        assert!(page.contains(detail), "{path}: {page}");
    }
    let r = owner.get(s.url("files/here.txt")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    for path in [
        "api/nope",
        "api/contents/missing.txt",
        "api/kernels/00000000-0000-0000-0000-000000000000",
    ] {
        let r = owner.get(s.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 404, "{path}");
        assert!(!is_html(&r), "{path}");
        let body: serde_json::Value = r.json().await.unwrap();
        assert!(body["message"].is_string(), "{path}: {body}");
    }
}
