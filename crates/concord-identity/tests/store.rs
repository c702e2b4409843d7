//! The user store against real SQLite files in temporary directories.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use concord_authz::{
    Action, Authorize, CanonicalPath, Identity, PolicyEngine, Resource, TokenScope, User,
};
use concord_identity::{
    ErrorKind, IdentityError, LoginError, NewPassword, ProfileUpdate, StoreOptions, TokenSpec,
    UserStore, API_TOKEN_PREFIX, COOKIE_SECRET_FILE, DATABASE_FILE,
};
use sha2::Digest;

const NO_GROUPS: &[&str] = &[];

fn state_dir() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    (tmp, state)
}

fn store_with_alice(dir: &Path) -> UserStore {
    let store = UserStore::open(dir).unwrap();
    store
        .add_user(
            "alice",
            NewPassword::Plain("alice password"),
            &["editors", "admin"],
        )
        .unwrap();
    store
}

#[test]
fn add_verify_and_remove_users() {
    let (_tmp, dir) = state_dir();
    let store = store_with_alice(&dir);

    let who = store.verify_login("alice", "alice password").unwrap();
    assert_eq!(who.user, User::named("alice"));
    assert_eq!(who.groups, vec!["admin", "editors"]);
    assert_eq!(store.identity("alice").unwrap(), Some(who));

    assert!(matches!(
        store.verify_login("alice", "wrong password"),
        Err(LoginError::InvalidCredentials)
    ));
    assert!(matches!(
        store.verify_login("Alice", "alice password"),
        Err(LoginError::InvalidCredentials)
    ));

    let err = store
        .add_user("alice", NewPassword::Plain("another password"), NO_GROUPS)
        .unwrap_err();
    assert!(matches!(err, IdentityError::UserExists(_)));
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert_eq!(err.to_string(), "user \"alice\" already exists");

    store.remove_user("alice").unwrap();
    assert_eq!(store.identity("alice").unwrap(), None);
    assert!(matches!(
        store.verify_login("alice", "alice password"),
        Err(LoginError::InvalidCredentials)
    ));
    let err = store.remove_user("alice").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert_eq!(err.to_string(), "no such user: \"alice\"");
}

#[test]
fn unknown_user_gets_the_same_error_as_a_wrong_password() {
    let (_tmp, dir) = state_dir();
    let store = store_with_alice(&dir);
    store
        .add_user("nopass", NewPassword::None, NO_GROUPS)
        .unwrap();
    let wrong = store.verify_login("alice", "not it at all").unwrap_err();
    let unknown = store.verify_login("mallory", "not it at all").unwrap_err();
    let invalid_name = store.verify_login("not a name!", "x").unwrap_err();
    let no_password = store.verify_login("nopass", "").unwrap_err();
    for err in [&unknown, &invalid_name, &no_password] {
        assert!(matches!(err, LoginError::InvalidCredentials));
        assert_eq!(err.to_string(), wrong.to_string());
        assert_eq!(err.kind(), wrong.kind());
    }
    assert_eq!(wrong.to_string(), "invalid username or password");
}

#[test]
fn bad_input_is_refused_with_clear_errors() {
    let (_tmp, dir) = state_dir();
    let store = UserStore::open(&dir).unwrap();
    let cases: Vec<(IdentityError, &str)> = vec![
        (
            store
                .add_user("bad name", NewPassword::Plain("long enough"), NO_GROUPS)
                .unwrap_err(),
            "invalid username \"bad name\"",
        ),
        (
            store
                .add_user("bob", NewPassword::Plain("short"), NO_GROUPS)
                .unwrap_err(),
            "invalid password: must be at least 8 characters long",
        ),
        (
            store
                .add_user(
                    "bob",
                    NewPassword::Plain("long enough"),
                    &["ok", "no/slash"],
                )
                .unwrap_err(),
            "invalid group name \"no/slash\"",
        ),
        (
            store
                .add_user("bob", NewPassword::Hash("md5:x:abc"), NO_GROUPS)
                .unwrap_err(),
            "unsupported password hash",
        ),
        (
            store
                .set_password("ghost", NewPassword::Plain("long enough"))
                .unwrap_err(),
            "no such user",
        ),
    ];
    for (err, expected) in cases {
        assert!(err.to_string().starts_with(expected), "{err}");
        assert_ne!(err.kind(), ErrorKind::Internal, "{err}");
    }
    // Nothing half-created.
    assert!(store.list_users().unwrap().is_empty());
}

