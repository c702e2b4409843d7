//! Proxy mode: the user header is believed only from the configured proxy addresses.

use crate::common;

use serde_json::Value;

fn client_from(addr: [u8; 4]) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(std::net::IpAddr::from(addr))
        .build()
        .unwrap()
}

#[tokio::test]
async fn header_is_honoured_only_from_trusted_proxies() {
    let s = common::server()
        .args(&["--auth", "proxy", "--trusted-proxies", "127.0.0.1"])
        .start();
    let trusted = client_from([127, 0, 0, 1]);
    let r = trusted
        .get(s.url("api/me"))
        .header("X-Forwarded-User", "alice")
        .header("X-Forwarded-Groups", "staff, admin")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["identity"]["username"], "alice");

    // Same header from another (loopback) address: not believed.
    let untrusted = client_from([127, 0, 0, 2]);
    let r = untrusted
        .get(s.url("api/me"))
        .header("X-Forwarded-User", "alice")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    // No header from the proxy: not authenticated.
    let r = trusted.get(s.url("api/me")).send().await.unwrap();
    assert_eq!(r.status(), 403);
}

#[tokio::test]
async fn proxy_groups_reach_the_policy() {
    // owner-only: only the admin group may read the API status.
    let s = common::server()
        .args(&["--auth", "proxy", "--trusted-proxies", "127.0.0.0/8"])
        .start();
    let c = client_from([127, 0, 0, 1]);
    let r = c
        .get(s.url("api/status"))
        .header("X-Forwarded-User", "root")
        .header("X-Forwarded-Groups", "admin")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = c
        .get(s.url("api/status"))
        .header("X-Forwarded-User", "eve")
        .header("X-Forwarded-Groups", "staff")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let v: Value = r.json().await.unwrap();
    let message = v["message"].as_str().unwrap();
    assert!(
        message.contains("read") && message.contains("api"),
        "{message}"
    );
}
