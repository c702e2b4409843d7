//! Named users: login form, logout, cookie invalidation (logout, password change, removal),
//! throttling, same answer for unknown users, per-user API tokens, `/api/me`.

use crate::common;

use serde_json::Value;

fn users_server() -> common::ServerBuilder {
    let b = common::server().args(&["--auth", "users"]);
    b.add_user("alice", "alice-password-1", &["team"]);
    b.add_user("bob", "bob-password-1", &[]);
    b
}

async fn me(s: &common::Server, client: &reqwest::Client) -> reqwest::StatusCode {
    client.get(s.url("api/me")).send().await.unwrap().status()
}

#[tokio::test]
async fn login_sets_a_cookie_and_api_me_names_the_user() {
    let s = users_server().start();
    let (alice, _) = s.login("alice", "alice-password-1").await;
    let r = alice.get(s.url("api/me")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["identity"]["username"], "alice");
    for key in ["name", "display_name", "initials", "avatar_url", "color"] {
        assert!(v["identity"].get(key).is_some(), "{key} missing: {v}");
    }
    assert!(v["permissions"]["updatable_fields"].is_array());
}

#[tokio::test]
async fn wrong_password_and_unknown_user_get_the_same_answer() {
    let s = users_server().start();
    let mut bodies = Vec::new();
    for (user, pw) in [("alice", "wrong-password"), ("nobody", "wrong-password")] {
        let browser = s.browser();
        let xsrf = s.xsrf(&browser).await;
        let r = browser
            .post(s.url("login"))
            .form(&[("username", user), ("password", pw), ("_xsrf", &xsrf)])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        let body = r.text().await.unwrap();
        assert!(body.contains("Invalid username or password"));
        bodies.push(body.replace(&xsrf, "XSRF"));
    }
    assert_eq!(bodies[0], bodies[1]);
}

