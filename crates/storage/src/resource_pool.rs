//! The index of the resource pool (spec 10.1): which files, by SHA-1 and size, the pool
//! holds. The bytes live in the blobstore; this table answers a match request of up to
//! 5000 entries in one indexed query.

use std::collections::{BTreeSet, HashMap};

use diesel::prelude::*;

use crate::schema::resource_pool;
use crate::{AnyConnection, StorageError};

/// SHA-1s per query when matching: one parameter each, well under SQLite's 32766 (and
/// PostgreSQL's 65535), so a request of 5000 entries is one query.
const SHA1S_PER_QUERY: usize = 30_000;

fn size_column(size: u64) -> Result<i64, StorageError> {
    i64::try_from(size)
        .map_err(|e| StorageError::Query(diesel::result::Error::SerializationError(Box::new(e))))
}

/// Records an entry unless one with that SHA-1 is there. Safe when several workers add
/// the same file at once: the loser's insert does nothing (and, unlike a caught unique
/// violation, leaves a surrounding PostgreSQL transaction usable). Returns whether this
/// call added it. SHA-1s are stored lowercase.
pub fn insert(conn: &mut AnyConnection, sha1: &str, size: u64) -> Result<bool, StorageError> {
    let row = (
        resource_pool::sha1.eq(sha1.to_ascii_lowercase()),
        resource_pool::size.eq(size_column(size)?),
    );
    let inserted = on_each_backend!(conn, |c| {
        diesel::insert_into(resource_pool::table)
            .values(row)
            .on_conflict_do_nothing()
            .execute(c)
    })?;
    Ok(inserted == 1)
}

/// For each `(sha1, size)` of `wanted`, in order, whether the pool holds that SHA-1 (any
/// case) with exactly that size. The query looks the distinct SHA-1s up by primary key;
/// as a SHA-1 has at most one row, comparing the sizes of what it returns costs nothing
/// more than comparing them in SQL.
pub fn contains_each(
    conn: &mut AnyConnection,
    wanted: &[(&str, u64)],
) -> Result<Vec<bool>, StorageError> {
    let wanted: Vec<(String, u64)> = wanted
        .iter()
        .map(|(sha1, size)| (sha1.to_ascii_lowercase(), *size))
        .collect();
    let distinct: Vec<&str> = wanted
        .iter()
        .map(|(sha1, _)| sha1.as_str())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut sizes: HashMap<String, i64> = HashMap::new();
    for chunk in distinct.chunks(SHA1S_PER_QUERY) {
        let rows: Vec<(String, i64)> = resource_pool::table
            .filter(resource_pool::sha1.eq_any(chunk))
            .select((resource_pool::sha1, resource_pool::size))
            .load(conn)?;
        sizes.extend(rows);
    }
    Ok(wanted
        .iter()
        .map(|(sha1, size)| {
            sizes
                .get(sha1)
                .is_some_and(|stored| u64::try_from(*stored) == Ok(*size))
        })
        .collect())
}

/// Which of `sizes` the pool holds a file of (any SHA-1): a file whose size is not among
/// them is certainly not pooled yet. Answered from the index on `size`.
pub fn sizes_held(conn: &mut AnyConnection, sizes: &[u64]) -> Result<BTreeSet<u64>, StorageError> {
    let wanted = sizes
        .iter()
        .map(|size| size_column(*size))
        .collect::<Result<BTreeSet<i64>, _>>()?;
    let mut held = BTreeSet::new();
    let wanted: Vec<i64> = wanted.into_iter().collect();
    for chunk in wanted.chunks(SHA1S_PER_QUERY) {
        let rows: Vec<i64> = resource_pool::table
            .filter(resource_pool::size.eq_any(chunk))
            .select(resource_pool::size)
            .distinct()
            .load(conn)?;
        held.extend(rows.into_iter().filter_map(|size| u64::try_from(size).ok()));
    }
    Ok(held)
}

/// Removes an entry (its bytes failed an integrity check). Returns whether it was there.
pub fn remove(conn: &mut AnyConnection, sha1: &str) -> Result<bool, StorageError> {
    let deleted = diesel::delete(
        resource_pool::table.filter(resource_pool::sha1.eq(sha1.to_ascii_lowercase())),
    )
    .execute(conn)?;
    Ok(deleted == 1)
}
