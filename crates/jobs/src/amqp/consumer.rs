//! The consuming connection: one consumer stream, reconnected with backoff for ever.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use lapin::options::{BasicConsumeOptions, BasicQosOptions};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{Channel, Connection, Consumer};
use tracing::{info, warn};

use super::settle::AmqpSettle;
use super::{BACKOFF_MAX, BACKOFF_MIN, OP_TIMEOUT, STABLE_SESSION, Shared, amqp, bounded};
use crate::error::Chain;
use crate::{Delivery, QueueError};

pub(super) struct ConsumerState {
    pub(super) session: Option<ConsumerSession>,
    pub(super) backoff: Duration,
    /// Failed attempts to open a session since the last one that worked.
    pub(super) failures: u32,
    /// A session was lost and none has been opened since.
    pub(super) reconnecting: bool,
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

pub(super) struct ConsumerSession {
    opened: Instant,
    pub(super) connection: Connection,
    pub(super) channel: Channel,
    pub(super) consumer: Consumer,
}

impl Shared {
    async fn open_consumer(&self) -> Result<ConsumerSession, QueueError> {
        let (connection, channel) = self.open("consumer").await?;
        let prefetch = self.settings.prefetch.max(1);
        // 50 bytes, well within the 255 of a short string.
        let tag = ShortString::from(format!("packages-jobs-{}", uuid::Uuid::new_v4()));
        bounded(OP_TIMEOUT, "starting the consumer", async {
            channel
                .basic_qos(prefetch, BasicQosOptions { global: false })
                .await
                .map_err(amqp("setting prefetch"))?;
            let consumer = channel
                .basic_consume(
                    self.topology.work.clone(),
                    tag,
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(amqp("starting the consumer"))?;
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
    pub(super) async fn next_delivery(&self) -> Delivery {
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
                        warn!(error = %Chain(&error), attempt = state.failures, "cannot consume from RabbitMQ");
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
                    warn!(error = %Chain(&error), "consumer connection to RabbitMQ lost; reconnecting");
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use lapin::BasicProperties;

    use super::*;
    use crate::amqp::ROUTING_KEY;

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
}