#[tokio::test]
async fn login_form_without_xsrf_is_refused() {
    let s = users_server().start();
    let r = s
        .browser()
        .post(s.url("login"))
        .form(&[("username", "alice"), ("password", "alice-password-1")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}

#[tokio::test]
async fn cookie_dies_on_logout_password_change_and_removal() {
    let b = users_server();
    b.add_user("carol", "carol-password-1", &[]);
    let s = b.start();
    let state = s.state().to_str().unwrap().to_string();

    // Logout ends the session for every copy of the cookie.
    let (alice, _) = s.login("alice", "alice-password-1").await;
    let (alice2, _) = s.login("alice", "alice-password-1").await;
    assert_eq!(me(&s, &alice).await, 200);
    alice.get(s.url("logout")).send().await.unwrap();
    assert_eq!(me(&s, &alice).await, 403);
    assert_eq!(me(&s, &alice2).await, 200, "other sessions live on");

    // A password change ends all of the user's sessions.
    let (code, out, err) = common::run_cli(
        &["user", "passwd", "alice", "--state-dir", &state],
        Some("alice-password-2\n"),
    );
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(me(&s, &alice2).await, 403);
    s.login("alice", "alice-password-2").await;

    // Removing the user ends their sessions.
    let (bob, _) = s.login("bob", "bob-password-1").await;
    assert_eq!(me(&s, &bob).await, 200);
    let (code, _, err) = common::run_cli(&["user", "remove", "bob", "--state-dir", &state], None);
    assert_eq!(code, 0, "{err}");
    assert_eq!(me(&s, &bob).await, 403);
}

#[tokio::test]
async fn repeated_failures_are_throttled() {
    let s = users_server().start();
    let browser = s.browser();
    let xsrf = s.xsrf(&browser).await;
    let mut statuses = Vec::new();
    for _ in 0..12 {
        let r = browser
            .post(s.url("login"))
            .form(&[
                ("username", "alice"),
                ("password", "guess"),
                ("_xsrf", &xsrf),
            ])
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
    }
    assert!(statuses.contains(&429), "{statuses:?}");
    // Even the right password is refused while throttled.
    let r = browser
        .post(s.url("login"))
        .form(&[
            ("username", "alice"),
            ("password", "alice-password-1"),
            ("_xsrf", &xsrf),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
}

#[tokio::test]
async fn api_tokens_per_user() {
    let b = users_server();
    let (code, token, err) = b.user_cmd(&["token", "alice", "--note", "ci"], None);
    assert_eq!(code, 0, "{err}");
    let token = token.trim().to_string();
    let s = b.start();
    let r = reqwest::Client::new()
        .get(s.url("api/me"))
        .header("Authorization", format!("token {token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["identity"]["username"], "alice");
    let r = reqwest::Client::new()
        .get(s.url("api/me"))
        .header("Authorization", format!("Bearer {token}x"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}

#[tokio::test]
async fn patch_me_updates_display_fields() {
    let s = users_server().start();
    let (alice, xsrf) = s.login("alice", "alice-password-1").await;
    let r = alice
        .patch(s.url("api/me"))
        .header("X-XSRFToken", &xsrf)
        .header("Content-Type", "text/plain;charset=UTF-8")
        .body(r##"{"display_name": "Alice A.", "color": "#ff0000"}"##)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["status"], "success");
    assert_eq!(v["identity"]["display_name"], "Alice A.");
    let v: Value = alice
        .get(s.url("api/me"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["identity"]["color"], "#ff0000");
    let r = alice
        .patch(s.url("api/me"))
        .header("X-XSRFToken", &xsrf)
        .body(r#"{"username": "mallory"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn user_list_shows_groups() {
    let b = users_server();
    let (code, out, err) = b.user_cmd(&["list"], None);
    assert_eq!(code, 0, "{err}");
    assert!(out.lines().any(|l| l.starts_with("alice\tteam")), "{out}");
    assert!(out.lines().any(|l| l.starts_with("bob\t")), "{out}");
}

/// The username `/api/me` names for this client (following no token).
async fn who(s: &common::Server, client: &reqwest::Client) -> String {
    let v: Value = client
        .get(s.url("api/me"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["identity"]["username"].as_str().unwrap_or("").to_string()
}

/// Whether a response sets the login cookie.
fn sets_login_cookie(r: &reqwest::Response) -> bool {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|c| c.starts_with("concord-session-") && !c.contains("Max-Age=0"))
}

/// Login CSRF: a link carrying another user's API token must not turn a logged-in browser
/// into that user. The token acts for that one request; the session stays who it was.
#[tokio::test]
async fn a_url_token_never_replaces_a_session() {
    let b = users_server();
    let bob_token = b.issue_token("bob");
    let alice_token = b.issue_token("alice");
    let s = b.start();
    let (alice, _) = s.login("alice", "alice-password-1").await;
    assert_eq!(who(&s, &alice).await, "alice");

    for page in ["", "lab", "api/me"] {
        let r = alice
            .get(s.url(&format!("{page}?token={bob_token}")))
            .send()
            .await
            .unwrap();
        assert!(r.status().as_u16() < 400, "{page}: {}", r.status());
        assert!(
            !sets_login_cookie(&r),
            "{page}: a URL token replaced the session"
        );
        assert_eq!(who(&s, &alice).await, "alice", "after {page}?token=<bob's>");
    }
    // The token is honoured for its own request only.
    let v: Value = alice
        .get(s.url(&format!("api/me?token={bob_token}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["identity"]["username"], "bob");
    assert_eq!(who(&s, &alice).await, "alice");

    // Her own token in a URL does not start a second session either.
    let r = alice
        .get(s.url(&format!("lab?token={alice_token}")))
        .send()
        .await
        .unwrap();
    assert!(!sets_login_cookie(&r));

    // A browser without a session is logged in by a URL token, as jupyter_server does.
    let fresh = s.browser();
    let r = fresh
        .get(s.url(&format!("lab?token={bob_token}")))
        .send()
        .await
        .unwrap();
    assert!(sets_login_cookie(&r));
    assert_eq!(who(&s, &fresh).await, "bob");
}
