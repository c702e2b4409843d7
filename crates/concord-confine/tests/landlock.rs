//! Real processes (python3 from the project's venv, bash) under Landlock plans built from
//! real policies. The confinement shows as the process's own error (PermissionError,
//! "Permission denied"), never as an API refusal.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use concord_authz::{Identity, PolicyEngine, User};
use concord_confine::{status, ConfineConfig, ConfinementPlan, LaunchExtras, NetRule, RuleAccess};

mod supervised;

/// The project's venv interpreter (the README's set-up makes it).
const PYTHON: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../.venv/bin/python");

const POLICY: &str = r#"
[roles.all]
permissions = ["*:*:any"]
[roles.editor]
permissions = ["contents:read", "contents:write", "kernels:*:own", "terminals:*:own"]

[[bindings]]
role = "all"
groups = ["admin"]

[[bindings]]
role = "editor"
users = ["alice", "dana"]
paths = ["/projects/a/**"]

[[deny]]
users = ["dana"]
permissions = ["contents:*"]
paths = ["/projects/a/secret/**"]
"#;

struct World {
    _dir: tempfile::TempDir,
    root: PathBuf,
    state: PathBuf,
    config: ConfineConfig,
    engine: PolicyEngine,
}

fn who(user: &str, groups: &[&str]) -> Identity {
    Identity {
        user: User::named(user),
        groups: groups.iter().map(|g| g.to_string()).collect(),
    }
}

