//! An in-process queue for the all-in-one binary: no broker, nothing survives a restart.
//!
//! It mirrors the parts of the RabbitMQ quorum queue the worker relies on: FIFO order, a
//! per-message delivery count, dead-lettering past the delivery limit, and unsettled deliveries
//! going back to the queue.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use tokio::sync::Notify;

use crate::{Delivery, JobConsumer, JobPublisher, QueueDepths, QueueError, Settle};

/// In-memory FIFO implementing both [`JobPublisher`] and [`JobConsumer`]. Clones share the
/// same queue.
#[derive(Clone)]
pub struct EmbeddedQueue {
    shared: Arc<Shared>,
}

struct Shared {
    delivery_limit: u32,
    state: Mutex<State>,
    /// Woken on publish, requeue and close; waiters re-check `state` after every wake-up.
    changed: Notify,
}

#[derive(Default)]
struct State {
    ready: VecDeque<Message>,
    dead: Vec<Vec<u8>>,
    closed: bool,
}

struct Message {
    body: Vec<u8>,
    previous_deliveries: u32,
}

impl EmbeddedQueue {
    /// `delivery_limit`: how many times a message may be returned (requeued, or dropped
    /// unsettled) before it is dead-lettered instead, as `x-delivery-limit` on a quorum queue:
    /// with limit `n` a message is delivered at most `n + 1` times.
    pub fn new(delivery_limit: u32) -> Self {
        EmbeddedQueue {
            shared: Arc::new(Shared {
                delivery_limit,
                state: Mutex::new(State::default()),
                changed: Notify::new(),
            }),
        }
    }

    /// Bodies of the dead-lettered messages, oldest first.
    pub fn dead_letters(&self) -> Vec<Vec<u8>> {
        self.shared.lock().dead.clone()
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave `State` half-updated (every update is a
        // single push or pop), so a poisoned lock is still safe to use.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Puts a delivered message back, or dead-letters it once it was returned more often than
    /// the limit allows (RabbitMQ counts the same way: `x-delivery-count > x-delivery-limit`).
    fn requeue(&self, body: Vec<u8>, previous_deliveries: u32) {
        let returns = previous_deliveries.saturating_add(1);
        {
            let mut state = self.lock();
            if returns > self.delivery_limit {
                state.dead.push(body);
                return;
            }
            state.ready.push_back(Message {
                body,
                previous_deliveries: returns,
            });
        }
        self.changed.notify_one();
    }

    fn dead_letter(&self, body: Vec<u8>) {
        self.lock().dead.push(body);
    }
}

impl fmt::Debug for EmbeddedQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.shared.lock();
        f.debug_struct("EmbeddedQueue")
            .field("delivery_limit", &self.shared.delivery_limit)
            .field("ready", &state.ready.len())
            .field("dead", &state.dead.len())
            .field("closed", &state.closed)
            .finish()
    }
}

#[async_trait]
impl JobPublisher for EmbeddedQueue {
    async fn publish(&self, body: Vec<u8>) -> Result<(), QueueError> {
        {
            let mut state = self.shared.lock();
            if state.closed {
                return Err(QueueError::Closed);
            }
            state.ready.push_back(Message {
                body,
                previous_deliveries: 0,
            });
        }
        self.shared.changed.notify_one();
        Ok(())
    }

