//! Packages: creation, lookups, lists, and every state change as one conditional update.

use diesel::dsl::{exists, not};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Nullable};
pub use packages_domain::Outcome;
use packages_domain::{
    LabelSelector, ListQuery, Metadata, NewPackage, OrderBy, OrderField, Package, PackageFilter,
    PackageGuid, PackageState, PackageType, Relation, Requirement, TimeFilter, Timestamp,
    Transition,
};

use crate::context::{Visibility, visible_space_guids};
use crate::jobs::{self, NewJob};
use crate::metadata::{self, stored_prefix};
use crate::rows::PackageRow;
use crate::schema::{apps, package_labels, packages, spaces};
use crate::{AnyConnection, Db, StorageError, write_transaction};

diesel::define_sql_function! {
    /// SQL's `COALESCE` for a nullable time and a fallback.
    fn coalesce(value: Nullable<BigInt>, otherwise: BigInt) -> BigInt;
}

/// When a package last changed for filters and ordering: a package never updated counts
/// as updated at its creation (spec 7.5). Written exactly as the index
/// `packages_updated_at` is, so both backends can use it.
fn changed_at() -> coalesce<packages::updated_at, packages::created_at> {
    coalesce(packages::updated_at, packages::created_at)
}

/// Narrows `$q` by a `created_ats`/`updated_ats` filter on `$time` (whole seconds, as
/// stored): a macro, as the two columns are different expression types.
macro_rules! with_times {
    ($q:expr, $time:expr, $filter:expr) => {{
        let mut q = $q;
        match $filter {
            TimeFilter::Within(seconds) => {
                let seconds: Vec<i64> = seconds.iter().map(|t| t.seconds()).collect();
                q = q.filter($time.eq_any(seconds));
            }
            TimeFilter::Compare(comparisons) => {
                for (relation, at) in comparisons {
                    let at = at.seconds();
                    q = match relation {
                        Relation::Lt => q.filter($time.lt(at)),
                        Relation::Lte => q.filter($time.le(at)),
                        Relation::Gt => q.filter($time.gt(at)),
                        Relation::Gte => q.filter($time.ge(at)),
                    };
                }
            }
        }
        q
    }};
}

/// The label rows of the package in the outer query with `$key`, for `EXISTS` subqueries.
macro_rules! labels_with_key {
    ($key:expr) => {
        package_labels::table
            .filter(package_labels::package_guid.eq(packages::guid))
            .filter(package_labels::key_prefix.eq(stored_prefix($key)))
            .filter(package_labels::key_name.eq($key.name.as_str()))
    };
}

pub fn insert(conn: &mut AnyConnection, new: &NewPackage) -> Result<Package, StorageError> {
    insert_row(conn, new)?;
    find(conn, &new.guid)?
        .ok_or_else(|| StorageError::Corrupt(format!("package {} vanished", new.guid)))
}

fn insert_row(conn: &mut AnyConnection, new: &NewPackage) -> Result<(), StorageError> {
    let pending_since = new.state.is_pending().then_some(new.created_at.seconds());
    diesel::insert_into(packages::table)
        .values((
            packages::guid.eq(new.guid.as_str()),
            packages::app_guid.eq(new.app_guid.as_str()),
            packages::package_type.eq(new.package_type.as_str()),
            packages::state.eq(new.state.as_str()),
            packages::url.eq(&new.url),
            packages::created_at.eq(new.created_at.seconds()),
            packages::updated_at.eq(None::<i64>),
            packages::pending_since.eq(pending_since),
            packages::docker_username.eq(&new.docker_username),
            packages::docker_password.eq(&new.docker_password),
        ))
        .execute(conn)?;
    Ok(())
}

/// Creates a package and, in the same transaction, the job that will fill it (a copy).
pub fn insert_with_job(
    conn: &mut AnyConnection,
    new: &NewPackage,
    job: Option<&NewJob>,
) -> Result<Package, StorageError> {
    write_transaction(conn, |conn| {
        insert_row(conn, new)?;
        if let Some(job) = job {
            jobs::insert(conn, job)?;
        }
        Ok::<_, StorageError>(())
    })?;
    find(conn, &new.guid)?
        .ok_or_else(|| StorageError::Corrupt(format!("package {} vanished", new.guid)))
}

