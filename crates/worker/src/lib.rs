//! The worker: consumes jobs, runs them through the [`pipeline`], and settles each
//! delivery only after the database change that ends the job has committed. Also runs
//! the sweeps that keep the store tidy (stuck packages, abandoned staged uploads).
//!
//! It runs the same whether the queue is in process or RabbitMQ, and whichever blobstore
//! and database are configured.

mod assemble;
mod pipeline;
mod pool;
mod sweep;
mod zipread;

use std::sync::Arc;
use std::time::Duration;

use packages_blobstore::{Chain, redact_urls};
use packages_domain::FailureReason;
use packages_jobs::{DecodeError, Delivery, JobConsumer, JobMessage, JobPayload, QueueError};
use packages_service::Services;
use packages_service::work::RetryDecision;
use packages_telemetry::{Metrics, job_outcome};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tracing::Instrument;

pub use sweep::Sweeper;

use crate::pipeline::{Done, Pipeline, Retry};

#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// Jobs run at once (also the AMQP prefetch).
    pub concurrency: usize,
    /// Of those, large upload jobs ([`LARGE_JOB_BYTES`] of bits or more, or an assembly)
    /// at once.
    pub large_job_concurrency: usize,
    /// Attempts of a job that keeps failing for infrastructure reasons (and re-drives of
    /// a stuck package) before its package is FAILED.
    pub max_attempts: i32,
    /// First retry delay; doubles per attempt up to [`MAX_RETRY_DELAY`].
    pub retry_base: Duration,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        WorkerSettings {
            concurrency: 2,
            large_job_concurrency: 2,
            max_attempts: 5,
            retry_base: Duration::from_secs(1),
        }
    }
}

pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(60);

/// Whether a job moves enough bytes through this process to hold buffers of some MiB:
/// an upload of [`LARGE_JOB_BYTES`] or more, or one whose package is assembled. Copies
/// and deletions happen inside the blobstore.
fn is_large(message: &JobMessage) -> bool {
    match &message.payload {
        JobPayload::ProcessUpload(job) => {
            job.size >= LARGE_JOB_BYTES || job.resources_key.is_some()
        }
        JobPayload::CopyBits(_) | JobPayload::DeleteBits(_) => false,
    }
}

impl WorkerSettings {
    fn retry_delay(&self, attempt: u32) -> Duration {
        self.retry_base
            .saturating_mul(2u32.saturating_pow(attempt))
            .min(MAX_RETRY_DELAY)
    }
}

/// Upload jobs with at least this many bytes of bits count as large (see
/// [`WorkerSettings::large_job_concurrency`]).
pub const LARGE_JOB_BYTES: u64 = 8 << 20;

pub struct Worker {
    pipeline: Arc<Pipeline>,
    consumer: Arc<dyn JobConsumer>,
    settings: WorkerSettings,
    /// Held by each large job while it runs.
    large_jobs: Arc<Semaphore>,
}

impl Worker {
    pub fn new(
        services: Services,
        consumer: Arc<dyn JobConsumer>,
        metrics: Metrics,
        settings: WorkerSettings,
    ) -> Self {
        let large_jobs = Arc::new(Semaphore::new(settings.large_job_concurrency.max(1)));
        Worker {
            pipeline: Arc::new(Pipeline { services, metrics }),
            consumer,
            settings,
            large_jobs,
        }
    }

