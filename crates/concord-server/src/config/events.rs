//! `[events]`: the options of `/api/events` and their merge into the bus's [`EventLimits`].

use crate::events::EventLimits;

/// Settings of `/api/events` (`[events]` in the config file).
#[derive(clap::Args, Clone, Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsOptions {
    /// Bytes of events queued for one subscriber before it is disconnected (1008) as too
    /// slow (default 1 MiB).
    #[arg(
        id = "events_queue_bytes",
        long = "events-queue-bytes",
        env = "CONCORD_EVENTS_QUEUE_BYTES"
    )]
    pub queue_bytes: Option<usize>,
    /// Seconds a subscriber's socket may take to accept a frame before it is disconnected
    /// as not reading (default 10).
    #[arg(
        id = "events_write_timeout",
        long = "events-write-timeout",
        env = "CONCORD_EVENTS_WRITE_TIMEOUT"
    )]
    pub write_timeout: Option<u64>,
    /// The largest websocket message a subscriber may send, in bytes (it has nothing to
    /// send); larger closes the socket with 1009 (default 65536).
    #[arg(
        id = "events_max_message_size",
        long = "events-max-message-size",
        env = "CONCORD_EVENTS_MAX_MESSAGE_SIZE"
    )]
    pub max_message_size: Option<usize>,
}

super::layered!(EventsOptions {
    queue_bytes,
    write_timeout,
    max_message_size,
});

impl EventsOptions {
    /// The event bus's limits (defaults applied, values checked).
    pub fn resolve(self) -> anyhow::Result<EventLimits> {
        let defaults = EventLimits::default();
        Ok(EventLimits {
            queue_bytes: super::at_least_1024(
                "events-queue-bytes",
                self.queue_bytes,
                defaults.queue_bytes,
            )?,
            write_timeout: super::at_least_a_second(
                "events-write-timeout",
                self.write_timeout,
                defaults.write_timeout,
            )?,
            max_message_size: super::at_least_1024(
                "events-max-message-size",
                self.max_message_size,
                defaults.max_message_size,
            )?,
        })
    }
}