#[test]
fn list_users_shows_groups_passwords_and_tokens() {
    let (_tmp, dir) = state_dir();
    let store = store_with_alice(&dir);
    store
        .add_user("bot", NewPassword::None, &["robots"])
        .unwrap();
    store.create_token("bot", "ci").unwrap();
    store.create_token("bot", "backup").unwrap();
    let users = store.list_users().unwrap();
    let summary: Vec<_> = users
        .iter()
        .map(|u| {
            (
                u.user.username.as_str(),
                u.groups.clone(),
                u.has_password,
                u.api_tokens,
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (
                "alice",
                vec!["admin".to_string(), "editors".to_string()],
                true,
                0
            ),
            ("bot", vec!["robots".to_string()], false, 2),
        ]
    );
    assert!(chrono::DateTime::parse_from_rfc3339(&users[0].created).is_ok());

    store.set_groups("alice", &["viewers"]).unwrap();
    assert_eq!(
        store.identity("alice").unwrap().unwrap().groups,
        vec!["viewers"]
    );
}

#[test]
fn files_are_private_and_reopening_keeps_data() {
    let (_tmp, dir) = state_dir();
    drop(store_with_alice(&dir));
    let mode = |p: PathBuf| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(dir.clone()), 0o700);
    assert_eq!(mode(dir.join(DATABASE_FILE)), 0o600);
    assert_eq!(mode(dir.join(COOKIE_SECRET_FILE)), 0o600);

    let store = UserStore::open(&dir).unwrap();
    assert!(store.verify_login("alice", "alice password").is_ok());
    let conn = rusqlite::Connection::open(dir.join(DATABASE_FILE)).unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

#[test]
fn a_database_from_a_newer_concord_is_refused() {
    let (_tmp, dir) = state_dir();
    drop(UserStore::open(&dir).unwrap());
    let conn = rusqlite::Connection::open(dir.join(DATABASE_FILE)).unwrap();
    conn.pragma_update(None, "user_version", 99).unwrap();
    drop(conn);
    let err = UserStore::open(&dir).unwrap_err();
    assert!(
        matches!(err, IdentityError::SchemaTooNew { found: 99, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("upgrade concord"));
}

#[test]
fn sessions_end_on_logout_password_change_and_removal() {
    let (_tmp, dir) = state_dir();
    let store = store_with_alice(&dir);
    store
        .add_user("bob", NewPassword::Plain("bob password"), NO_GROUPS)
        .unwrap();

    // Logout ends only that session.
    let first = store.create_session("alice").unwrap();
    let second = store.create_session("alice").unwrap();
    assert_ne!(first, second);
    assert_eq!(
        store
            .session_identity(first.as_str())
            .unwrap()
            .unwrap()
            .username(),
        "alice"
    );
    store.end_session(first.as_str()).unwrap();
    assert_eq!(store.session_identity(first.as_str()).unwrap(), None);
    assert!(store.session_identity(second.as_str()).unwrap().is_some());

    // A group change is seen by the live session at once.
    store.set_groups("alice", &["viewers"]).unwrap();
    assert_eq!(
        store
            .session_identity(second.as_str())
            .unwrap()
            .unwrap()
            .groups,
        vec!["viewers"]
    );

    // A password change ends all of alice's sessions, not bob's.
    let bobs = store.create_session("bob").unwrap();
    store
        .set_password("alice", NewPassword::Plain("new alice password"))
        .unwrap();
    assert_eq!(store.session_identity(second.as_str()).unwrap(), None);
    assert!(store.session_identity(bobs.as_str()).unwrap().is_some());
    assert!(store.verify_login("alice", "alice password").is_err());
    assert!(store.verify_login("alice", "new alice password").is_ok());

    // Removing a user ends theirs.
    store.remove_user("bob").unwrap();
    assert_eq!(store.session_identity(bobs.as_str()).unwrap(), None);
    assert_eq!(
        store.create_session("bob").unwrap_err().kind(),
        ErrorKind::NotFound
    );
}

#[test]
fn forged_foreign_and_expired_cookies_are_refused() {
    let (_tmp, dir) = state_dir();
    let store = store_with_alice(&dir);
    let cookie = store.create_session("alice").unwrap();
    for junk in [
        "",
        "x",
        "v1.a.b",
        &format!("{}x", cookie.as_str()),
        &"A".repeat(10_000),
    ] {
        assert_eq!(store.session_identity(junk).unwrap(), None, "{junk}");
        store.end_session(junk).unwrap();
    }
    // Another server's secret does not accept this cookie.
    let (_tmp2, other_dir) = state_dir();
    let other = store_with_alice(&other_dir);
    assert_eq!(other.session_identity(cookie.as_str()).unwrap(), None);
    // The database keeps only a hash of the session id.
    let bytes = std::fs::read(dir.join(DATABASE_FILE)).unwrap();
    let wal = std::fs::read(dir.join(format!("{DATABASE_FILE}-wal"))).unwrap_or_default();
    let id_part = cookie.as_str().split('.').nth(1).unwrap();
    for haystack in [&bytes, &wal] {
        assert!(!haystack
            .windows(id_part.len())
            .any(|w| w == id_part.as_bytes()));
    }

    let short = UserStore::open_with(
        &dir,
        StoreOptions {
            session_lifetime: std::time::Duration::ZERO,
        },
    )
    .unwrap();
    let expired = short.create_session("alice").unwrap();
    assert_eq!(short.session_identity(expired.as_str()).unwrap(), None);
}

#[test]
fn token_mode_owner_sessions_work_and_die_on_logout() {
    let (_tmp, dir) = state_dir();
    let store = UserStore::open(&dir).unwrap();
    let owner = Identity {
        user: User::named("owner"),
        groups: vec!["admin".to_string()],
    };
    let cookie = store.create_synthetic_session(&owner).unwrap();
    assert_eq!(
        store.session_identity(cookie.as_str()).unwrap(),
        Some(owner.clone())
    );
    // Survives a restart (same state dir, same secret)…
    drop(store);
    let store = UserStore::open(&dir).unwrap();
    assert_eq!(
        store.session_identity(cookie.as_str()).unwrap(),
        Some(owner.clone())
    );
    // …and dies on logout.
    store.end_session(cookie.as_str()).unwrap();
    assert_eq!(store.session_identity(cookie.as_str()).unwrap(), None);

    let a = store.create_synthetic_session(&owner).unwrap();
    let b = store.create_synthetic_session(&owner).unwrap();
    assert_eq!(store.end_sessions_of("owner").unwrap(), 2);
    assert_eq!(store.session_identity(a.as_str()).unwrap(), None);
    assert_eq!(store.session_identity(b.as_str()).unwrap(), None);

    let bad = Identity {
        user: User::named("not valid"),
        groups: vec![],
    };
    assert!(store.create_synthetic_session(&bad).is_err());
}

#[test]
fn api_tokens_are_shown_once_listed_and_revoked() {
    let (_tmp, dir) = state_dir();
    let store = store_with_alice(&dir);
    let token = store.create_token("alice", "laptop").unwrap();
    assert!(token.token.starts_with(API_TOKEN_PREFIX));
    assert_eq!(token.token.len(), API_TOKEN_PREFIX.len() + 64);
    assert!(!format!("{token:?}").contains(&token.token));
    let other = store.create_token("alice", "ci").unwrap();

    let who = store.token_identity(&token.token).unwrap().unwrap();
    assert_eq!(who.username(), "alice");
    assert_eq!(store.token_identity("concord_nope").unwrap(), None);
    assert_eq!(store.token_identity("").unwrap(), None);

    let listed = store.list_tokens("alice").unwrap();
    assert_eq!(
        listed
            .iter()
            .map(|t| (t.id, t.note.as_str()))
            .collect::<Vec<_>>(),
        vec![(token.id, "laptop"), (other.id, "ci")]
    );

    store.revoke_token("alice", token.id).unwrap();
    assert_eq!(store.token_identity(&token.token).unwrap(), None);
    assert!(store.token_identity(&other.token).unwrap().is_some());
    let err = store.revoke_token("alice", token.id).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);

    // Only the hash is stored.
    drop(store);
    for file in [DATABASE_FILE.to_string(), format!("{DATABASE_FILE}-wal")] {
        let bytes = std::fs::read(dir.join(file)).unwrap_or_default();
        let secret = &other.token.as_bytes()[API_TOKEN_PREFIX.len()..];
        assert!(!bytes.windows(secret.len()).any(|w| w == secret));
    }

    // Removing the user removes the tokens.
    let store = UserStore::open(&dir).unwrap();
    store.remove_user("alice").unwrap();
    assert_eq!(store.token_identity(&other.token).unwrap(), None);
}

#[test]
fn changes_from_another_process_reach_the_cache() {
    // The CLI (`concord user passwd`) opens its own store next to the running server.
    let (_tmp, dir) = state_dir();
    let server = store_with_alice(&dir);
    let cli = UserStore::open(&dir).unwrap();
    let cookie = server.create_session("alice").unwrap();
    let token = server.create_token("alice", "t").unwrap();
    assert!(server.session_identity(cookie.as_str()).unwrap().is_some());
    assert!(server.token_identity(&token.token).unwrap().is_some());

    cli.set_groups("alice", &["outsiders"]).unwrap();
    assert_eq!(
        server
            .session_identity(cookie.as_str())
            .unwrap()
            .unwrap()
            .groups,
        vec!["outsiders"]
    );
    cli.revoke_token("alice", token.id).unwrap();
    assert_eq!(server.token_identity(&token.token).unwrap(), None);
    cli.set_password("alice", NewPassword::Plain("changed elsewhere"))
        .unwrap();
    assert_eq!(server.session_identity(cookie.as_str()).unwrap(), None);
}

#[test]
fn profile_updates_persist_and_reach_sessions() {
    let (_tmp, dir) = state_dir();
    let store = store_with_alice(&dir);
    let cookie = store.create_session("alice").unwrap();
    let update: ProfileUpdate = serde_json::from_str(
        r##"{"name": "Alice Liddell", "initials": "AL", "color": "#ff8800",
            "avatar_url": "https://example.org/alice.png"}"##,
    )
    .unwrap();
    let who = store.update_profile("alice", &update).unwrap();
    assert_eq!(who.user.name, "Alice Liddell");
    assert_eq!(
        who.user.display_name, "Alice Liddell",
        "display name follows name"
    );
    assert_eq!(who.user.initials.as_deref(), Some("AL"));
    assert_eq!(
        store
            .session_identity(cookie.as_str())
            .unwrap()
            .unwrap()
            .user,
        who.user
    );

    let reset: ProfileUpdate =
        serde_json::from_str(r#"{"name": null, "display_name": "Al", "color": ""}"#).unwrap();
    let who = store.update_profile("alice", &reset).unwrap();
    assert_eq!(who.user.name, "alice");
    assert_eq!(who.user.display_name, "Al");
    assert_eq!(who.user.color, None);
    assert_eq!(who.user.initials.as_deref(), Some("AL"), "untouched");

    let bad: ProfileUpdate = serde_json::from_str(r#"{"color": "red;}"}"#).unwrap();
    let err = store.update_profile("alice", &bad).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BadRequest);
    assert!(
        err.to_string().starts_with("invalid value for color"),
        "{err}"
    );
    assert_eq!(
        store
            .update_profile("ghost", &ProfileUpdate::default())
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
}

#[test]
fn concurrent_lookups_from_many_threads() {
    let (_tmp, dir) = state_dir();
    let store = std::sync::Arc::new(store_with_alice(&dir));
    let cookie = store.create_session("alice").unwrap();
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let store = std::sync::Arc::clone(&store);
            let cookie = cookie.clone();
            std::thread::spawn(move || {
                for j in 0..200 {
                    assert!(store.session_identity(cookie.as_str()).unwrap().is_some());
                    if i == 0 && j % 50 == 0 {
                        store.set_groups("alice", &[format!("g{j}")]).unwrap();
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

/// The venv's Python, when present.
fn jupyter_python() -> Option<PathBuf> {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python");
    python.exists().then_some(python)
}

fn jupyter_passwd(python: &Path, password: &str, algorithm: &str) -> String {
    let out = Command::new(python)
        .args([
            "-c",
            "import sys; from jupyter_server.auth.security import passwd; \
             print(passwd(sys.argv[1], sys.argv[2]))",
            password,
            algorithm,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn jupyter_server_password_hashes_are_accepted_and_upgraded() {
    let Some(python) = jupyter_python() else {
        eprintln!("skipping: no jupyter_server venv at .venv (needed to produce real hashes)");
        return;
    };
    let (_tmp, dir) = state_dir();
    let store = UserStore::open(&dir).unwrap();
    for (user, algorithm) in [
        ("argonaut", "argon2"),
        ("legacy", "sha1"),
        ("sha", "sha256"),
    ] {
        let hash = jupyter_passwd(&python, "pässwörd from jupyter", algorithm);
        assert!(hash.starts_with(&format!("{algorithm}:")), "{hash}");
        assert!(concord_identity::verify_password(
            &hash,
            "pässwörd from jupyter"
        ));
        assert!(!concord_identity::verify_password(
            &hash,
            "pässwörd from jupyte"
        ));

        store
            .add_user(user, NewPassword::Hash(&hash), NO_GROUPS)
            .unwrap();
        assert!(store.verify_login(user, "wrong").is_err());
        assert!(store.verify_login(user, "pässwörd from jupyter").is_ok());

        // The successful login replaced the hash with concord's argon2id.
        let conn = rusqlite::Connection::open(dir.join(DATABASE_FILE)).unwrap();
        let stored: String = conn
            .query_row(
                "SELECT password_hash FROM users WHERE username = ?1",
                [user],
                |r| r.get(0),
            )
            .unwrap();
        assert!(stored.starts_with("$argon2id$v=19$m=19456"), "{stored}");
        assert!(store.verify_login(user, "pässwörd from jupyter").is_ok());
    }
}

#[test]
fn concord_hashes_verify_in_jupyter_server() {
    let Some(python) = jupyter_python() else {
        eprintln!("skipping: no jupyter_server venv at .venv");
        return;
    };
    // A hash concord made works as jupyter_server's hashed_password (with the argon2: prefix).
    let hash = concord_identity::hash_password("made by concord").unwrap();
    let out = Command::new(&python)
        .args([
            "-c",
            "import sys; from jupyter_server.auth.security import passwd_check; \
             print(passwd_check('argon2:' + sys.argv[1], sys.argv[2]), passwd_check('argon2:' + sys.argv[1], 'nope'))",
            &hash,
            "made by concord",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "True False");
}

const SCOPED_POLICY: &str = r#"
[roles.editor]
permissions = ["contents:read", "contents:write", "kernelspecs:read"]

[[bindings]]
role = "editor"
groups = ["editors"]
"#;

fn scoped_spec(note: &str, grants: &[&str]) -> TokenSpec {
    TokenSpec {
        note: note.to_string(),
        scope: Some(TokenScope::parse(grants).unwrap()),
        expires: None,
    }
}

/// Decides `action` on a contents path for a request authenticated with `token`.
fn token_may(
    store: &UserStore,
    engine: &PolicyEngine,
    token: &str,
    action: Action,
    path: &str,
) -> bool {
    let Some(auth) = store.authenticate_token(token).unwrap() else {
        return false;
    };
    let resource = Resource::contents(CanonicalPath::parse(path).unwrap());
    engine
        .authorize_scoped(&auth.identity, auth.scope.as_deref(), action, &resource)
        .allowed
}

#[test]
fn a_scoped_token_is_held_to_its_scope_and_its_owner() {
    let (_tmp, dir) = state_dir();
    let store = store_with_alice(&dir);
    let engine = PolicyEngine::from_text("policy.toml", SCOPED_POLICY, None).unwrap();
    let scoped = store
        .create_token_with(
            "alice",
            &scoped_spec("agent", &["contents:read:/projects/a/**"]),
        )
        .unwrap();
    assert_eq!(
        scoped.scope,
        Some(vec!["contents:read:/projects/a/**".to_string()])
    );
    let full = store.create_token("alice", "laptop").unwrap();

    let auth = store.authenticate_token(&scoped.token).unwrap().unwrap();
    assert_eq!(auth.token_id, scoped.id);
    assert_eq!(auth.identity.username(), "alice");
    assert_eq!(
        auth.scope.as_deref().map(TokenScope::to_strings),
        Some(vec!["contents:read:/projects/a/**".to_string()])
    );

    // Its owner (and her unscoped token) may read and write everywhere; the scoped token
    // only reads below /projects/a.
    for (action, path) in [
        (Action::Read, "/projects/a/x.ipynb"),
        (Action::Write, "/projects/a/x.ipynb"),
        (Action::Read, "/projects/b/x.ipynb"),
    ] {
        assert!(token_may(&store, &engine, &full.token, action, path));
    }
    assert!(token_may(
        &store,
        &engine,
        &scoped.token,
        Action::Read,
        "/projects/a/x.ipynb"
    ));
    assert!(!token_may(
        &store,
        &engine,
        &scoped.token,
        Action::Write,
        "/projects/a/x.ipynb"
    ));
    assert!(!token_may(
        &store,
        &engine,
        &scoped.token,
        Action::Read,
        "/projects/b/x.ipynb"
    ));

    // A caller that does not apply scopes never gets a scoped token accepted.
    assert_eq!(store.token_identity(&scoped.token).unwrap(), None);
    assert!(store.token_identity(&full.token).unwrap().is_some());

    // The owner loses the role (from another process, like the CLI): so does the token.
    let cli = UserStore::open(&dir).unwrap();
    cli.set_groups("alice", NO_GROUPS).unwrap();
    assert!(!token_may(
        &store,
        &engine,
        &scoped.token,
        Action::Read,
        "/projects/a/x.ipynb"
    ));
    cli.set_groups("alice", &["editors"]).unwrap();
    assert!(token_may(
        &store,
        &engine,
        &scoped.token,
        Action::Read,
        "/projects/a/x.ipynb"
    ));
}

#[test]
fn bad_scopes_and_expiries_are_refused() {
    let (_tmp, dir) = state_dir();
    let store = store_with_alice(&dir);
    let err = TokenScope::parse(&["contents:fly:/a/**"]).unwrap_err();
    assert!(err.to_string().contains("unknown action \"fly\""), "{err}");
    let past = TokenSpec {
        note: "old".into(),
        scope: None,
        expires: Some(chrono::Utc::now() - chrono::Duration::seconds(1)),
    };
    let err = store.create_token_with("alice", &past).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BadRequest);
    assert!(store.list_tokens("alice").unwrap().is_empty());
}

#[test]
fn an_expired_token_no_longer_authenticates() {
    let (_tmp, dir) = state_dir();
    let store = store_with_alice(&dir);
    let expires = chrono::Utc::now() + chrono::Duration::days(1);
    let token = store
        .create_token_with(
            "alice",
            &TokenSpec {
                note: "tomorrow".into(),
                scope: None,
                expires: Some(expires),
            },
        )
        .unwrap();
    assert_eq!(
        token.expires,
        Some(expires.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
    );
    assert!(store.authenticate_token(&token.token).unwrap().is_some());
    let listed = &store.list_tokens("alice").unwrap()[0];
    assert!(!listed.expired);
    assert!(listed.last_used.is_some());

    // The clock passes the expiry (moved in the database rather than by waiting).
    let conn = rusqlite::Connection::open(dir.join(DATABASE_FILE)).unwrap();
    conn.execute(
        "UPDATE api_tokens SET expires = ?1 WHERE id = ?2",
        rusqlite::params![chrono::Utc::now().timestamp() - 1, token.id],
    )
    .unwrap();
    assert_eq!(store.authenticate_token(&token.token).unwrap(), None);
    assert_eq!(store.token_identity(&token.token).unwrap(), None);
    let listed = &store.list_tokens("alice").unwrap()[0];
    assert!(listed.expired);
}

#[test]
fn tokens_are_listed_without_secrets_and_revoked_by_id() {
    let (_tmp, dir) = state_dir();
    let store = store_with_alice(&dir);
    store.add_user("bob", NewPassword::None, NO_GROUPS).unwrap();
    let alices = store
        .create_token_with("alice", &scoped_spec("agent", &["kernels:*", "*:read"]))
        .unwrap();
    let bobs = store.create_token("bob", "ci").unwrap();

    let own = store.list_tokens("bob").unwrap();
    assert_eq!(own.len(), 1);
    assert_eq!((own[0].id, own[0].username.as_str()), (bobs.id, "bob"));
    assert_eq!(own[0].scope, None);
    assert_eq!(own[0].expires, None);
    assert_eq!(own[0].last_used, None);

    let all = store.list_all_tokens().unwrap();
    assert_eq!(
        all.iter()
            .map(|t| (t.id, t.username.as_str(), t.note.as_str()))
            .collect::<Vec<_>>(),
        vec![(alices.id, "alice", "agent"), (bobs.id, "bob", "ci")]
    );
    assert_eq!(
        all[0].scope,
        Some(vec!["kernels:*".to_string(), "*:read".to_string()])
    );
    let json = serde_json::to_string(&all).unwrap();
    for secret in [&alices.token, &bobs.token] {
        assert!(!json.contains(&secret[API_TOKEN_PREFIX.len()..]));
    }

    // Someone else's token is not revocable as one's own; an admin revokes it by id.
    assert!(store.authenticate_token(&alices.token).unwrap().is_some());
    let err = store.revoke_token("bob", alices.id).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert_eq!(store.revoke_token_by_id(alices.id).unwrap(), "alice");
    assert_eq!(store.authenticate_token(&alices.token).unwrap(), None);
    let err = store.revoke_token_by_id(alices.id).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(store.authenticate_token(&bobs.token).unwrap().is_some());
}

#[test]
fn tokens_of_a_version_1_database_keep_working() {
    let (_tmp, dir) = state_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let token = format!("{API_TOKEN_PREFIX}{}", "ab".repeat(32));
    {
        // The schema as concord wrote it before tokens had scopes (user_version 1).
        let conn = rusqlite::Connection::open(dir.join(DATABASE_FILE)).unwrap();
        conn.execute_batch(
            r#"
CREATE TABLE users (id INTEGER PRIMARY KEY, username TEXT NOT NULL UNIQUE, name TEXT,
    display_name TEXT, initials TEXT, avatar_url TEXT, color TEXT, password_hash TEXT,
    created TEXT NOT NULL);
CREATE TABLE group_members (
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    group_name TEXT NOT NULL, PRIMARY KEY (user_id, group_name));
CREATE TABLE api_tokens (id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    token_hash BLOB NOT NULL UNIQUE, note TEXT NOT NULL, created TEXT NOT NULL);
CREATE INDEX api_tokens_user ON api_tokens(user_id);
CREATE TABLE sessions (id_hash BLOB PRIMARY KEY,
    user_id INTEGER REFERENCES users(id) ON DELETE CASCADE, username TEXT NOT NULL,
    synthetic_identity TEXT, created TEXT NOT NULL, expires INTEGER NOT NULL,
    CHECK ((user_id IS NULL) <> (synthetic_identity IS NULL)));
CREATE INDEX sessions_username ON sessions(username);
INSERT INTO users (id, username, created) VALUES (1, 'carol', '2026-01-01T00:00:00Z');
INSERT INTO group_members VALUES (1, 'editors');
PRAGMA user_version = 1;
"#,
        )
        .unwrap();
        let hash: [u8; 32] = sha2::Sha256::digest(token.as_bytes()).into();
        conn.execute(
            "INSERT INTO api_tokens (id, user_id, token_hash, note, created)
             VALUES (7, 1, ?1, 'old laptop', '2026-01-01T00:00:00Z')",
            [hash.as_slice()],
        )
        .unwrap();
    }
    let store = UserStore::open(&dir).unwrap();
    let auth = store.authenticate_token(&token).unwrap().unwrap();
    assert_eq!(auth.identity.username(), "carol");
    assert_eq!(auth.identity.groups, vec!["editors"]);
    assert_eq!((auth.token_id, auth.scope), (7, None));
    assert!(store.token_identity(&token).unwrap().is_some());
    let listed = store.list_tokens("carol").unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (
            listed[0].note.as_str(),
            &listed[0].scope,
            &listed[0].expires,
            listed[0].expired
        ),
        ("old laptop", &None, &None, false)
    );
    // New tokens work next to the old ones.
    let new = store
        .create_token_with("carol", &scoped_spec("agent", &["contents:read"]))
        .unwrap();
    assert!(store.authenticate_token(&new.token).unwrap().is_some());
}
