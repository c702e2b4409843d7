//! Scopes of API tokens: a subset of the owner's rights a token is limited to.
//!
//! A scope is a list of grants in the policy's vocabulary, `type:action` or
//! `type:action:PATH-PATTERN` (`contents:read:/projects/a/**`, `kernels:*`, `*:read`). A
//! request made with a scoped token is allowed only when the owner's rights allow it (the
//! policy, as for the owner) **and** some grant of the scope covers it, so a token never
//! exceeds what its owner may do now.

use std::fmt;

use crate::cedar::carries_path;
use crate::model::{Action, Decision, Identity, Resource, ResourceType};
use crate::policy::PathPattern;

/// Most grants one scope may hold.
pub const MAX_SCOPE_GRANTS: usize = 64;
/// Longest grant, in bytes.
const MAX_GRANT_BYTES: usize = 1024;

/// One grant of a token scope: some actions on some resource types, optionally limited to
/// a path pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScopeGrant {
    /// The resource types covered (all of them for `*`).
    pub kinds: Vec<ResourceType>,
    /// The actions covered (all three for `*`).
    pub actions: Vec<Action>,
    /// The path limit, if any; `{username}` stands for the token's owner.
    pub path: Option<PathPattern>,
    /// The grant as written (normalised: no surrounding spaces).
    pub text: String,
}

impl ScopeGrant {
    /// Parses `type:action` or `type:action:PATH-PATTERN`.
    pub fn parse(text: &str) -> Result<ScopeGrant, String> {
        let text = text.trim();
        if text.len() > MAX_GRANT_BYTES {
            return Err(format!(
                "scope grant is longer than {MAX_GRANT_BYTES} bytes"
            ));
        }
        // A path pattern may not contain ':' in its type or action part, but may in its path.
        let mut parts = text.splitn(3, ':');
        let (Some(kind), Some(action)) = (parts.next(), parts.next()) else {
            return Err(format!(
                "scope grant {text:?} must look like \"type:action\" or \"type:action:/path/pattern\" (e.g. \"contents:read:/projects/a/**\", \"kernelspecs:read\")"
            ));
        };
        let kinds: Vec<ResourceType> = if kind == "*" {
            ResourceType::ALL.to_vec()
        } else {
            vec![kind
                .parse::<ResourceType>()
                .map_err(|e| format!("in scope grant {text:?}: {e}"))?]
        };
        let actions: Vec<Action> = if action == "*" {
            Action::ALL.to_vec()
        } else {
            vec![action
                .parse::<Action>()
                .map_err(|e| format!("in scope grant {text:?}: {e}"))?]
        };
        let path = match parts.next() {
            None => None,
            Some(pattern) => {
                if matches!(pattern, "own" | "group" | "any") {
                    return Err(format!(
                        "in scope grant {text:?}: a token scope is limited by path, not by owner (the owner's own rights decide whose kernels they reach); write \"{kind}:{action}\" or \"{kind}:{action}:/path/**\""
                    ));
                }
                let pattern = PathPattern::parse(pattern)
                    .map_err(|e| format!("in scope grant {text:?}: {e}"))?;
                if kind != "*" && !carries_path(kinds[0]) {
                    return Err(format!(
                        "in scope grant {text:?}: {kind} has no paths; a path only limits contents, kernels, sessions and terminals"
                    ));
                }
                Some(pattern)
            }
        };
        Ok(ScopeGrant {
            kinds,
            actions,
            path,
            text: text.to_string(),
        })
    }

    /// Whether this grant covers `action` on `resource` for a token owned by `username`.
    ///
    /// Paths limit as in the policy: only resources that carry a path (contents; kernels,
    /// sessions and terminals when they have one). A question without a path ("may they
    /// read contents at all?") is covered when the grant covers the type and action somewhere.
    pub fn covers(&self, username: &str, action: Action, resource: &Resource) -> bool {
        if !self.actions.contains(&action) || !self.kinds.contains(&resource.kind) {
            return false;
        }
        let Some(pattern) = &self.path else {
            return true;
        };
        if !carries_path(resource.kind) {
            return true;
        }
        match &resource.path {
            None => true,
            Some(path) => pattern
                .for_user(username)
                .is_some_and(|pattern| pattern.matches(path.as_str())),
        }
    }
}