pub fn find(conn: &mut AnyConnection, guid: &str) -> Result<Option<Package>, StorageError> {
    // `get_result`, not `first`: a key matches one row at most, and `first`'s bound
    // `LIMIT ?` makes SQLite treat the prepared statement as expired at every new binding
    // and parse it again (perf: sqlite3Reprepare under every GET).
    // On the concrete connection: diesel caches its statement by the query's type, where
    // through `AnyConnection` it renders the SQL again on every call to look it up.
    on_each_backend!(conn, |c| {
        packages::table
            .filter(packages::guid.eq(guid))
            .select(PackageRow::as_select())
            .get_result(c)
            .optional()
    })?
    .map(Package::try_from)
    .transpose()
}

/// A package with the GUID of its app's space, which decides who may see it.
pub fn find_with_space(
    conn: &mut AnyConnection,
    guid: &str,
) -> Result<Option<(Package, String)>, StorageError> {
    // One row at most, without a bound LIMIT, on the concrete connection (see `find`).
    on_each_backend!(conn, |c| {
        packages::table
            .inner_join(apps::table.on(apps::guid.eq(packages::app_guid)))
            .filter(packages::guid.eq(guid))
            .select((PackageRow::as_select(), apps::space_guid))
            .get_result::<(PackageRow, String)>(c)
            .optional()
    })?
    .map(|(row, space)| Ok((Package::try_from(row)?, space)))
    .transpose()
}

/// [`find_with_space`] and the package's metadata in one statement: its labels and its
/// annotations come aggregated as two JSON columns. One statement is one read
/// transaction (on SQLite, one pair of WAL locks) and one round trip (on PostgreSQL),
/// where separate reads took two of each; `GET /v3/packages/:guid` runs it.
pub fn find_with_space_and_metadata(
    conn: &mut AnyConnection,
    guid: &str,
) -> Result<Option<(Package, String, Metadata)>, StorageError> {
    let row = on_each_backend!(conn, |c| {
        packages::table
            .inner_join(apps::table.on(apps::guid.eq(packages::app_guid)))
            .filter(packages::guid.eq(guid))
            .select((
                PackageRow::as_select(),
                apps::space_guid,
                metadata::LabelsJson,
                metadata::AnnotationsJson,
            ))
            .get_result::<(PackageRow, String, String, String)>(c)
            .optional()
    })?;
    row.map(|(row, space, labels, annotations)| {
        let metadata = metadata::from_aggregated(&labels, &annotations)?;
        Ok((Package::try_from(row)?, space, metadata))
    })
    .transpose()
}

/// A package, the GUID of its app's space and its metadata.
pub type PackageInSpace = (Package, String, Metadata);

/// [`find_with_space_and_metadata`] for many packages in one statement, in the order of
/// `guids` (a GUID asked twice is answered twice). One GUID runs that function's
/// statement, which every backend keeps prepared; more run it with `= ANY($1)` on
/// PostgreSQL (one prepared statement whatever their number) and `IN (…)` on SQLite.
pub fn find_many_with_space_and_metadata(
    conn: &mut AnyConnection,
    guids: &[&str],
) -> Result<Vec<Option<PackageInSpace>>, StorageError> {
    match guids {
        [] => return Ok(Vec::new()),
        [guid] => return Ok(vec![find_with_space_and_metadata(conn, guid)?]),
        _ => {}
    }
    let rows = on_each_backend!(conn, |c| {
        packages::table
            .inner_join(apps::table.on(apps::guid.eq(packages::app_guid)))
            .filter(packages::guid.eq_any(guids))
            .select((
                PackageRow::as_select(),
                apps::space_guid,
                metadata::LabelsJson,
                metadata::AnnotationsJson,
            ))
            .load::<(PackageRow, String, String, String)>(c)
    })?;
    let found = rows
        .into_iter()
        .map(|(row, space, labels, annotations)| {
            let metadata = metadata::from_aggregated(&labels, &annotations)?;
            Ok((Package::try_from(row)?, space, metadata))
        })
        .collect::<Result<Vec<_>, StorageError>>()?;
    Ok(guids
        .iter()
        .map(|guid| {
            found
                .iter()
                .find(|(package, _, _)| package.guid.as_str() == *guid)
                .cloned()
        })
        .collect())
}

