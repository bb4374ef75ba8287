//! `AmqpQueue` against a real RabbitMQ (3.10+), `PACKAGES_TEST_AMQP_URL` or the local default.
//!
//! Every test works under its own prefix and deletes its exchanges and queues afterwards, so
//! the tests can share a broker with each other and with anything else. Outages are simulated
//! with a TCP proxy in front of the broker; the broker itself is never stopped.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use lapin::options::{BasicGetOptions, ExchangeDeleteOptions, QueueDeleteOptions};
use lapin::uri::AMQPUri;
use lapin::{Connection, ConnectionProperties};
use packages_jobs::{
    AmqpQueue, AmqpSettings, Delivery, JobConsumer, JobPublisher, QueueDepths, QueueError,
};
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

const DEFAULT_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
const TEST_TIMEOUT: Duration = Duration::from_secs(90);
const WAIT: Duration = Duration::from_secs(10);

fn amqp_url() -> String {
    std::env::var("PACKAGES_TEST_AMQP_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned())
}

fn settings(url: String, prefix: &str) -> AmqpSettings {
    AmqpSettings {
        url,
        prefix: prefix.to_owned(),
        prefetch: 4,
        delivery_limit: 5,
    }
}

/// The broker is out of reach: a failed or timed-out exchange, worth retrying.
fn is_outage<T>(result: &Result<T, QueueError>) -> bool {
    matches!(
        result,
        Err(e @ (QueueError::Amqp { .. } | QueueError::Timeout { .. })) if e.is_retryable()
    )
}

/// Runs `test` under a fresh prefix, then deletes that prefix's topology even if it panicked.
async fn with_prefix<F, Fut>(test: F)
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = ()>,
{
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
    let prefix = format!("test-{}", uuid::Uuid::new_v4());
    let outcome = AssertUnwindSafe(tokio::time::timeout(TEST_TIMEOUT, test(prefix.clone())))
        .catch_unwind()
        .await;
    cleanup(&prefix).await;
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(_)) => panic!("test did not finish within {TEST_TIMEOUT:?}"),
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

async fn cleanup(prefix: &str) {
    let Ok(connection) = Connection::connect(&amqp_url(), ConnectionProperties::default()).await
    else {
        return;
    };
    if let Ok(channel) = connection.create_channel().await {
        for queue in ["jobs.work", "jobs.dead"] {
            let name = format!("{prefix}.{queue}");
            let _ = channel
                .queue_delete(name.into(), QueueDeleteOptions::default())
                .await;
        }
        for exchange in ["jobs", "jobs.dlx"] {
            let name = format!("{prefix}.{exchange}");
            let _ = channel
                .exchange_delete(name.into(), ExchangeDeleteOptions::default())
                .await;
        }
    }
    let _ = connection.close(200, "OK".into()).await;
}

async fn next_within(queue: &AmqpQueue, limit: Duration) -> Option<Delivery> {
    match tokio::time::timeout(limit, queue.next()).await {
        Ok(Ok(delivery)) => Some(delivery),
        Ok(Err(e)) => panic!("next failed: {e}"),
        Err(_) => None,
    }
}

async fn next(queue: &AmqpQueue) -> Delivery {
    next_within(queue, WAIT)
        .await
        .unwrap_or_else(|| panic!("no delivery within {WAIT:?}"))
}

/// Polls `depths` until it equals `expected`; dead-lettering happens after the reject returns.
async fn wait_for_depths(queue: &AmqpQueue, expected: QueueDepths) {
    let deadline = Instant::now() + WAIT;
    loop {
        let depths = queue.depths().await.unwrap();
        if depths == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "depths {depths:?}, expected {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `rabbitmqctl <command> --formatter json`, as rows.
async fn rabbitmqctl(args: &[&str]) -> Vec<Value> {
    let mut command = tokio::process::Command::new("rabbitmqctl");
    command.arg("-q").arg("--formatter").arg("json").args(args);
    let output = command.output().await.unwrap();
    assert!(output.status.success(), "rabbitmqctl {args:?}: {output:?}");
    serde_json::from_slice(&output.stdout).unwrap()
}

/// `rabbitmqctl` renders an argument table as an object or as `[key, (type,) value]` rows.
fn table(value: &Value) -> BTreeMap<String, Value> {
    match value {
        Value::Object(map) => map.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        Value::Array(rows) => rows
            .iter()
            .filter_map(|row| {
                let row = row.as_array()?;
                Some((row.first()?.as_str()?.to_owned(), row.last()?.clone()))
            })
            .collect(),
        _ => BTreeMap::new(),
    }
}

fn row<'a>(rows: &'a [Value], name: &str) -> &'a Value {
    rows.iter()
        .find(|row| row["name"] == name)
        .unwrap_or_else(|| panic!("{name} not found in {rows:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn declares_the_topology() {
    with_prefix(|prefix| async move {
        let queue = AmqpQueue::connect(settings(amqp_url(), &prefix))
            .await
            .unwrap();

        let exchanges = rabbitmqctl(&["list_exchanges", "name", "type", "durable"]).await;
        let jobs = row(&exchanges, &format!("{prefix}.jobs"));
        assert_eq!(jobs["type"], "direct");
        assert_eq!(jobs["durable"], true);
        let dlx = row(&exchanges, &format!("{prefix}.jobs.dlx"));
        assert_eq!(dlx["type"], "fanout");
        assert_eq!(dlx["durable"], true);

        let queues = rabbitmqctl(&["list_queues", "name", "durable", "type", "arguments"]).await;
        let work = row(&queues, &format!("{prefix}.jobs.work"));
        assert_eq!(work["durable"], true);
        assert_eq!(work["type"], "quorum");
        let args = table(&work["arguments"]);
        assert_eq!(args["x-queue-type"], "quorum");
        assert_eq!(args["x-delivery-limit"], 5);
        assert_eq!(
            args["x-dead-letter-exchange"],
            format!("{prefix}.jobs.dlx").as_str()
        );
        let dead = row(&queues, &format!("{prefix}.jobs.dead"));
        assert_eq!(dead["durable"], true);

        let bindings = rabbitmqctl(&[
            "list_bindings",
            "source_name",
            "destination_name",
            "destination_kind",
            "routing_key",
        ])
        .await;
        let bound = |source: String, destination: String| {
            bindings.iter().any(|b| {
                b["source_name"] == source.as_str()
                    && b["destination_name"] == destination.as_str()
                    && b["destination_kind"] == "queue"
            })
        };
        assert!(bound(
            format!("{prefix}.jobs"),
            format!("{prefix}.jobs.work")
        ));
        assert!(bound(
            format!("{prefix}.jobs.dlx"),
            format!("{prefix}.jobs.dead")
        ));

        // Declaring again is a no-op; declaring with another delivery limit is refused by the
        // broker, which shows the arguments really are part of the declaration.
        let again = AmqpQueue::connect(settings(amqp_url(), &prefix))
            .await
            .unwrap();
        again.close().await;
        let other = AmqpSettings {
            delivery_limit: 7,
            ..settings(amqp_url(), &prefix)
        };
        let refused = AmqpQueue::connect(other).await;
        assert!(
            matches!(&refused, Err(e @ QueueError::Amqp { .. }) if !e.is_retryable()),
            "{refused:?}"
        );

        queue.check().await.unwrap();
        assert_eq!(
            queue.depths().await.unwrap(),
            QueueDepths { ready: 0, dead: 0 }
        );
        queue.close().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn publish_consume_ack() {
    with_prefix(|prefix| async move {
        let queue = AmqpQueue::connect(settings(amqp_url(), &prefix))
            .await
            .unwrap();
        queue.publish(br#"{"n":1}"#.to_vec()).await.unwrap();
        queue.publish(br#"{"n":2}"#.to_vec()).await.unwrap();
        wait_for_depths(&queue, QueueDepths { ready: 2, dead: 0 }).await;

        for expected in [&br#"{"n":1}"#[..], br#"{"n":2}"#] {
            let delivery = next(&queue).await;
            assert_eq!(delivery.body, expected);
            assert_eq!(delivery.previous_deliveries, 0);
            delivery.ack().await.unwrap();
        }
        wait_for_depths(&queue, QueueDepths { ready: 0, dead: 0 }).await;
        assert!(
            next_within(&queue, Duration::from_millis(500))
                .await
                .is_none()
        );
        queue.close().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn publishes_persistent_json() {
    with_prefix(|prefix| async move {
        let queue = AmqpQueue::connect(settings(amqp_url(), &prefix))
            .await
            .unwrap();
        queue.publish(b"{}".to_vec()).await.unwrap();

        let connection = Connection::connect(&amqp_url(), ConnectionProperties::default())
            .await
            .unwrap();
        let channel = connection.create_channel().await.unwrap();
        let message = channel
            .basic_get(
                format!("{prefix}.jobs.work").into(),
                BasicGetOptions { no_ack: true },
            )
            .await
            .unwrap()
            .unwrap();
        let properties = &message.delivery.properties;
        assert_eq!(*properties.delivery_mode(), Some(2));
        assert_eq!(
            properties.content_type().as_ref().map(|c| c.as_str()),
            Some("application/json")
        );
        assert_eq!(message.delivery.data, b"{}");
        let _ = connection.close(200, "OK".into()).await;
        queue.close().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn requeue_redelivers_with_a_count() {
    with_prefix(|prefix| async move {
        let queue = AmqpQueue::connect(settings(amqp_url(), &prefix))
            .await
            .unwrap();
        queue.publish(b"again".to_vec()).await.unwrap();

        let first = next(&queue).await;
        assert_eq!(first.previous_deliveries, 0);
        first.requeue().await.unwrap();

        let second = next(&queue).await;
        assert_eq!(second.body, b"again");
        assert!(
            second.previous_deliveries >= 1,
            "{}",
            second.previous_deliveries
        );
        second.requeue().await.unwrap();

        let third = next(&queue).await;
        assert!(
            third.previous_deliveries >= 2,
            "{}",
            third.previous_deliveries
        );
        third.ack().await.unwrap();
        wait_for_depths(&queue, QueueDepths { ready: 0, dead: 0 }).await;
        queue.close().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dead_letter_lands_in_the_dead_queue() {
    with_prefix(|prefix| async move {
        let queue = AmqpQueue::connect(settings(amqp_url(), &prefix))
            .await
            .unwrap();
        queue.publish(b"poison".to_vec()).await.unwrap();
        queue.publish(b"fine".to_vec()).await.unwrap();

        next(&queue).await.dead_letter().await.unwrap();
        next(&queue).await.ack().await.unwrap();
        wait_for_depths(&queue, QueueDepths { ready: 0, dead: 1 }).await;

        let connection = Connection::connect(&amqp_url(), ConnectionProperties::default())
            .await
            .unwrap();
        let channel = connection.create_channel().await.unwrap();
        let dead = channel
            .basic_get(
                format!("{prefix}.jobs.dead").into(),
                BasicGetOptions { no_ack: false },
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!(dead.delivery.data, b"poison");
        let _ = connection.close(200, "OK".into()).await;
        queue.close().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn broker_dead_letters_past_the_delivery_limit() {
    with_prefix(|prefix| async move {
        let limit = 2;
        let queue = AmqpQueue::connect(AmqpSettings {
            delivery_limit: limit,
            ..settings(amqp_url(), &prefix)
        })
        .await
        .unwrap();
        queue.publish(b"flaky".to_vec()).await.unwrap();

        let mut seen = Vec::new();
        while let Some(delivery) = next_within(&queue, Duration::from_secs(3)).await {
            seen.push(delivery.previous_deliveries);
            delivery.requeue().await.unwrap();
            assert!(seen.len() <= 10, "never dead-lettered: {seen:?}");
        }
        // RabbitMQ dead-letters once a message was returned more than `limit` times.
        assert_eq!(seen, (0..=limit).collect::<Vec<_>>());
        wait_for_depths(&queue, QueueDepths { ready: 0, dead: 1 }).await;
        queue.close().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn prefetch_bounds_unsettled_deliveries() {
    with_prefix(|prefix| async move {
        let queue = AmqpQueue::connect(AmqpSettings {
            prefetch: 2,
            ..settings(amqp_url(), &prefix)
        })
        .await
        .unwrap();
        for i in 0..5u8 {
            queue.publish(vec![b'0' + i]).await.unwrap();
        }
        let first = next(&queue).await;
        let second = next(&queue).await;
        assert!(
            next_within(&queue, Duration::from_secs(1)).await.is_none(),
            "a third delivery arrived while two were unacked"
        );

        first.ack().await.unwrap();
        let third = next(&queue).await;
        assert!(next_within(&queue, Duration::from_secs(1)).await.is_none());

        second.ack().await.unwrap();
        third.ack().await.unwrap();
        for _ in 0..2 {
            next(&queue).await.ack().await.unwrap();
        }
        wait_for_depths(&queue, QueueDepths { ready: 0, dead: 0 }).await;
        queue.close().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_next_calls_get_distinct_messages() {
    with_prefix(|prefix| async move {
        let queue = AmqpQueue::connect(AmqpSettings {
            prefetch: 4,
            ..settings(amqp_url(), &prefix)
        })
        .await
        .unwrap();
        const MESSAGES: usize = 20;
        // Publishes share one confirm-mode channel; concurrent ones must all be confirmed.
        let publishes = (0..MESSAGES).map(|i| queue.publish(i.to_string().into_bytes()));
        for published in futures_util::future::join_all(publishes).await {
            published.unwrap();
        }
        let workers: Vec<JoinHandle<Vec<Vec<u8>>>> = (0..4)
            .map(|_| {
                let queue = queue.clone();
                tokio::spawn(async move {
                    let mut got = Vec::new();
                    while let Some(delivery) = next_within(&queue, Duration::from_secs(2)).await {
                        got.push(delivery.body.clone());
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        delivery.ack().await.unwrap();
                    }
                    got
                })
            })
            .collect();
        let mut all = Vec::new();
        for worker in workers {
            all.extend(worker.await.unwrap());
        }
        all.sort();
        let mut expected: Vec<Vec<u8>> =
            (0..MESSAGES).map(|i| i.to_string().into_bytes()).collect();
        expected.sort();
        assert_eq!(all, expected);
        wait_for_depths(&queue, QueueDepths { ready: 0, dead: 0 }).await;
        queue.close().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn close_returns_unacked_deliveries() {
    with_prefix(|prefix| async move {
        let first = AmqpQueue::connect(settings(amqp_url(), &prefix))
            .await
            .unwrap();
        first.publish(b"unfinished".to_vec()).await.unwrap();
        let delivery = next(&first).await;

        // A next() waiting when close() is called ends with Closed.
        let waiting = tokio::spawn({
            let first = first.clone();
            async move { first.next().await.map(|d| d.body) }
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        first.close().await;
        let waited = tokio::time::timeout(WAIT, waiting).await.unwrap().unwrap();
        assert!(matches!(waited, Err(QueueError::Closed)), "{waited:?}");
        assert!(matches!(first.next().await, Err(QueueError::Closed)));
        assert!(matches!(
            first.publish(b"x".to_vec()).await,
            Err(QueueError::Closed)
        ));
        assert!(delivery.ack().await.is_err(), "ack after close must fail");

        let second = AmqpQueue::connect(settings(amqp_url(), &prefix))
            .await
            .unwrap();
        let again = next(&second).await;
        assert_eq!(again.body, b"unfinished");
        assert!(
            again.previous_deliveries >= 1,
            "{}",
            again.previous_deliveries
        );
        again.ack().await.unwrap();
        wait_for_depths(&second, QueueDepths { ready: 0, dead: 0 }).await;
        second.close().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn publish_redeclares_a_deleted_work_queue() {
    with_prefix(|prefix| async move {
        let queue = AmqpQueue::connect(settings(amqp_url(), &prefix))
            .await
            .unwrap();
        let connection = Connection::connect(&amqp_url(), ConnectionProperties::default())
            .await
            .unwrap();
        let channel = connection.create_channel().await.unwrap();
        channel
            .queue_delete(
                format!("{prefix}.jobs.work").into(),
                QueueDeleteOptions::default(),
            )
            .await
            .unwrap();
        let _ = connection.close(200, "OK".into()).await;

        // Unroutable now: refused rather than confirmed into nowhere. The next publish
        // reconnects, which declares the queue again.
        let refused = queue.publish(b"lost".to_vec()).await;
        assert!(
            matches!(refused, Err(QueueError::NotConfirmed)),
            "{refused:?}"
        );
        queue.publish(b"kept".to_vec()).await.unwrap();

        let delivery = next(&queue).await;
        assert_eq!(delivery.body, b"kept");
        delivery.ack().await.unwrap();
        wait_for_depths(&queue, QueueDepths { ready: 0, dead: 0 }).await;
        queue.close().await;
    })
    .await;
}

/// A TCP proxy in front of the broker that can drop every connection and refuse new ones.
struct Proxy {
    addr: SocketAddr,
    cut: Arc<AtomicBool>,
    links: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl Proxy {
    async fn start(upstream: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cut = Arc::new(AtomicBool::new(false));
        let links: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let accept = tokio::spawn({
            let cut = Arc::clone(&cut);
            let links = Arc::clone(&links);
            async move {
                while let Ok((mut client, _)) = listener.accept().await {
                    if cut.load(Ordering::SeqCst) {
                        // Closed right away: the client sees the handshake fail.
                        drop(client);
                        continue;
                    }
                    let upstream = upstream.clone();
                    let link = tokio::spawn(async move {
                        if let Ok(mut server) = TcpStream::connect(upstream).await {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                        }
                    });
                    links.lock().unwrap().push(link);
                }
            }
        });
        Proxy {
            addr,
            cut,
            links,
            accept,
        }
    }

    /// The broker URL with the proxy as host.
    fn url(&self, broker: &str) -> String {
        let mut uri: AMQPUri = broker.parse().unwrap();
        uri.authority.host = self.addr.ip().to_string();
        uri.authority.port = self.addr.port();
        uri.to_string()
    }

    /// Drops every live connection and refuses new ones until [`Proxy::heal`].
    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }

    fn heal(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn recovers_from_a_broker_outage() {
    with_prefix(|prefix| async move {
        let broker: AMQPUri = amqp_url().parse().unwrap();
        let proxy = Proxy::start(format!(
            "{}:{}",
            broker.authority.host, broker.authority.port
        ))
        .await;
        let queue = AmqpQueue::connect(settings(proxy.url(&amqp_url()), &prefix))
            .await
            .unwrap();
        // Watches the broker directly, past the proxy.
        let observer = AmqpQueue::connect(settings(amqp_url(), &prefix))
            .await
            .unwrap();

        queue.publish(b"before".to_vec()).await.unwrap();
        let in_flight = next(&queue).await;
        assert_eq!(in_flight.body, b"before");

        proxy.cut();
        // The broker sees the connection go and takes the unacked message back.
        wait_for_depths(&observer, QueueDepths { ready: 1, dead: 0 }).await;
        assert!(
            in_flight.ack().await.is_err(),
            "a delivery from a dead connection settled"
        );

        // The consumer keeps trying by itself from here on.
        let consumer = tokio::spawn({
            let queue = queue.clone();
            async move {
                let mut got = Vec::new();
                while got.len() < 2 {
                    let delivery = queue.next().await.unwrap();
                    got.push((delivery.body.clone(), delivery.previous_deliveries));
                    delivery.ack().await.unwrap();
                }
                got
            }
        });

        // Bounded by the queue's own timeouts: guards against hanging, not speed claims.
        let guard = Duration::from_secs(60);
        let during = tokio::time::timeout(guard, queue.publish(b"during".to_vec()))
            .await
            .expect("publishing during an outage must not hang");
        assert!(is_outage(&during), "{during:?}");
        let check = tokio::time::timeout(guard, queue.check())
            .await
            .expect("a check during an outage must not hang");
        assert!(is_outage(&check), "{check:?}");
        let depths = tokio::time::timeout(guard, queue.depths())
            .await
            .expect("reading depths during an outage must not hang");
        assert!(is_outage(&depths), "{depths:?}");

        // Let the consumer fail a few reconnects.
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(!consumer.is_finished());
        proxy.heal();

        queue.publish(b"after".to_vec()).await.unwrap();
        queue.check().await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(30), consumer)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got[0].0, b"before");
        assert!(got[0].1 >= 1, "redelivery not counted: {got:?}");
        assert_eq!(got[1], (b"after".to_vec(), 0));
        wait_for_depths(&observer, QueueDepths { ready: 0, dead: 0 }).await;

        // A second outage, this time while next() is already waiting.
        let waiting = tokio::spawn({
            let queue = queue.clone();
            async move {
                let delivery = queue.next().await?;
                let body = delivery.body.clone();
                delivery.ack().await?;
                Ok::<_, QueueError>(body)
            }
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        proxy.cut();
        tokio::time::sleep(Duration::from_secs(1)).await;
        proxy.heal();
        queue.publish(b"second".to_vec()).await.unwrap();
        let body = tokio::time::timeout(Duration::from_secs(30), waiting)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(body.unwrap(), b"second");

        queue.close().await;
        observer.close().await;
    })
    .await;
}
