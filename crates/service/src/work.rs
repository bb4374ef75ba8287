//! What the worker and its sweeps ask of the store: every state change of a job's package
//! and every change to job rows. Each operation commits in one transaction and, when it
//! recorded a job to publish, wakes the outbox relay in the same step, so no caller can
//! forget to.

use std::time::Duration;

use packages_domain::{
    BlobKey, FailureReason, JobKind, Outcome, Package, PackageGuid, PackageState, Transition,
};
use packages_jobs::{JobMessage, JobPayload};
use packages_storage::jobs::{self as rows, Rescheduler};
use packages_storage::packages;

use crate::{Result, Services, jobs};

/// What became of a job that hit an infrastructure error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryDecision {
    /// It will be published again after a delay; this is its attempt number.
    Rescheduled(i32),
    /// Out of attempts.
    GiveUp,
    /// Its row is gone: the job was finished by a duplicate.
    Gone,
}

/// What the pending sweep did with a package stuck past its timeout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stuck {
    /// Its job will be published again; the attempt number.
    Redriven(i32),
    /// FAILED; the staged upload to remove, if it had one.
    Failed { staging_key: Option<BlobKey> },
    /// It moved on meanwhile.
    Unchanged,
}

/// Row counts for the gauges operators watch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreCounts {
    /// Jobs recorded but not yet handed to the queue.
    pub outbox_pending: u64,
    /// Packages per state, as the API spells the state.
    pub packages_by_state: Vec<(String, i64)>,
    /// When the longest-pending package became pending (seconds), if any is pending.
    pub oldest_pending_since: Option<i64>,
}

impl Services {
    /// A package by GUID, whoever asks (the worker sees every package).
    pub async fn find_package(&self, guid: &str) -> Result<Option<Package>> {
        let guid = guid.to_owned();
        Ok(self.db.run(move |conn| packages::find(conn, &guid)).await?)
    }

    /// Ends a package's job: applies the final transition if the package is still in one
    /// of its `from` states, and removes the package's pending job rows, together.
    /// Returns whether the transition applied.
    pub async fn finish_job(
        &self,
        guid: &str,
        transition: Transition,
        outcome: Outcome,
    ) -> Result<bool> {
        let guid = guid.to_owned();
        Ok(self
            .db
            .run(move |conn| {
                packages::finish(
                    conn,
                    &guid,
                    transition,
                    &outcome,
                    &JobKind::FOR_PENDING_PACKAGES,
                )
            })
            .await?)
    }

    /// Fails a package still pending with `reason` (and ends its job). Returns whether it
    /// was still pending.
    pub async fn fail_package(&self, package: &Package, reason: &FailureReason) -> Result<bool> {
        let Some(transition) = Transition::failure_from(package.state) else {
            return Ok(false);
        };
        let outcome = Outcome {
            error: Some(reason.message()),
            ..Outcome::default()
        };
        self.finish_job(&package.guid, transition, outcome).await
    }

    /// Keeps the app's newest READY packages (`packages.max_valid_packages_stored`); older
    /// ones expire, and a job per package deletes their bits. Returns the expired GUIDs.
    pub async fn expire_older_packages(
        &self,
        app_guid: &str,
        request_id: &str,
    ) -> Result<Vec<PackageGuid>> {
        let keep = usize::try_from(self.policy.max_valid_packages_stored).unwrap_or(usize::MAX);
        let (app, request_id) = (app_guid.to_owned(), request_id.to_owned());
        let expired = self
            .db
            .run(move |conn| {
                packages::expire(conn, &app, keep, |p| jobs::delete_bits(p, &request_id))
            })
            .await?;
        if !expired.is_empty() {
            self.job_recorded();
        }
        Ok(expired)
    }

    /// Counts a run of a job as begun, before it does anything. Returns how many earlier
    /// runs began and never settled (their process died under them), or `None` when the
    /// job is gone.
    pub async fn begin_job_run(&self, job_id: &str) -> Result<Option<i32>> {
        let id = job_id.to_owned();
        Ok(self.db.run(move |conn| rows::begin_run(conn, &id)).await?)
    }