/// A root with /projects/a and /projects/b, concord's state beside it (users database,
/// cookie secret, policy, a runtime directory with a connection file) and, to check that
/// protected state inside the root is carved out too, a state directory inside the root.
fn world() -> World {
    assert!(
        status().available,
        "these tests need Landlock ABI >= 3: {}",
        status().detail
    );
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().canonicalize().unwrap();
    let root = base.join("root");
    for d in ["projects/a/sub", "projects/a/secret", "projects/b"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::write(root.join("projects/a/notes.txt"), "a-notes").unwrap();
    std::fs::write(root.join("projects/a/secret/key"), "a-secret").unwrap();
    std::fs::write(root.join("projects/b/data.txt"), "b-data").unwrap();
    std::fs::write(root.join("top.txt"), "top").unwrap();
    let state = base.join("state");
    std::fs::create_dir_all(state.join("runtime")).unwrap();
    std::fs::write(state.join("users.db"), "users").unwrap();
    std::fs::write(state.join("cookie_secret"), "COOKIE-SECRET").unwrap();
    std::fs::write(state.join("policy.toml"), POLICY).unwrap();
    std::fs::write(state.join("runtime/kernel-1.json"), "{}").unwrap();
    std::fs::write(state.join("runtime/kernel-2.json"), "{}").unwrap();
    let mut config = ConfineConfig::new(state.join("confine"), vec![state.clone()]);
    config.add_python_prefixes(Path::new(PYTHON)).unwrap();
    World {
        engine: PolicyEngine::from_text("policy.toml", POLICY, None).unwrap(),
        _dir: dir,
        root,
        state,
        config,
    }
}

impl World {
    fn plan(&self, user: &str, groups: &[&str]) -> ConfinementPlan {
        let view = self.engine.filesystem_view(&who(user, groups));
        ConfinementPlan::build(&view, &self.root, user, &self.config).unwrap()
    }

    fn run(&self, plan: &ConfinementPlan, extras: &LaunchExtras, argv: &[&str]) -> Output {
        let mut prepared = plan.prepare(extras).unwrap();
        let mut cmd = Command::new(argv[0]);
        cmd.args(&argv[1..])
            .envs(plan.env())
            .env("ROOT", &self.root)
            .env("STATE", &self.state)
            .current_dir(&self.root)
            .stdin(Stdio::null());
        // SAFETY: apply only calls prctl and landlock_restrict_self.
        unsafe {
            cmd.pre_exec(move || prepared.apply());
        }
        cmd.output().unwrap()
    }

    /// Run a Python probe: one line per attempt, `label ok|PermissionError|<other error>`.
    fn python(&self, plan: &ConfinementPlan, extras: &LaunchExtras) -> Vec<(String, String)> {
        let out = self.run(plan, extras, &[PYTHON, "-c", PROBE]);
        assert!(
            out.status.success(),
            "python failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }
}

const PROBE: &str = r#"
import os, tempfile
R, S = os.environ["ROOT"], os.environ["STATE"]
def attempt(label, fn):
    try:
        fn()
        print(label, "ok")
    except PermissionError:
        print(label, "PermissionError")
    except Exception as e:
        print(label, type(e).__name__)
def write(path):
    with open(path, "w") as f:
        f.write("x")
attempt("read_a", lambda: open(R + "/projects/a/notes.txt").read())
attempt("write_a", lambda: write(R + "/projects/a/new.txt"))
attempt("mkdir_a", lambda: os.makedirs(R + "/projects/a/sub/deeper"))
attempt("read_secret", lambda: open(R + "/projects/a/secret/key").read())
attempt("read_b", lambda: open(R + "/projects/b/data.txt").read())
attempt("list_b", lambda: os.listdir(R + "/projects/b"))
attempt("write_b", lambda: write(R + "/projects/b/new.txt"))
attempt("read_top", lambda: open(R + "/top.txt").read())
attempt("write_root", lambda: write(R + "/created.txt"))
attempt("write_tmp", lambda: write("/tmp/concord-confine-escape.txt"))
attempt("read_users_db", lambda: open(S + "/users.db").read())
attempt("read_cookie", lambda: open(S + "/cookie_secret").read())
attempt("read_policy", lambda: open(S + "/policy.toml").read())
attempt("list_runtime", lambda: os.listdir(S + "/runtime"))
attempt("read_conn", lambda: open(S + "/runtime/kernel-1.json").read())
attempt("read_other_conn", lambda: open(S + "/runtime/kernel-2.json").read())
attempt("private_tmp", lambda: tempfile.NamedTemporaryFile().close())
attempt("home", lambda: write(os.path.expanduser("~/.history")))
"#;

fn outcome(results: &[(String, String)], label: &str) -> String {
    results
        .iter()
        .find(|(l, _)| l == label)
        .map(|(_, o)| o.clone())
        .unwrap_or_else(|| panic!("no result for {label}: {results:?}"))
}

#[test]
fn python_of_a_user_who_may_write_projects_a_only() {
    let w = world();
    let plan = w.plan("alice", &[]);
    let extras = LaunchExtras {
        read_files: vec![w.state.join("runtime/kernel-1.json")],
        bind_tcp: vec![],
        socket_dirs: vec![],
        ..LaunchExtras::default()
    };
    let r = w.python(&plan, &extras);
    for ok in [
        "read_a",
        "write_a",
        "mkdir_a",
        "read_secret",
        "read_conn",
        "private_tmp",
        "home",
    ] {
        assert_eq!(outcome(&r, ok), "ok", "{ok}: {r:?}");
    }
    for denied in [
        "read_b",
        "list_b",
        "write_b",
        "read_top",
        "write_root",
        "write_tmp",
        "read_users_db",
        "read_cookie",
        "read_policy",
        "list_runtime",
        "read_other_conn",
    ] {
        assert_eq!(outcome(&r, denied), "PermissionError", "{denied}: {r:?}");
    }
    assert_eq!(
        std::fs::read_to_string(w.root.join("projects/a/new.txt")).unwrap(),
        "x"
    );
    assert!(!w.root.join("created.txt").exists());
    assert!(!Path::new("/tmp/concord-confine-escape.txt").exists());
}

#[test]
fn python_of_an_admin_reads_and_writes_the_whole_root_but_not_concords_state() {
    let w = world();
    let plan = w.plan("root", &["admin"]);
    let r = w.python(&plan, &LaunchExtras::default());
    for ok in [
        "read_a",
        "write_a",
        "read_secret",
        "read_b",
        "list_b",
        "write_b",
        "read_top",
        "write_root",
        "private_tmp",
        "home",
    ] {
        assert_eq!(outcome(&r, ok), "ok", "{ok}: {r:?}");
    }
    for denied in [
        "write_tmp",
        "read_users_db",
        "read_cookie",
        "read_policy",
        "list_runtime",
        "read_conn",
    ] {
        assert_eq!(outcome(&r, denied), "PermissionError", "{denied}: {r:?}");
    }
    assert!(w.root.join("created.txt").exists());
}

#[test]
fn a_deny_inside_a_grant_is_carved_out_by_splitting() {
    let w = world();
    let plan = w.plan("dana", &[]);
    let a = w.root.join("projects/a");
    assert!(!plan.read_write.contains(&a), "{plan:#?}");
    assert!(plan.read_write.contains(&a.join("sub")));
    assert!(plan.read_write.contains(&a.join("notes.txt")));
    assert!(!plan
        .read_write
        .iter()
        .any(|p| p.starts_with(a.join("secret"))));
    let r = w.python(&plan, &LaunchExtras::default());
    assert_eq!(outcome(&r, "read_a"), "ok", "{r:?}");
    assert_eq!(outcome(&r, "mkdir_a"), "ok", "{r:?}");
    assert_eq!(outcome(&r, "read_secret"), "PermissionError", "{r:?}");
    // New entries directly in /projects/a would need the directory itself: not granted.
    assert_eq!(outcome(&r, "write_a"), "PermissionError", "{r:?}");
    assert_eq!(outcome(&r, "read_b"), "PermissionError", "{r:?}");
}

#[test]
fn bash_of_a_user_who_may_write_projects_a_only() {
    let w = world();
    let plan = w.plan("alice", &[]);
    let script = r#"
cat "$ROOT/projects/a/notes.txt" && echo; echo "read_a=$?"
echo hi > "$ROOT/projects/a/from-bash.txt"; echo "write_a=$?"
cat "$ROOT/projects/b/data.txt"; echo "read_b=$?"
ls "$ROOT/projects/b"; echo "list_b=$?"
echo hi > "$ROOT/escape.txt"; echo "write_root=$?"
cat "$STATE/users.db"; echo "read_users_db=$?"
cat "$STATE/cookie_secret"; echo "read_cookie=$?"
ls "$STATE/runtime"; echo "list_runtime=$?"
echo hi > "$TMPDIR/t"; echo "private_tmp=$?"
"#;
    let out = w.run(
        &plan,
        &LaunchExtras::default(),
        &["/bin/bash", "-c", script],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    for ok in ["read_a=0", "write_a=0", "private_tmp=0"] {
        assert!(stdout.contains(ok), "{ok}\n{stdout}\n{stderr}");
    }
    for denied in [
        "read_b",
        "list_b",
        "write_root",
        "read_users_db",
        "read_cookie",
        "list_runtime",
    ] {
        assert!(
            !stdout.contains(&format!("{denied}=0")),
            "{denied}\n{stdout}\n{stderr}"
        );
    }
    assert!(stdout.contains("a-notes"));
    assert!(!stdout.contains("b-data") && !stdout.contains("COOKIE-SECRET"));
    assert!(stderr.contains("Permission denied"), "{stderr}");
    assert!(!w.root.join("escape.txt").exists());
    assert_eq!(
        std::fs::read_to_string(w.root.join("projects/a/from-bash.txt")).unwrap(),
        "hi\n"
    );
}

#[test]
fn bash_of_an_admin_reads_other_projects() {
    let w = world();
    let plan = w.plan("root", &["admin"]);
    let out = w.run(
        &plan,
        &LaunchExtras::default(),
        &[
            "/bin/bash",
            "-c",
            r#"cat "$ROOT/projects/b/data.txt" && echo hi > "$ROOT/admin.txt" && ! cat "$STATE/users.db""#,
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "b-data");
}

#[test]
fn the_plan_never_names_concords_state_and_is_specific_about_the_system() {
    let w = world();
    for plan in [w.plan("alice", &[]), w.plan("root", &["admin"])] {
        for rule in plan.rules() {
            let in_state = rule.path.starts_with(&w.state);
            let private = rule.path.starts_with(w.state.join("confine"));
            assert!(!in_state || private, "{rule:?}");
            assert_ne!(rule.path, Path::new("/"), "never the whole file system");
            assert_ne!(rule.path, Path::new("/etc"), "only named files of /etc");
            assert_ne!(rule.path, Path::new("/tmp"), "a private tmp, not /tmp");
        }
    }
    let alice = w.plan("alice", &[]);
    assert!(alice
        .rules()
        .iter()
        .any(|r| r.path == Path::new("/usr") && r.access == RuleAccess::ReadExec));
    assert!(alice.home.starts_with(w.state.join("confine/alice")));
    assert_ne!(alice.tmp, w.plan("root", &["admin"]).tmp);
}

#[test]
fn a_user_without_contents_permissions_cannot_read_the_root() {
    let w = world();
    let plan = w.plan("mallory", &[]);
    assert!(plan.read_only.is_empty() && plan.read_write.is_empty());
    let r = w.python(&plan, &LaunchExtras::default());
    assert_eq!(outcome(&r, "read_a"), "PermissionError");
    assert_eq!(outcome(&r, "private_tmp"), "ok");
}

#[test]
fn bad_usernames_are_refused() {
    let w = world();
    let view = w.engine.filesystem_view(&who("alice", &[]));
    for name in ["", ".", "..", "a/b"] {
        assert!(ConfinementPlan::build(&view, &w.root, name, &w.config).is_err());
    }
}

#[test]
fn a_symlinked_grant_is_left_out() {
    let w = world();
    // /projects/a now points at /projects/b: the API would judge it as /projects/b.
    let a = w.root.join("projects/a");
    std::fs::rename(&a, w.root.join("projects/a-real")).unwrap();
    std::os::unix::fs::symlink(w.root.join("projects/b"), &a).unwrap();
    let plan = w.plan("alice", &[]);
    assert!(plan.read_write.is_empty(), "{plan:#?}");
    assert!(plan.notes.iter().any(|n| n.contains("symbolic link")));
}

#[test]
fn apply_twice_is_an_error() {
    let w = world();
    let plan = w.plan("alice", &[]);
    let mut prepared = plan.prepare(&LaunchExtras::default()).unwrap();
    let mut cmd = Command::new("/bin/true");
    unsafe {
        cmd.pre_exec(move || {
            prepared.apply()?;
            match prepared.apply() {
                Err(_) => Ok(()),
                Ok(()) => Err(std::io::Error::other("applied twice")),
            }
        });
    }
    assert!(cmd.status().unwrap().success());
}

#[test]
fn tcp_connect_and_bind_are_limited_when_configured() {
    let mut w = world();
    if !status().network {
        panic!(
            "this kernel lacks Landlock network rules: {}",
            status().detail
        );
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let allowed_bind = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    w.config.net = Some(NetRule {
        bind_tcp: vec![],
        connect_tcp: vec![],
    });
    let plan = w.plan("alice", &[]);
    let script = format!(
        r#"
import socket
def attempt(label, fn):
    try:
        fn(); print(label, "ok")
    except PermissionError:
        print(label, "PermissionError")
    except Exception as e:
        print(label, type(e).__name__)
attempt("connect", lambda: socket.create_connection(("127.0.0.1", {port})).close())
def bind(p):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("127.0.0.1", p)); s.close()
attempt("bind_kernel_port", lambda: bind({allowed_bind}))
attempt("bind_other", lambda: bind(0))
"#
    );
    let extras = LaunchExtras {
        read_files: vec![],
        bind_tcp: vec![allowed_bind],
        socket_dirs: vec![],
        ..LaunchExtras::default()
    };
    let out = w.run(&plan, &extras, &[PYTHON, "-c", &script]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("connect PermissionError"), "{stdout}");
    assert!(stdout.contains("bind_kernel_port ok"), "{stdout}");
    assert!(stdout.contains("bind_other PermissionError"), "{stdout}");
    drop(listener);
}

#[test]
fn concords_state_inside_the_root_is_carved_out_of_an_admins_root() {
    let mut w = world();
    let inner = w.root.join(".concord");
    std::fs::create_dir_all(&inner).unwrap();
    std::fs::write(inner.join("users.db"), "INNER-STATE").unwrap();
    w.config.protected.push(inner.clone());
    let plan = w.plan("root", &["admin"]);
    assert!(!plan.read_write.contains(&w.root), "{plan:#?}");
    assert!(plan.read_write.contains(&w.root.join("projects")));
    assert!(plan.rules().iter().all(|r| !r.path.starts_with(&inner)));
    let out = w.run(
        &plan,
        &LaunchExtras::default(),
        &[
            "/bin/bash",
            "-c",
            r#"cat "$ROOT/projects/b/data.txt"; cat "$ROOT/.concord/users.db"; echo "inner=$?""#,
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("b-data"), "{stdout}");
    assert!(
        !stdout.contains("INNER-STATE") && stdout.contains("inner=1"),
        "{stdout}"
    );
}
