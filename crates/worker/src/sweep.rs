//! Periodic upkeep run by every worker: re-drives or fails packages stuck pending past
//! `packages.pending_timeout_secs`, removes staged uploads nobody will process, and
//! refreshes the gauges operators watch. Safe to run in any number of workers at once:
//! every change is a conditional update.

use std::sync::Arc;
use std::time::Duration;

use packages_domain::{FailureReason, Package, PackageState, Timestamp, Transition};
use packages_jobs::{JobConsumer, JobMessage, JobPayload};
use packages_service::{Services, jobs as job_rows};
use packages_storage::packages::{self, Outcome};
use packages_storage::{StorageError, jobs};
use packages_telemetry::{Metrics, failure_reason};
use tokio::sync::watch;

/// Staged uploads younger than this are left alone: their request may still be between
/// storing the bits and recording the job.
const STAGING_GRACE: Duration = Duration::from_secs(15 * 60);
const GAUGE_INTERVAL: Duration = Duration::from_secs(5);

pub struct Sweeper {
    pub services: Services,
    pub metrics: Metrics,
    /// Source of the queue depth gauges.
    pub queue: Option<Arc<dyn JobConsumer>>,
    /// Re-drives of a stuck package before it is FAILED.
    pub max_attempts: i32,
}

enum Stuck {
    Redriven(i32),
    Failed(Option<String>),
    Unchanged,
}

impl Sweeper {
    fn pending_interval(&self) -> Duration {
        (self.services.policy.pending_timeout / 4)
            .clamp(Duration::from_secs(1), Duration::from_secs(60))
    }

    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut pending = tokio::time::interval(self.pending_interval());
        let mut gauges = tokio::time::interval(GAUGE_INTERVAL);
        let mut staging = tokio::time::interval(STAGING_GRACE / 3);
        loop {
            tokio::select! {
                _ = pending.tick() => self.sweep_pending().await,
                _ = gauges.tick() => self.refresh_gauges().await,
                _ = staging.tick() => self.sweep_staging().await,
                _ = shutdown.changed() => return,
            }
        }
    }

    /// Packages pending longer than the timeout: their job is published again (its
    /// message may have been lost with a crashed process), or once its attempts are
    /// spent the package is FAILED, so a client polling it never waits forever.
    pub async fn sweep_pending(&self) {
        let timeout = self.services.policy.pending_timeout;
        let before =
            Timestamp::now().seconds() - i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX);
        let stale = match self
            .services
            .db
            .run(move |conn| packages::pending_since_before(conn, before))
            .await
        {
            Ok(stale) => stale,
            Err(e) => return tracing::warn!(error = %e, "pending sweep cannot read packages"),
        };
        for package in stale {
            let guid = package.guid.clone();
            match self.unstick(package, timeout.as_secs()).await {
                Ok(Stuck::Redriven(attempt)) => {
                    tracing::warn!(package_guid = %guid, attempt, "package stuck pending; job published again");
                    self.services.relay_wake.notify_one();
                }
                Ok(Stuck::Failed(staging)) => {
                    tracing::warn!(package_guid = %guid, "package stuck pending with its retries spent; FAILED");
                    self.metrics.package_failed(failure_reason::TIMED_OUT);
                    if let Some(key) = staging {
                        let _ = self.services.blobs.delete(&key).await;
                    }
                }
                Ok(Stuck::Unchanged) => {}
                Err(e) => {
                    tracing::warn!(package_guid = %guid, error = %e, "pending sweep failed for a package")
                }
            }
        }
    }

    async fn unstick(&self, package: Package, timeout_secs: u64) -> Result<Stuck, StorageError> {
        let max = self.max_attempts;
        self.services
            .db
            .run(move |conn| {
                let job =
                    jobs::find_for_package(conn, &package.guid, &job_rows::PACKAGE_JOB_KINDS)?;
                if let Some(job) = &job
                    && job.attempts + 1 < max
                {
                    if !packages::restart_pending_clock(conn, &package.guid, package.state)? {
                        return Ok(Stuck::Unchanged);
                    }
                    return Ok(
                        jobs::reschedule(conn, &job.id, 0, jobs::Rescheduler::Sweep)?
                            .map_or(Stuck::Unchanged, Stuck::Redriven),
                    );
                }
                let Some(transition) = Transition::failure_from(package.state) else {
                    return Ok(Stuck::Unchanged);
                };
                let reason = FailureReason::TimedOut {
                    seconds: timeout_secs,
                };
                let outcome = Outcome {
                    error: Some(reason.message()),
                    ..Outcome::default()
                };
                let staging = job.and_then(|j| match JobMessage::decode(j.body.as_bytes()) {
                    Ok(JobMessage {
                        payload: JobPayload::ProcessUpload(u),
                        ..
                    }) => Some(u.staging_key),
                    _ => None,
                });
                let failed = packages::finish(
                    conn,
                    &package.guid,
                    transition,
                    &outcome,
                    &job_rows::PACKAGE_JOB_KINDS,
                )?;
                Ok(if failed {
                    Stuck::Failed(staging)
                } else {
                    Stuck::Unchanged
                })
            })
            .await
    }

    /// Staged uploads whose package is not (or no longer) processing them: left by a
    /// request that lost a race or died between storing and recording.
    pub async fn sweep_staging(&self) {
        let blobs = match self.services.blobs.list("staging/").await {
            Ok(blobs) => blobs,
            Err(e) => return tracing::warn!(error = %e, "staging sweep cannot list blobs"),
        };
        let cutoff =
            Timestamp::now().seconds() - i64::try_from(STAGING_GRACE.as_secs()).unwrap_or(0);
        for blob in blobs.into_iter().filter(|b| b.last_modified < cutoff) {
            let Some(guid) = blob.key.split('/').nth(1).map(str::to_owned) else {
                continue;
            };
            let lookup = guid.clone();
            let package = match self
                .services
                .db
                .run(move |conn| packages::find(conn, &lookup))
                .await
            {
                Ok(package) => package,
                Err(e) => return tracing::warn!(error = %e, "staging sweep cannot read packages"),
            };
            let in_use = package.is_some_and(|p| p.state == PackageState::ProcessingUpload);
            if !in_use {
                tracing::info!(key = %blob.key, "removing an abandoned staged upload");
                let _ = self.services.blobs.delete(&blob.key).await;
            }
        }
    }

    async fn refresh_gauges(&self) {
        if let Some(queue) = &self.queue {
            match queue.depths().await {
                Ok(depths) => self.metrics.set_queue_depths(depths.ready, depths.dead),
                Err(e) => tracing::debug!(error = %e, "queue depths unavailable"),
            }
        }
        let counts = self
            .services
            .db
            .run(|conn| {
                Ok((
                    jobs::count_unpublished(conn)?,
                    packages::count_by_state(conn)?,
                    packages::oldest_pending_since(conn)?,
                ))
            })
            .await;
        if let Ok((outbox, by_state, oldest)) = counts {
            self.metrics
                .set_outbox_pending(u64::try_from(outbox).unwrap_or(0));
            self.metrics.set_packages_by_state(&by_state);
            // What the stuck-package alert watches: 0 when nothing is pending.
            let age = oldest.map_or(0, |since| Timestamp::now().seconds().saturating_sub(since));
            self.metrics
                .set_pending_oldest(u64::try_from(age).unwrap_or(0));
        }
    }
}
