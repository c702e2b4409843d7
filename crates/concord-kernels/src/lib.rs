//! concord-kernels (in progress).
