//! concord-contents (in progress).
