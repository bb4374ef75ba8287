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

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures_util::StreamExt;
use lapin::options::{
    BasicCancelOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    BasicRejectOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{
    Acker, BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, Consumer,
    ExchangeKind,
};
use tokio::sync::{Mutex, watch};
use tracing::{info, warn};

use crate::{Delivery, JobConsumer, JobPublisher, QueueDepths, QueueError, Settle};

/// Routing key of every job message on `P.jobs`.
pub const ROUTING_KEY: &str = "work";

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

/// Exchange and queue names derived from the prefix.
#[derive(Debug, Clone)]
struct Topology {
    exchange: ShortString,
    work: ShortString,
    dlx: ShortString,
    dead: ShortString,
    delivery_limit: u32,
}

impl Topology {
    fn new(prefix: &str, delivery_limit: u32) -> Result<Self, QueueError> {
        // lapin panics on names longer than 255 bytes; refuse them here instead.
        let name = |suffix: &str| {
            ShortString::try_new(format!("{prefix}{suffix}")).map_err(|e| {
                QueueError::Unavailable(format!("invalid queue prefix {prefix:?}: {e}"))
            })
        };
        Ok(Topology {
            exchange: name(".jobs")?,
            work: name(".jobs.work")?,
            dlx: name(".jobs.dlx")?,
            dead: name(".jobs.dead")?,
            delivery_limit,
        })
    }

    async fn declare(&self, channel: &Channel) -> lapin::Result<()> {
        let durable = ExchangeDeclareOptions {
            durable: true,
            ..ExchangeDeclareOptions::default()
        };
        channel
            .exchange_declare(
                self.exchange.clone(),
                ExchangeKind::Direct,
                durable,
                FieldTable::default(),
            )
            .await?;
        channel
            .exchange_declare(
                self.dlx.clone(),
                ExchangeKind::Fanout,
                durable,
                FieldTable::default(),
            )
            .await?;

        channel
            .queue_declare(
                self.dead.clone(),
                QueueDeclareOptions::durable(),
                quorum_args(),
            )
            .await?;
        channel
            .queue_bind(
                self.dead.clone(),
                self.dlx.clone(),
                ShortString::from(""),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;

        let mut work_args = quorum_args();
        work_args.insert(
            "x-delivery-limit".into(),
            AMQPValue::LongLongInt(i64::from(self.delivery_limit)),
        );
        work_args.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString(self.dlx.as_str().into()),
        );
        channel
            .queue_declare(self.work.clone(), QueueDeclareOptions::durable(), work_args)
            .await?;
        channel
            .queue_bind(
                self.work.clone(),
                self.exchange.clone(),
                ShortString::from(ROUTING_KEY),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
    }
}

fn quorum_args() -> FieldTable {
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    args
}

fn unavailable(context: &str, error: impl fmt::Display) -> QueueError {
    QueueError::Unavailable(format!("{context}: {error}"))
}

/// Runs `op` with a deadline; a timeout becomes `Unavailable`.
async fn bounded<T>(
    limit: Duration,
    context: &str,
    op: impl Future<Output = Result<T, QueueError>>,
) -> Result<T, QueueError> {
    tokio::time::timeout(limit, op).await.unwrap_or_else(|_| {
        Err(unavailable(
            context,
            format_args!("timed out after {limit:?}"),
        ))
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
    topology: Topology,
    /// The publishing connection, opened by `connect`; also used for `depths` and `check`.
    publisher: Mutex<PublisherSlot>,
    /// The consuming connection, opened by the first `next`. Held across the wait for a
    /// delivery, which is how concurrent `next` calls share one consumer stream.
    consumer: Mutex<ConsumerState>,
    /// Set once by `close`; `next` waits on it alongside the consumer.
    closed: watch::Sender<bool>,
}

struct PublisherSlot {
    link: Option<PublisherLink>,
    /// Generation of the next link; above 0 once a link was opened, so a new one is a reconnect.
    next_generation: u64,
}

#[derive(Clone)]
struct PublisherLink {
    /// Tells a stale link (replaced by a concurrent reconnect) from the current one.
    generation: u64,
    connection: Arc<Connection>,
    channel: Channel,
}

impl PublisherLink {
    fn is_usable(&self) -> bool {
        self.connection.status().connected() && self.channel.status().connected()
    }
}

struct ConsumerState {
    session: Option<ConsumerSession>,
    backoff: Duration,
    /// Failed attempts to open a session since the last one that worked.
    failures: u32,
    /// A session was lost and none has been opened since.
    reconnecting: bool,
}

impl ConsumerState {
    /// Sleeps the current backoff and doubles it, up to [`BACKOFF_MAX`].
    async fn back_off(&mut self) {
        let delay = self.backoff;
        self.backoff = (delay * 2).min(BACKOFF_MAX);
        tracing::debug!(retry_in = ?delay, "consumer backing off");
        tokio::time::sleep(delay).await;
    }
}

struct ConsumerSession {
    opened: Instant,
    connection: Connection,
    channel: Channel,
    consumer: Consumer,
}

enum PublishFailure {
    /// Negative confirm.
    Nacked,
    /// Returned as unroutable: the work queue or its binding is gone.
    Returned,
    /// The connection or channel is broken, or the confirm never came.
    Broken(String),
}

impl AmqpQueue {
    /// Connects the publishing side and declares the topology. The consuming connection is
    /// opened by the first [`JobConsumer::next`], so a publisher-only process never opens it.
    pub async fn connect(settings: AmqpSettings) -> Result<AmqpQueue, QueueError> {
        let topology = Topology::new(&settings.prefix, settings.delivery_limit)?;
        let shared = Arc::new(Shared {
            settings,
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
            return Err(QueueError::Unavailable(
                "AMQP needs a Tokio runtime".to_owned(),
            ));
        }
        bounded(OPEN_TIMEOUT, "connecting to RabbitMQ", async {
            let properties = ConnectionProperties::default()
                .with_connection_name(format!("packages-jobs {role}").into());
            let connection = Connection::connect(&self.settings.url, properties)
                .await
                .map_err(|e| unavailable("connecting to RabbitMQ", e))?;
            let channel = connection
                .create_channel()
                .await
                .map_err(|e| unavailable("opening a channel", e))?;
            self.topology
                .declare(&channel)
                .await
                .map_err(|e| unavailable("declaring the job queues", e))?;
            Ok((connection, channel))
        })
        .await
    }

    /// The current publishing link, reconnecting if it is broken. The flag is true when this
    /// call opened a new connection.
    async fn publisher_link(&self) -> Result<(PublisherLink, bool), QueueError> {
        let mut slot = self.publisher.lock().await;
        self.ensure_open()?;
        if let Some(link) = slot.link.as_ref()
            && link.is_usable()
        {
            return Ok((link.clone(), false));
        }
        // Dropping the broken link closes whatever is left of it once in-flight publishes
        // release their clones.
        slot.link = None;
        let reconnecting = slot.next_generation > 0;
        if reconnecting {
            warn!(prefix = %self.settings.prefix, "publisher connection to RabbitMQ lost; reconnecting");
        }
        let (connection, channel) = self.open("publisher").await?;
        bounded(OP_TIMEOUT, "enabling publisher confirms", async {
            channel
                .confirm_select(ConfirmSelectOptions::default())
                .await
                .map_err(|e| unavailable("enabling publisher confirms", e))
        })
        .await?;
        let link = PublisherLink {
            generation: slot.next_generation,
            connection: Arc::new(connection),
            channel,
        };
        slot.next_generation = slot.next_generation.wrapping_add(1);
        slot.link = Some(link.clone());
        if reconnecting {
            info!(prefix = %self.settings.prefix, "publisher reconnected to RabbitMQ");
        }
        Ok((link, true))
    }

    /// Forgets `link` after a failed publish so that the next call reconnects, unless a
    /// concurrent call already replaced it.
    async fn discard_publisher(&self, link: &PublisherLink) {
        let mut slot = self.publisher.lock().await;
        if slot
            .link
            .as_ref()
            .is_some_and(|current| current.generation == link.generation)
        {
            slot.link = None;
        }
    }

    async fn publish_once(&self, channel: &Channel, body: &[u8]) -> Result<(), PublishFailure> {
        let properties = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type("application/json".into());
        // Mandatory: a message no queue accepts (work queue deleted) comes back instead of
        // being confirmed and silently dropped.
        let options = BasicPublishOptions {
            mandatory: true,
            immediate: false,
        };
        let confirm = channel
            .basic_publish(
                self.topology.exchange.clone(),
                ShortString::from(ROUTING_KEY),
                options,
                body,
                properties,
            )
            .await
            .map_err(|e| PublishFailure::Broken(e.to_string()))?;
        match tokio::time::timeout(CONFIRM_TIMEOUT, confirm).await {
            Err(_) => Err(PublishFailure::Broken(format!(
                "no publisher confirm within {CONFIRM_TIMEOUT:?}"
            ))),
            Ok(Err(e)) => Err(PublishFailure::Broken(e.to_string())),
            Ok(Ok(Confirmation::Ack(None))) => Ok(()),
            Ok(Ok(Confirmation::Ack(Some(returned)))) => {
                warn!(
                    exchange = %self.topology.exchange,
                    reply_code = returned.reply_code,
                    reply_text = %returned.reply_text,
                    "job message returned unroutable"
                );
                Err(PublishFailure::Returned)
            }
            Ok(Ok(Confirmation::Nack(_))) => Err(PublishFailure::Nacked),
            Ok(Ok(Confirmation::NotRequested)) => Err(PublishFailure::Broken(
                "channel is not in confirm mode".to_owned(),
            )),
        }
    }

    /// Publishes on the current link; if that is broken, reconnects once and tries again. A
    /// retried message may be a duplicate (its first confirm was lost), which at-least-once
    /// delivery allows anyway.
    async fn publish(&self, body: &[u8]) -> Result<(), QueueError> {
        let mut reconnected = false;
        loop {
            let (link, fresh) = self.publisher_link().await?;
            reconnected |= fresh;
            match self.publish_once(&link.channel, body).await {
                Ok(()) => return Ok(()),
                Err(PublishFailure::Nacked) => return Err(QueueError::NotConfirmed),
                Err(PublishFailure::Returned) => {
                    // The next publish reconnects, which declares the topology again.
                    self.discard_publisher(&link).await;
                    return Err(QueueError::NotConfirmed);
                }
                Err(PublishFailure::Broken(error)) => {
                    self.discard_publisher(&link).await;
                    if reconnected {
                        return Err(QueueError::Unavailable(format!("publishing: {error}")));
                    }
                    warn!(%error, "publishing a job failed; reconnecting once");
                }
            }
        }
    }

    async fn depths(&self) -> Result<QueueDepths, QueueError> {
        let (link, _) = self.publisher_link().await?;
        // A passive declare of a missing queue closes its channel: use a throwaway one.
        let channel = link
            .connection
            .create_channel()
            .await
            .map_err(|e| unavailable("opening a channel", e))?;
        let passive = QueueDeclareOptions {
            passive: true,
            ..QueueDeclareOptions::default()
        };
        let result = async {
            let work = channel
                .queue_declare(self.topology.work.clone(), passive, FieldTable::default())
                .await?;
            let dead = channel
                .queue_declare(self.topology.dead.clone(), passive, FieldTable::default())
                .await?;
            Ok::<_, lapin::Error>(QueueDepths {
                ready: u64::from(work.message_count()),
                dead: u64::from(dead.message_count()),
            })
        }
        .await;
        if channel.status().connected() {
            let _ = channel.close(REPLY_SUCCESS, "OK".into()).await;
        }
        result.map_err(|e| unavailable("reading queue depths", e))
    }

    async fn open_consumer(&self) -> Result<ConsumerSession, QueueError> {
        let (connection, channel) = self.open("consumer").await?;
        let prefetch = self.settings.prefetch.max(1);
        let tag = ShortString::try_new(format!("packages-jobs-{}", uuid::Uuid::new_v4()))
            .map_err(|e| unavailable("consumer tag", e))?;
        bounded(OP_TIMEOUT, "starting the consumer", async {
            channel
                .basic_qos(prefetch, BasicQosOptions { global: false })
                .await
                .map_err(|e| unavailable("setting prefetch", e))?;
            let consumer = channel
                .basic_consume(
                    self.topology.work.clone(),
                    tag,
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(|e| unavailable("starting the consumer", e))?;
            Ok(ConsumerSession {
                opened: Instant::now(),
                connection,
                channel,
                consumer,
            })
        })
        .await
    }

    /// Waits for the next delivery, reconnecting with capped exponential backoff for as long
    /// as it takes. Only `close` (through the caller's `select!`) ends the wait.
    async fn next_delivery(&self) -> Delivery {
        let mut state = self.consumer.lock().await;
        loop {
            if state.session.is_none() {
                match self.open_consumer().await {
                    Ok(session) => {
                        if state.reconnecting || state.failures > 0 {
                            info!(prefix = %self.settings.prefix, "consumer reconnected to RabbitMQ");
                        }
                        state.session = Some(session);
                        state.failures = 0;
                        state.reconnecting = false;
                    }
                    Err(error) => {
                        state.failures = state.failures.saturating_add(1);
                        warn!(%error, attempt = state.failures, "cannot consume from RabbitMQ");
                        state.back_off().await;
                        continue;
                    }
                }
            }
            let Some(session) = state.session.as_mut() else {
                continue;
            };
            match session.consumer.next().await {
                Some(Ok(delivery)) => {
                    state.backoff = BACKOFF_MIN;
                    return amqp_delivery(delivery);
                }
                Some(Err(error)) => {
                    warn!(%error, "consumer connection to RabbitMQ lost; reconnecting");
                }
                None => warn!("consumer cancelled by RabbitMQ; reconnecting"),
            }
            // A session that worked for a while starts the backoff over; one that keeps dying
            // right after it opened must not turn this into a busy loop.
            if state
                .session
                .as_ref()
                .is_some_and(|s| s.opened.elapsed() > STABLE_SESSION)
            {
                state.backoff = BACKOFF_MIN;
            }
            // Dropping the session closes whatever is left of it; its unacked deliveries go
            // back to the queue and their settlements fail.
            state.session = None;
            state.reconnecting = true;
            state.back_off().await;
        }
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

fn amqp_delivery(delivery: lapin::message::Delivery) -> Delivery {
    let previous = previous_deliveries(&delivery);
    let settle = AmqpSettle {
        acker: Some(delivery.acker),
    };
    Delivery::new(delivery.data, previous, Box::new(settle))
}

/// The quorum queue counts returns in `x-delivery-count` (absent on the first delivery); the
/// `redelivered` flag covers queues or brokers that do not set it.
fn previous_deliveries(delivery: &lapin::message::Delivery) -> u32 {
    let counted = delivery
        .properties
        .headers()
        .as_ref()
        .and_then(|headers| headers.inner().get("x-delivery-count"))
        .and_then(amqp_count)
        .unwrap_or(0);
    if delivery.redelivered {
        counted.max(1)
    } else {
        counted
    }
}

/// An integer header as a count; RabbitMQ sends `x-delivery-count` as a signed 64-bit long,
/// other brokers may pick any integer type.
fn amqp_count(value: &AMQPValue) -> Option<u32> {
    let wide: i128 = match value {
        AMQPValue::ShortShortInt(v) => i128::from(*v),
        AMQPValue::ShortShortUInt(v) => i128::from(*v),
        AMQPValue::ShortInt(v) => i128::from(*v),
        AMQPValue::ShortUInt(v) => i128::from(*v),
        AMQPValue::LongInt(v) => i128::from(*v),
        AMQPValue::LongUInt(v) => i128::from(*v),
        AMQPValue::LongLongInt(v) => i128::from(*v),
        _ => return None,
    };
    Some(u32::try_from(wide.max(0)).unwrap_or(u32::MAX))
}

/// Settles one delivery on the channel it came from. If that channel is gone the broker has
/// already taken the message back, so settling fails and the message is redelivered.
struct AmqpSettle {
    /// `None` once settled.
    acker: Option<Acker>,
}

impl AmqpSettle {
    async fn settle<F, Fut>(&mut self, what: &str, op: F) -> Result<(), QueueError>
    where
        F: FnOnce(Acker) -> Fut,
        Fut: Future<Output = lapin::Result<bool>>,
    {
        let Some(acker) = self.acker.take() else {
            return Err(QueueError::Unavailable(format!(
                "{what}: delivery already settled"
            )));
        };
        match tokio::time::timeout(OP_TIMEOUT, op(acker)).await {
            Ok(Ok(true)) => Ok(()),
            Ok(Ok(false)) => Err(QueueError::Unavailable(format!(
                "{what}: the delivery's channel is closed; the broker will redeliver it"
            ))),
            Ok(Err(e)) => Err(unavailable(what, e)),
            Err(_) => Err(unavailable(
                what,
                format_args!("timed out after {OP_TIMEOUT:?}"),
            )),
        }
    }
}

#[async_trait]
impl Settle for AmqpSettle {
    async fn ack(mut self: Box<Self>) -> Result<(), QueueError> {
        self.settle(
            "ack",
            |acker| async move { acker.ack(Default::default()).await },
        )
        .await
    }

    async fn requeue(mut self: Box<Self>) -> Result<(), QueueError> {
        self.settle("requeue", |acker| async move {
            acker.reject(BasicRejectOptions { requeue: true }).await
        })
        .await
    }

    async fn dead_letter(mut self: Box<Self>) -> Result<(), QueueError> {
        // Rejected without requeue, the quorum queue routes it to its dead-letter exchange.
        self.settle("dead-letter", |acker| async move {
            acker.reject(BasicRejectOptions { requeue: false }).await
        })
        .await
    }
}

impl Drop for AmqpSettle {
    fn drop(&mut self) {
        // Dropped unsettled (the job's task panicked or was cancelled): hand the message back
        // now rather than let it hold a prefetch slot until the channel closes.
        if let Some(acker) = self.acker.take()
            && acker.usable()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move {
                let _ = tokio::time::timeout(
                    OP_TIMEOUT,
                    acker.reject(BasicRejectOptions { requeue: true }),
                )
                .await;
            });
        }
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

    #[test]
    fn topology_names_follow_the_prefix() {
        let topology = Topology::new("packages", 5).unwrap();
        assert_eq!(topology.exchange.as_str(), "packages.jobs");
        assert_eq!(topology.work.as_str(), "packages.jobs.work");
        assert_eq!(topology.dlx.as_str(), "packages.jobs.dlx");
        assert_eq!(topology.dead.as_str(), "packages.jobs.dead");
    }

    #[test]
    fn overlong_prefix_is_an_error_not_a_panic() {
        assert!(matches!(
            Topology::new(&"p".repeat(300), 5),
            Err(QueueError::Unavailable(_))
        ));
    }

    #[test]
    fn delivery_count_header_of_any_integer_type() {
        assert_eq!(amqp_count(&AMQPValue::LongLongInt(3)), Some(3));
        assert_eq!(amqp_count(&AMQPValue::LongInt(2)), Some(2));
        assert_eq!(amqp_count(&AMQPValue::ShortShortUInt(1)), Some(1));
        assert_eq!(amqp_count(&AMQPValue::LongLongInt(-4)), Some(0));
        assert_eq!(
            amqp_count(&AMQPValue::LongLongInt(i64::MAX)),
            Some(u32::MAX)
        );
        assert_eq!(amqp_count(&AMQPValue::LongString("3".into())), None);
    }

    fn delivery(redelivered: bool, count: Option<AMQPValue>) -> lapin::message::Delivery {
        let mut delivery = lapin::message::Delivery::mock(
            1,
            "packages.jobs".into(),
            ROUTING_KEY.into(),
            redelivered,
            b"{}".to_vec(),
        );
        if let Some(count) = count {
            let mut headers = FieldTable::default();
            headers.insert("x-delivery-count".into(), count);
            delivery.properties = BasicProperties::default().with_headers(headers);
        }
        delivery
    }

    #[test]
    fn previous_deliveries_from_header_or_redelivered_flag() {
        assert_eq!(previous_deliveries(&delivery(false, None)), 0);
        assert_eq!(previous_deliveries(&delivery(true, None)), 1);
        assert_eq!(
            previous_deliveries(&delivery(true, Some(AMQPValue::LongLongInt(3)))),
            3
        );
        assert_eq!(
            previous_deliveries(&delivery(false, Some(AMQPValue::LongLongInt(2)))),
            2
        );
        assert_eq!(
            previous_deliveries(&delivery(true, Some(AMQPValue::LongLongInt(0)))),
            1
        );
    }

    #[tokio::test]
    async fn connect_failure_is_unavailable_and_quick() {
        // Port 1 on localhost: refused immediately.
        let settings = AmqpSettings {
            url: "amqp://guest:guest@127.0.0.1:1/%2f".to_owned(),
            ..AmqpSettings::default()
        };
        let started = std::time::Instant::now();
        let result = AmqpQueue::connect(settings).await;
        assert!(
            matches!(result, Err(QueueError::Unavailable(_))),
            "{result:?}"
        );
        assert!(started.elapsed() < OPEN_TIMEOUT + Duration::from_secs(1));
    }

    #[tokio::test]
    async fn invalid_url_is_unavailable() {
        let settings = AmqpSettings {
            url: "not a url".to_owned(),
            ..AmqpSettings::default()
        };
        assert!(matches!(
            AmqpQueue::connect(settings).await,
            Err(QueueError::Unavailable(_))
        ));
    }
}
