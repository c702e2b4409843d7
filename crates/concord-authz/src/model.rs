//! The vocabulary shared by every service: identities, actions, resources and decisions.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

use crate::path::CanonicalPath;

/// A user as jupyter_server models it (`/api/me`'s `identity`): the same six fields.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// Unique, stable login name; what policies and ownership refer to.
    pub username: String,
    /// Full name; defaults to `username`.
    pub name: String,
    /// Name to show; defaults to `name`.
    pub display_name: String,
    /// Initials for avatars; never derived automatically (as in jupyter_server).
    pub initials: Option<String>,
    /// URL of an avatar image.
    pub avatar_url: Option<String>,
    /// A CSS colour for collaboration cursors.
    pub color: Option<String>,
}

impl User {
    /// A user whose display fields all default to the username.
    pub fn named(username: &str) -> Self {
        User {
            username: username.to_string(),
            name: username.to_string(),
            display_name: username.to_string(),
            initials: None,
            avatar_url: None,
            color: None,
        }
    }
}

/// An authenticated caller: the user and the groups they belong to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The user's public model.
    pub user: User,
    /// Group names, as the identity provider knows them (users database or proxy header).
    pub groups: Vec<String>,
}

impl Identity {
    /// The caller's username.
    pub fn username(&self) -> &str {
        &self.user.username
    }

    /// Whether the caller belongs to `group`.
    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }
}

/// What a request does, as in jupyter_server: read = GET/HEAD, write = PUT/PATCH/POST/DELETE,
/// execute = running code (kernel and terminal websockets).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Look at something.
    Read,
    /// Change something.
    Write,
    /// Run code or type into a shell.
    Execute,
}

impl Action {
    /// Every action, in a stable order.
    pub const ALL: [Action; 3] = [Action::Read, Action::Write, Action::Execute];

    /// The lowercase name jupyter_server uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Read => "read",
            Action::Write => "write",
            Action::Execute => "execute",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Action {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "read" => Ok(Action::Read),
            "write" => Ok(Action::Write),
            "execute" => Ok(Action::Execute),
            other => Err(format!(
                "unknown action {other:?} (expected read, write or execute)"
            )),
        }
    }
}

/// The kinds of resource, with jupyter_server's `auth_resource` names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResourceType {
    /// `/api/status`, `/api/spec.yaml`, …
    Api,
    /// Front-end config sections (`/api/config/*`), server-wide settings.
    Config,
    /// Files and directories (`/api/contents`, `/files`, `/view`).
    Contents,
    /// CSP reports.
    Csp,
    /// The events bus.
    Events,
    /// Kernels.
    Kernels,
    /// Kernel specifications.
    Kernelspecs,
    /// Notebook conversion.
    Nbconvert,
    /// The server itself (shutdown, metrics).
    Server,
    /// Notebook sessions.
    Sessions,
    /// Terminals.
    Terminals,
}

impl ResourceType {
    /// Every resource type, in a stable order.
    pub const ALL: [ResourceType; 11] = [
        ResourceType::Api,
        ResourceType::Config,
        ResourceType::Contents,
        ResourceType::Csp,
        ResourceType::Events,
        ResourceType::Kernels,
        ResourceType::Kernelspecs,
        ResourceType::Nbconvert,
        ResourceType::Server,
        ResourceType::Sessions,
        ResourceType::Terminals,
    ];

    /// The name jupyter_server uses.
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceType::Api => "api",
            ResourceType::Config => "config",
            ResourceType::Contents => "contents",
            ResourceType::Csp => "csp",
            ResourceType::Events => "events",
            ResourceType::Kernels => "kernels",
            ResourceType::Kernelspecs => "kernelspecs",
            ResourceType::Nbconvert => "nbconvert",
            ResourceType::Server => "server",
            ResourceType::Sessions => "sessions",
            ResourceType::Terminals => "terminals",
        }
    }

    /// Whether instances of this type have an owner (their creator).
    pub fn is_owned(self) -> bool {
        matches!(
            self,
            ResourceType::Kernels | ResourceType::Sessions | ResourceType::Terminals
        )
    }
}

impl fmt::Display for ResourceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ResourceType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ResourceType::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown resource type {s:?} (expected one of: {})",
                    ResourceType::ALL.map(|t| t.as_str()).join(", ")
                )
            })
    }
}

/// Who created an owned resource (kernel, session, terminal), remembered at creation.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Owner {
    /// The creator's username.
    pub username: String,
    /// The creator's groups at creation time (for group-shared rules).
    pub groups: Vec<String>,
}

impl Owner {
    /// The owner record for resources `who` creates.
    pub fn of(who: &Identity) -> Self {
        Owner {
            username: who.user.username.clone(),
            groups: who.groups.clone(),
        }
    }
}

/// The thing a request acts on: a type plus the instance data a rule may look at.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Resource {
    /// The kind of resource.
    pub kind: ResourceType,
    /// For contents, the canonical path; for kernels, sessions and terminals, their working
    /// directory or notebook path when they have one.
    pub path: Option<CanonicalPath>,
    /// For owned resources, their creator. A resource being created is owned by the caller.
    pub owner: Option<Owner>,
    /// Instance id (kernel id, session id, terminal name) when there is one.
    pub id: Option<String>,
}

impl Resource {
    /// A resource type as a whole, with no instance data (`api`, `server`, `kernelspecs`, …).
    pub fn service(kind: ResourceType) -> Self {
        Resource {
            kind,
            path: None,
            owner: None,
            id: None,
        }
    }

    /// A file or directory.
    pub fn contents(path: CanonicalPath) -> Self {
        Resource {
            kind: ResourceType::Contents,
            path: Some(path),
            owner: None,
            id: None,
        }
    }

    /// An owned instance (kernel, session, terminal).
    pub fn owned(
        kind: ResourceType,
        id: Option<String>,
        owner: Owner,
        path: Option<CanonicalPath>,
    ) -> Self {
        Resource {
            kind,
            path,
            owner: Some(owner),
            id,
        }
    }
}

impl fmt::Display for Resource {
    /// `contents:/projects/a/x.ipynb`, `kernels:<id> (owner alice)`, `api`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind.as_str())?;
        if let Some(path) = &self.path {
            write!(f, ":{}", path.as_str())?;
        } else if let Some(id) = &self.id {
            write!(f, ":{id}")?;
        }
        if let Some(owner) = &self.owner {
            write!(f, " (owner {})", owner.username)?;
        }
        Ok(())
    }
}

/// The answer to one authorization question, with the rule that gave it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// Whether the request may go ahead.
    pub allowed: bool,
    /// The rule that decided, for the audit log and `concord policy check`: e.g.
    /// `policy.toml:14 binding "editor" for alice on /projects/a/**`, or `default deny`.
    pub rule: String,
}

impl Decision {
    /// An allowing decision.
    pub fn allow(rule: impl Into<String>) -> Self {
        Decision {
            allowed: true,
            rule: rule.into(),
        }
    }

    /// A denying decision.
    pub fn deny(rule: impl Into<String>) -> Self {
        Decision {
            allowed: false,
            rule: rule.into(),
        }
    }
}