/// A page of packages, with what it takes to show it.
#[derive(Debug)]
pub struct ListedPage {
    pub packages: Vec<Package>,
    /// About how large each package's metadata is: the characters of every key and
    /// value, kept on the package's row, so that a caller can load
    /// the metadata of many packages in batches of bounded size.
    pub metadata_sizes: Vec<u64>,
    /// How many packages pass the filters, on every page.
    pub total: u64,
}

/// A page of packages, the total count of packages that pass the same filters, and the
/// size of each package's metadata. `app_guid` narrows the list to one app; `visibility`
/// to what the caller may read (E2015 ignores organization suspension here); `filter`
/// narrows further (spec 7.2, 7.4, 7.5), all in SQL. Ordered by `order_by`, ties broken
/// by guid in the same direction, or in creation order when not given.
///
/// One statement: the total comes as a window count over the filtered rows, where a
/// separate statement took a round trip, and the sizes from the rows themselves, where a
/// subquery per row into both metadata tables took two fifths of PostgreSQL's time on a
/// page. An empty page has no row to carry the total, and counts apart.
pub fn list(
    conn: &mut AnyConnection,
    visibility: &Visibility,
    app_guid: Option<&str>,
    filter: &PackageFilter,
    order_by: Option<OrderBy>,
    page: &ListQuery,
) -> Result<ListedPage, StorageError> {
    let visible = match visibility {
        Visibility::All => None,
        Visibility::User(user) => Some(visible_space_guids(conn, user)?),
    };
    let filtered = || filtered(visible.as_deref(), app_guid, filter);
    let ordered = match order_by {
        None => filtered().order(packages::id.asc()),
        Some(OrderBy {
            field: OrderField::CreatedAt,
            descending: false,
        }) => filtered().order((packages::created_at.asc(), packages::guid.asc())),
        Some(OrderBy {
            field: OrderField::CreatedAt,
            descending: true,
        }) => filtered().order((packages::created_at.desc(), packages::guid.desc())),
        Some(OrderBy {
            field: OrderField::UpdatedAt,
            descending: false,
        }) => filtered().order((changed_at().asc(), packages::guid.asc())),
        Some(OrderBy {
            field: OrderField::UpdatedAt,
            descending: true,
        }) => filtered().order((changed_at().desc(), packages::guid.desc())),
    };
    let rows: Vec<(PackageRow, i64, i64)> = ordered
        .limit(page.limit())
        .offset(page.offset())
        .select((
            PackageRow::as_select(),
            diesel::dsl::count_star().over(),
            MetadataCharacters,
        ))
        .load(conn)?;
    let total = match rows.first() {
        Some((_, total, _)) => *total,
        None => filtered().count().get_result(conn)?,
    };
    let mut listed = ListedPage {
        packages: Vec::with_capacity(rows.len()),
        metadata_sizes: Vec::with_capacity(rows.len()),
        total: u64::try_from(total).unwrap_or(0),
    };
    for (row, _, characters) in rows {
        listed.packages.push(Package::try_from(row)?);
        listed
            .metadata_sizes
            .push(u64::try_from(characters).unwrap_or(0));
    }
    Ok(listed)
}

/// `package_extras::metadata_characters` as a column of a statement on `packages`. A unit
/// type: diesel keeps a statement prepared by its query's type or text, and never one
/// with raw SQL in it, which PostgreSQL then parses and plans on every page.
#[derive(Debug, Clone, Copy, diesel::query_builder::QueryId)]
struct MetadataCharacters;

