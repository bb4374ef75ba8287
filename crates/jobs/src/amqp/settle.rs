//! Settling a delivery (ack, requeue, dead-letter) on the channel it came from.

use std::future::Future;

use async_trait::async_trait;
use lapin::Acker;
use lapin::options::BasicRejectOptions;

use super::{OP_TIMEOUT, amqp};
use crate::{QueueError, Settle};

/// Settles one delivery on the channel it came from. If that channel is gone the broker has
/// already taken the message back, so settling fails and the message is redelivered.
pub(super) struct AmqpSettle {
    /// `None` once settled.
    pub(super) acker: Option<Acker>,
}

impl AmqpSettle {
    async fn settle<F, Fut>(&mut self, what: &'static str, op: F) -> Result<(), QueueError>
    where
        F: FnOnce(Acker) -> Fut,
        Fut: Future<Output = lapin::Result<bool>>,
    {
        let Some(acker) = self.acker.take() else {
            return Err(QueueError::AlreadySettled { what });
        };
        match tokio::time::timeout(OP_TIMEOUT, op(acker)).await {
            Ok(Ok(true)) => Ok(()),
            Ok(Ok(false)) => Err(QueueError::ChannelClosed { what }),
            Ok(Err(e)) => Err(amqp(what)(e)),
            Err(_) => Err(QueueError::Timeout {
                what,
                after: OP_TIMEOUT,
            }),
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
