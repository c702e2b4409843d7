//! `[collaboration]`: the options of real-time collaboration and their merge into the
//! service's [`CollabConfig`].

use anyhow::bail;
use concord_collab::CollabConfig;
use std::time::Duration;

/// The front-end extensions of jupyter-collaboration: listed as disabled in the page config
/// when collaboration is off, as their document provider cannot open a file without the
/// server side.
pub const COLLABORATION_EXTENSIONS: [&str; 2] = [
    "@jupyter/docprovider-extension",
    "@jupyter/collaboration-extension",
];

/// Collaboration options: `--collaboration-…` on the command line, `[collaboration]` in the
/// config file (keys without the prefix).
#[derive(clap::Args, Clone, Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollaborationOptions {
    /// Serve real-time collaboration (`/api/collaboration/…`; default true). When off, the
    /// collaboration front-end extensions are disabled in JupyterLab.
    #[arg(
        id = "collaboration_enabled",
        long = "collaboration",
        env = "CONCORD_COLLABORATION"
    )]
    pub enabled: Option<bool>,
    /// Seconds without a change before a shared document is saved (default 1).
    #[arg(
        id = "collaboration_save_delay",
        long = "collaboration-save-delay",
        env = "CONCORD_COLLABORATION_SAVE_DELAY"
    )]
    pub save_delay: Option<f64>,
    /// How often, in seconds, an open document's file is checked for changes made outside
    /// the room (default 1).
    #[arg(
        id = "collaboration_poll_interval",
        long = "collaboration-poll-interval",
        env = "CONCORD_COLLABORATION_POLL_INTERVAL"
    )]
    pub poll_interval: Option<f64>,
    /// Seconds an empty room is kept before its memory is released (default 60).
    #[arg(
        id = "collaboration_cleanup_delay",
        long = "collaboration-cleanup-delay",
        env = "CONCORD_COLLABORATION_CLEANUP_DELAY"
    )]
    pub cleanup_delay: Option<f64>,
    /// Participants in one document at once (default 64).
    #[arg(
        id = "collaboration_max_participants",
        long = "collaboration-max-participants",
        env = "CONCORD_COLLABORATION_MAX_PARTICIPANTS"
    )]
    pub max_participants: Option<usize>,
    /// Documents one user has open together (default 32).
    #[arg(
        id = "collaboration_max_rooms_per_user",
        long = "collaboration-max-rooms-per-user",
        env = "CONCORD_COLLABORATION_MAX_ROOMS_PER_USER"
    )]
    pub max_rooms_per_user: Option<usize>,
    /// Documents open at once, all users together (default 1024).
    #[arg(
        id = "collaboration_max_rooms",
        long = "collaboration-max-rooms",
        env = "CONCORD_COLLABORATION_MAX_ROOMS"
    )]
    pub max_rooms: Option<usize>,
    /// The largest message a participant may send, in bytes (default 32 MiB; larger closes
    /// the socket with 1009).
    #[arg(
        id = "collaboration_max_message_size",
        long = "collaboration-max-message-size",
        env = "CONCORD_COLLABORATION_MAX_MESSAGE_SIZE"
    )]
    pub max_message_size: Option<usize>,
    /// Bytes queued for one participant before it is closed (1013) as not reading (default
    /// 16 MiB).
    #[arg(
        id = "collaboration_queue_bytes",
        long = "collaboration-queue-bytes",
        env = "CONCORD_COLLABORATION_QUEUE_BYTES"
    )]
    pub queue_bytes: Option<usize>,
    /// The largest shared document (its Yjs state), in bytes (default 256 MiB).
    #[arg(
        id = "collaboration_max_document_size",
        long = "collaboration-max-document-size",
        env = "CONCORD_COLLABORATION_MAX_DOCUMENT_SIZE"
    )]
    pub max_document_size: Option<usize>,
}

super::layered!(CollaborationOptions {
    enabled,
    save_delay,
    poll_interval,
    cleanup_delay,
    max_participants,
    max_rooms_per_user,
    max_rooms,
    max_message_size,
    queue_bytes,
    max_document_size,
});

/// The collaboration service's configuration, or `None` when collaboration is off.
pub type CollaborationConfig = Option<CollabConfig>;

/// A duration in seconds, more than 0 (0, negative or not a number is an error naming
/// `--name`), or `default`.
fn positive_seconds(name: &str, value: Option<f64>, default: Duration) -> anyhow::Result<Duration> {
    match value {
        None => Ok(default),
        Some(s) if s > 0.0 => Duration::try_from_secs_f64(s)
            .map_err(|_| anyhow::anyhow!("--{name} must be a number of seconds above 0")),
        Some(_) => bail!("--{name} must be a number of seconds above 0"),
    }
}

/// A count of at least 1 (0 is an error naming `--name`), or `default`.
fn at_least_one(name: &str, value: Option<usize>, default: usize) -> anyhow::Result<usize> {
    match value {
        Some(0) => bail!("--{name} must be at least 1"),
        Some(n) => Ok(n),
        None => Ok(default),
    }
}

impl CollaborationOptions {
    /// The service's configuration (defaults applied, values checked), `None` when off.
    pub fn resolve(self) -> anyhow::Result<CollaborationConfig> {
        let defaults = CollabConfig::default();
        let mut limits = defaults.limits;
        limits.max_message_bytes = super::at_least_1024(
            "collaboration-max-message-size",
            self.max_message_size,
            limits.max_message_bytes,
        )?;
        let config = CollabConfig {
            limits,
            save_delay: positive_seconds(
                "collaboration-save-delay",
                self.save_delay,
                defaults.save_delay,
            )?,
            poll_interval: positive_seconds(
                "collaboration-poll-interval",
                self.poll_interval,
                defaults.poll_interval,
            )?,
            cleanup_delay: positive_seconds(
                "collaboration-cleanup-delay",
                self.cleanup_delay,
                defaults.cleanup_delay,
            )?,
            max_participants_per_room: at_least_one(
                "collaboration-max-participants",
                self.max_participants,
                defaults.max_participants_per_room,
            )?,
            max_rooms_per_user: at_least_one(
                "collaboration-max-rooms-per-user",
                self.max_rooms_per_user,
                defaults.max_rooms_per_user,
            )?,
            max_rooms: at_least_one(
                "collaboration-max-rooms",
                self.max_rooms,
                defaults.max_rooms,
            )?,
            max_queue_bytes: super::at_least_1024(
                "collaboration-queue-bytes",
                self.queue_bytes,
                defaults.max_queue_bytes,
            )?,
            max_document_bytes: super::at_least_1024(
                "collaboration-max-document-size",
                self.max_document_size,
                defaults.max_document_bytes,
            )?,
        };
        Ok(self.enabled.unwrap_or(true).then_some(config))
    }
}