    /// Consumes until `shutdown` turns true, then finishes the jobs in hand and closes
    /// the consumer (what was not started goes back to the queue).
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let this = Arc::new(self);
        let permits = Arc::new(Semaphore::new(this.settings.concurrency.max(1)));
        let mut in_hand = JoinSet::new();
        loop {
            let permit = tokio::select! {
                permit = permits.clone().acquire_owned() => permit,
                _ = shutdown.changed() => break,
            };
            let Ok(permit) = permit else { break };
            let delivery = tokio::select! {
                delivery = this.consumer.next() => delivery,
                _ = shutdown.changed() => break,
            };
            match delivery {
                Ok(delivery) => {
                    let worker = this.clone();
                    in_hand.spawn(async move {
                        worker.handle(delivery).await;
                        drop(permit);
                    });
                }
                Err(QueueError::Closed) => break,
                Err(e) => {
                    tracing::warn!(error = %packages_blobstore::Chain(&e), "receiving a job failed");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
            while in_hand.try_join_next().is_some() {}
        }
        tracing::info!(
            jobs = in_hand.len(),
            "worker stopping; finishing the jobs in hand"
        );
        while in_hand.join_next().await.is_some() {}
        this.consumer.close().await;
    }

    async fn handle(&self, delivery: Delivery) {
        let message = match JobMessage::decode(&delivery.body) {
            Ok(message) => message,
            Err(e) => return self.reject_unreadable(delivery, e).await,
        };
        let span = tracing::info_span!(
            "job",
            request_id = %message.request_id,
            package_guid = %message.package_guid,
            job_id = %message.job_id,
            kind = message.kind().as_str(),
        );
        // Large jobs take turns; the others go ahead meanwhile.
        let _turn = if is_large(&message) {
            self.large_jobs.clone().acquire_owned().await.ok()
        } else {
            None
        };
        self.run_job(delivery, message).instrument(span).await;
    }

    async fn reject_unreadable(&self, delivery: Delivery, error: DecodeError) {
        tracing::error!(error = %error, "job message refused; sending it to the dead-letter queue");
        self.pipeline
            .metrics
            .job_started()
            .finish("unknown", job_outcome::DEAD_LETTERED);
        if let Err(e) = delivery.dead_letter().await {
            tracing::warn!(error = %packages_blobstore::Chain(&e), "dead-lettering failed; the broker will deliver it again");
        }
    }

    async fn run_job(&self, delivery: Delivery, message: JobMessage) {
        let timer = self.pipeline.metrics.job_started();
        let kind = message.kind().as_str();
        // Counted before the run, so a run that takes its process down is on record.
        let died = self
            .pipeline
            .services
            .begin_job_run(&message.job_id.to_string())
            .await;
        match died {
            Ok(Some(died)) if died >= self.settings.max_attempts => {
                let outcome = self.quarantine(delivery, &message, died).await;
                return timer.finish(kind, outcome);
            }
            Ok(_) => {}
            Err(e) => {
                let cause = Chain(&e).to_string();
                let outcome = self.requeue_later(delivery, &cause).await;
                return timer.finish(kind, outcome);
            }
        }
        // Tests make jobs hang here to exercise the pending-timeout sweep.
        if stalled_by_failpoint() {
            tracing::warn!("job stalled by a test failpoint");
            return std::future::pending().await;
        }
        // Tests kill the process here, with the run counted, to exercise the quarantine.
        fail::fail_point!("worker-job-crash", |_| std::process::abort());
        let result = match &message.payload {
            JobPayload::ProcessUpload(job) => self.pipeline.process_upload(&message, job).await,
            JobPayload::CopyBits(job) => self.pipeline.copy_bits(&message, job).await,
            JobPayload::DeleteBits(job) => self.pipeline.delete_bits(&message, job).await,
        };
        let outcome = match result {
            Ok(Done::Succeeded) => settle(delivery.ack().await, job_outcome::SUCCEEDED),
            Ok(Done::Failed(reason)) => {
                self.pipeline.metrics.package_failed(reason.label());
                settle(delivery.ack().await, job_outcome::FAILED)
            }
            Ok(Done::Ignored(why)) => {
                tracing::info!(why, "job ignored");
                settle(delivery.ack().await, job_outcome::IGNORED)
            }
            Err(failure) => self.retry(delivery, &message, &failure).await,
        };
        timer.finish(kind, outcome);
    }

    /// Infrastructure failure: retried with backoff through the outbox while the
    /// database answers; after `max_attempts` the package is FAILED with the reason and
    /// the message goes to the dead-letter queue. When the database itself is down the
    /// message goes back to the broker, whose delivery limit dead-letters it eventually
    /// (the pending sweep then fails the package).
    async fn retry(
        &self,
        delivery: Delivery,
        message: &JobMessage,
        failure: &Retry,
    ) -> &'static str {
        // Rendered once: the chain, with any URL's query string removed.
        let cause = Chain(failure).to_string();
        let cause = cause.as_str();
        tracing::warn!(cause, "job hit an infrastructure error");
        if !failure.is_retryable() {
            return self.give_up_now(delivery, message, cause).await;
        }
        let settings = self.settings.clone();
        let decision = self
            .pipeline
            .services
            .retry_job(
                &message.job_id.to_string(),
                self.settings.max_attempts,
                move |attempts| settings.retry_delay(attempts),
            )
            .await;
        match decision {
            Ok(RetryDecision::Rescheduled(attempt)) => {
                tracing::info!(attempt, "job rescheduled");
                settle(delivery.ack().await, job_outcome::RETRIED)
            }
            Ok(RetryDecision::Gone) => settle(delivery.ack().await, job_outcome::IGNORED),
            Ok(RetryDecision::GiveUp) => self.give_up_now(delivery, message, cause).await,
            Err(e) => {
                let cause = Chain(&e).to_string();
                self.requeue_later(delivery, &cause).await
            }
        }
    }

