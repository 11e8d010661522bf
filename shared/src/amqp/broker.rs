//! One RabbitMQ connection per process, (re)opened on demand.
//!
//! Callers ask for a [`Channel`]; when the connection is gone the next call
//! reconnects, but not sooner than a capped exponential backoff allows, so a
//! broker outage costs each caller an immediate error rather than a pile of
//! hanging connects. Each state change is logged once.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use futures_util::StreamExt;
use lapin::{uri::AMQPUri, Channel, Connection, ConnectionProperties, ConnectionStatus};
use prometheus_client::{metrics::gauge::Gauge, registry::Registry};
use tokio::sync::Mutex;

use super::Backoff;
use crate::config::SecretUrl;

/// How long one connection attempt may take before the broker counts as down.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// The largest frame asked of the broker unless `AMQP_URL` sets `frame_max`.
///
/// lapin keeps a send and a receive buffer of 32 frames each for the
/// connection's life; at RabbitMQ's default of 128 KiB they become up to
/// 8 MiB resident per process once traffic has passed through them (the
/// backend and the worker held 6-7 MiB more after load). Bodies larger than
/// a frame travel as several, which costs nothing measurable at the
/// platform's message sizes (BENCHMARKS.md).
pub const DEFAULT_FRAME_MAX: u32 = 16 * 1024;

/// Why no channel could be had.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// Not connected and the backoff says not to try again yet.
    #[error("message broker unavailable (next reconnect attempt in {retry_in:?})")]
    Unavailable {
        /// Time until the next connection attempt.
        retry_in: Duration,
    },
    /// The connection attempt did not finish in time.
    #[error("connecting to the message broker timed out")]
    ConnectTimeout,
    /// The broker or the network refused.
    #[error("message broker error: {0}")]
    Amqp(#[from] lapin::Error),
    /// `AMQP_URL` is not an AMQP URL.
    #[error("AMQP_URL is not a valid amqp:// URL: {0}")]
    InvalidUrl(String),
}

/// A cloneable handle to the process's broker connection.
#[derive(Clone)]
pub struct Broker {
    inner: Arc<Inner>,
}

struct Inner {
    url: SecretUrl,
    connection_name: String,
    connected: AtomicBool,
    connected_gauge: Gauge,
    state: Mutex<State>,
}

struct State {
    connection: Option<(Connection, ConnectionStatus)>,
    backoff: Backoff,
    next_attempt: Option<Instant>,
    failure_logged: bool,
}

impl Broker {
    /// A broker at `url` (`amqp://user:pass@host:port/vhost`); nothing is
    /// connected until the first [`channel`](Self::channel) call.
    /// `connection_name` shows in the RabbitMQ management UI.
    pub fn new(url: SecretUrl, connection_name: impl Into<String>) -> Self {
        Self {
            inner: Arc::new(Inner {
                url,
                connection_name: connection_name.into(),
                connected: AtomicBool::new(false),
                connected_gauge: Gauge::default(),
                state: Mutex::new(State {
                    connection: None,
                    backoff: Backoff::new(Duration::from_millis(200), Duration::from_secs(5)),
                    next_attempt: None,
                    failure_logged: false,
                }),
            }),
        }
    }

    /// Registers `messaging_broker_connected` (1 while connected, else 0).
    pub fn register_metrics(&self, registry: &mut Registry) {
        registry.register(
            "messaging_broker_connected",
            "1 while the connection to RabbitMQ is up, else 0",
            self.inner.connected_gauge.clone(),
        );
    }

    /// Whether the connection is currently up (for readiness probes).
    pub fn is_connected(&self) -> bool {
        self.inner.connected.load(Ordering::Acquire)
    }

    /// A new channel on the live connection, reconnecting first if needed.
    pub async fn channel(&self) -> Result<Channel, BrokerError> {
        let mut state = self.inner.state.lock().await;
        if let Some((connection, status)) = &state.connection {
            if status.connected() {
                // Bounded: on a half-open connection this would otherwise wait
                // for the heartbeat, holding the lock every caller needs.
                match tokio::time::timeout(CONNECT_TIMEOUT, connection.create_channel()).await {
                    Ok(Ok(channel)) => return Ok(channel),
                    Ok(Err(err)) => self.mark_lost(&err.to_string()),
                    Err(_) => self.mark_lost("opening a channel timed out"),
                }
            } else {
                self.mark_lost("connection closed");
            }
            state.connection = None;
        }

        if let Some(at) = state.next_attempt {
            let now = Instant::now();
            if now < at {
                return Err(BrokerError::Unavailable { retry_in: at - now });
            }
        }

        let properties = ConnectionProperties::default()
            .with_connection_name(self.inner.connection_name.clone().into());
        let uri = match connection_uri(&self.inner.url) {
            Ok(uri) => uri,
            Err(err) => return Err(self.failed(&mut state, err)),
        };
        let attempt =
            tokio::time::timeout(CONNECT_TIMEOUT, Connection::connect_uri(uri, properties)).await;
        let connection = match attempt {
            Ok(Ok(connection)) => connection,
            Ok(Err(err)) => return Err(self.failed(&mut state, BrokerError::Amqp(err))),
            Err(_) => return Err(self.failed(&mut state, BrokerError::ConnectTimeout)),
        };
        let channel = match tokio::time::timeout(CONNECT_TIMEOUT, connection.create_channel()).await
        {
            Ok(Ok(channel)) => channel,
            Ok(Err(err)) => return Err(self.failed(&mut state, BrokerError::Amqp(err))),
            Err(_) => return Err(self.failed(&mut state, BrokerError::ConnectTimeout)),
        };

        state.backoff.reset();
        state.next_attempt = None;
        state.failure_logged = false;
        self.watch(&connection);
        let status = connection.status().clone();
        state.connection = Some((connection, status));
        self.inner.connected.store(true, Ordering::Release);
        self.inner.connected_gauge.set(1);
        tracing::info!(broker = %self.inner.url, "connected to the message broker");
        Ok(channel)
    }