    async fn check(&self) -> Result<(), QueueError> {
        if self.shared.lock().closed {
            Err(QueueError::Closed)
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl JobConsumer for EmbeddedQueue {
    async fn next(&self) -> Result<Delivery, QueueError> {
        loop {
            // Register interest before looking at the state so that a publish or close between
            // the look and the wait is not missed.
            let changed = self.shared.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            {
                let mut state = self.shared.lock();
                if state.closed {
                    return Err(QueueError::Closed);
                }
                if let Some(message) = state.ready.pop_front() {
                    let settle = EmbeddedSettle {
                        shared: Arc::clone(&self.shared),
                        unsettled: Some((message.body.clone(), message.previous_deliveries)),
                    };
                    return Ok(Delivery::new(
                        message.body,
                        message.previous_deliveries,
                        Box::new(settle),
                    ));
                }
            }
            changed.await;
        }
    }

    async fn close(&self) {
        self.shared.lock().closed = true;
        self.shared.changed.notify_waiters();
    }

    async fn depths(&self) -> Result<QueueDepths, QueueError> {
        let state = self.shared.lock();
        Ok(QueueDepths {
            ready: state.ready.len() as u64,
            dead: state.dead.len() as u64,
        })
    }
}

/// Settles one embedded delivery. Dropped unsettled (say, the job's task panicked), the
/// message goes back to the queue like an unacked message on a closed AMQP channel.
struct EmbeddedSettle {
    shared: Arc<Shared>,
    /// Body and delivery count; `None` once settled.
    unsettled: Option<(Vec<u8>, u32)>,
}

#[async_trait]
impl Settle for EmbeddedSettle {
    async fn ack(mut self: Box<Self>) -> Result<(), QueueError> {
        self.unsettled = None;
        Ok(())
    }

    async fn requeue(mut self: Box<Self>) -> Result<(), QueueError> {
        if let Some((body, previous_deliveries)) = self.unsettled.take() {
            self.shared.requeue(body, previous_deliveries);
        }
        Ok(())
    }

    async fn dead_letter(mut self: Box<Self>) -> Result<(), QueueError> {
        if let Some((body, _)) = self.unsettled.take() {
            self.shared.dead_letter(body);
        }
        Ok(())
    }
}

impl Drop for EmbeddedSettle {
    fn drop(&mut self) {
        if let Some((body, previous_deliveries)) = self.unsettled.take() {
            self.shared.requeue(body, previous_deliveries);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::HashSet;
    use std::time::Duration;

    use super::*;

    const WAIT: Duration = Duration::from_secs(5);

    async fn next(queue: &EmbeddedQueue) -> Delivery {
        match tokio::time::timeout(WAIT, queue.next()).await {
            Ok(Ok(delivery)) => delivery,
            Ok(Err(e)) => panic!("next failed: {e}"),
            Err(_) => panic!("no delivery within {WAIT:?}"),
        }
    }

    async fn assert_empty(queue: &EmbeddedQueue) {
        let waited = tokio::time::timeout(Duration::from_millis(50), queue.next()).await;
        assert!(waited.is_err(), "expected no delivery");
    }

    #[tokio::test]
    async fn publish_then_next_is_fifo() {
        let queue = EmbeddedQueue::new(5);
        for body in [b"a", b"b", b"c"] {
            queue.publish(body.to_vec()).await.unwrap();
        }
        for body in [b"a", b"b", b"c"] {
            let delivery = next(&queue).await;
            assert_eq!(delivery.body, body.to_vec());
            assert_eq!(delivery.previous_deliveries, 0);
            delivery.ack().await.unwrap();
        }
        assert_empty(&queue).await;
        assert_eq!(
            queue.depths().await.unwrap(),
            QueueDepths { ready: 0, dead: 0 }
        );
    }

    #[tokio::test]
    async fn next_waits_for_a_publish() {
        let queue = EmbeddedQueue::new(5);
        let waiter = tokio::spawn({
            let queue = queue.clone();
            async move { next(&queue).await.body }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        queue.publish(b"late".to_vec()).await.unwrap();
        assert_eq!(waiter.await.unwrap(), b"late".to_vec());
    }

    #[tokio::test]
    async fn requeue_goes_to_the_tail_and_counts() {
        let queue = EmbeddedQueue::new(5);
        queue.publish(b"first".to_vec()).await.unwrap();
        queue.publish(b"second".to_vec()).await.unwrap();

        next(&queue).await.requeue().await.unwrap();
        let second = next(&queue).await;
        assert_eq!(second.body, b"second".to_vec());
        second.ack().await.unwrap();

        let again = next(&queue).await;
        assert_eq!(again.body, b"first".to_vec());
        assert_eq!(again.previous_deliveries, 1);
        again.requeue().await.unwrap();
        assert_eq!(next(&queue).await.previous_deliveries, 2);
    }

    #[tokio::test]
    async fn requeue_dead_letters_past_the_delivery_limit() {
        // Same sequence as the broker test `broker_dead_letters_past_the_delivery_limit`.
        let queue = EmbeddedQueue::new(3);
        queue.publish(b"poison".to_vec()).await.unwrap();
        let mut seen = Vec::new();
        for _ in 0..4 {
            let delivery = next(&queue).await;
            seen.push(delivery.previous_deliveries);
            delivery.requeue().await.unwrap();
        }
        assert_eq!(seen, vec![0, 1, 2, 3]);
        assert_empty(&queue).await;
        assert_eq!(
            queue.depths().await.unwrap(),
            QueueDepths { ready: 0, dead: 1 }
        );
        assert_eq!(queue.dead_letters(), vec![b"poison".to_vec()]);
    }

    #[tokio::test]
    async fn dead_letter_moves_to_the_dead_list() {
        let queue = EmbeddedQueue::new(5);
        queue.publish(b"bad".to_vec()).await.unwrap();
        queue.publish(b"good".to_vec()).await.unwrap();
        next(&queue).await.dead_letter().await.unwrap();
        assert_eq!(
            queue.depths().await.unwrap(),
            QueueDepths { ready: 1, dead: 1 }
        );
        assert_eq!(queue.dead_letters(), vec![b"bad".to_vec()]);
        assert_eq!(next(&queue).await.body, b"good".to_vec());
    }

    #[tokio::test]
    async fn depths_count_waiting_messages_only() {
        let queue = EmbeddedQueue::new(5);
        for i in 0..3u8 {
            queue.publish(vec![i]).await.unwrap();
        }
        assert_eq!(
            queue.depths().await.unwrap(),
            QueueDepths { ready: 3, dead: 0 }
        );
        let delivery = next(&queue).await;
        assert_eq!(
            queue.depths().await.unwrap(),
            QueueDepths { ready: 2, dead: 0 }
        );
        delivery.ack().await.unwrap();
        assert_eq!(
            queue.depths().await.unwrap(),
            QueueDepths { ready: 2, dead: 0 }
        );
    }

    #[tokio::test]
    async fn dropping_an_unsettled_delivery_requeues_it() {
        let queue = EmbeddedQueue::new(5);
        queue.publish(b"x".to_vec()).await.unwrap();
        drop(next(&queue).await);
        let again = next(&queue).await;
        assert_eq!(again.body, b"x".to_vec());
        assert_eq!(again.previous_deliveries, 1);
    }

    #[tokio::test]
    async fn close_wakes_a_waiting_next() {
        let queue = EmbeddedQueue::new(5);
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let queue = queue.clone();
                tokio::spawn(async move { queue.next().await.map(|d| d.body) })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(20)).await;
        queue.close().await;
        for waiter in waiters {
            let result = tokio::time::timeout(WAIT, waiter).await.unwrap().unwrap();
            assert!(matches!(result, Err(QueueError::Closed)), "{result:?}");
        }
        assert!(matches!(queue.next().await, Err(QueueError::Closed)));
        assert!(matches!(
            queue.publish(b"x".to_vec()).await,
            Err(QueueError::Closed)
        ));
        assert!(matches!(queue.check().await, Err(QueueError::Closed)));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_consumers_get_distinct_messages() {
        const MESSAGES: u32 = 200;
        let queue = EmbeddedQueue::new(5);
        let consumers: Vec<_> = (0..8)
            .map(|_| {
                let queue = queue.clone();
                tokio::spawn(async move {
                    let mut got = Vec::new();
                    while let Ok(delivery) = queue.next().await {
                        got.push(delivery.body.clone());
                        delivery.ack().await.unwrap();
                        tokio::task::yield_now().await;
                    }
                    got
                })
            })
            .collect();
        for i in 0..MESSAGES {
            queue.publish(i.to_be_bytes().to_vec()).await.unwrap();
        }
        tokio::time::timeout(WAIT, async {
            while queue.depths().await.unwrap().ready > 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .unwrap();
        queue.close().await;

        let mut all = Vec::new();
        for consumer in consumers {
            all.extend(consumer.await.unwrap());
        }
        let distinct: HashSet<_> = all.iter().cloned().collect();
        assert_eq!(
            all.len(),
            MESSAGES as usize,
            "every message delivered exactly once"
        );
        assert_eq!(distinct.len(), MESSAGES as usize);
    }

    #[tokio::test]
    async fn check_is_ok_while_open() {
        let queue = EmbeddedQueue::new(5);
        queue.check().await.unwrap();
    }
}
