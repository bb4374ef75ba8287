//! The job queue on RabbitMQ.
//!
//! Topology for prefix `P` (declared idempotently on every connection):
//!
//! * `P.jobs`: durable direct exchange; jobs are published with routing key [`ROUTING_KEY`].
//! * `P.jobs.work`: durable quorum queue bound to `P.jobs`, with `x-delivery-limit` and
//!   `x-dead-letter-exchange = P.jobs.dlx`.
//! * `P.jobs.dlx`: durable fanout exchange: every dead letter reaches the dead queue, whatever
//!   routing key it carries.
//! * `P.jobs.dead`: durable quorum queue bound to `P.jobs.dlx`, kept for inspection.
//!
//! Publishing and consuming use separate connections (hence separate channels): a broker that
//! blocks publishers under memory pressure must not stop the worker from acking, and each side
//! reconnects on its own schedule. lapin's own auto-recovery is not used: a publish must fail
//! fast during an outage rather than wait for a recovery, and the consumer must retry forever.
//!
//! This module holds the queue, its settings and the connection handling both sides share;
//! `topology` declares the exchanges and queues, `publisher` and `consumer` run the two
//! connections and `settle` acks, requeues and dead-letters deliveries.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use lapin::options::BasicCancelOptions;
use lapin::uri::AMQPUri;
use lapin::{Channel, Connection, ConnectionProperties};
use tokio::sync::{Mutex, watch};
use tracing::warn;

use crate::{Delivery, JobConsumer, JobPublisher, QueueDepths, QueueError};

mod consumer;
mod publisher;
mod settle;
mod topology;

use consumer::ConsumerState;
use publisher::PublisherSlot;
pub use topology::ROUTING_KEY;
use topology::Topology;

/// TCP connect, AMQP handshake, channel setup and topology declaration together.
const OPEN_TIMEOUT: Duration = Duration::from_secs(3);
/// One publisher confirm.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(4);
/// A whole `publish` call, reconnect included: callers (HTTP handlers) must get an answer fast.
const PUBLISH_DEADLINE: Duration = Duration::from_secs(8);
/// Passive declares, ack/nack/reject, cancel and close.
const OP_TIMEOUT: Duration = Duration::from_secs(5);
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// A consumer session older than this was healthy; losing it restarts the backoff.
const STABLE_SESSION: Duration = Duration::from_secs(30);

const REPLY_SUCCESS: u16 = 200;

/// How to reach RabbitMQ and which topology to use.
#[derive(Clone)]
pub struct AmqpSettings {
    /// `amqp://user:password@host:5672/vhost` (vhost `/` is `%2f`); `amqps://` for TLS.
    pub url: String,
    /// Prefix of the exchange and queue names (`queue.prefix`).
    pub prefix: String,
    /// Unacked deliveries per consumer (`basic.qos`); 0 is treated as 1, never "unlimited".
    pub prefetch: u16,
    /// `x-delivery-limit` of the work queue: returns allowed before the broker dead-letters.
    pub delivery_limit: u32,
}

impl Default for AmqpSettings {
    fn default() -> Self {
        AmqpSettings {
            url: "amqp://127.0.0.1:5672/%2f".to_owned(),
            prefix: "packages".to_owned(),
            prefetch: 4,
            delivery_limit: 5,
        }
    }
}

impl fmt::Debug for AmqpSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AmqpSettings")
            .field("url", &redact_url(&self.url))
            .field("prefix", &self.prefix)
            .field("prefetch", &self.prefetch)
            .field("delivery_limit", &self.delivery_limit)
            .finish()
    }
}

/// The URL without its credentials, for logs and `Debug`.
fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!("{}://***{}", &url[..scheme_end], &url[at..])
        }
        _ => url.to_owned(),
    }
}

/// A failure of the AMQP operation `what`, for `map_err`.
fn amqp(what: &'static str) -> impl FnOnce(lapin::Error) -> QueueError {
    move |source| QueueError::Amqp { what, source }
}

/// Runs `op` with a deadline; a timeout becomes [`QueueError::Timeout`].
async fn bounded<T>(
    limit: Duration,
    what: &'static str,
    op: impl Future<Output = Result<T, QueueError>>,
) -> Result<T, QueueError> {
    tokio::time::timeout(limit, op)
        .await
        .unwrap_or(Err(QueueError::Timeout { what, after: limit }))
}