    fn failed(&self, state: &mut State, err: BrokerError) -> BrokerError {
        let delay = state.backoff.next_delay();
        state.next_attempt = Some(Instant::now() + delay);
        if !state.failure_logged {
            state.failure_logged = true;
            tracing::warn!(
                broker = %self.inner.url,
                error = %err,
                "message broker unreachable; retrying with backoff (logged once until it is back)"
            );
        }
        err
    }

    fn mark_lost(&self, reason: &str) {
        if self.inner.connected.swap(false, Ordering::AcqRel) {
            self.inner.connected_gauge.set(0);
            tracing::warn!(reason, "lost the connection to the message broker");
        }
    }

    /// Flags the connection as lost as soon as lapin reports an error on it,
    /// so readiness turns 503 without waiting for the next channel request.
    fn watch(&self, connection: &Connection) {
        let mut events = connection.events_listener();
        let broker = self.clone();
        actix::spawn(async move {
            while let Some(event) = events.next().await {
                if let lapin::Event::Error(err) = event {
                    // A soft (channel-level) error closes one channel, not
                    // the connection: its owner sees and handles it.
                    if is_channel_error(&err) {
                        tracing::debug!(error = %err, "channel error");
                        continue;
                    }
                    broker.mark_lost(&err.to_string());
                    break;
                }
            }
        });
    }
}

/// Whether `err` is an AMQP soft error, which closes a channel only.
fn is_channel_error(err: &lapin::Error) -> bool {
    matches!(
        err.kind(),
        lapin::ErrorKind::ProtocolError(amqp)
            if matches!(amqp.kind(), lapin::protocol::AMQPErrorKind::Soft(_))
    )
}

/// `url` parsed, with [`DEFAULT_FRAME_MAX`] unless it asks for a frame size.
/// The settings check it at start-up too, so a malformed `AMQP_URL` stops the
/// service instead of looking like a broker that is down.
pub(crate) fn connection_uri(url: &SecretUrl) -> Result<AMQPUri, BrokerError> {
    let mut uri: AMQPUri = url
        .expose()
        .parse()
        // lapin's message can quote the URL whole, password included.
        .map_err(|err: String| {
            BrokerError::InvalidUrl(err.replace(url.expose(), &url.to_string()))
        })?;
    uri.query.frame_max.get_or_insert(DEFAULT_FRAME_MAX);
    Ok(uri)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreachable_broker_fails_fast_and_then_waits_for_the_backoff() {
        actix::System::new().block_on(async {
            // Port 1 on loopback: connection refused at once.
            let broker = Broker::new(SecretUrl::new("amqp://guest:guest@127.0.0.1:1/%2f"), "test");
            let first = broker.channel().await.unwrap_err();
            assert!(matches!(first, BrokerError::Amqp(_)), "{first:?}");
            let second = broker.channel().await.unwrap_err();
            assert!(
                matches!(second, BrokerError::Unavailable { .. }),
                "{second:?}"
            );
            assert!(!broker.is_connected());
        });
    }

    #[test]
    fn the_frame_size_defaults_small_unless_the_url_sets_one() {
        let url = |u: &str| connection_uri(&SecretUrl::new(u));
        let default = url("amqp://guest:guest@127.0.0.1:5672/%2f").unwrap();
        assert_eq!(default.query.frame_max, Some(DEFAULT_FRAME_MAX));
        assert_eq!(default.vhost, "/");
        let chosen = url("amqp://127.0.0.1:5672/v?frame_max=131072").unwrap();
        assert_eq!(chosen.query.frame_max, Some(131_072));
        assert_eq!(chosen.vhost, "v");
        let bad = url("http://127.0.0.1/").unwrap_err();
        assert!(matches!(bad, BrokerError::InvalidUrl(_)), "{bad:?}");
        let unparsable = url("amqp:guest:hunter2@rabbit").unwrap_err().to_string();
        assert!(!unparsable.contains("hunter2"), "{unparsable}");
    }
}
