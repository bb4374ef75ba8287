//! The outbox relay: publishes recorded jobs to the queue and marks them published.
//!
//! Any number of relays may run (one per API or worker process): each row is claimed
//! before it is published, so rows are published once in the normal case; after a crash
//! between publish and mark a row is published again, which jobs tolerate.

use std::sync::Arc;
use std::time::Duration;

use packages_jobs::JobPublisher;
use packages_storage::jobs;
use tokio::sync::watch;

use crate::Services;

/// How often the relay looks for rows recorded by other processes (or rescheduled).
const POLL: Duration = Duration::from_millis(500);
const BATCH: i64 = 100;
/// A claim outlives a slow publish round; a relay that died frees its rows after it.
const LEASE_MS: i64 = 30_000;

/// Runs until `shutdown` turns true; woken whenever this process records a job.
pub async fn run(
    services: Services,
    publisher: Arc<dyn JobPublisher>,
    mut shutdown: watch::Receiver<bool>,
) {
    let wake = services.relay_wake.clone();
    loop {
        let published = relay_once(&services, publisher.as_ref()).await;
        if *shutdown.borrow() {
            return;
        }
        if published == Some(BATCH as usize) {
            continue;
        }
        let backoff = if published.is_none() { POLL * 4 } else { POLL };
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Publishes one batch; returns how many rows were published, or `None` when the
/// database or the queue failed (the relay then waits longer before trying again).
pub async fn relay_once(services: &Services, publisher: &dyn JobPublisher) -> Option<usize> {
    let claimed = match services
        .db
        .run(|conn| jobs::claim_due(conn, BATCH, LEASE_MS))
        .await
    {
        Ok(claimed) => claimed,
        Err(e) => {
            tracing::warn!(error = %packages_blobstore::Chain(&e), "outbox relay cannot read jobs");
            return None;
        }
    };
    let mut published = 0;
    for job in claimed {
        match publisher.publish(job.body.into_bytes()).await {
            Ok(()) => {
                let id = job.id.clone();
                if let Err(e) = services
                    .db
                    .run(move |conn| jobs::mark_published(conn, &id))
                    .await
                {
                    // Published but not marked: it will be published again, harmlessly.
                    tracing::warn!(error = %packages_blobstore::Chain(&e), job_id = %job.id, "marking a job published failed");
                }
                tracing::debug!(job_id = %job.id, kind = %job.kind, package_guid = %job.package_guid, "job published");
                published += 1;
            }
            Err(e) => {
                tracing::warn!(error = %packages_blobstore::Chain(&e), job_id = %job.id, "publishing a job failed; it stays in the outbox");
                let id = job.id.clone();
                let _ = services.db.run(move |conn| jobs::release(conn, &id)).await;
                return None;
            }
        }
    }
    Some(published)
}
