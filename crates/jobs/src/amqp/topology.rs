//! The exchanges and queues of one prefix, declared on every connection.

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{Channel, ExchangeKind};

use crate::QueueError;

/// Routing key of every job message on `P.jobs`.
pub const ROUTING_KEY: &str = "work";

/// Exchange and queue names derived from the prefix.
#[derive(Debug, Clone)]
pub(super) struct Topology {
    pub(super) exchange: ShortString,
    pub(super) work: ShortString,
    dlx: ShortString,
    pub(super) dead: ShortString,
    delivery_limit: u32,
}

impl Topology {
    pub(super) fn new(prefix: &str, delivery_limit: u32) -> Result<Self, QueueError> {
        // lapin panics on names longer than 255 bytes; refuse them here instead.
        let name = |suffix: &str| {
            ShortString::try_new(format!("{prefix}{suffix}")).map_err(|_| {
                QueueError::Settings(format!(
                    "queue prefix of {} bytes is too long: AMQP names take at most 255",
                    prefix.len()
                ))
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

    pub(super) async fn declare(&self, channel: &Channel) -> lapin::Result<()> {
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

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
            Err(QueueError::Settings(_))
        ));
    }
}