    /// A run ended on an infrastructure error: schedules the job again after `delay`
    /// (given the attempts so far), unless `max_attempts` are spent.
    pub async fn retry_job(
        &self,
        job_id: &str,
        max_attempts: i32,
        delay: impl FnOnce(u32) -> Duration + Send + 'static,
    ) -> Result<RetryDecision> {
        let id = job_id.to_owned();
        let decision = self
            .db
            .run(move |conn| {
                let Some(job) = rows::find(conn, &id)? else {
                    return Ok(RetryDecision::Gone);
                };
                if job.attempts + 1 >= max_attempts {
                    return Ok(RetryDecision::GiveUp);
                }
                let delay = delay(u32::try_from(job.attempts).unwrap_or(0));
                let delay_ms = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
                Ok(
                    match rows::reschedule(conn, &id, delay_ms, Rescheduler::Run)? {
                        Some(attempts) => RetryDecision::Rescheduled(attempts),
                        None => RetryDecision::Gone,
                    },
                )
            })
            .await?;
        if matches!(decision, RetryDecision::Rescheduled(_)) {
            self.job_recorded();
        }
        Ok(decision)
    }

    /// Removes a job's row: it is done, or given up (delete jobs).
    pub async fn forget_job(&self, job_id: &str) -> Result<()> {
        let id = job_id.to_owned();
        Ok(self.db.run(move |conn| rows::delete(conn, &id)).await?)
    }

    /// Packages pending (PROCESSING_UPLOAD, COPYING) since before `before` (seconds).
    pub async fn packages_pending_since_before(&self, before: i64) -> Result<Vec<Package>> {
        Ok(self
            .db
            .run(move |conn| packages::pending_since_before(conn, before))
            .await?)
    }

    /// A package pending past its timeout: its job is published again (its message may
    /// have been lost with a crashed process) while it has attempts left, else the package
    /// is FAILED, so a client polling it never waits for ever.
    pub async fn unstick(&self, package: Package, max_attempts: i32) -> Result<Stuck> {
        let timeout_secs = self.policy.pending_timeout.as_secs();
        let stuck = self
            .db
            .run(move |conn| {
                let job =
                    rows::find_for_package(conn, &package.guid, &JobKind::FOR_PENDING_PACKAGES)?;
                if let Some(job) = &job
                    && job.attempts + 1 < max_attempts
                {
                    if !packages::restart_pending_clock(conn, &package.guid, package.state)? {
                        return Ok(Stuck::Unchanged);
                    }
                    return Ok(rows::reschedule(conn, &job.id, 0, Rescheduler::Sweep)?
                        .map_or(Stuck::Unchanged, Stuck::Redriven));
                }
                let Some(transition) = Transition::failure_from(package.state) else {
                    return Ok(Stuck::Unchanged);
                };
                let outcome = Outcome {
                    error: Some(
                        FailureReason::TimedOut {
                            seconds: timeout_secs,
                        }
                        .message(),
                    ),
                    ..Outcome::default()
                };
                let staging_key = job.and_then(|j| match JobMessage::decode(j.body.as_bytes()) {
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
                    &JobKind::FOR_PENDING_PACKAGES,
                )?;
                Ok(if failed {
                    Stuck::Failed { staging_key }
                } else {
                    Stuck::Unchanged
                })
            })
            .await?;
        if matches!(stuck, Stuck::Redriven(_)) {
            self.job_recorded();
        }
        Ok(stuck)
    }

    /// Whether a staged upload is still waited for: its package exists and is processing
    /// an upload.
    pub async fn staged_upload_in_use(&self, package_guid: &str) -> Result<bool> {
        Ok(self
            .find_package(package_guid)
            .await?
            .is_some_and(|p| p.state == PackageState::ProcessingUpload))
    }

    /// Counts for the gauges.
    pub async fn store_counts(&self) -> Result<StoreCounts> {
        Ok(self
            .db
            .run(|conn| {
                Ok(StoreCounts {
                    outbox_pending: u64::try_from(rows::count_unpublished(conn)?).unwrap_or(0),
                    packages_by_state: packages::count_by_state(conn)?,
                    oldest_pending_since: packages::oldest_pending_since(conn)?,
                })
            })
            .await?)
    }

    /// Readiness: the database answers.
    pub async fn check_database(&self) -> Result<()> {
        Ok(self.db.check().await?)
    }

    /// Which database this service runs on (`postgres` or `sqlite`), for logs.
    pub fn database_backend(&self) -> &'static str {
        self.db.backend()
    }

    /// An in-process queue starts empty: every job recorded before a restart is marked
    /// to be published again (jobs tolerate running twice). Returns how many.
    pub async fn republish_all_jobs(&self) -> Result<usize> {
        let republished = self.db.run(rows::republish_all).await?;
        if republished > 0 {
            self.job_recorded();
        }
        Ok(republished)
    }
}
