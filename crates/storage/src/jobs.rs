//! The job outbox. A job row is written in the same transaction as the change that needs
//! it, so a committed change always has its job; a relay publishes unpublished rows to the
//! queue and marks them. The row stays until the job is done, so a job whose message was
//! lost (an in-process queue at restart, a package stuck past its timeout) can be
//! published again from it.

use diesel::prelude::*;
use packages_domain::JobKind;

use crate::schema::jobs;
use crate::{AnyConnection, StorageError, now_millis, write_transaction};

/// A job to record.
#[derive(Debug, Clone, PartialEq, Eq, Insertable)]
#[diesel(table_name = jobs)]
pub struct NewJob {
    pub id: String,
    pub package_guid: String,
    pub kind: String,
    /// The encoded job message, published as is.
    pub body: String,
    pub attempts: i32,
    pub available_at: i64,
    pub created_at: i64,
}

impl NewJob {
    pub fn new(id: String, package_guid: String, kind: JobKind, body: String) -> Self {
        let now = now_millis();
        NewJob {
            id,
            package_guid,
            kind: kind.as_str().to_owned(),
            body,
            attempts: 0,
            available_at: now,
            created_at: now,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = jobs)]
pub struct Job {
    pub id: String,
    pub package_guid: String,
    pub kind: String,
    pub body: String,
    /// How many times the job was scheduled again after its first publication.
    pub attempts: i32,
    pub published_at: Option<i64>,
}

pub fn insert(conn: &mut AnyConnection, job: &NewJob) -> Result<(), StorageError> {
    diesel::insert_into(jobs::table).values(job).execute(conn)?;
    Ok(())
}

pub fn find(conn: &mut AnyConnection, id: &str) -> Result<Option<Job>, StorageError> {
    Ok(jobs::table
        .filter(jobs::id.eq(id))
        .select(Job::as_select())
        .first(conn)
        .optional()?)
}

/// Claims up to `limit` unpublished jobs that are due, for `lease_ms`. Each row is claimed
/// by its own conditional update, so two relays never publish the same row at once; a
/// relay that dies leaves its claims to expire.
pub fn claim_due(
    conn: &mut AnyConnection,
    limit: i64,
    lease_ms: i64,
) -> Result<Vec<Job>, StorageError> {
    let now = now_millis();
    let candidates: Vec<String> = jobs::table
        .filter(jobs::published_at.is_null())
        .filter(jobs::available_at.le(now))
        .filter(
            jobs::claimed_until
                .is_null()
                .or(jobs::claimed_until.lt(now)),
        )
        .order(jobs::available_at.asc())
        .limit(limit)
        .select(jobs::id)
        .load(conn)?;
    let mut claimed = Vec::with_capacity(candidates.len());
    for id in candidates {
        let updated = diesel::update(
            jobs::table
                .filter(jobs::id.eq(&id))
                .filter(jobs::published_at.is_null())
                .filter(
                    jobs::claimed_until
                        .is_null()
                        .or(jobs::claimed_until.lt(now)),
                ),
        )
        .set(jobs::claimed_until.eq(now + lease_ms))
        .execute(conn)?;
        if updated == 1
            && let Some(job) = find(conn, &id)?
        {
            claimed.push(job);
        }
    }
    Ok(claimed)
}

pub fn mark_published(conn: &mut AnyConnection, id: &str) -> Result<(), StorageError> {
    diesel::update(jobs::table.filter(jobs::id.eq(id)))
        .set((
            jobs::published_at.eq(now_millis()),
            jobs::claimed_until.eq(None::<i64>),
        ))
        .execute(conn)?;
    Ok(())
}

/// Gives a claim back after a failed publish, so the next relay round retries at once.
pub fn release(conn: &mut AnyConnection, id: &str) -> Result<(), StorageError> {
    diesel::update(jobs::table.filter(jobs::id.eq(id)))
        .set(jobs::claimed_until.eq(None::<i64>))
        .execute(conn)?;
    Ok(())
}

/// Counts a run of the job as begun, before it does anything. Returns how many earlier
/// runs began and never settled (their process died under them), or `None` when the job
/// is gone (done meanwhile).
pub fn begin_run(conn: &mut AnyConnection, id: &str) -> Result<Option<i32>, StorageError> {
    write_transaction(conn, |conn| {
        let updated = diesel::update(jobs::table.filter(jobs::id.eq(id)))
            .set(jobs::unsettled_runs.eq(jobs::unsettled_runs + 1))
            .execute(conn)?;
        if updated == 0 {
            return Ok(None);
        }
        let runs: i32 = jobs::table
            .filter(jobs::id.eq(id))
            .select(jobs::unsettled_runs)
            .first(conn)?;
        Ok(Some(runs - 1))
    })
}

/// Who asks for a job to run again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rescheduler {
    /// The run itself, ending on an infrastructure error: that run is settled.
    Run,
    /// The pending sweep, for a job that seems lost: no run of it is settled by this.
    Sweep,
}

