//! Labels and annotations of packages (GA metadata), one row per key.
//!
//! Writes run inside the caller's transaction (a create stores the package and its
//! metadata together; a PATCH merges metadata and credentials together): nothing here
//! opens one. Limits and merging are the domain's rules; this module stores the result.

use std::collections::{BTreeMap, HashMap};

use diesel::prelude::*;
use diesel::sql_types::Bool;
use packages_domain::{Metadata, MetadataKey};

use crate::schema::{package_annotations, package_extras, package_labels};
use crate::{AnyConnection, StorageError};

/// Brings `$table`'s rows of one package from `$current` to `$wanted`. A macro: the two
/// tables are different types with the same columns.
macro_rules! save_rows {
    ($conn:expr, $table:ident, $guid:expr, $current:expr, $wanted:expr) => {{
        let (current, wanted): (
            &BTreeMap<MetadataKey, String>,
            &BTreeMap<MetadataKey, String>,
        ) = ($current, $wanted);
        for (key, value) in current {
            if wanted.get(key) != Some(value) {
                diesel::delete(
                    $table::table
                        .filter($table::package_guid.eq($guid))
                        .filter($table::key_prefix.eq(stored_prefix(key)))
                        .filter($table::key_name.eq(key.name.as_str())),
                )
                .execute($conn)?;
            }
        }
        // One row per statement: diesel's multi-backend has no batch insert that SQLite
        // accepts, and an update touches few keys (a create at most 250).
        for (key, value) in wanted {
            if current.get(key) != Some(value) {
                diesel::insert_into($table::table)
                    .values((
                        $table::package_guid.eq($guid),
                        $table::key_prefix.eq(stored_prefix(key)),
                        $table::key_name.eq(key.name.as_str()),
                        $table::value.eq(value.as_str()),
                    ))
                    .execute($conn)?;
            }
        }
    }};
}

/// The stored `key_prefix` of a key: `''` for none, so (package, prefix, name) stays
/// unique for unprefixed keys too (NULLs never collide in a unique key).
pub(crate) fn stored_prefix(key: &MetadataKey) -> &str {
    key.prefix.as_deref().unwrap_or("")
}

fn key_of(prefix: String, name: String) -> MetadataKey {
    MetadataKey {
        prefix: (!prefix.is_empty()).then_some(prefix),
        name,
    }
}

/// Package GUIDs per query when loading a page: each is bound twice (once per table),
/// which keeps a query well under SQLite's 32766 parameters. A page (at most 5000
/// packages) is one query.
const GUIDS_PER_QUERY: usize = 10_000;

/// The metadata of one package (empty when it has none, or does not exist).
pub fn load(conn: &mut AnyConnection, package_guid: &str) -> Result<Metadata, StorageError> {
    // One guid: `=` rather than `IN (…)`, so the statement is prepared once per
    // connection and reused (diesel caches statements of a fixed shape only); every
    // single-package answer runs it.
    let rows: Vec<(bool, String, String, String)> = on_each_backend!(conn, |c| {
        package_labels::table
            .filter(package_labels::package_guid.eq(package_guid))
            .select((
                true.into_sql::<Bool>(),
                package_labels::key_prefix,
                package_labels::key_name,
                package_labels::value,
            ))
            .union_all(
                package_annotations::table
                    .filter(package_annotations::package_guid.eq(package_guid))
                    .select((
                        false.into_sql::<Bool>(),
                        package_annotations::key_prefix,
                        package_annotations::key_name,
                        package_annotations::value,
                    )),
            )
            .load(c)
    })?;
    let mut metadata = Metadata::default();
    for (is_label, prefix, name, value) in rows {
        add_row(&mut metadata, is_label, prefix, name, value);
    }
    Ok(metadata)
}

/// The metadata of a package from its labels and its annotations, each aggregated by the
/// database into one JSON array of `[prefix, name, value]` (see
/// `packages::find_with_space_and_metadata`).
pub(crate) fn from_aggregated(labels: &str, annotations: &str) -> Result<Metadata, StorageError> {
    let rows = |json: &str| {
        serde_json::from_str::<Vec<(String, String, String)>>(json)
            .map_err(|e| StorageError::Corrupt(format!("aggregated metadata: {e}")))
    };
    let mut metadata = Metadata::default();
    for (is_label, json) in [(true, labels), (false, annotations)] {
        for (prefix, name, value) in rows(json)? {
            add_row(&mut metadata, is_label, prefix, name, value);
        }
    }
    Ok(metadata)
}