impl diesel::Expression for MetadataCharacters {
    type SqlType = diesel::sql_types::BigInt;
}
impl<QS> diesel::AppearsOnTable<QS> for MetadataCharacters {}
impl<QS> diesel::SelectableExpression<QS> for MetadataCharacters {}
impl diesel::expression::ValidGrouping<()> for MetadataCharacters {
    type IsAggregate = diesel::expression::is_aggregate::Never;
}
impl<DB: diesel::backend::Backend> diesel::query_builder::QueryFragment<DB> for MetadataCharacters {
    fn walk_ast<'b>(
        &'b self,
        mut out: diesel::query_builder::AstPass<'_, 'b, DB>,
    ) -> diesel::QueryResult<()> {
        out.push_sql("packages.metadata_characters");
        Ok(())
    }
}

/// The packages `list` counts and pages through. Every filter is a condition of this one
/// query, so the count and the page agree and no page is narrowed after loading.
fn filtered<'a>(
    visible_spaces: Option<&'a [String]>,
    app_guid: Option<&'a str>,
    filter: &'a PackageFilter,
) -> packages::BoxedQuery<'a, Db> {
    let mut q = packages::table.into_boxed();
    if let Some(app) = app_guid {
        q = q.filter(packages::app_guid.eq(app));
    }
    if let Some(spaces) = visible_spaces {
        q = q.filter(packages::app_guid.eq_any(apps_in_spaces(spaces)));
    }
    // An empty list (`guids=`) makes `IN ()` false: it matches nothing, as it should.
    if let Some(guids) = &filter.guids {
        q = q.filter(packages::guid.eq_any(guids));
    }
    if let Some(states) = &filter.states {
        q = q.filter(packages::state.eq_any(states));
    }
    if let Some(types) = &filter.types {
        q = q.filter(packages::package_type.eq_any(types));
    }
    if let Some(app_guids) = &filter.app_guids {
        q = q.filter(packages::app_guid.eq_any(app_guids));
    }
    if let Some(space_guids) = &filter.space_guids {
        q = q.filter(packages::app_guid.eq_any(apps_in_spaces(space_guids)));
    }
    if let Some(org_guids) = &filter.organization_guids {
        q = q.filter(
            packages::app_guid.eq_any(
                apps::table
                    .filter(
                        apps::space_guid.eq_any(
                            spaces::table
                                .filter(spaces::organization_guid.eq_any(org_guids))
                                .select(spaces::guid),
                        ),
                    )
                    .select(apps::guid),
            ),
        );
    }
    if let Some(LabelSelector(requirements)) = &filter.label_selector {
        for requirement in requirements {
            q = with_requirement(q, requirement);
        }
    }
    if let Some(times) = &filter.created_ats {
        q = with_times!(q, packages::created_at, times);
    }
    if let Some(times) = &filter.updated_ats {
        q = with_times!(q, changed_at(), times);
    }
    q
}

fn apps_in_spaces(
    space_guids: &[String],
) -> diesel::dsl::Select<
    diesel::dsl::Filter<apps::table, diesel::dsl::EqAny<apps::space_guid, &[String]>>,
    apps::guid,
> {
    apps::table
        .filter(apps::space_guid.eq_any(space_guids))
        .select(apps::guid)
}

/// Narrows `q` to the packages meeting one selector requirement. A package has at most one
/// value per key, so "lacks the key or has another value" is "has no row with the key and
/// that value": `NOT EXISTS`.
fn with_requirement<'a>(
    q: packages::BoxedQuery<'a, Db>,
    requirement: &'a Requirement,
) -> packages::BoxedQuery<'a, Db> {
    match requirement {
        Requirement::Equal { key, value } => q.filter(exists(
            labels_with_key!(key).filter(package_labels::value.eq(value.as_str())),
        )),
        Requirement::NotEqual { key, value } => q.filter(not(exists(
            labels_with_key!(key).filter(package_labels::value.eq(value.as_str())),
        ))),
        Requirement::In { key, values } => q.filter(exists(
            labels_with_key!(key).filter(package_labels::value.eq_any(values)),
        )),
        Requirement::NotIn { key, values } => q.filter(not(exists(
            labels_with_key!(key).filter(package_labels::value.eq_any(values)),
        ))),
        Requirement::Exists { key } => q.filter(exists(labels_with_key!(key))),
        Requirement::NotExists { key } => q.filter(not(exists(labels_with_key!(key)))),
    }
}