/// Schedules a job to be published again after `delay_ms`; returns its new attempt count,
/// or `None` when the job is gone (done meanwhile).
pub fn reschedule(
    conn: &mut AnyConnection,
    id: &str,
    delay_ms: i64,
    by: Rescheduler,
) -> Result<Option<i32>, StorageError> {
    let settled = match by {
        Rescheduler::Run => 1,
        Rescheduler::Sweep => 0,
    };
    let updated = diesel::update(jobs::table.filter(jobs::id.eq(id)))
        .set((
            jobs::published_at.eq(None::<i64>),
            jobs::claimed_until.eq(None::<i64>),
            jobs::attempts.eq(jobs::attempts + 1),
            jobs::available_at.eq(now_millis() + delay_ms),
            jobs::unsettled_runs.eq(jobs::unsettled_runs - settled),
        ))
        .execute(conn)?;
    if updated == 0 {
        return Ok(None);
    }
    Ok(find(conn, id)?.map(|job| job.attempts))
}

pub fn delete(conn: &mut AnyConnection, id: &str) -> Result<(), StorageError> {
    diesel::delete(jobs::table.filter(jobs::id.eq(id))).execute(conn)?;
    Ok(())
}

/// Removes the jobs of `kinds` recorded for a package (the package's job is done).
pub fn delete_for_package(
    conn: &mut AnyConnection,
    package_guid: &str,
    kinds: &[JobKind],
) -> Result<(), StorageError> {
    let kinds: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
    diesel::delete(
        jobs::table
            .filter(jobs::package_guid.eq(package_guid))
            .filter(jobs::kind.eq_any(kinds)),
    )
    .execute(conn)?;
    Ok(())
}

/// Removes every job recorded for a package (it is gone).
pub fn delete_all_for_package(
    conn: &mut AnyConnection,
    package_guid: &str,
) -> Result<(), StorageError> {
    diesel::delete(jobs::table.filter(jobs::package_guid.eq(package_guid))).execute(conn)?;
    Ok(())
}

/// Replaces every job recorded for a package with `job` (a deleted package's pending
/// upload or copy becomes the deletion of its bits).
pub fn replace_with(
    conn: &mut AnyConnection,
    package_guid: &str,
    job: &NewJob,
) -> Result<(), StorageError> {
    delete_all_for_package(conn, package_guid)?;
    insert(conn, job)
}

/// The pending job of a package, if any.
pub fn find_for_package(
    conn: &mut AnyConnection,
    package_guid: &str,
    kinds: &[JobKind],
) -> Result<Option<Job>, StorageError> {
    let kinds: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
    Ok(jobs::table
        .filter(jobs::package_guid.eq(package_guid))
        .filter(jobs::kind.eq_any(kinds))
        .order(jobs::created_at.desc())
        .select(Job::as_select())
        .first(conn)
        .optional()?)
}

/// Marks every published or claimed job as unpublished and unclaimed again: an in-process
/// queue starts empty, so what it held before a restart must be published anew, and the
/// claims of the relay that died with it must not hold rows back for their lease.
pub fn republish_all(conn: &mut AnyConnection) -> Result<usize, StorageError> {
    Ok(diesel::update(
        jobs::table.filter(
            jobs::published_at
                .is_not_null()
                .or(jobs::claimed_until.is_not_null()),
        ),
    )
    .set((
        jobs::published_at.eq(None::<i64>),
        jobs::claimed_until.eq(None::<i64>),
    ))
    .execute(conn)?)
}

/// Jobs recorded but not yet handed to the queue.
pub fn count_unpublished(conn: &mut AnyConnection) -> Result<i64, StorageError> {
    Ok(jobs::table
        .filter(jobs::published_at.is_null())
        .count()
        .get_result(conn)?)
}
