//! The policy engine against real policy files: presets, semantics, validation, reload.

use concord_authz::{
    compile_to_cedar, preset, Action, Authorize, CanonicalPath, Identity, LimitedKind, Owner,
    Policy, PolicyEngine, PolicyError, Resource, ResourceType, User, PRESET_NAMES,
};

fn who(name: &str, groups: &[&str]) -> Identity {
    Identity {
        user: User::named(name),
        groups: groups.iter().map(|g| g.to_string()).collect(),
    }
}

fn res(spec: &str) -> Resource {
    Resource::parse_spec(spec).unwrap()
}

fn engine(toml: &str) -> PolicyEngine {
    match PolicyEngine::from_text("policy.toml", toml, None) {
        Ok(e) => e,
        Err(errors) => panic!("policy does not load: {errors:#?}"),
    }
}

fn errors(toml: &str) -> Vec<PolicyError> {
    match Policy::parse("policy.toml", toml) {
        Ok(_) => match PolicyEngine::from_text("policy.toml", toml, None) {
            Ok(_) => panic!("policy unexpectedly loads"),
            Err(e) => e,
        },
        Err(e) => e,
    }
}

fn allowed(engine: &PolicyEngine, who: &Identity, action: &str, spec: &str) -> bool {
    engine
        .authorize(who, action.parse().unwrap(), &res(spec))
        .allowed
}

/// (username, groups, action, resource spec, expected)
type Row<'a> = (&'a str, &'a [&'a str], &'a str, &'a str, bool);