/// Applies `transition` if the package is in one of its `from` states; returns whether it
/// did. This single conditional update is what makes a second upload, a duplicate job or a
/// late job change nothing.
pub fn apply(
    conn: &mut AnyConnection,
    guid: &str,
    transition: Transition,
    outcome: &Outcome,
) -> Result<bool, StorageError> {
    let from: Vec<&str> = transition.from().iter().map(|s| s.as_str()).collect();
    let target = packages::table
        .filter(packages::guid.eq(guid))
        .filter(packages::state.eq_any(from));
    let now = Timestamp::now().seconds();
    let to = transition.to();
    let pending_since = to.is_pending().then_some(now);
    let updated = match transition {
        Transition::AcceptUpload => diesel::update(target)
            .set((
                packages::state.eq(to.as_str()),
                packages::updated_at.eq(Some(now)),
                packages::pending_since.eq(pending_since),
            ))
            .execute(conn)?,
        Transition::UploadSucceeded | Transition::CopySucceeded => diesel::update(target)
            .set((
                packages::state.eq(to.as_str()),
                packages::package_hash.eq(&outcome.sha1),
                packages::sha256_checksum.eq(&outcome.sha256),
                packages::error.eq(None::<String>),
                packages::updated_at.eq(Some(now)),
                packages::pending_since.eq(None::<i64>),
            ))
            .execute(conn)?,
        Transition::UploadFailed | Transition::CopyFailed => diesel::update(target)
            .set((
                packages::state.eq(to.as_str()),
                packages::error.eq(&outcome.error),
                packages::updated_at.eq(Some(now)),
                packages::pending_since.eq(None::<i64>),
            ))
            .execute(conn)?,
        Transition::Expire => diesel::update(target)
            .set((
                packages::state.eq(to.as_str()),
                packages::package_hash.eq(None::<String>),
                packages::sha256_checksum.eq(None::<String>),
                packages::updated_at.eq(Some(now)),
            ))
            .execute(conn)?,
    };
    Ok(updated == 1)
}

/// Claims a package awaiting bits for one upload until `until` (milliseconds), unless
/// another upload holds a claim that has not lapsed. Returns whether it was claimed.
pub fn claim_upload(
    conn: &mut AnyConnection,
    guid: &str,
    claim: &str,
    until: i64,
) -> Result<bool, StorageError> {
    let now = crate::now_millis();
    let updated = diesel::update(
        packages::table
            .filter(packages::guid.eq(guid))
            .filter(packages::state.eq(PackageState::AwaitingUpload.as_str()))
            .filter(
                packages::upload_claimed_until
                    .is_null()
                    .or(packages::upload_claimed_until.lt(now)),
            ),
    )
    .set((
        packages::upload_claim.eq(claim),
        packages::upload_claimed_until.eq(until),
    ))
    .execute(conn)?;
    Ok(updated == 1)
}

/// Extends a claim this upload still holds; returns whether it still held it.
pub fn renew_upload_claim(
    conn: &mut AnyConnection,
    guid: &str,
    claim: &str,
    until: i64,
) -> Result<bool, StorageError> {
    let updated = diesel::update(
        packages::table
            .filter(packages::guid.eq(guid))
            .filter(packages::upload_claim.eq(claim)),
    )
    .set(packages::upload_claimed_until.eq(until))
    .execute(conn)?;
    Ok(updated == 1)
}

/// Gives up a claim (the upload failed), so the next upload need not wait for it to lapse.
pub fn release_upload_claim(
    conn: &mut AnyConnection,
    guid: &str,
    claim: &str,
) -> Result<(), StorageError> {
    diesel::update(
        packages::table
            .filter(packages::guid.eq(guid))
            .filter(packages::upload_claim.eq(claim)),
    )
    .set((
        packages::upload_claim.eq(None::<String>),
        packages::upload_claimed_until.eq(None::<i64>),
    ))
    .execute(conn)?;
    Ok(())
}

