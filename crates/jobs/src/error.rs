//! What can go wrong with a queue.
//!
//! Each variant's text is a short phrase of its own; the failure underneath, when there is
//! one, is its [`source`](std::error::Error::source). Render the whole chain for logs
//! (`packages_blobstore::Chain` does, and so does this crate's own logging).

#[cfg(feature = "amqp")]
use std::error::Error;
#[cfg(feature = "amqp")]
use std::fmt;
use std::time::Duration;

#[cfg(feature = "amqp")]
use lapin::ErrorKind;
#[cfg(feature = "amqp")]
use lapin::protocol::{AMQPErrorKind, AMQPHardError, AMQPSoftError};

/// What went wrong. [`QueueError::is_retryable`] tells failures a later attempt may get
/// past from those it will not.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// Talking to the broker failed: it could not be reached, the connection or channel
    /// broke, or the broker refused the operation `what` names.
    #[cfg(feature = "amqp")]
    #[error("{what}")]
    Amqp {
        what: &'static str,
        #[source]
        source: lapin::Error,
    },
    /// The operation `what` names did not finish within `after`.
    #[error("{what} timed out after {after:?}")]
    Timeout { what: &'static str, after: Duration },
    /// The channel a delivery came from is gone, so it cannot be settled; the broker has
    /// taken the message back and delivers it again.
    #[error("{what}: the delivery's channel is closed; the broker will redeliver it")]
    ChannelClosed { what: &'static str },
    /// The delivery was settled before.
    #[error("{what}: delivery already settled")]
    AlreadySettled { what: &'static str },
    /// The broker refused the message (negative publisher confirm) or returned it as
    /// unroutable.
    #[error("message not confirmed by the broker")]
    NotConfirmed,
    /// The settings cannot work: a URL that does not parse, a prefix too long for AMQP
    /// names.
    #[error("queue settings: {0}")]
    Settings(String),
    /// The AMQP client runs on Tokio and was called outside a Tokio runtime.
    #[error("AMQP needs a Tokio runtime")]
    NoRuntime,
    /// [`JobConsumer::close`](crate::JobConsumer::close) was called.
    #[error("queue closed")]
    Closed,
}

impl QueueError {
    /// Whether a later attempt may succeed: the broker out of reach, a connection or
    /// channel lost, a timeout, a message the broker did not take. Not: settings or
    /// credentials the broker refuses, a declaration it rejects, a closed queue.
    pub fn is_retryable(&self) -> bool {
        match self {
            #[cfg(feature = "amqp")]
            QueueError::Amqp { source, .. } => lapin_is_retryable(source),
            QueueError::Timeout { .. }
            | QueueError::ChannelClosed { .. }
            | QueueError::NotConfirmed => true,
            QueueError::AlreadySettled { .. }
            | QueueError::Settings(_)
            | QueueError::NoRuntime
            | QueueError::Closed => false,
        }
    }
}

#[cfg(feature = "amqp")]
fn lapin_is_retryable(e: &lapin::Error) -> bool {
    match e.kind() {
        // I/O, a lost heartbeat, or a connection or channel that broke under us.
        ErrorKind::IOError(_)
        | ErrorKind::MissingHeartbeatError
        | ErrorKind::InvalidConnectionState(_)
        | ErrorKind::InvalidChannelState(..)
        | ErrorKind::InvalidChannel(_) => true,
        // The broker closing down or short of resources is passing; refused access, a
        // missing vhost or a declaration that conflicts with the broker's is not.
        ErrorKind::ProtocolError(error) => matches!(
            error.kind(),
            AMQPErrorKind::Hard(
                AMQPHardError::CONNECTIONFORCED
                    | AMQPHardError::RESOURCEERROR
                    | AMQPHardError::INTERNALERROR
            ) | AMQPErrorKind::Soft(AMQPSoftError::RESOURCELOCKED)
        ),
        _ => false,
    }
}

/// An error and its sources on one line, `outer: cause: root cause`, for this crate's
/// logs. A cause whose text the part before it already shows (lapin repeats its
/// source's text) is not repeated.
#[cfg(feature = "amqp")]
pub(crate) struct Chain<'a>(pub(crate) &'a dyn Error);

#[cfg(feature = "amqp")]
impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut shown = self.0.to_string();
        f.write_str(&shown)?;
        let mut next = self.0.source();
        while let Some(cause) = next {
            let text = cause.to_string();
            if !text.is_empty() && !shown.contains(&text) {
                write!(f, ": {text}")?;
                shown = text;
            }
            next = cause.source();
        }
        Ok(())
    }
}

#[cfg(all(test, feature = "amqp"))]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::io;

    use lapin::protocol::AMQPError;

    use super::*;

    fn protocol(code: u16) -> lapin::Error {
        let error = AMQPError::from_id(code, "text from the broker".into()).unwrap();
        lapin::Error::from(ErrorKind::ProtocolError(error))
    }

    fn amqp(source: lapin::Error) -> QueueError {
        QueueError::Amqp {
            what: "connecting to RabbitMQ",
            source,
        }
    }

    #[test]
    fn retryable_or_not() {
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        for retryable in [
            amqp(lapin::Error::from(refused)),
            amqp(ErrorKind::MissingHeartbeatError.into()),
            amqp(protocol(320)),
            amqp(protocol(541)),
            QueueError::Timeout {
                what: "publishing",
                after: Duration::from_secs(1),
            },
            QueueError::ChannelClosed { what: "ack" },
            QueueError::NotConfirmed,
        ] {
            assert!(retryable.is_retryable(), "{retryable:?}");
        }
        for not in [
            amqp(protocol(403)),
            amqp(protocol(406)),
            amqp(protocol(402)),
            amqp(protocol(530)),
            QueueError::AlreadySettled { what: "ack" },
            QueueError::Settings("prefix too long".into()),
            QueueError::NoRuntime,
            QueueError::Closed,
        ] {
            assert!(!not.is_retryable(), "{not:?}");
        }
    }

    #[test]
    fn text_is_the_phrase_and_the_chain_has_the_causes() {
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        let e = amqp(lapin::Error::from(refused));
        assert_eq!(e.to_string(), "connecting to RabbitMQ");
        // lapin's text repeats its io::Error's, which is shown once.
        assert_eq!(
            Chain(&e).to_string(),
            "connecting to RabbitMQ: IO error: connection refused"
        );
        let e = amqp(protocol(403));
        assert_eq!(
            Chain(&e).to_string(),
            "connecting to RabbitMQ: protocol error: AMQP soft error: ACCESS-REFUSED: text from the broker"
        );
    }
}
