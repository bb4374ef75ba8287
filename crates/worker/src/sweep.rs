//! Periodic upkeep run by every worker: re-drives or fails packages stuck pending past
//! `packages.pending_timeout_secs`, removes staged uploads nobody will process, and
//! refreshes the gauges operators watch. Safe to run in any number of workers at once:
//! every change is a conditional update.

use std::sync::Arc;
use std::time::Duration;

use packages_domain::failure::FailureLabel;
use packages_domain::{STAGING_PREFIX, Timestamp, parse_staging_key};
use packages_jobs::JobConsumer;
use packages_service::Services;
use packages_service::work::Stuck;
use packages_telemetry::Metrics;
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

impl Sweeper {
    fn pending_interval(&self) -> Duration {
        (self.services.policy().pending_timeout / 4)
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
        let timeout = self.services.policy().pending_timeout;
        let before =
            Timestamp::now().seconds() - i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX);
        let stale = match self.services.packages_pending_since_before(before).await {
            Ok(stale) => stale,
            Err(e) => {
                return tracing::warn!(error = %packages_blobstore::Chain(&e), "pending sweep cannot read packages");
            }
        };
        for package in stale {
            let guid = package.guid.clone();
            match self.services.unstick(package, self.max_attempts).await {
                Ok(Stuck::Redriven(attempt)) => {
                    tracing::warn!(package_guid = %guid, attempt, "package stuck pending; job published again");
                }
                Ok(Stuck::Failed { staging_key }) => {
                    tracing::warn!(package_guid = %guid, "package stuck pending with its retries spent; FAILED");
                    self.metrics.package_failed(FailureLabel::TimedOut.into());
                    if let Some(key) = staging_key {
                        let _ = self.services.blobs().delete(&key).await;
                    }
                }
                Ok(Stuck::Unchanged) => {}
                Err(e) => {
                    tracing::warn!(package_guid = %guid, error = %packages_blobstore::Chain(&e), "pending sweep failed for a package")
                }
            }
        }
    }

    /// Staged uploads whose package is not (or no longer) processing them: left by a
    /// request that lost a race or died between storing and recording.
    pub async fn sweep_staging(&self) {
        let blobs = match self.services.blobs().list(STAGING_PREFIX).await {
            Ok(blobs) => blobs,
            Err(e) => {
                return tracing::warn!(error = %packages_blobstore::Chain(&e), "staging sweep cannot list blobs");
            }
        };
        let cutoff =
            Timestamp::now().seconds() - i64::try_from(STAGING_GRACE.as_secs()).unwrap_or(0);
        for blob in blobs.into_iter().filter(|b| b.last_modified < cutoff) {
            let Some((package_guid, _)) = parse_staging_key(&blob.key) else {
                continue;
            };
            match self.services.staged_upload_in_use(package_guid).await {
                Ok(true) => {}
                Ok(false) => {
                    tracing::info!(key = %blob.key, "removing an abandoned staged upload");
                    let _ = self.services.blobs().delete(&blob.key).await;
                }
                Err(e) => {
                    return tracing::warn!(error = %packages_blobstore::Chain(&e), "staging sweep cannot read packages");
                }
            }
        }
    }

    async fn refresh_gauges(&self) {
        if let Some(queue) = &self.queue {
            match queue.depths().await {
                Ok(depths) => self.metrics.set_queue_depths(depths.ready, depths.dead),
                Err(e) => {
                    tracing::debug!(error = %packages_blobstore::Chain(&e), "queue depths unavailable")
                }
            }
        }
        if let Ok(counts) = self.services.store_counts().await {
            self.metrics.set_outbox_pending(counts.outbox_pending);
            self.metrics
                .set_packages_by_state(&counts.packages_by_state);
            // What the stuck-package alert watches: 0 when nothing is pending.
            let age = counts
                .oldest_pending_since
                .map_or(0, |since| Timestamp::now().seconds().saturating_sub(since));
            self.metrics
                .set_pending_oldest(u64::try_from(age).unwrap_or(0));
        }
    }
}
