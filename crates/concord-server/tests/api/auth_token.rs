//! Token mode (the default): the three token forms, the cookie a `?token=` page load sets,
//! XSRF, Host and Origin checks, and the API's error shape.

use crate::common;

use reqwest::StatusCode;
use serde_json::Value;

#[tokio::test]
async fn api_version_needs_no_login_and_status_does() {
    let s = common::server().token("secret-token-1").start();
    let anon = s.browser();
    let r = anon.get(s.url("api")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert!(v["version"].is_string());

    let r = anon.get(s.url("api/status")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let v: Value = r.json().await.unwrap();
    assert!(v["message"].as_str().unwrap().contains("Not authenticated"));
    assert!(v.get("reason").is_some());

    let r = s.owner().get(s.url("api/status")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    for key in ["started", "last_activity", "kernels", "connections"] {
        assert!(v.get(key).is_some(), "missing {key} in {v}");
    }
    assert!(v["started"].as_str().unwrap().ends_with('Z'));
}

#[tokio::test]
async fn three_token_forms_and_wrong_tokens() {
    let s = common::server().token("tok-abc").start();
    let c = reqwest::Client::new();
    for header in ["token tok-abc", "Bearer tok-abc", "bearer tok-abc"] {
        let r = c
            .get(s.url("api/me"))
            .header("Authorization", header)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{header}");
    }
    let r = c.get(s.url("api/me?token=tok-abc")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    for header in ["token wrong", "Bearer tok-ab", "Basic tok-abc", "tok-abc"] {
        let r = c
            .get(s.url("api/me"))
            .header("Authorization", header)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{header}");
    }
    let r = c.get(s.url("api/me?token=nope")).send().await.unwrap();
    assert_eq!(r.status(), 403);
}

#[tokio::test]
async fn token_in_url_logs_the_browser_in_and_logout_ends_it() {
    let b = common::server().token("tok-url");
    std::fs::write(b.root().join("hello.txt"), "hello").unwrap();
    let s = b.start();
    let browser = s.browser();
    // A page without credentials redirects to the login page, keeping where to return.
    let r = browser
        .get(s.url("files/hello.txt?x=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    assert!(location.contains("login?next="), "{location}");
    assert!(location.contains("hello.txt"), "{location}");

    let r = browser
        .get(s.url("files/hello.txt?token=tok-url"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let cookie = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|c| c.starts_with("concord-session"))
        .expect("login cookie set");
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Lax"), "{cookie}");
    assert!(cookie.contains("Path=/"), "{cookie}");

    // The cookie alone now authenticates.
    let r = browser.get(s.url("api/me")).send().await.unwrap();
    assert_eq!(r.status(), 200);

    // A copy of the cookie dies with logout.
    let raw = cookie.split(';').next().unwrap().to_string();
    let r = browser.get(s.url("logout")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = reqwest::Client::new()
        .get(s.url("api/me"))
        .header("Cookie", &raw)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}

#[tokio::test]
async fn login_form_accepts_the_token() {
    let s = common::server().token("tok-form").start();
    let browser = s.browser();
    let xsrf = s.xsrf(&browser).await;
    let r = browser
        .post(s.url("login"))
        .form(&[("password", "bad"), ("_xsrf", xsrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.text().await.unwrap().contains("Invalid token"));
    let r = browser
        .post(s.url("login"))
        .form(&[
            ("password", "tok-form"),
            ("_xsrf", xsrf.as_str()),
            ("next", "/api/me"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    assert_eq!(r.headers()["location"], "/api/me");
    let r = browser.get(s.url("api/me")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn next_only_redirects_within_the_server() {
    let s = common::server().token("tok-next").start();
    for evil in [
        "https://evil.example/",
        "//evil.example/",
        "/\\evil.example",
        "http:evil",
    ] {
        let browser = s.browser();
        let xsrf = s.xsrf(&browser).await;
        let r = browser
            .post(s.url("login"))
            .form(&[("password", "tok-next"), ("_xsrf", &xsrf), ("next", evil)])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 302);
        assert_eq!(r.headers()["location"], "/", "next={evil}");
    }
}

#[tokio::test]
async fn xsrf_matrix() {
    let s = common::server().token("tok-x").start();
    // Logged in by cookie.
    let browser = s.browser();
    let r = browser.get(s.url("?token=tok-x")).send().await.unwrap();
    let xsrf = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|c| c.starts_with("_xsrf="))
        .map(|c| c["_xsrf=".len()..].split(';').next().unwrap().to_string())
        .expect("xsrf cookie");
    let body = r#"{"color": "red"}"#;

    // Cookie + no header → 403.
    let r = browser
        .patch(s.url("api/me"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let v: Value = r.json().await.unwrap();
    assert!(v["message"].as_str().unwrap().contains("_xsrf"));
    // Cookie + wrong header → 403.
    let r = browser
        .patch(s.url("api/me"))
        .header("X-XSRFToken", "wrong")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // Cookie + matching header → passes the XSRF check.
    let r = browser
        .patch(s.url("api/me"))
        .header("X-XSRFToken", &xsrf)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_ne!(r.status(), 403, "{:?}", r.text().await);
    // Token header, no XSRF header → passes.
    let r = s
        .owner()
        .patch(s.url("api/me"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_ne!(r.status(), 403);
    // GET is never XSRF-checked.
    let r = browser.get(s.url("api/me")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn cross_origin_and_foreign_host_are_refused() {
    let s = common::server().token("tok-o").start();
    let owner = s.owner();
    // A token cannot be forged by another site: its requests skip the Origin check (as
    // jupyter_server); a browser's cookie can, so those are held to it.
    let r = owner
        .get(s.url("api/status"))
        .header("Origin", "http://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let browser = s.browser();
    let r = browser
        .get(s.url("api/status?token=tok-o"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = browser
        .get(s.url("api/status"))
        .header("Origin", "http://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = owner
        .get(s.url("api/status"))
        .header("Origin", format!("http://{}", s.host()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // DNS rebinding: a name that is not this server.
    let r = owner
        .get(s.url("api/status"))
        .header("Host", "evil.example:80")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let v: Value = r.json().await.unwrap();
    assert!(v["message"].as_str().unwrap().contains("non-local"));
    for ok_host in ["localhost", "127.0.0.1"] {
        let r = owner
            .get(s.url("api/status"))
            .header("Host", ok_host)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{ok_host}");
    }
}

#[tokio::test]
async fn security_headers_and_unknown_routes() {
    let s = common::server().token("tok-h").start();
    let r = s.owner().get(s.url("api/status")).send().await.unwrap();
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    let csp = r.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("frame-ancestors 'self'"), "{csp}");
    let r = s.owner().get(s.url("api/nope")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let v: Value = r.json().await.unwrap();
    assert!(v["message"].is_string());
    let r = s.owner().delete(s.url("api/status")).send().await.unwrap();
    assert_eq!(r.status(), 405);
    // Every API answer is data, never a document: jupyter_server's APIHandler CSP, on
    // successes, errors, refusals and API paths no route serves; pages keep theirs.
    const API_CSP: &str =
        "frame-ancestors 'self'; report-uri /api/security/csp-report; default-src 'none'";
    let anonymous = reqwest::Client::new();
    for (client, method, path, status) in [
        (s.owner(), "GET", "api/status", 200),
        (s.owner(), "GET", "api/nope", 404),
        (s.owner(), "GET", "api/contents/missing", 404),
        (s.owner(), "DELETE", "api/status", 405),
        (s.owner(), "POST", "api/kernels", 400),
        (s.owner(), "GET", "lab/api/nope", 404),
        (anonymous.clone(), "GET", "api/status", 403),
    ] {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let r = client
            .request(method, s.url(path))
            .body("{")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status, "{path}");
        assert_eq!(r.headers()["content-security-policy"], API_CSP, "{path}");
    }
    let r = anonymous.get(s.url("login")).send().await.unwrap();
    let csp = r.headers()["content-security-policy"].to_str().unwrap();
    assert!(!csp.contains("default-src"), "{csp}");
}

#[tokio::test]
async fn body_size_limit() {
    let s = common::server()
        .token("tok-b")
        .args(&["--max-body-size", "1000"])
        .start();
    let big = format!("{{\"color\": \"{}\"}}", "x".repeat(5000));
    let r = s
        .owner()
        .patch(s.url("api/me"))
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let v: Value = r.json().await.unwrap();
    assert!(v["message"].as_str().unwrap().contains("larger"));
}

#[tokio::test]
async fn empty_token_is_refused_and_port_retries() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = std::process::Command::new(common::concord_bin());
    let out = cmd
        .args(["--port", "0", "--state-dir"])
        .arg(dir.path())
        .env("CONCORD_TOKEN", "")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("empty token"));

    // A taken port: the next one is used.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let s = common::server()
        .token("tok-p")
        .args(&["--port", &port.to_string(), "--port-retries", "20"])
        .start();
    assert!(!s.base.contains(&format!(":{port}/")), "{}", s.base);
}

#[tokio::test]
async fn sigterm_stops_cleanly() {
    let mut s = common::server().token("tok-t").start();
    let status = s.terminate(10).expect("exited within 10 s");
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn tokens_never_reach_the_log() {
    let s = common::server()
        .token("very-secret-token-in-url")
        .args(&["--log-level", "debug"])
        .start();
    let c = reqwest::Client::new();
    c.get(s.url("api/status?token=very-secret-token-in-url"))
        .send()
        .await
        .unwrap();
    c.get(s.url("api/nope?token=very-secret-token-in-url&x=1"))
        .send()
        .await
        .unwrap();
    c.get(s.url("api/status?token=wrong-token-guess"))
        .send()
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let logged: Vec<String> = s
        .drain_output()
        .into_iter()
        .filter(|l| l.starts_with("err:"))
        .collect();
    let text = logged.join("\n");
    assert!(text.contains("/api/nope"), "requests are logged: {text}");
    assert!(!text.contains("very-secret-token-in-url"), "{text}");
    assert!(!text.contains("wrong-token-guess"), "{text}");
}