/// Parses the broker URL. A URL that does not parse is a settings error; its text names
/// neither the URL nor anything of it, which may hold a password.
fn parse_url(url: &str) -> Result<AMQPUri, QueueError> {
    url.parse().map_err(|reason: String| {
        let reason = if reason.contains(url) {
            "not an AMQP URL".to_owned()
        } else {
            reason
        };
        QueueError::Settings(format!("queue URL is invalid: {reason}"))
    })
}

/// RabbitMQ-backed queue implementing both [`JobPublisher`] and [`JobConsumer`]. Clones share
/// the connections.
#[derive(Clone)]
pub struct AmqpQueue {
    shared: Arc<Shared>,
}

struct Shared {
    settings: AmqpSettings,
    /// `settings.url`, parsed.
    uri: AMQPUri,
    topology: Topology,
    /// The publishing connection, opened by `connect`; also used for `depths` and `check`.
    publisher: Mutex<PublisherSlot>,
    /// The consuming connection, opened by the first `next`. Held across the wait for a
    /// delivery, which is how concurrent `next` calls share one consumer stream.
    consumer: Mutex<ConsumerState>,
    /// Set once by `close`; `next` waits on it alongside the consumer.
    closed: watch::Sender<bool>,
}

impl AmqpQueue {
    /// Connects the publishing side and declares the topology. The consuming connection is
    /// opened by the first [`JobConsumer::next`], so a publisher-only process never opens it.
    pub async fn connect(settings: AmqpSettings) -> Result<AmqpQueue, QueueError> {
        let topology = Topology::new(&settings.prefix, settings.delivery_limit)?;
        let uri = parse_url(&settings.url)?;
        let shared = Arc::new(Shared {
            settings,
            uri,
            topology,
            publisher: Mutex::new(PublisherSlot {
                link: None,
                next_generation: 0,
            }),
            consumer: Mutex::new(ConsumerState {
                session: None,
                backoff: BACKOFF_MIN,
                failures: 0,
                reconnecting: false,
            }),
            closed: watch::Sender::new(false),
        });
        shared.publisher_link().await?;
        Ok(AmqpQueue { shared })
    }

    /// The settings this queue was connected with.
    pub fn settings(&self) -> &AmqpSettings {
        &self.shared.settings
    }
}

impl fmt::Debug for AmqpQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AmqpQueue")
            .field("settings", &self.shared.settings)
            .finish()
    }
}

impl Shared {
    fn is_closed(&self) -> bool {
        *self.closed.borrow()
    }

    fn ensure_open(&self) -> Result<(), QueueError> {
        if self.is_closed() {
            Err(QueueError::Closed)
        } else {
            Ok(())
        }
    }

    /// Opens a connection: connect, handshake, one channel, topology.
    async fn open(&self, role: &str) -> Result<(Connection, Channel), QueueError> {
        // lapin's tokio support binds to the ambient runtime and panics without one.
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(QueueError::NoRuntime);
        }
        bounded(OPEN_TIMEOUT, "connecting to RabbitMQ", async {
            let properties = ConnectionProperties::default()
                .with_connection_name(format!("packages-jobs {role}").into());
            let connection = Connection::connect_uri(self.uri.clone(), properties)
                .await
                .map_err(amqp("connecting to RabbitMQ"))?;
            let channel = connection
                .create_channel()
                .await
                .map_err(amqp("opening a channel"))?;
            self.topology
                .declare(&channel)
                .await
                .map_err(amqp("declaring the job queues"))?;
            Ok((connection, channel))
        })
        .await
    }

    async fn close(&self) {
        self.closed.send_replace(true);
        // A `next` that is being polled gives the lock up as soon as it sees `closed`; one held
        // but never polled again would keep it forever, so do not wait for it indefinitely.
        let session = match tokio::time::timeout(OP_TIMEOUT, self.consumer.lock()).await {
            Ok(mut state) => state.session.take(),
            Err(_) => {
                warn!("a pending next() holds the consumer; leaving its connection to be dropped");
                None
            }
        };
        if let Some(session) = session {
            let tag = session.consumer.tag();
            let _ = tokio::time::timeout(
                OP_TIMEOUT,
                session
                    .channel
                    .basic_cancel(tag, BasicCancelOptions::default()),
            )
            .await;
            // Closing the channel hands its unacked deliveries back to the queue.
            let _ = tokio::time::timeout(
                OP_TIMEOUT,
                session.channel.close(REPLY_SUCCESS, "OK".into()),
            )
            .await;
            let _ = tokio::time::timeout(
                OP_TIMEOUT,
                session.connection.close(REPLY_SUCCESS, "OK".into()),
            )
            .await;
        }
        let publisher = self.publisher.lock().await.link.take();
        if let Some(link) = publisher
            && link.connection.status().connected()
        {
            let _ = tokio::time::timeout(
                OP_TIMEOUT,
                link.connection.close(REPLY_SUCCESS, "OK".into()),
            )
            .await;
        }
    }
}