impl fmt::Display for ScopeGrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Why a scope was refused: every bad grant, each with its reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScopeError {
    /// One message per problem, in the order of the grants.
    pub messages: Vec<String>,
}

impl fmt::Display for ScopeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.messages.join("; "))
    }
}

impl std::error::Error for ScopeError {}

/// The scope of an API token: what the token may be used for, within its owner's rights.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenScope {
    grants: Vec<ScopeGrant>,
}

impl TokenScope {
    /// Parses and validates a scope; every bad grant is reported. A scope needs at least
    /// one grant (a token without a scope is written as no scope at all).
    pub fn parse<S: AsRef<str>>(grants: &[S]) -> Result<TokenScope, ScopeError> {
        let mut messages = Vec::new();
        if grants.is_empty() {
            messages.push(
                "a scope needs at least one grant such as \"contents:read:/projects/a/**\""
                    .to_string(),
            );
        }
        if grants.len() > MAX_SCOPE_GRANTS {
            messages.push(format!(
                "a scope has at most {MAX_SCOPE_GRANTS} grants ({} given)",
                grants.len()
            ));
        }
        let mut parsed = Vec::with_capacity(grants.len());
        for grant in grants.iter().take(MAX_SCOPE_GRANTS) {
            match ScopeGrant::parse(grant.as_ref()) {
                Ok(grant) => parsed.push(grant),
                Err(message) => messages.push(message),
            }
        }
        if messages.is_empty() {
            Ok(TokenScope { grants: parsed })
        } else {
            Err(ScopeError { messages })
        }
    }

    /// The grants, in the order given.
    pub fn grants(&self) -> &[ScopeGrant] {
        &self.grants
    }

    /// The grants as written, for storing and listing.
    pub fn to_strings(&self) -> Vec<String> {
        self.grants.iter().map(|g| g.text.clone()).collect()
    }

    /// Whether some grant covers `action` on `resource` for a token owned by `username`.
    pub fn allows(&self, username: &str, action: Action, resource: &Resource) -> bool {
        self.grants
            .iter()
            .any(|grant| grant.covers(username, action, resource))
    }

    /// Narrows the owner's `decision` to this scope: an allowed request the scope does not
    /// cover becomes a denial naming the scope; a denial stays as it is (its rule is the
    /// owner's).
    pub fn restrict(
        &self,
        who: &Identity,
        action: Action,
        resource: &Resource,
        decision: Decision,
    ) -> Decision {
        if !decision.allowed || self.allows(who.username(), action, resource) {
            return decision;
        }
        Decision::deny(format!(
            "token scope: no grant of the token's scope ({}) covers {action} on {resource}",
            self.to_strings().join(", ")
        ))
    }
}