/// Accepts the upload holding `claim`: AWAITING_UPLOAD → PROCESSING_UPLOAD and its job, in
/// one transaction. Returns false (and records nothing) when the package no longer awaits
/// an upload or another upload holds it.
pub fn accept_upload(
    conn: &mut AnyConnection,
    guid: &str,
    claim: &str,
    job: &NewJob,
) -> Result<bool, StorageError> {
    write_transaction(conn, |conn| {
        let now = Timestamp::now().seconds();
        let updated = diesel::update(
            packages::table
                .filter(packages::guid.eq(guid))
                .filter(packages::state.eq(PackageState::AwaitingUpload.as_str()))
                .filter(packages::upload_claim.eq(claim)),
        )
        .set((
            packages::state.eq(Transition::AcceptUpload.to().as_str()),
            packages::updated_at.eq(Some(now)),
            packages::pending_since.eq(Some(now)),
            packages::upload_claim.eq(None::<String>),
            packages::upload_claimed_until.eq(None::<i64>),
        ))
        .execute(conn)?;
        if updated != 1 {
            return Ok(false);
        }
        jobs::insert(conn, job)?;
        Ok(true)
    })
}

/// Ends a package's job: applies the final transition and removes the package's job rows
/// in one transaction, so the job is either finished or still there to run again.
pub fn finish(
    conn: &mut AnyConnection,
    guid: &str,
    transition: Transition,
    outcome: &Outcome,
    job_kinds: &[packages_domain::JobKind],
) -> Result<bool, StorageError> {
    write_transaction(conn, |conn| {
        let applied = apply(conn, guid, transition, outcome)?;
        jobs::delete_for_package(conn, guid, job_kinds)?;
        Ok(applied)
    })
}

/// Deletes a package; a bits package's blob is deleted by `delete_job`, recorded in the
/// same transaction, which also removes the jobs the package had pending (an upload or a
/// copy that has not run would otherwise be published again at every restart). Returns
/// whether a package was deleted.
pub fn delete(
    conn: &mut AnyConnection,
    guid: &str,
    delete_job: impl Fn(&Package) -> NewJob,
) -> Result<bool, StorageError> {
    write_transaction(conn, |conn| {
        let Some(package) = find(conn, guid)? else {
            return Ok(false);
        };
        // The foreign keys would cascade too; removing them here first keeps the package's
        // labels and annotations from outliving it whatever the connection's settings.
        metadata::delete(conn, guid)?;
        diesel::delete(packages::table.filter(packages::guid.eq(guid))).execute(conn)?;
        if package.package_type == PackageType::Bits {
            jobs::replace_with(conn, guid, &delete_job(&package))?;
        } else {
            jobs::delete_all_for_package(conn, guid)?;
        }
        Ok(true)
    })
}

/// The registry credentials a PATCH sets; `None` fields are left out of the `SET`.
#[derive(AsChangeset)]
#[diesel(table_name = packages)]
struct DockerCredentials<'a> {
    docker_username: Option<&'a str>,
    docker_password: Option<&'a str>,
    updated_at: Option<i64>,
}

/// Sets a docker package's registry `username` and/or `sealed_password` (already sealed
/// by the service; stored as given). `None` leaves a value as it is: credentials cannot be
/// cleared (spec 5 step 7). `updated_at` moves only when a stored value changes; a password
/// sealed afresh (new nonce) always differs from the stored one. One conditional update,
/// so the check holds under concurrent PATCHes. Returns whether the package changed: false
/// when nothing differed, or no docker package has that guid.
pub fn set_docker_credentials(
    conn: &mut AnyConnection,
    guid: &str,
    username: Option<&str>,
    sealed_password: Option<&str>,
) -> Result<bool, StorageError> {
    if username.is_none() && sealed_password.is_none() {
        return Ok(false);
    }
    type Condition<'a> = Box<dyn BoxableExpression<packages::table, Db, SqlType = Bool> + 'a>;
    let username_differs: Condition = match username {
        Some(u) => Box::new(
            packages::docker_username
                .is_null()
                .or(packages::docker_username.ne(u).assume_not_null()),
        ),
        None => Box::new(false.into_sql::<Bool>()),
    };
    let password_differs: Condition = match sealed_password {
        Some(p) => Box::new(
            packages::docker_password
                .is_null()
                .or(packages::docker_password.ne(p).assume_not_null()),
        ),
        None => Box::new(false.into_sql::<Bool>()),
    };
    let updated = diesel::update(
        packages::table
            .filter(packages::guid.eq(guid))
            .filter(packages::package_type.eq(PackageType::Docker.as_str()))
            .filter(username_differs.or(password_differs)),
    )
    .set(&DockerCredentials {
        docker_username: username,
        docker_password: sealed_password,
        updated_at: Some(Timestamp::now().seconds()),
    })
    .execute(conn)?;
    Ok(updated == 1)
}

