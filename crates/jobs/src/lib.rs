//! Jobs: the message a worker receives, and the queue that carries it.
//!
//! The message format is defined once, in `proto/job-message.v1.schema.json`; this module
//! is its Rust side. A queue is two small traits, [`JobPublisher`] and [`JobConsumer`],
//! implemented in process ([`EmbeddedQueue`]) and on RabbitMQ ([`AmqpQueue`]).

use async_trait::async_trait;

#[cfg(feature = "amqp")]
mod amqp;
mod embedded;
mod error;
mod message;

#[cfg(feature = "amqp")]
pub use amqp::{AmqpQueue, AmqpSettings};
pub use embedded::EmbeddedQueue;
pub use error::QueueError;
pub use message::{
    CopyBits, DecodeError, DeleteBits, JOB_MESSAGE_VERSION, JobKind, JobMessage, JobPayload,
    ProcessUpload,
};

/// Publishes job messages; `publish` returns once the queue has taken responsibility for
/// the message (AMQP: a positive publisher confirm for a persistent message).
#[async_trait]
pub trait JobPublisher: Send + Sync + 'static {
    async fn publish(&self, body: Vec<u8>) -> Result<(), QueueError>;
    /// Cheap reachability check for readiness probes.
    async fn check(&self) -> Result<(), QueueError>;
}

/// Hands out deliveries; at most `prefetch` of them are unsettled at once.
#[async_trait]
pub trait JobConsumer: Send + Sync + 'static {
    /// Waits for the next delivery. Reconnects by itself after a broker outage; returns
    /// `QueueError::Closed` only once [`JobConsumer::close`] was called.
    async fn next(&self) -> Result<Delivery, QueueError>;
    /// Stops handing out deliveries; unsettled ones go back to the queue.
    async fn close(&self);
    /// Messages waiting in the work queue and in the dead-letter queue.
    async fn depths(&self) -> Result<QueueDepths, QueueError>;
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueDepths {
    pub ready: u64,
    pub dead: u64,
}

/// One message handed to a worker. It must be settled exactly once.
pub struct Delivery {
    pub body: Vec<u8>,
    /// How many times this message was delivered before (0 on the first delivery).
    pub previous_deliveries: u32,
    settle: Box<dyn Settle>,
}

impl Delivery {
    pub fn new(body: Vec<u8>, previous_deliveries: u32, settle: Box<dyn Settle>) -> Self {
        Delivery {
            body,
            previous_deliveries,
            settle,
        }
    }

    /// The job is done (its final database change has committed).
    pub async fn ack(self) -> Result<(), QueueError> {
        self.settle.ack().await
    }

    /// Put the message back to be delivered again (counts toward the delivery limit).
    pub async fn requeue(self) -> Result<(), QueueError> {
        self.settle.requeue().await
    }

    /// Send the message to the dead-letter queue.
    pub async fn dead_letter(self) -> Result<(), QueueError> {
        self.settle.dead_letter().await
    }
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("body_len", &self.body.len())
            .field("previous_deliveries", &self.previous_deliveries)
            .finish_non_exhaustive()
    }
}

/// The queue-specific way to settle a delivery.
#[async_trait]
pub trait Settle: Send + Sync {
    async fn ack(self: Box<Self>) -> Result<(), QueueError>;
    async fn requeue(self: Box<Self>) -> Result<(), QueueError>;
    async fn dead_letter(self: Box<Self>) -> Result<(), QueueError>;
}
