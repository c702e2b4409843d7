//! `/api/me`, `/api/me?permissions=`, `/api/status` and `/api/spec.yaml` compared with a real
//! jupyter_server's answers.

use crate::common;

use common::jupyter::Jupyter;
use serde_json::Value;

fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
    k.sort();
    k
}

#[tokio::test]
async fn api_me_matches_jupyter_server() {
    let s = common::server().token("me-token").start();
    let j = Jupyter::start(s.root(), &[]);
    let queries = [
        "api/me",
        "api/me?permissions=%7B%7D",
        "api/me?permissions=%7B%22contents%22%3A%5B%22read%22%2C%22write%22%2C%22execute%22%5D%2C%22kernels%22%3A%5B%22read%22%2C%22execute%22%5D%2C%22terminals%22%3A%5B%22write%22%5D%7D",
        "api/me?permissions=%7B%22api%22%3A%5B%5D%7D",
    ];
    for q in queries {
        let ours: Value = s
            .owner()
            .get(s.url(q))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let theirs: Value = j
            .client()
            .get(j.url(q))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(keys(&ours), keys(&theirs), "{q}");
        assert_eq!(keys(&ours["identity"]), keys(&theirs["identity"]), "{q}");
        // The token owner holds every permission, as jupyter_server's default authorizer
        // grants every permission to its token holder.
        assert_eq!(ours["permissions"], theirs["permissions"], "{q}");
    }
    // Malformed `permissions` is a 400 in both, with the same message.
    for bad in [
        "api/me?permissions=notjson",
        "api/me?permissions=%5B1%5D",
        "api/me?permissions=%7B%22a%22%3A%22read%22%7D",
    ] {
        let ours = s.owner().get(s.url(bad)).send().await.unwrap();
        let theirs = j.client().get(j.url(bad)).send().await.unwrap();
        assert_eq!(ours.status(), theirs.status(), "{bad}");
        let ours: Value = ours.json().await.unwrap();
        let theirs: Value = theirs.json().await.unwrap();
        assert_eq!(ours["message"], theirs["message"], "{bad}");
    }
}

/// `/api/status` is exactly jupyter_server's model (concord's additions live at
/// `/api/concord/status`), and `/api/spec.yaml` is served as jupyter_server serves it.
#[tokio::test]
async fn status_and_api_spec_match_jupyter_server() {
    let s = common::server().token("status-token").start();
    let j = Jupyter::start(s.root(), &[]);
    let get = |client: reqwest::Client, url: String| async move {
        let r = client.get(url).send().await.unwrap();
        let status = r.status().as_u16();
        let ctype = r
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string());
        (status, ctype, r.text().await.unwrap())
    };
    let ours = get(s.owner(), s.url("api/status")).await;
    let theirs = get(j.client(), j.url("api/status")).await;
    assert_eq!((ours.0, &ours.1), (theirs.0, &theirs.1));
    let ours: Value = serde_json::from_str(&ours.2).unwrap();
    let theirs: Value = serde_json::from_str(&theirs.2).unwrap();
    assert_eq!(keys(&ours), keys(&theirs));

    let ours = get(s.owner(), s.url("api/spec.yaml")).await;
    let theirs = get(j.client(), j.url("api/spec.yaml")).await;
    assert_eq!(ours.0, 200);
    assert_eq!(ours, theirs);
    let anonymous = reqwest::Client::new();
    let r = anonymous.get(s.url("api/spec.yaml")).send().await.unwrap();
    assert_eq!(r.status(), 403);

    let r = s
        .owner()
        .get(s.url("api/concord/status"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let concord: Value = r.json().await.unwrap();
    assert_eq!(keys(&concord), ["confinement", "limits"]);
    assert!(concord["confinement"]["applies"].is_string(), "{concord}");
    let r = anonymous
        .get(s.url("api/concord/status"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}

/// The `Content-Security-Policy` of an answer.
fn csp(r: &reqwest::Response) -> String {
    r.headers()
        .get("content-security-policy")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

/// API answers carry jupyter_server's `APIHandler` CSP (`default-src 'none'`), successes and
/// errors alike; pages keep the page CSP.
#[tokio::test]
async fn api_csp_matches_jupyter_server() {
    let s = common::server().token("csp-token").start();
    let j = Jupyter::start(s.root(), &[]);
    std::fs::write(s.root().join("a.txt"), "a").unwrap();
    for (q, status) in [
        ("api", 200),
        ("api/status", 200),
        ("api/contents/a.txt", 200),
        ("api/contents/missing.txt", 404),
        ("api/kernelspecs", 200),
        ("api/sessions/00000000-0000-0000-0000-000000000000", 404),
        ("api/kernels/00000000-0000-0000-0000-000000000000", 404),
    ] {
        let ours = s.owner().get(s.url(q)).send().await.unwrap();
        let theirs = j.client().get(j.url(q)).send().await.unwrap();
        assert_eq!(ours.status(), status, "{q}");
        assert_eq!(theirs.status(), status, "{q}");
        assert_eq!(csp(&ours), csp(&theirs), "{q}");
        assert!(csp(&ours).ends_with("; default-src 'none'"), "{q}");
    }
    // A page: both keep the page CSP (no default-src).
    let ours = s.browser().get(s.url("login")).send().await.unwrap();
    let theirs = reqwest::get(j.url("login")).await.unwrap();
    assert_eq!(csp(&ours), csp(&theirs));
    assert!(!csp(&ours).contains("default-src"));
}