impl fmt::Display for TokenScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_strings().join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Owner, User};
    use crate::path::CanonicalPath;

    fn contents(path: &str) -> Resource {
        Resource::contents(CanonicalPath::parse(path).expect("path"))
    }

    #[test]
    fn grants_parse_in_the_policy_vocabulary() {
        let scope = TokenScope::parse(&[
            "contents:read:/projects/a/**",
            "kernelspecs:read",
            "*:read",
            "kernels:*:/home/{username}/**",
        ])
        .expect("valid scope");
        assert_eq!(scope.grants().len(), 4);
        assert_eq!(scope.grants()[0].kinds, vec![ResourceType::Contents]);
        assert_eq!(scope.grants()[0].actions, vec![Action::Read]);
        assert_eq!(
            scope.grants()[0].path,
            Some(PathPattern::Subtree("/projects/a".into()))
        );
        assert_eq!(scope.grants()[2].kinds.len(), ResourceType::ALL.len());
        assert_eq!(scope.grants()[3].actions.len(), 3);
    }

    #[test]
    fn bad_grants_are_all_reported_clearly() {
        let err = TokenScope::parse(&[
            "contents:fly",
            "folders:read",
            "contents:read:/a/*.ipynb",
            "api:read:/a/**",
            "kernels:execute:own",
            "contents",
            "contents:read:relative",
        ])
        .unwrap_err();
        let m = &err.messages;
        assert_eq!(m.len(), 7, "{m:#?}");
        assert!(m[0].contains("unknown action \"fly\""), "{}", m[0]);
        assert!(
            m[1].contains("unknown resource type \"folders\""),
            "{}",
            m[1]
        );
        assert!(m[2].contains("bad path pattern \"/a/*.ipynb\""), "{}", m[2]);
        assert!(m[3].contains("api has no paths"), "{}", m[3]);
        assert!(m[4].contains("limited by path, not by owner"), "{}", m[4]);
        assert!(m[5].contains("must look like"), "{}", m[5]);
        assert!(m[6].contains("must start with /"), "{}", m[6]);
        assert!(TokenScope::parse::<&str>(&[]).is_err());
        let too_many: Vec<String> = (0..=MAX_SCOPE_GRANTS).map(|_| "api:read".into()).collect();
        assert!(TokenScope::parse(&too_many).is_err());
    }

    #[test]
    fn paths_limit_like_the_policy() {
        let scope = TokenScope::parse(&["contents:read:/projects/a/**", "*:execute:/work/**"])
            .expect("valid scope");
        assert!(scope.allows("alice", Action::Read, &contents("/projects/a")));
        assert!(scope.allows("alice", Action::Read, &contents("/projects/a/x.ipynb")));
        assert!(!scope.allows("alice", Action::Read, &contents("/projects/ab")));
        assert!(!scope.allows("alice", Action::Write, &contents("/projects/a/x.ipynb")));
        // A type-level question: the scope covers contents:read somewhere.
        assert!(scope.allows(
            "alice",
            Action::Read,
            &Resource::service(ResourceType::Contents)
        ));
        assert!(!scope.allows(
            "alice",
            Action::Write,
            &Resource::service(ResourceType::Contents)
        ));
        let owner = Owner::of(&Identity {
            user: User::named("alice"),
            groups: vec![],
        });
        let kernel = |path: Option<&str>| {
            Resource::owned(
                ResourceType::Kernels,
                Some("k".into()),
                owner.clone(),
                path.map(|p| CanonicalPath::parse(p).expect("path")),
            )
        };
        assert!(scope.allows("alice", Action::Execute, &kernel(Some("/work/n.ipynb"))));
        assert!(!scope.allows("alice", Action::Execute, &kernel(Some("/home/n.ipynb"))));
        // Without a path a kernel is not limited by paths, as in the policy.
        assert!(scope.allows("alice", Action::Execute, &kernel(None)));
        // `*` with a path does not limit pathless types.
        assert!(scope.allows(
            "alice",
            Action::Execute,
            &Resource::service(ResourceType::Events)
        ));
    }

    #[test]
    fn username_stands_for_the_owner() {
        let scope = TokenScope::parse(&["contents:*:/home/{username}/**"]).expect("valid");
        assert!(scope.allows("bob", Action::Write, &contents("/home/bob/x")));
        assert!(!scope.allows("bob", Action::Write, &contents("/home/alice/x")));
    }

    #[test]
    fn restrict_only_narrows() {
        let scope = TokenScope::parse(&["contents:read"]).expect("valid");
        let who = Identity {
            user: User::named("alice"),
            groups: vec![],
        };
        let resource = contents("/a");
        let denied = Decision::deny("policy.toml:3: deny");
        assert_eq!(
            scope.restrict(&who, Action::Read, &resource, denied.clone()),
            denied
        );
        let allowed = Decision::allow("policy.toml:1: binding");
        assert_eq!(
            scope.restrict(&who, Action::Read, &resource, allowed.clone()),
            allowed
        );
        let narrowed = scope.restrict(&who, Action::Write, &resource, allowed);
        assert!(!narrowed.allowed);
        assert!(
            narrowed.rule.starts_with("token scope:"),
            "{}",
            narrowed.rule
        );
    }
}
