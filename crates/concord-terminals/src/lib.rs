//! concord-terminals (in progress).