    /// The job will not succeed (attempts spent, or an error no attempt gets past): its
    /// package is FAILED with the cause and the message dead-lettered.
    async fn give_up_now(
        &self,
        delivery: Delivery,
        message: &JobMessage,
        cause: &str,
    ) -> &'static str {
        let given_up = self
            .pipeline
            .give_up(message, FailureReason::GaveUp(redact_urls(cause)))
            .await;
        match given_up {
            Ok(reason) => {
                if let Some(reason) = reason {
                    self.pipeline.metrics.package_failed(reason.label());
                }
                tracing::error!(cause, "job given up; dead-lettered");
                settle(delivery.dead_letter().await, job_outcome::DEAD_LETTERED)
            }
            Err(e) => {
                let cause = Chain(&e).to_string();
                self.requeue_later(delivery, &cause).await
            }
        }
    }

    /// Runs of this job ended with their process `died` times: it is not run again. Its
    /// package is FAILED and the message dead-lettered, so a package that brings workers
    /// down (memory, a bug) cannot do it for ever, whoever restarts them.
    async fn quarantine(
        &self,
        delivery: Delivery,
        message: &JobMessage,
        died: i32,
    ) -> &'static str {
        let runs = u32::try_from(died).unwrap_or(0);
        tracing::error!(runs, "job ended with its process too often; quarantined");
        match self
            .pipeline
            .give_up(message, FailureReason::Crashed { runs })
            .await
        {
            Ok(reason) => {
                if let Some(reason) = reason {
                    self.pipeline.metrics.package_failed(reason.label());
                }
                settle(delivery.dead_letter().await, job_outcome::DEAD_LETTERED)
            }
            Err(e) => {
                let cause = Chain(&e).to_string();
                self.requeue_later(delivery, &cause).await
            }
        }
    }

    /// The database cannot record anything: wait a little (so a broker redelivery is not
    /// a hot loop), then hand the message back.
    async fn requeue_later(&self, delivery: Delivery, cause: &str) -> &'static str {
        let delay = self.settings.retry_delay(delivery.previous_deliveries);
        tracing::warn!(
            cause,
            delay_ms = delay.as_millis() as u64,
            "cannot record the retry; requeueing"
        );
        tokio::time::sleep(delay).await;
        settle(delivery.requeue().await, job_outcome::RETRIED)
    }
}

fn stalled_by_failpoint() -> bool {
    fail::fail_point!("worker-job-stall", |_| true);
    false
}

/// A settle that fails (connection lost) leaves the message unacknowledged; the broker
/// delivers it again and the job's idempotence absorbs the repeat.
fn settle(result: Result<(), QueueError>, outcome: &'static str) -> &'static str {
    if let Err(e) = result {
        tracing::warn!(error = %packages_blobstore::Chain(&e), "settling a delivery failed; it will be delivered again");
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_double_and_cap() {
        let s = WorkerSettings {
            retry_base: Duration::from_secs(1),
            ..WorkerSettings::default()
        };
        assert_eq!(s.retry_delay(0), Duration::from_secs(1));
        assert_eq!(s.retry_delay(3), Duration::from_secs(8));
        assert_eq!(s.retry_delay(10), MAX_RETRY_DELAY);
        assert_eq!(s.retry_delay(u32::MAX), MAX_RETRY_DELAY);
    }
}
