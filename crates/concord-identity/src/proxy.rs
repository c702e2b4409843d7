//! Identities from a trusted authenticating proxy's headers.

use std::net::IpAddr;

use concord_authz::{Identity, User};
pub use ipnet::IpNet;

use crate::error::IdentityError;
use crate::validate::{normalize_groups, validate_username};

/// Most groups accepted from one groups header.
pub const MAX_PROXY_GROUPS: usize = 256;

/// Builds an identity from a trusted proxy's user header (a username) and optional groups
/// header (comma-separated group names; spaces around names and empty items are ignored).
/// The username and every group name must pass the usual validation.
pub fn identity_from_proxy_headers(
    user_header: &str,
    groups_header: Option<&str>,
) -> Result<Identity, IdentityError> {
    let username = user_header.trim();
    validate_username(username)?;
    let groups: Vec<&str> = groups_header
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|group| !group.is_empty())
        .collect();
    if groups.len() > MAX_PROXY_GROUPS {
        return Err(IdentityError::InvalidGroup {
            group: format!("({} groups)", groups.len()),
            reason: "too many groups in the proxy's groups header (at most 256)",
        });
    }
    Ok(Identity {
        user: User::named(username),
        groups: normalize_groups(&groups)?,
    })
}

/// Parses trusted proxy addresses: single IPs (`127.0.0.1`, `::1`) or CIDRs (`10.0.0.0/8`).
pub fn parse_trusted_proxies<S: AsRef<str>>(values: &[S]) -> Result<Vec<IpNet>, IdentityError> {
    values
        .iter()
        .map(|value| {
            let value = value.as_ref().trim();
            value
                .parse::<IpNet>()
                .or_else(|_| value.parse::<IpAddr>().map(IpNet::from))
                .map(|net| net.trunc())
                .map_err(|_| IdentityError::InvalidProxyAddress {
                    value: crate::validate::truncate_for_message(value),
                })
        })
        .collect()
}

/// Whether a peer address belongs to a trusted proxy. IPv4-mapped IPv6 peers
/// (`::ffff:10.0.0.1`, from dual-stack sockets) are matched as IPv4.
pub fn is_trusted_proxy(addr: IpAddr, trusted: &[IpNet]) -> bool {
    let addr = match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(addr),
        IpAddr::V4(_) => addr,
    };
    trusted.iter().any(|net| net.contains(&addr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_become_identities() {
        let who = identity_from_proxy_headers(" alice@example.org ", Some("b, a ,, a")).unwrap();
        assert_eq!(who.username(), "alice@example.org");
        assert_eq!(who.user.display_name, "alice@example.org");
        assert_eq!(who.groups, vec!["a", "b"]);
        assert!(identity_from_proxy_headers("bob", None)
            .unwrap()
            .groups
            .is_empty());

        for bad in ["", "  ", "a b", "../etc", "x\r\ny"] {
            assert!(identity_from_proxy_headers(bad, None).is_err(), "{bad:?}");
        }
        assert!(identity_from_proxy_headers("bob", Some("ok, not ok")).is_err());
        let many = vec!["g"; 300].join(",");
        assert!(identity_from_proxy_headers("bob", Some(&many)).is_err());
    }

    #[test]
    fn trusted_proxies() {
        let trusted =
            parse_trusted_proxies(&["127.0.0.1", "10.0.0.0/8", "fd00::/8", "::1"]).unwrap();
        for ok in ["127.0.0.1", "10.1.2.3", "fd12::1", "::1", "::ffff:10.9.9.9"] {
            assert!(is_trusted_proxy(ok.parse().unwrap(), &trusted), "{ok}");
        }
        for no in ["127.0.0.2", "11.0.0.1", "fe80::1", "::2"] {
            assert!(!is_trusted_proxy(no.parse().unwrap(), &trusted), "{no}");
        }
        assert!(is_trusted_proxy(
            "10.0.0.5".parse().unwrap(),
            &parse_trusted_proxies(&["10.0.0.1/24"]).unwrap()
        ));
        let err = parse_trusted_proxies(&["10.0.0.0/33"]).unwrap_err();
        assert!(err.to_string().contains("CIDR"), "{err}");
        assert!(parse_trusted_proxies(&["proxy.example.org"]).is_err());
    }
}