/// A package's labels or annotations as one JSON array of `[prefix, name, value]`, `[]`
/// when none: a column of a statement on `packages`, so that one statement reads a package
/// with its metadata. A unit type per table: diesel keeps a statement prepared by the
/// query's type, which a raw SQL query never is.
macro_rules! aggregated_column {
    ($name:ident, $table:literal) => {
        #[derive(Debug, Clone, Copy, diesel::query_builder::QueryId)]
        pub(crate) struct $name;

        impl diesel::Expression for $name {
            type SqlType = diesel::sql_types::Text;
        }
        impl<QS> diesel::AppearsOnTable<QS> for $name {}
        impl<QS> diesel::SelectableExpression<QS> for $name {}
        impl diesel::expression::ValidGrouping<()> for $name {
            type IsAggregate = diesel::expression::is_aggregate::Never;
        }

        impl diesel::query_builder::QueryFragment<diesel::sqlite::Sqlite> for $name {
            fn walk_ast<'b>(
                &'b self,
                mut out: diesel::query_builder::AstPass<'_, 'b, diesel::sqlite::Sqlite>,
            ) -> diesel::QueryResult<()> {
                out.push_sql(concat!(
                    "(SELECT json_group_array(json_array(key_prefix, key_name, value)) FROM ",
                    $table,
                    " WHERE package_guid = packages.guid)"
                ));
                Ok(())
            }
        }

        #[cfg(feature = "postgres")]
        impl diesel::query_builder::QueryFragment<diesel::pg::Pg> for $name {
            fn walk_ast<'b>(
                &'b self,
                mut out: diesel::query_builder::AstPass<'_, 'b, diesel::pg::Pg>,
            ) -> diesel::QueryResult<()> {
                out.push_sql(concat!(
                    "(SELECT COALESCE(json_agg(json_build_array(key_prefix, key_name, value)), '[]')::text FROM ",
                    $table,
                    " WHERE package_guid = packages.guid)"
                ));
                Ok(())
            }
        }
    };
}

aggregated_column!(LabelsJson, "package_labels");
aggregated_column!(AnnotationsJson, "package_annotations");

/// One row of either table into `metadata`.
fn add_row(metadata: &mut Metadata, is_label: bool, prefix: String, name: String, value: String) {
    let map = if is_label {
        &mut metadata.labels
    } else {
        &mut metadata.annotations
    };
    map.insert(key_of(prefix, name), value);
}

/// The metadata of each package of `package_guids` (a list page), in that order, read in
/// one query for both tables.
pub fn load_many(
    conn: &mut AnyConnection,
    package_guids: &[&str],
) -> Result<Vec<Metadata>, StorageError> {
    let mut by_guid: HashMap<String, Metadata> = HashMap::new();
    for chunk in package_guids.chunks(GUIDS_PER_QUERY) {
        // (is a label, package guid, prefix, name, value)
        let rows: Vec<(bool, String, String, String, String)> = on_each_backend!(conn, |c| {
            package_labels::table
                .filter(package_labels::package_guid.eq_any(chunk))
                .select((
                    true.into_sql::<Bool>(),
                    package_labels::package_guid,
                    package_labels::key_prefix,
                    package_labels::key_name,
                    package_labels::value,
                ))
                .union_all(
                    package_annotations::table
                        .filter(package_annotations::package_guid.eq_any(chunk))
                        .select((
                            false.into_sql::<Bool>(),
                            package_annotations::package_guid,
                            package_annotations::key_prefix,
                            package_annotations::key_name,
                            package_annotations::value,
                        )),
                )
                .load(c)
        })?;
        for (is_label, guid, prefix, name, value) in rows {
            add_row(
                by_guid.entry(guid).or_default(),
                is_label,
                prefix,
                name,
                value,
            );
        }
    }
    Ok(package_guids
        .iter()
        .map(|guid| by_guid.get(*guid).cloned().unwrap_or_default())
        .collect())
}

/// Makes the package's stored metadata equal `metadata` (the result of merging an update
/// into what [`load`] returned), touching only the keys that differ: a key gone or whose
/// value changed is deleted, a key new or changed is inserted. The package's row keeps
/// how many characters it holds, which a list page batches its loading by.
pub fn save(
    conn: &mut AnyConnection,
    package_guid: &str,
    metadata: &Metadata,
) -> Result<(), StorageError> {
    let current = load(conn, package_guid)?;
    save_rows!(
        conn,
        package_labels,
        package_guid,
        &current.labels,
        &metadata.labels
    );
    save_rows!(
        conn,
        package_annotations,
        package_guid,
        &current.annotations,
        &metadata.annotations
    );
    let characters = i64::try_from(metadata.characters()).unwrap_or(i64::MAX);
    diesel::update(package_extras::table.filter(package_extras::guid.eq(package_guid)))
        .set(package_extras::metadata_characters.eq(characters))
        .execute(conn)?;
    Ok(())
}

/// Deletes every label and annotation of a package.
pub fn delete(conn: &mut AnyConnection, package_guid: &str) -> Result<(), StorageError> {
    diesel::delete(package_labels::table.filter(package_labels::package_guid.eq(package_guid)))
        .execute(conn)?;
    diesel::delete(
        package_annotations::table.filter(package_annotations::package_guid.eq(package_guid)),
    )
    .execute(conn)?;
    Ok(())
}
