//! concord-identity (in progress).