fn check_table(engine: &PolicyEngine, rows: &[Row<'_>]) {
    let mut failures = Vec::new();
    for (user, groups, action, spec, expected) in rows {
        let decision = engine.authorize(&who(user, groups), action.parse().unwrap(), &res(spec));
        if decision.allowed != *expected {
            failures.push(format!(
                "{user} {groups:?} {action} {spec}: expected {expected}, got {} ({})",
                decision.allowed, decision.rule
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

const ADMIN: &[&str] = &["admin"];
const NONE: &[&str] = &[];
const STUDENTS: &[&str] = &["students"];
const INSTRUCTORS: &[&str] = &["instructors"];

#[test]
fn every_preset_loads_and_compiles() {
    for name in PRESET_NAMES {
        let text = preset(name).unwrap();
        let policy = Policy::parse(&format!("{name}.toml"), text).unwrap();
        assert!(compile_to_cedar(&policy).contains("permit"));
        PolicyEngine::from_preset(name).unwrap();
    }
    assert!(preset("nope").is_none());
    assert!(PolicyEngine::from_preset("nope").is_err());
}

#[test]
fn preset_owner_only() {
    let e = PolicyEngine::from_preset("owner-only").unwrap();
    check_table(
        &e,
        &[
            ("owner", ADMIN, "write", "contents:/x.ipynb", true),
            ("owner", ADMIN, "execute", "kernels:k@bob", true),
            ("owner", ADMIN, "write", "server", true),
            ("owner", ADMIN, "read", "contents", true),
            ("bob", NONE, "read", "contents:/x.ipynb", false),
            ("bob", NONE, "read", "api", false),
            ("bob", NONE, "execute", "kernels:k@bob", false),
            ("bob", STUDENTS, "read", "kernelspecs", false),
        ],
    );
}

#[test]
fn preset_read_only() {
    let e = PolicyEngine::from_preset("read-only").unwrap();
    check_table(
        &e,
        &[
            ("bob", NONE, "read", "contents:/a/b.ipynb", true),
            ("bob", NONE, "read", "contents:/", true),
            ("bob", NONE, "write", "contents:/a/b.ipynb", false),
            ("bob", NONE, "read", "kernelspecs", true),
            ("bob", NONE, "read", "config", true),
            ("bob", NONE, "write", "config", false),
            ("bob", NONE, "read", "kernels:k@alice", false), // watching is granted on purpose
            ("bob", NONE, "execute", "kernels:k@alice", false),
            ("bob", NONE, "write", "kernels", false),
            ("bob", NONE, "execute", "kernels:k@bob", false),
            ("bob", NONE, "read", "terminals", false),
            ("bob", NONE, "write", "terminals", false),
            ("bob", NONE, "write", "server", false),
            ("owner", ADMIN, "write", "contents:/a/b.ipynb", true),
            ("owner", ADMIN, "execute", "terminals:1@owner", true),
        ],
    );
}

#[test]
fn preset_read_write_no_execute() {
    let e = PolicyEngine::from_preset("read-write-no-execute").unwrap();
    check_table(
        &e,
        &[
            ("bob", NONE, "read", "contents:/a/b.ipynb", true),
            ("bob", NONE, "write", "contents:/a/b.ipynb", true),
            ("bob", NONE, "write", "kernels", false),
            ("bob", NONE, "execute", "kernels:k@bob", false),
            ("bob", NONE, "write", "sessions", false),
            ("bob", NONE, "execute", "terminals:1@bob", false),
            ("bob", NONE, "write", "terminals", false),
            ("bob", NONE, "write", "server", false),
            ("owner", ADMIN, "execute", "kernels:k@bob", true),
        ],
    );
}

#[test]
fn preset_temporary() {
    let e = PolicyEngine::from_preset("temporary").unwrap();
    check_table(
        &e,
        &[
            ("bob", NONE, "read", "contents:/a/b.ipynb", true),
            ("bob", NONE, "write", "contents:/a/b.ipynb", false),
            ("bob", NONE, "write", "kernels", true),
            ("bob", NONE, "execute", "kernels:k@bob", true),
            ("bob", NONE, "write", "kernels:k@bob", true),
            ("bob", NONE, "execute", "kernels:k@alice", false),
            ("bob", NONE, "write", "kernels:k@alice", false),
            ("bob", NONE, "read", "kernels:k@alice", false),
            ("bob", NONE, "write", "sessions:s@bob/a/b.ipynb", true),
            ("bob", NONE, "write", "terminals", false),
            ("bob", NONE, "execute", "terminals:1@bob", false),
            ("owner", ADMIN, "write", "contents:/a/b.ipynb", true),
        ],
    );
}

#[test]
fn preset_classroom() {
    let e = PolicyEngine::from_preset("classroom").unwrap();
    check_table(
        &e,
        &[
            // Everyone reads the course, nobody but instructors and admin writes it.
            (
                "sam",
                STUDENTS,
                "read",
                "contents:/course/week1/a.ipynb",
                true,
            ),
            ("sam", STUDENTS, "read", "contents:/course", true),
            (
                "sam",
                STUDENTS,
                "write",
                "contents:/course/week1/a.ipynb",
                false,
            ),
            ("sam", STUDENTS, "read", "contents:/", true),
            ("sam", STUDENTS, "read", "contents:/home", true),
            ("sam", STUDENTS, "write", "contents:/home", false),
            ("sam", STUDENTS, "read", "contents:/other/x", false),
            // Own home: read, write, kernels there.
            ("sam", STUDENTS, "read", "contents:/home/sam/hw.ipynb", true),
            (
                "sam",
                STUDENTS,
                "write",
                "contents:/home/sam/hw.ipynb",
                true,
            ),
            ("sam", STUDENTS, "write", "contents:/home/sam", true),
            (
                "sam",
                STUDENTS,
                "execute",
                "kernels:k@sam/home/sam/hw.ipynb",
                true,
            ),
            (
                "sam",
                STUDENTS,
                "execute",
                "kernels:k@sam/course/a.ipynb",
                false,
            ),
            (
                "sam",
                STUDENTS,
                "write",
                "sessions:s@sam/home/sam/hw.ipynb",
                true,
            ),
            // Another student's home, and a sibling prefix of one's own.
            (
                "sam",
                STUDENTS,
                "read",
                "contents:/home/kim/hw.ipynb",
                false,
            ),
            (
                "sam",
                STUDENTS,
                "read",
                "contents:/home/samuel/hw.ipynb",
                false,
            ),
            (
                "sam",
                STUDENTS,
                "execute",
                "kernels:k@kim/home/kim/hw.ipynb",
                false,
            ),
            ("sam", STUDENTS, "execute", "terminals:1@sam", false),
            // Instructors.
            (
                "ida",
                INSTRUCTORS,
                "write",
                "contents:/course/week1/a.ipynb",
                true,
            ),
            (
                "ida",
                INSTRUCTORS,
                "read",
                "contents:/home/sam/hw.ipynb",
                true,
            ),
            (
                "ida",
                INSTRUCTORS,
                "write",
                "contents:/home/sam/hw.ipynb",
                false,
            ),
            (
                "ida",
                INSTRUCTORS,
                "write",
                "contents:/home/ida/notes.md",
                true,
            ),
            ("ida", INSTRUCTORS, "execute", "terminals:1@ida", true),
            (
                "ida",
                INSTRUCTORS,
                "execute",
                "kernels:k@sam/home/sam/hw.ipynb",
                false,
            ),
            // Everyone gets what JupyterLab needs; nobody but admin shuts the server down.
            ("sam", STUDENTS, "read", "kernelspecs", true),
            ("sam", STUDENTS, "write", "server", false),
            ("root", ADMIN, "write", "server", true),
            ("root", ADMIN, "write", "contents:/course/x", true),
        ],
    );
}

const EXAMPLE: &str = r#"# example
[roles.viewer]
permissions = ["contents:read", "kernelspecs:read"]
[roles.editor]
permissions = ["contents:read", "contents:write", "kernels:*:own", "sessions:*:own", "kernelspecs:read"]

[[bindings]]
role = "viewer"
groups = ["students"]
paths = ["/course/**"]

[[bindings]]
role = "editor"
users = ["alice"]
paths = ["/projects/a/**", "/home/{username}/**"]

[[bindings]]
role = "editor"
groups = ["students"]
paths = ["/course/**"]

[[deny]]
groups = ["students"]
permissions = ["contents:write"]
paths = ["/course/**"]
"#;

#[test]
fn deny_beats_grant_and_names_its_rule() {
    let e = engine(EXAMPLE);
    let d = e.authorize(
        &who("sam", STUDENTS),
        Action::Write,
        &res("contents:/course/a.ipynb"),
    );
    assert!(!d.allowed);
    assert_eq!(
        d.rule,
        "policy.toml:22: deny contents:write for group students on /course/**"
    );
    // The same grant still allows reading.
    let d = e.authorize(
        &who("sam", STUDENTS),
        Action::Read,
        &res("contents:/course/a.ipynb"),
    );
    assert!(d.allowed);
    assert_eq!(
        d.rule,
        "policy.toml:7: binding \"viewer\" for group students on /course/**"
    );
}

#[test]
fn subtree_is_by_whole_segments() {
    let e = engine(EXAMPLE);
    let alice = who("alice", NONE);
    assert!(allowed(&e, &alice, "write", "contents:/projects/a"));
    assert!(allowed(&e, &alice, "write", "contents:/projects/a/x.ipynb"));
    assert!(allowed(
        &e,
        &alice,
        "write",
        "contents:/projects/a/deep/er/x"
    ));
    assert!(!allowed(&e, &alice, "write", "contents:/projects/ab"));
    assert!(!allowed(
        &e,
        &alice,
        "write",
        "contents:/projects/ab/x.ipynb"
    ));
    assert!(!allowed(&e, &alice, "read", "contents:/projects"));
    assert!(!allowed(&e, &alice, "read", "contents:/"));
    let d = e.authorize(&alice, Action::Write, &res("contents:/projects/a/x.ipynb"));
    assert_eq!(
        d.rule,
        "policy.toml:12: binding \"editor\" for alice on /projects/a/**, /home/{username}/**"
    );
    let d = e.authorize(&alice, Action::Write, &res("contents:/projects/ab"));
    assert_eq!(
        d.rule,
        "default deny: no rule grants write on contents:/projects/ab"
    );
}

#[test]
fn username_is_substituted_per_caller() {
    let e = engine(EXAMPLE);
    assert!(allowed(
        &e,
        &who("alice", NONE),
        "write",
        "contents:/home/alice/n.ipynb"
    ));
    assert!(allowed(
        &e,
        &who("alice", NONE),
        "write",
        "contents:/home/alice"
    ));
    assert!(!allowed(
        &e,
        &who("alice", NONE),
        "write",
        "contents:/home/bob/n.ipynb"
    ));
    assert!(!allowed(&e, &who("alice", NONE), "read", "contents:/home"));
    // A username with Cedar-significant characters is a literal, not a pattern.
    let e = engine(
        r#"
[roles.home]
permissions = ["contents:*"]
[[bindings]]
role = "home"
everyone = true
paths = ["/home/{username}/**"]
"#,
    );
    assert!(allowed(
        &e,
        &who("a*", NONE),
        "write",
        "contents:/home/a*/x"
    ));
    assert!(!allowed(
        &e,
        &who("a*", NONE),
        "write",
        "contents:/home/abc/x"
    ));
    assert!(allowed(
        &e,
        &who("q\"x\\", NONE),
        "write",
        "contents:/home/q\"x\\/x"
    ));
    // A name that cannot be one path segment gets no home at all.
    assert!(!allowed(&e, &who("..", NONE), "read", "contents:/home"));
    assert!(!allowed(
        &e,
        &who("a/b", NONE),
        "read",
        "contents:/home/a/b/x"
    ));
}

#[test]
fn owned_scopes() {
    let e = engine(
        r#"
[roles.own]
permissions = ["kernels:*:own"]
[roles.group]
permissions = ["terminals:execute:group"]
[roles.any]
permissions = ["sessions:read:any"]
[[bindings]]
role = "own"
everyone = true
[[bindings]]
role = "group"
everyone = true
[[bindings]]
role = "any"
everyone = true
"#,
    );
    let bob = who("bob", &["team1"]);
    assert!(allowed(&e, &bob, "execute", "kernels:k@bob"));
    assert!(!allowed(&e, &bob, "execute", "kernels:k@alice[team1]"));
    assert!(allowed(&e, &bob, "execute", "terminals:1@bob"));
    assert!(allowed(
        &e,
        &bob,
        "execute",
        "terminals:1@alice[team2,team1]"
    ));
    assert!(!allowed(&e, &bob, "execute", "terminals:1@alice[team2]"));
    assert!(!allowed(&e, &bob, "execute", "terminals:1@alice"));
    assert!(!allowed(&e, &bob, "write", "terminals:1@bob"));
    assert!(allowed(&e, &bob, "read", "sessions:s@zed"));
    assert!(!allowed(&e, &bob, "write", "sessions:s@bob"));
    // Deny with a scope: own kernels only.
    let e = engine(
        r#"
[roles.all]
permissions = ["kernels:*:any"]
[[bindings]]
role = "all"
everyone = true
[[deny]]
users = ["bob"]
permissions = ["kernels:execute:own"]
"#,
    );
    assert!(!allowed(&e, &bob, "execute", "kernels:k@bob"));
    assert!(allowed(&e, &bob, "execute", "kernels:k@alice"));
    // A scoped deny does not answer the type-level question.
    assert!(allowed(&e, &bob, "execute", "kernels"));
}

#[test]
fn type_level_questions() {
    let e = engine(EXAMPLE);
    let sam = who("sam", STUDENTS);
    // Reads /course somewhere: the type-level question is allowed.
    assert!(allowed(&e, &sam, "read", "contents"));
    assert!(allowed(&e, &sam, "read", "kernelspecs"));
    // Students may start their own kernels within /course (editor on /course/**).
    assert!(allowed(&e, &sam, "write", "kernels"));
    assert!(!allowed(&e, &sam, "read", "terminals"));
    assert!(!allowed(&e, &who("nobody", NONE), "read", "contents"));
    // A path-limited deny does not deny everywhere; an unlimited one does.
    let e = engine(
        r#"
[roles.rw]
permissions = ["contents:*"]
[[bindings]]
role = "rw"
everyone = true
[[deny]]
users = ["bob"]
permissions = ["contents:write"]
paths = ["/secret/**"]
[[deny]]
users = ["eve"]
permissions = ["contents:write"]
"#,
    );
    assert!(allowed(&e, &who("bob", NONE), "write", "contents"));
    assert!(!allowed(
        &e,
        &who("bob", NONE),
        "write",
        "contents:/secret/x"
    ));
    assert!(!allowed(&e, &who("eve", NONE), "write", "contents"));
}

#[test]
fn kernels_without_path_are_not_limited_by_paths() {
    let e = engine(EXAMPLE);
    let alice = who("alice", NONE);
    assert!(allowed(&e, &alice, "execute", "kernels:k@alice"));
    assert!(allowed(
        &e,
        &alice,
        "execute",
        "kernels:k@alice/projects/a/n.ipynb"
    ));
    assert!(!allowed(
        &e,
        &alice,
        "execute",
        "kernels:k@alice/projects/b/n.ipynb"
    ));
    assert!(!allowed(
        &e,
        &alice,
        "execute",
        "kernels:k@bob/projects/a/n.ipynb"
    ));
}

#[test]
fn compiled_cedar_is_readable_and_annotated() {
    let policy = Policy::parse("policy.toml", EXAMPLE).unwrap();
    let cedar = compile_to_cedar(&policy);
    assert!(cedar
        .contains("@id(\"policy.toml:22: deny contents:write for group students on /course/**\")"));
    assert!(cedar.contains("forbid ("));
    assert!(cedar.contains("principal == User::\"alice\""));
    assert!(cedar.contains("resource.path like \"/projects/a/*\""));
    assert!(cedar.contains("\"/home/{username}\""));
}

fn messages(errors: &[PolicyError]) -> Vec<String> {
    errors.iter().map(ToString::to_string).collect()
}

#[test]
fn toml_syntax_error_is_located() {
    let errs = errors("[roles.viewer]\npermissions = [\"contents:read\"\n\n[[bindings]]\n");
    assert!(!errs.is_empty());
    assert_eq!(errs[0].file, "policy.toml");
    assert!(errs[0].line >= 2, "{:?}", messages(&errs));
    assert!(
        errs[0].message.starts_with("TOML syntax"),
        "{:?}",
        messages(&errs)
    );
    let errs = errors("[roles.viewer]\npermissions = [\"contents:read\"]\nrole = = 1\n");
    assert_eq!(errs[0].line, 3, "{:?}", messages(&errs));
}

#[test]
fn semantic_errors_are_all_collected_with_lines() {
    let text = r#"[roles.viewer]
permissions = ["contents:read", "contents:fly", "contnts:read"]

[roles.bad]
permissions = ["contents:read:own", "kernels:read:mine"]
colour = "red"

[[bindings]]
role = "nosuchrole"
users = ["alice"]

[[bindings]]
role = "viewer"
paths = ["/a/*.ipynb", "relative/x", "/a/../b", "/a/**/b"]

[[deny]]
groups = ["g"]
permissions = ["contents:write"]
paths = ["/x/{user}/**"]

[other]
x = 1
"#;
    let errs = errors(text);
    let got: Vec<(usize, &str)> = errs.iter().map(|e| (e.line, e.message.as_str())).collect();
    let expect_line = |line: usize, needle: &str| {
        assert!(
            got.iter().any(|(l, m)| *l == line && m.contains(needle)),
            "no error on line {line} containing {needle:?}: {got:#?}"
        );
    };
    expect_line(2, "unknown action \"fly\"");
    expect_line(2, "unknown resource type \"contnts\"");
    expect_line(5, "a scope only applies to kernels");
    expect_line(5, "unknown scope \"mine\"");
    expect_line(6, "unknown key \"colour\"");
    expect_line(9, "unknown role \"nosuchrole\"");
    expect_line(12, "names nobody");
    expect_line(14, "'*' is only allowed");
    expect_line(14, "must start with /");
    expect_line(14, "'.' and '..'");
    expect_line(19, "the only placeholder is {username}");
    expect_line(21, "unknown top-level key \"other\"");
    // Display is file:line:col: message.
    assert!(errs[0].to_string().starts_with("policy.toml:2:"));
    // Sorted by position.
    let lines: Vec<usize> = errs.iter().map(|e| e.line).collect();
    let mut sorted = lines.clone();
    sorted.sort();
    assert_eq!(lines, sorted);
}

#[test]
fn patterns_accept_the_documented_forms() {
    use concord_authz::PathPattern;
    assert_eq!(
        PathPattern::parse("/**").unwrap(),
        PathPattern::Subtree("/".into())
    );
    assert_eq!(
        PathPattern::parse("/").unwrap(),
        PathPattern::Exact("/".into())
    );
    assert_eq!(
        PathPattern::parse("/a/b.ipynb").unwrap(),
        PathPattern::Exact("/a/b.ipynb".into())
    );
    assert_eq!(
        PathPattern::parse("/home/{username}/**").unwrap(),
        PathPattern::Subtree("/home/{username}".into())
    );
    for bad in [
        "",
        "a",
        "/a/",
        "/a//b",
        "/a*",
        "/**/x",
        "/a/.",
        "/x{username}",
        "/{other}",
    ] {
        assert!(PathPattern::parse(bad).is_err(), "{bad:?} accepted");
    }
}

const RAW: &str = r#"// Raw Cedar for advanced admins.
@id("bob may write the shared notes")
permit (
  principal == User::"bob",
  action == Action::"write",
  resource is Contents
) when { resource has path && resource.path like "/shared/notes/*" };

@id("nobody touches /vault")
forbid (principal, action, resource is Contents)
when { resource has path && resource.path like "/vault*" };
"#;

#[test]
fn raw_cedar_permit_and_forbid_work() {
    let e = PolicyEngine::from_text(
        "policy.toml",
        r#"
[roles.rw]
permissions = ["contents:*"]
[[bindings]]
role = "rw"
users = ["alice"]
"#,
        Some(("extra.cedar", RAW)),
    )
    .unwrap();
    let bob = who("bob", NONE);
    let d = e.authorize(&bob, Action::Write, &res("contents:/shared/notes/x.md"));
    assert!(d.allowed);
    assert_eq!(d.rule, "extra.cedar:2: bob may write the shared notes");
    assert!(!allowed(&e, &bob, "write", "contents:/shared/other.md"));
    let d = e.authorize(&who("alice", NONE), Action::Read, &res("contents:/vault/k"));
    assert!(!d.allowed);
    assert_eq!(d.rule, "extra.cedar:9: nobody touches /vault");
    assert!(allowed(&e, &who("alice", NONE), "read", "contents:/x"));
    // Listing falls back to per-entry decisions because raw policies may look at anything.
    let root = CanonicalPath::root();
    assert_eq!(
        e.authorize_children(
            &who("alice", NONE),
            Action::Read,
            &root,
            &["a", "vault", "vaults"]
        ),
        vec![true, false, false]
    );
}

#[test]
fn raw_cedar_errors_are_located() {
    let toml = "[roles.r]\npermissions = [\"contents:read\"]\n[[bindings]]\nrole = \"r\"\neveryone = true\n";
    // Syntax error on line 3.
    let bad_syntax =
        "permit (principal, action, resource);\n\npermit (principal action, resource);\n";
    let errs = PolicyEngine::from_text("policy.toml", toml, Some(("x.cedar", bad_syntax)))
        .err()
        .unwrap();
    assert_eq!(errs[0].file, "x.cedar");
    assert_eq!(errs[0].line, 3, "{:?}", messages(&errs));
    // Validation errors: unknown attribute, unknown entity type; lines 4 and 6.
    let bad_types = "// header\npermit (principal, action, resource);\n\npermit (principal, action, resource is Contents) when { resource.size > 3 };\n\nforbid (principal, action, resource is Notebook);\n";
    let errs = PolicyEngine::from_text("policy.toml", toml, Some(("x.cedar", bad_types)))
        .err()
        .unwrap();
    let lines: Vec<usize> = errs.iter().map(|e| e.line).collect();
    assert!(lines.contains(&4), "{:?}", messages(&errs));
    assert!(lines.contains(&6), "{:?}", messages(&errs));
    assert!(errs.iter().all(|e| e.file == "x.cedar"));
    // Unguarded optional attribute fails strict validation.
    let unguarded =
        "permit (principal, action, resource is Contents) when { resource.path == \"/a\" };\n";
    let errs = PolicyEngine::from_text("policy.toml", toml, Some(("x.cedar", unguarded)))
        .err()
        .unwrap();
    assert_eq!(errs[0].line, 1, "{:?}", messages(&errs));
}

#[test]
fn reload_keeps_old_policy_on_error_and_drops_cache() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.toml");
    let grant = "[roles.r]\npermissions = [\"contents:read\"]\n[[bindings]]\nrole = \"r\"\nusers = [\"bob\"]\n";
    std::fs::write(&path, grant).unwrap();
    let e = PolicyEngine::load(&path, None).unwrap();
    assert_eq!(e.policy_files(), vec![path.clone()]);
    let bob = who("bob", NONE);
    assert!(allowed(&e, &bob, "read", "contents:/a"));
    assert!(e.cached_decisions() > 0);
    let generation = e.generation();

    std::fs::write(&path, "[roles.r]\npermissions = [\"contents:read\"\n").unwrap();
    let errs = e.reload().unwrap_err();
    assert!(errs[0]
        .to_string()
        .starts_with(&format!("{}:", path.display())));
    assert!(allowed(&e, &bob, "read", "contents:/a"), "old policy stays");
    assert_eq!(e.generation(), generation);

    std::fs::write(&path, grant.replace("bob", "alice")).unwrap();
    e.reload().unwrap();
    assert!(e.generation() > generation);
    assert_eq!(e.cached_decisions(), 0);
    assert!(
        !allowed(&e, &bob, "read", "contents:/a"),
        "cached allow was dropped"
    );
    assert!(allowed(&e, &who("alice", NONE), "read", "contents:/a"));

    std::fs::remove_file(&path).unwrap();
    let errs = e.reload().unwrap_err();
    assert!(errs[0].message.contains("cannot read"));
    assert!(allowed(&e, &who("alice", NONE), "read", "contents:/a"));
}

#[test]
fn load_reports_errors_from_both_files() {
    let dir = tempfile::tempdir().unwrap();
    let toml = dir.path().join("policy.toml");
    let cedar = dir.path().join("extra.cedar");
    std::fs::write(&toml, "[roles.r]\npermissions = [\"contents:nope\"]\n").unwrap();
    std::fs::write(&cedar, "permit (principal action resource);").unwrap();
    let errs = PolicyEngine::load(&toml, Some(&cedar)).err().unwrap();
    assert!(errs
        .iter()
        .any(|e| e.file.ends_with("policy.toml") && e.line == 2));
    assert!(errs
        .iter()
        .any(|e| e.file.ends_with("extra.cedar") && e.line == 1));
}

#[test]
fn decisions_are_cached_per_identity() {
    let e = engine(EXAMPLE);
    let sam = who("sam", STUDENTS);
    let r = res("contents:/course/a");
    let first = e.authorize(&sam, Action::Read, &r);
    assert_eq!(e.authorize(&sam, Action::Read, &r), first);
    // Same name, different groups: a different question.
    assert!(!e.authorize(&who("sam", NONE), Action::Read, &r).allowed);
    e.invalidate();
    assert_eq!(e.cached_decisions(), 0);
    assert_eq!(e.authorize(&sam, Action::Read, &r), first);
}

#[test]
fn owner_record_of_creator() {
    let e = PolicyEngine::from_preset("temporary").unwrap();
    let bob = who("bob", NONE);
    let kernel = Resource::owned(
        ResourceType::Kernels,
        Some("k1".into()),
        Owner::of(&bob),
        None,
    );
    assert!(e.authorize(&bob, Action::Execute, &kernel).allowed);
    assert!(
        !e.authorize(&who("eve", NONE), Action::Execute, &kernel)
            .allowed
    );
}

#[test]
fn preset_with_raw_cedar_reloads_the_cedar_file() {
    let dir = tempfile::tempdir().unwrap();
    let cedar = dir.path().join("extra.cedar");
    std::fs::write(
        &cedar,
        "@id(\"bob reads\")\npermit (principal == User::\"bob\", action == Action::\"read\", resource is Contents);\n",
    )
    .unwrap();
    let e = PolicyEngine::from_preset_with_cedar("owner-only", &cedar).unwrap();
    assert_eq!(e.policy_files(), vec![cedar.clone()]);
    let d = e.authorize(&who("bob", NONE), Action::Read, &res("contents:/a"));
    assert!(d.allowed);
    assert_eq!(d.rule, "extra.cedar:1: bob reads");
    assert!(allowed(&e, &who("root", ADMIN), "write", "server"));
    std::fs::write(&cedar, "permit (principal, action, resource is Nope);\n").unwrap();
    assert!(e.reload().is_err());
    assert!(allowed(&e, &who("bob", NONE), "read", "contents:/a"));
    std::fs::write(&cedar, "// nothing\n").unwrap();
    e.reload().unwrap();
    assert!(!allowed(&e, &who("bob", NONE), "read", "contents:/a"));
}

const SCOPED_TOKENS_POLICY: &str = r#"
[roles.editor]
permissions = ["contents:read", "contents:write", "kernels:*:own", "kernelspecs:read"]

[[bindings]]
role = "editor"
groups = ["editors"]
paths = ["/projects/**"]
"#;

#[test]
fn scoped_token_never_exceeds_scope_or_owner() {
    use concord_authz::{Scoped, TokenScope};
    let engine = engine(SCOPED_TOKENS_POLICY);
    let alice = who("alice", &["editors"]);
    let scope = TokenScope::parse(&["contents:read:/projects/a/**"]).unwrap();
    let decide = |who: &Identity, action: &str, spec: &str| {
        engine.authorize_scoped(who, Some(&scope), action.parse().unwrap(), &res(spec))
    };
    // The owner may do all of this; the token only reads below /projects/a.
    for (action, spec) in [
        ("read", "contents:/projects/a/x.ipynb"),
        ("write", "contents:/projects/a/x.ipynb"),
        ("read", "contents:/projects/b/x.ipynb"),
    ] {
        assert!(allowed(&engine, &alice, action, spec), "{action} {spec}");
    }
    assert!(decide(&alice, "read", "contents:/projects/a/x.ipynb").allowed);
    let write = decide(&alice, "write", "contents:/projects/a/x.ipynb");
    assert!(!write.allowed);
    assert!(write.rule.starts_with("token scope:"), "{}", write.rule);
    assert!(!decide(&alice, "read", "contents:/projects/b/x.ipynb").allowed);
    assert!(!decide(&alice, "read", "kernelspecs").allowed);
    // Without a scope the decision is the owner's, rule and all.
    assert_eq!(
        engine.authorize_scoped(&alice, None, Action::Write, &res("contents:/projects/b/x")),
        engine.authorize(&alice, Action::Write, &res("contents:/projects/b/x"))
    );

    // The owner loses the role: so does the token, with the policy's reason.
    let alice_demoted = who("alice", &[]);
    let lost = decide(&alice_demoted, "read", "contents:/projects/a/x.ipynb");
    assert!(!lost.allowed);
    assert!(lost.rule.starts_with("default deny"), "{}", lost.rule);

    // A scope wider than the owner's rights grants nothing more.
    let wide = TokenScope::parse(&["*:*"]).unwrap();
    assert!(
        !engine
            .authorize_scoped(&alice, Some(&wide), Action::Read, &res("contents:/etc/x"))
            .allowed
    );

    // Listings and code taking `&dyn Authorize` see the narrowed decisions.
    let scoped = Scoped {
        inner: &engine,
        scope: &scope,
    };
    let projects = CanonicalPath::parse("/projects").unwrap();
    assert_eq!(
        scoped.authorize_children(&alice, Action::Read, &projects, &["a", "b", "c"]),
        vec![true, false, false]
    );
    assert_eq!(
        engine.authorize_children(&alice, Action::Read, &projects, &["a", "b", "c"]),
        vec![true, true, true]
    );
    let as_dyn: &dyn Authorize = &scoped;
    assert!(
        as_dyn
            .authorize(&alice, Action::Read, &res("contents:/projects/a/y"))
            .allowed
    );
    assert!(
        !as_dyn
            .authorize(&alice, Action::Write, &res("contents:/projects/a/y"))
            .allowed
    );
}

const LIMITED: &str = r#"
[roles.worker]
permissions = ["contents:read"]

[[bindings]]
role = "worker"
everyone = true

[[limits]]
everyone = true
kernels = 2
terminals = 1

[[limits]]
groups = ["students"]
kernels = 1
sessions = 3

[[limits]]
groups = ["tas"]
kernels = 4

[[limits]]
users = ["carol"]
kernels = "unlimited"
"#;

fn max_of(engine: &PolicyEngine, user: &str, groups: &[&str], kind: LimitedKind) -> Option<u32> {
    let groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
    engine
        .limits_for(user, &groups)
        .get(kind)
        .map(|limit| limit.max)
}

#[test]
fn limits_resolve_user_over_group_over_everyone_and_the_larger_at_one_level() {
    let e = engine(LIMITED);
    assert_eq!(max_of(&e, "ann", &[], LimitedKind::Kernels), Some(2));
    assert_eq!(max_of(&e, "ann", &[], LimitedKind::Terminals), Some(1));
    assert_eq!(max_of(&e, "ann", &[], LimitedKind::Sessions), None);
    assert_eq!(max_of(&e, "ann", &[], LimitedKind::Rooms), None);
    // A group entry beats everyone, even when it is stricter.
    assert_eq!(
        max_of(&e, "bob", &["students"], LimitedKind::Kernels),
        Some(1)
    );
    assert_eq!(
        max_of(&e, "bob", &["students"], LimitedKind::Sessions),
        Some(3)
    );
    // Kinds the group entry leaves out fall back to everyone's.
    assert_eq!(
        max_of(&e, "bob", &["students"], LimitedKind::Terminals),
        Some(1)
    );
    // In two groups, the more generous.
    assert_eq!(
        max_of(&e, "dan", &["students", "tas"], LimitedKind::Kernels),
        Some(4)
    );
    // A user entry beats their groups; "unlimited" lifts the limit.
    assert_eq!(
        max_of(&e, "carol", &["students"], LimitedKind::Kernels),
        None
    );

    let groups = vec!["students".to_string()];
    let limits = e.limits_for("bob", &groups);
    let kernels = limits.get(LimitedKind::Kernels).unwrap();
    assert_eq!(kernels.set_by, "group students (policy.toml:14)");
    assert_eq!(
        kernels.refusal("bob"),
        "bob may have at most 1 kernel at once (limit for group students (policy.toml:14)); \
         shut one of your kernels down to start another"
    );
}

#[test]
fn limits_with_bad_values_are_located_errors() {
    let base = "[roles.r]\npermissions = [\"contents:read\"]\n";
    let cases = [
        (
            "[[limits]]\neveryone = true\nkernels = -1\n",
            "kernels must be a whole number",
        ),
        (
            "[[limits]]\neveryone = true\nkernels = \"many\"\n",
            "kernels must be a whole number or \"unlimited\"",
        ),
        ("[[limits]]\neveryone = true\n", "limits sets nothing"),
        ("[[limits]]\nkernels = 2\n", "limits names nobody"),
        (
            "[[limits]]\neveryone = true\ncpus = 2\n",
            "unknown key \"cpus\" in limits",
        ),
        (
            "[[limits]]\neveryone = true\nkernels = 2\npaths = [\"/a/**\"]\n",
            "paths are not allowed here",
        ),
    ];
    for (text, expected) in cases {
        let errs = errors(&format!("{base}{text}"));
        assert!(
            errs.iter()
                .any(|e| e.message.contains(expected) && e.line >= 3),
            "{text:?}: expected an error containing {expected:?}, got {errs:#?}"
        );
    }
}

#[test]
fn the_classroom_preset_limits_students() {
    let e = PolicyEngine::from_preset("classroom").unwrap();
    assert!(max_of(&e, "stu", &[], LimitedKind::Kernels).is_some());
    assert!(max_of(&e, "stu", &[], LimitedKind::Terminals).is_some());
    assert_eq!(max_of(&e, "root", &["admin"], LimitedKind::Kernels), None);
}
