//! `concord policy check | validate | show`: every preset against a table of expected
//! decisions, path normalisation, and validation errors located by line.

use crate::common;

use common::run_cli;

/// (preset, user, groups, action, resource, allowed)
const TABLE: &[(&str, &str, &str, &str, &str, bool)] = &[
    // owner-only: the admin group may do everything, nobody else anything.
    (
        "owner-only",
        "owner",
        "admin",
        "write",
        "contents:/x.ipynb",
        true,
    ),
    (
        "owner-only",
        "owner",
        "admin",
        "execute",
        "kernels:k1@owner",
        true,
    ),
    ("owner-only", "owner", "admin", "write", "server", true),
    ("owner-only", "eve", "", "read", "contents:/", false),
    ("owner-only", "eve", "", "read", "api", false),
    ("owner-only", "eve", "", "execute", "events", false),
    (
        "owner-only",
        "eve",
        "staff",
        "execute",
        "kernels:k1@eve",
        false,
    ),
    // read-only: everyone reads, nobody else writes or runs code.
    ("read-only", "eve", "", "read", "contents:/a/b.txt", true),
    ("read-only", "eve", "", "write", "contents:/a/b.txt", false),
    ("read-only", "eve", "", "execute", "kernels:k1@eve", false),
    ("read-only", "eve", "", "write", "kernels@eve", false),
    // Reading a kernel means watching its outputs: the admins' kernels stay private.
    ("read-only", "eve", "", "read", "kernels:k1@root", false),
    ("read-only", "eve", "", "read", "sessions:s1@root", false),
    (
        "read-write-no-execute",
        "eve",
        "",
        "read",
        "kernels:k1@root",
        false,
    ),
    ("read-only", "eve", "", "execute", "terminals:1@eve", false),
    (
        "read-only",
        "root",
        "admin",
        "write",
        "contents:/a/b.txt",
        true,
    ),
    // JupyterLab's event stream: open wherever users use JupyterLab (each subscriber hears
    // only of what it may read); posting events stays with the admins.
    ("read-only", "eve", "", "execute", "events", true),
    ("read-only", "eve", "", "write", "events", false),
    (
        "read-write-no-execute",
        "eve",
        "",
        "execute",
        "events",
        true,
    ),
    ("read-write-no-execute", "eve", "", "write", "events", false),
    ("temporary", "eve", "", "execute", "events", true),
    ("temporary", "eve", "", "write", "events", false),
    ("classroom", "stu", "students", "execute", "events", true),
    ("classroom", "stu", "students", "write", "events", false),
    ("classroom", "root", "admin", "write", "events", true),
    // read-write-no-execute: files yes, code no.
    (
        "read-write-no-execute",
        "eve",
        "",
        "write",
        "contents:/a/b.txt",
        true,
    ),
    (
        "read-write-no-execute",
        "eve",
        "",
        "read",
        "contents:/a",
        true,
    ),
    (
        "read-write-no-execute",
        "eve",
        "",
        "execute",
        "kernels:k1@eve",
        false,
    ),
    (
        "read-write-no-execute",
        "eve",
        "",
        "write",
        "kernels@eve",
        false,
    ),
    (
        "read-write-no-execute",
        "eve",
        "",
        "execute",
        "terminals:1@eve",
        false,
    ),
    // temporary: run notebooks in own kernels, never save, no terminals.
    ("temporary", "eve", "", "read", "contents:/nb.ipynb", true),
    ("temporary", "eve", "", "write", "contents:/nb.ipynb", false),
    ("temporary", "eve", "", "write", "kernels@eve", true),
    ("temporary", "eve", "", "execute", "kernels:k1@eve", true),
    ("temporary", "eve", "", "execute", "kernels:k2@bob", false),
    ("temporary", "eve", "", "write", "sessions@eve", true),
    ("temporary", "eve", "", "execute", "terminals:1@eve", false),
    ("temporary", "eve", "", "write", "terminals@eve", false),
    // classroom: instructors write /course, everyone reads it, students own their home.
    (
        "classroom",
        "ina",
        "instructors",
        "write",
        "contents:/course/week1.ipynb",
        true,
    ),
    (
        "classroom",
        "stu",
        "students",
        "read",
        "contents:/course/week1.ipynb",
        true,
    ),
    (
        "classroom",
        "stu",
        "students",
        "write",
        "contents:/course/week1.ipynb",
        false,
    ),
    (
        "classroom",
        "stu",
        "students",
        "write",
        "contents:/home/stu/hw.ipynb",
        true,
    ),
    (
        "classroom",
        "stu",
        "students",
        "read",
        "contents:/home/ann/hw.ipynb",
        false,
    ),
    (
        "classroom",
        "stu",
        "students",
        "write",
        "contents:/home/stuart/hw.ipynb",
        false,
    ),
    (
        "classroom",
        "stu",
        "students",
        "execute",
        "kernels:k1@stu/home/stu/hw.ipynb",
        true,
    ),
    (
        "classroom",
        "stu",
        "students",
        "execute",
        "kernels:k2@ann/home/ann/hw.ipynb",
        false,
    ),
    (
        "classroom",
        "ina",
        "instructors",
        "read",
        "contents:/home/stu/hw.ipynb",
        true,
    ),
    (
        "classroom",
        "ina",
        "instructors",
        "write",
        "contents:/home/stu/hw.ipynb",
        false,
    ),
];

