//! The publishing connection: publisher confirms, one reconnect per publish, queue depths.

use std::sync::Arc;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions};
use lapin::types::{FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Confirmation, Connection};
use tracing::{info, warn};

use super::{CONFIRM_TIMEOUT, OP_TIMEOUT, REPLY_SUCCESS, ROUTING_KEY, Shared, amqp, bounded};
use crate::error::Chain;
use crate::{QueueDepths, QueueError};

pub(super) struct PublisherSlot {
    pub(super) link: Option<PublisherLink>,
    /// Generation of the next link; above 0 once a link was opened, so a new one is a reconnect.
    pub(super) next_generation: u64,
}

#[derive(Clone)]
pub(super) struct PublisherLink {
    /// Tells a stale link (replaced by a concurrent reconnect) from the current one.
    generation: u64,
    pub(super) connection: Arc<Connection>,
    channel: Channel,
}

impl PublisherLink {
    fn is_usable(&self) -> bool {
        self.connection.status().connected() && self.channel.status().connected()
    }
}

enum PublishFailure {
    /// Negative confirm.
    Nacked,
    /// Returned as unroutable: the work queue or its binding is gone.
    Returned,
    /// The connection or channel is broken, or the confirm never came.
    Broken(QueueError),
}

impl Shared {
    /// The current publishing link, reconnecting if it is broken. The flag is true when this
    /// call opened a new connection.
    pub(super) async fn publisher_link(&self) -> Result<(PublisherLink, bool), QueueError> {
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
                .map_err(amqp("enabling publisher confirms"))
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
            .map_err(|e| PublishFailure::Broken(amqp("publishing")(e)))?;
        match tokio::time::timeout(CONFIRM_TIMEOUT, confirm).await {
            Err(_) => Err(PublishFailure::Broken(QueueError::Timeout {
                what: "waiting for the publisher confirm",
                after: CONFIRM_TIMEOUT,
            })),
            Ok(Err(e)) => Err(PublishFailure::Broken(amqp(
                "waiting for the publisher confirm",
            )(e))),
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
            // The channel is not in confirm mode: a fresh link puts it there.
            Ok(Ok(Confirmation::NotRequested)) => {
                Err(PublishFailure::Broken(QueueError::NotConfirmed))
            }
        }
    }

    /// Publishes on the current link; if that is broken, reconnects once and tries again. A
    /// retried message may be a duplicate (its first confirm was lost), which at-least-once
    /// delivery allows anyway.
    pub(super) async fn publish(&self, body: &[u8]) -> Result<(), QueueError> {
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
                        return Err(error);
                    }
                    warn!(error = %Chain(&error), "publishing a job failed; reconnecting once");
                }
            }
        }
    }

    pub(super) async fn depths(&self) -> Result<QueueDepths, QueueError> {
        let (link, _) = self.publisher_link().await?;
        // A passive declare of a missing queue closes its channel: use a throwaway one.
        let channel = link
            .connection
            .create_channel()
            .await
            .map_err(amqp("opening a channel"))?;
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
        result.map_err(amqp("reading queue depths"))
    }
}
