//! Request bodies, read under an idle timeout: a body that makes no progress for
//! `server.body_idle_timeout_secs` ends the request with 408 and closes the connection.
//! What counts is idle time, not total time, so a slow upload that keeps sending is fine
//! while a client that sends headers and stalls cannot hold a connection (and a file
//! descriptor) for ever.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::error::PayloadError;
use actix_web::web;
use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use tokio::time::{Instant, Sleep};

use crate::ApiError;

/// Largest JSON (or form) body accepted; creates are a few hundred bytes.
pub(crate) const MAX_SMALL_BODY: usize = 1 << 20;

/// Tells, after a read failed, whether the idle timeout was the reason.
#[derive(Clone, Default)]
pub(crate) struct IdleFlag(Arc<AtomicBool>);

impl IdleFlag {
    pub(crate) fn fired(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// A request body that fails with a timed-out I/O error once no bytes arrived for the
/// idle period; afterwards it ends.
pub(crate) struct GuardedBody {
    inner: web::Payload,
    idle: Duration,
    deadline: Pin<Box<Sleep>>,
    flag: IdleFlag,
    done: bool,
}

impl GuardedBody {
    pub(crate) fn new(inner: web::Payload, idle: Duration) -> (GuardedBody, IdleFlag) {
        let flag = IdleFlag::default();
        let body = GuardedBody {
            inner,
            idle,
            deadline: Box::pin(tokio::time::sleep(idle)),
            flag: flag.clone(),
            done: false,
        };
        (body, flag)
    }
}

impl Stream for GuardedBody {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        match this.inner.poll_next_unpin(cx) {
            Poll::Ready(Some(item)) => {
                let next = Instant::now() + this.idle;
                this.deadline.as_mut().reset(next);
                Poll::Ready(Some(item))
            }
            Poll::Ready(None) => {
                this.done = true;
                Poll::Ready(None)
            }
            Poll::Pending => match this.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    this.done = true;
                    this.flag.0.store(true, Ordering::Relaxed);
                    Poll::Ready(Some(Err(PayloadError::Io(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "the request body made no progress",
                    )))))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

/// Reads a small body whole (at most [`MAX_SMALL_BODY`] bytes) under its idle timeout.
pub(crate) async fn read_small(mut body: GuardedBody) -> Result<Bytes, ApiError> {
    let mut bytes = BytesMut::new();
    while let Some(chunk) = body.next().await {
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(_) if body.flag.fired() => return Err(ApiError::body_idle(body.idle)),
            Err(e) => return Err(ApiError::parse_error(&e.to_string())),
        };
        if bytes.len() + chunk.len() > MAX_SMALL_BODY {
            return Err(ApiError::body_too_large(MAX_SMALL_BODY));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes.freeze())
}