fn check(preset: &str, user: &str, groups: &str, action: &str, resource: &str) -> (i32, String) {
    let mut args = vec![
        "policy",
        "check",
        "--preset",
        preset,
        "--user",
        user,
        "--action",
        action,
        "--resource",
        resource,
    ];
    if !groups.is_empty() {
        args.push("--groups");
        args.push(groups);
    }
    let (code, out, err) = run_cli(&args, None);
    (code, format!("{out}{err}"))
}

#[test]
fn every_preset_decides_as_its_table_says() {
    let mut failures = Vec::new();
    for (preset, user, groups, action, resource, allowed) in TABLE {
        let (code, out) = check(preset, user, groups, action, resource);
        let expected_code = if *allowed { 0 } else { 2 };
        let expected_word = if *allowed { "allow" } else { "deny" };
        if code != expected_code || !out.starts_with(expected_word) {
            failures.push(format!(
                "{preset}: {user}[{groups}] {action} {resource}: expected {expected_word}, got ({code}) {out}"
            ));
        }
        // The decision names the rule that made it.
        assert!(out.contains(':'), "no rule in {out:?}");
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn paths_are_normalised_before_the_decision() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        r#"
[roles.editor]
permissions = ["contents:read", "contents:write"]

[[bindings]]
role = "editor"
users = ["alice"]
paths = ["/projects/a/**"]
"#,
    )
    .unwrap();
    let p = policy.to_str().unwrap();
    let run = |resource: &str| {
        run_cli(
            &[
                "policy",
                "check",
                "--policy",
                p,
                "--user",
                "alice",
                "--action",
                "write",
                "--resource",
                resource,
            ],
            None,
        )
        .0
    };
    assert_eq!(run("contents:/projects/a/x.ipynb"), 0);
    assert_eq!(run("contents:/projects/a"), 0);
    assert_eq!(run("contents:/projects/./a//x.ipynb"), 0);
    assert_eq!(run("contents:/projects/b/../a/x.ipynb"), 0);
    // `..` out of the grant, sibling prefix, parent, root.
    assert_eq!(run("contents:/projects/a/../b/x.ipynb"), 2);
    assert_eq!(run("contents:/projects/ab/x.ipynb"), 2);
    assert_eq!(run("contents:/projects"), 2);
    assert_eq!(run("contents:/"), 2);
    // Climbing above the root is an error, not a decision.
    let (code, _, err) = run_cli(
        &[
            "policy",
            "check",
            "--policy",
            p,
            "--user",
            "alice",
            "--action",
            "read",
            "--resource",
            "contents:/../etc/passwd",
        ],
        None,
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("outside the root"), "{err}");
}

#[test]
fn validate_reports_errors_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&str, &str, usize, &str)] = &[
        (
            "unknown-role.toml",
            "[roles.viewer]\npermissions = [\"contents:read\"]\n\n[[bindings]]\nrole = \"veiwer\"\nusers = [\"a\"]\n",
            5,
            "veiwer",
        ),
        (
            "bad-action.toml",
            "[roles.viewer]\npermissions = [\"contents:look\"]\n",
            2,
            "look",
        ),
        (
            "bad-type.toml",
            "\n[roles.viewer]\npermissions = [\"files:read\"]\n",
            3,
            "files",
        ),
        (
            "bad-pattern.toml",
            "[roles.viewer]\npermissions = [\"contents:read\"]\n[[bindings]]\nrole = \"viewer\"\neveryone = true\npaths = [\"/a/*.ipynb\"]\n",
            6,
            "*",
        ),
        ("syntax.toml", "[roles.viewer\npermissions = 1\n", 1, ""),
    ];
    for (name, text, line, needle) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        let (code, out, err) = run_cli(&["policy", "validate", path.to_str().unwrap()], None);
        assert_eq!(code, 1, "{name}: {out}{err}");
        let located = format!("{name}:{line}:");
        assert!(
            err.contains(&located),
            "{name}: expected {located} in {err}"
        );
        assert!(err.contains(needle), "{name}: expected {needle:?} in {err}");
    }
    // Raw Cedar errors are located too.
    let ok = dir.path().join("ok.toml");
    std::fs::write(&ok, "[roles.viewer]\npermissions = [\"contents:read\"]\n").unwrap();
    let cedar = dir.path().join("extra.cedar");
    std::fs::write(
        &cedar,
        "permit(principal, action, resource)\nwhen { resource.nope };\n",
    )
    .unwrap();
    let (code, _, err) = run_cli(
        &[
            "policy",
            "validate",
            ok.to_str().unwrap(),
            "--cedar-policy",
            cedar.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(code, 1);
    assert!(err.contains("extra.cedar:"), "{err}");
    let (code, out, _) = run_cli(&["policy", "validate", ok.to_str().unwrap()], None);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn show_prints_cedar() {
    let (code, out, err) = run_cli(&["policy", "show", "--preset", "classroom"], None);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("permit"), "{out}");
}

#[test]
fn a_server_with_an_invalid_policy_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.toml");
    std::fs::write(&path, "[roles.viewer]\npermissions = [\"contents:nope\"]\n").unwrap();
    let out = std::process::Command::new(common::concord_bin())
        .args(["--port", "0", "--policy"])
        .arg(&path)
        .arg("--state-dir")
        .arg(dir.path())
        .arg("--root-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("policy.toml:2:"), "{err}");
}