/// Expires the app's READY packages beyond the `keep` newest: they become EXPIRED, lose
/// their hashes, and a job per package deletes their bits. Returns the expired GUIDs.
pub fn expire(
    conn: &mut AnyConnection,
    app_guid: &str,
    keep: usize,
    delete_job: impl Fn(&Package) -> NewJob,
) -> Result<Vec<PackageGuid>, StorageError> {
    write_transaction(conn, |conn| {
        let rows: Vec<PackageRow> = packages::table
            .filter(packages::app_guid.eq(app_guid))
            .filter(packages::state.eq(PackageState::Ready.as_str()))
            .filter(packages::package_type.eq(PackageType::Bits.as_str()))
            .order((packages::created_at.desc(), packages::id.desc()))
            .offset(i64::try_from(keep).unwrap_or(i64::MAX))
            .limit(i64::MAX)
            .select(PackageRow::as_select())
            .load(conn)?;
        let mut expired = Vec::new();
        for row in rows {
            let package = Package::try_from(row)?;
            if apply(conn, &package.guid, Transition::Expire, &Outcome::default())? {
                jobs::insert(conn, &delete_job(&package))?;
                expired.push(package.guid);
            }
        }
        Ok(expired)
    })
}

/// Packages pending (PROCESSING_UPLOAD, COPYING) since before `before` (seconds).
pub fn pending_since_before(
    conn: &mut AnyConnection,
    before: i64,
) -> Result<Vec<Package>, StorageError> {
    let pending: Vec<&str> = PackageState::ALL
        .iter()
        .filter(|s| s.is_pending())
        .map(|s| s.as_str())
        .collect();
    packages::table
        .filter(packages::state.eq_any(pending))
        .filter(packages::pending_since.lt(before))
        .order(packages::id.asc())
        .limit(1000)
        .select(PackageRow::as_select())
        .load(conn)?
        .into_iter()
        .map(Package::try_from)
        .collect()
}

/// Restarts a pending package's timeout clock (it was re-driven); only while still in
/// `state`.
pub fn restart_pending_clock(
    conn: &mut AnyConnection,
    guid: &str,
    state: PackageState,
) -> Result<bool, StorageError> {
    let updated = diesel::update(
        packages::table
            .filter(packages::guid.eq(guid))
            .filter(packages::state.eq(state.as_str())),
    )
    .set(packages::pending_since.eq(Some(Timestamp::now().seconds())))
    .execute(conn)?;
    Ok(updated == 1)
}

/// When the longest-pending package became pending (seconds), if any is pending.
pub fn oldest_pending_since(conn: &mut AnyConnection) -> Result<Option<i64>, StorageError> {
    let pending: Vec<&str> = PackageState::ALL
        .iter()
        .filter(|s| s.is_pending())
        .map(|s| s.as_str())
        .collect();
    Ok(packages::table
        .filter(packages::state.eq_any(pending))
        .select(diesel::dsl::min(packages::pending_since))
        .first::<Option<i64>>(conn)?)
}

/// Packages per state, for metrics.
pub fn count_by_state(conn: &mut AnyConnection) -> Result<Vec<(String, i64)>, StorageError> {
    Ok(packages::table
        .group_by(packages::state)
        .select((packages::state, diesel::dsl::count_star()))
        .load(conn)?)
}
