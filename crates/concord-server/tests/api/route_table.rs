//! Walks the whole route table: every route refuses an anonymous caller, and every route
//! that declares a permission refuses a logged-in caller without it. A route added later
//! without a declaration, or with a wrong one, fails here.

use crate::common;

use concord_server::http::routes::{self, Access, Verb};

/// Routes meant to be public: adding one is a decision, so it is listed here by hand.
const PUBLIC: &[&str] = &[
    "/",
    "/api",
    "/login",
    "/logout",
    "/static/{*path}",
    "/favicon.ico",
    "/lab/extensions/{*path}",
    "/lab/api/themes/{*path}",
];

fn concrete(pattern: &str) -> String {
    pattern
        .split('/')
        .map(|seg| {
            if seg.starts_with("{*") {
                "some/path.ipynb".to_string()
            } else if seg.starts_with('{') {
                "some-id".to_string()
            } else {
                seg.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn method(verb: Verb) -> reqwest::Method {
    match verb {
        Verb::Get | Verb::Ws => reqwest::Method::GET,
        Verb::Post => reqwest::Method::POST,
        Verb::Put => reqwest::Method::PUT,
        Verb::Patch => reqwest::Method::PATCH,
        Verb::Delete => reqwest::Method::DELETE,
    }
}

#[tokio::test]
async fn every_route_refuses_anonymous_and_unprivileged_callers() {
    let b = common::server().args(&["--auth", "users"]);
    // owner-only: "nobody" is a user but not in the admin group, so holds no permission.
    b.add_user("nobody", "nobody-password", &[]);
    let s = b.start();
    let (nobody, xsrf) = s.login("nobody", "nobody-password").await;
    let anon = s.browser();
    let mut failures = Vec::new();
    let table = routes::table();
    assert!(table.len() >= 8, "the table looks empty");
    for route in &table {
        let url = s.url(&concrete(route.pattern));
        let m = method(route.verb);
        let label = format!("{} {}", route.verb.as_str(), route.pattern);
        if route.access == Access::Public {
            // Exactly as listed: a row is public only if this list names its pattern.
            if !PUBLIC.contains(&route.pattern) {
                failures.push(format!("{label}: public but not in the PUBLIC list"));
            }
            continue;
        }
        // Anonymous: 403 for the API and websockets, a login redirect for pages.
        let r = anon
            .request(m.clone(), &url)
            .body("{}")
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let ok = if route.is_api() {
            status == 403
        } else if route.verb == Verb::Get {
            status == 302
                && r.headers()["location"]
                    .to_str()
                    .unwrap()
                    .contains("login?next=")
        } else {
            status == 403
        };
        if !ok {
            failures.push(format!("{label}: anonymous got {status}"));
        }
        // Logged in, without the permission.
        if let Access::Requires(..) = route.access {
            let r = nobody
                .request(m, &url)
                .header("X-XSRFToken", &xsrf)
                .body("{}")
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            if status != 403 && status != 404 {
                failures.push(format!("{label}: unprivileged caller got {status}"));
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}