#[async_trait]
impl JobPublisher for AmqpQueue {
    async fn publish(&self, body: Vec<u8>) -> Result<(), QueueError> {
        self.shared.ensure_open()?;
        bounded(PUBLISH_DEADLINE, "publishing", self.shared.publish(&body)).await
    }

    async fn check(&self) -> Result<(), QueueError> {
        self.shared.ensure_open()?;
        bounded(OPEN_TIMEOUT + OP_TIMEOUT, "checking RabbitMQ", async {
            self.shared.publisher_link().await.map(|_| ())
        })
        .await
    }
}

#[async_trait]
impl JobConsumer for AmqpQueue {
    async fn next(&self) -> Result<Delivery, QueueError> {
        let mut closed = self.shared.closed.subscribe();
        if *closed.borrow_and_update() {
            return Err(QueueError::Closed);
        }
        tokio::select! {
            biased;
            _ = closed.wait_for(|closed| *closed) => Err(QueueError::Closed),
            delivery = self.shared.next_delivery() => Ok(delivery),
        }
    }

    async fn close(&self) {
        self.shared.close().await;
    }

    async fn depths(&self) -> Result<QueueDepths, QueueError> {
        self.shared.ensure_open()?;
        bounded(
            OPEN_TIMEOUT + OP_TIMEOUT,
            "reading queue depths",
            self.shared.depths(),
        )
        .await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn redacts_credentials() {
        assert_eq!(
            redact_url("amqp://guest:secret@rabbit:5672/%2f"),
            "amqp://***@rabbit:5672/%2f"
        );
        assert_eq!(redact_url("amqp://rabbit:5672"), "amqp://rabbit:5672");
        let settings = AmqpSettings {
            url: "amqps://u:p%40ss@h/v".to_owned(),
            ..AmqpSettings::default()
        };
        assert!(!format!("{settings:?}").contains("p%40ss"));
    }

    #[tokio::test]
    async fn connect_failure_is_retryable_and_quick() {
        // Port 1 on localhost: refused immediately.
        let settings = AmqpSettings {
            url: "amqp://guest:guest@127.0.0.1:1/%2f".to_owned(),
            ..AmqpSettings::default()
        };
        // Bounded by OPEN_TIMEOUT: a guard against hanging, not a speed claim.
        let result = tokio::time::timeout(OPEN_TIMEOUT * 10, AmqpQueue::connect(settings))
            .await
            .expect("connecting to a closed port must not hang");
        assert!(
            matches!(&result, Err(e @ QueueError::Amqp { .. }) if e.is_retryable()),
            "{result:?}"
        );
    }

    #[tokio::test]
    async fn invalid_url_is_a_settings_error() {
        for url in [
            "not a url",
            "amqp:guest:s3cret@rabbit",
            "http://guest:s3cret@rabbit",
            "amqp://guest:s3cret@rabbit/%2f?heartbeat=often",
        ] {
            let settings = AmqpSettings {
                url: url.to_owned(),
                ..AmqpSettings::default()
            };
            let result = AmqpQueue::connect(settings).await;
            assert!(
                matches!(&result, Err(e @ QueueError::Settings(_)) if !e.is_retryable()),
                "{url}: {result:?}"
            );
            assert!(!format!("{result:?}").contains("s3cret"), "{result:?}");
        }
    }
}
