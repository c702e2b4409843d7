//! concord-authz (in progress).
