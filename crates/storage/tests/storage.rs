//! The storage layer against real databases: a fresh SQLite file and a fresh PostgreSQL
//! database per test. Every test runs on both.
#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Barrier};

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use packages_domain::context::{App, Organization, Role, RoleTarget, Space};
use packages_domain::{
    AppGuid, JobKind, LabelSelector, ListQuery, Metadata, MetadataKey, NewPackage, OrderBy,
    OrderField, OrgGuid, PackageFilter, PackageGuid, PackageState, PackageType, Relation,
    Requirement, RoleType, SpaceGuid, TimeFilter, Timestamp, Transition,
};
use packages_storage::context::{self, Visibility};
use packages_storage::jobs::{self, NewJob};
use packages_storage::packages::{self, Outcome};
use packages_storage::{
    AnyConnection, Database, StorageError, metadata, resource_pool, write_transaction,
};

/// A database that removes itself.
struct TestDb {
    db: Database,
    _dir: Option<tempfile::TempDir>,
    pg_name: Option<String>,
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some(name) = &self.pg_name
            && let Ok(mut admin) = PgConnection::establish(&admin_url())
        {
            let _ =
                admin.batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"));
        }
    }
}

fn admin_url() -> String {
    std::env::var("PACKAGES_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn sqlite() -> TestDb {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/packages.db", dir.path().display());
    TestDb {
        db: Database::connect(&url, 16).unwrap(),
        _dir: Some(dir),
        pg_name: None,
    }
}

fn postgres() -> TestDb {
    let name = format!("packages_storage_{}", uuid::Uuid::new_v4().simple());
    let mut admin =
        PgConnection::establish(&admin_url()).expect("PostgreSQL must be running (see README)");
    admin
        .batch_execute(&format!("CREATE DATABASE \"{name}\""))
        .unwrap();
    let base = admin_url();
    let url = format!("{}/{name}", base.rsplit_once('/').unwrap().0);
    TestDb {
        db: Database::connect(&url, 16).unwrap(),
        _dir: None,
        pg_name: Some(name),
    }
}

fn both(test: impl Fn(&Database)) {
    test(&sqlite().db);
    test(&postgres().db);
}

fn conn(db: &Database) -> r2d2::PooledConnection<packages_storage::connection::Manager> {
    db.pool().get().unwrap()
}

fn seed(c: &mut AnyConnection) -> (OrgGuid, SpaceGuid, AppGuid) {
    let now = Timestamp::now();
    let org = Organization {
        guid: packages_domain::new_guid().into(),
        name: "o".into(),
        suspended: false,
        created_at: now,
        updated_at: now,
    };
    context::insert_org(c, &org).unwrap();
    let space = Space {
        guid: packages_domain::new_guid().into(),
        name: "s".into(),
        organization_guid: org.guid.clone(),
        created_at: now,
        updated_at: now,
    };
    context::insert_space(c, &space).unwrap();
    let app = App {
        guid: packages_domain::new_guid().into(),
        name: "a".into(),
        space_guid: space.guid.clone(),
        created_at: now,
        updated_at: now,
    };
    context::insert_app(c, &app).unwrap();
    (org.guid, space.guid, app.guid)
}

fn new_bits(app: &str) -> NewPackage {
    NewPackage {
        guid: packages_domain::new_guid().into(),
        app_guid: app.into(),
        package_type: PackageType::Bits,
        state: PackageState::AwaitingUpload,
        url: None,
        created_at: Timestamp::now(),
        docker_username: None,
        docker_password: None,
    }
}

fn job(package: &str, kind: &str) -> NewJob {
    NewJob::new(
        uuid::Uuid::new_v4().to_string(),
        package.into(),
        kind.parse().unwrap(),
        "{}".into(),
    )
}

/// Claims the package for one upload and accepts that upload, as the API does.
fn upload(c: &mut AnyConnection, guid: &str, claim: &str) -> bool {
    let until = packages_storage::now_millis() + 60_000;
    packages::claim_upload(c, guid, claim, until).unwrap()
        && packages::accept_upload(c, guid, claim, &job(guid, "process_upload")).unwrap()
}

#[test]
fn upload_claims_exclude_each_other_until_released_or_lapsed() {
    both(|db| {
        let c = &mut conn(db);
        let (_, _, app) = seed(c);
        let p = packages::insert(c, &new_bits(&app)).unwrap();
        let later = packages_storage::now_millis() + 60_000;
        assert!(packages::claim_upload(c, &p.guid, "a", later).unwrap());
        assert!(!packages::claim_upload(c, &p.guid, "b", later).unwrap());
        assert!(packages::renew_upload_claim(c, &p.guid, "a", later).unwrap());
        assert!(!packages::renew_upload_claim(c, &p.guid, "b", later).unwrap());
        // Only the holder may accept.
        assert!(
            !packages::accept_upload(c, &p.guid, "b", &job(&p.guid, "process_upload")).unwrap()
        );
        packages::release_upload_claim(c, &p.guid, "a").unwrap();
        assert!(packages::claim_upload(c, &p.guid, "b", later).unwrap());
        // A claim whose time is up lapses by itself (its process died).
        assert!(packages::renew_upload_claim(c, &p.guid, "b", 1).unwrap());
        assert!(packages::claim_upload(c, &p.guid, "c", later).unwrap());
        assert!(
            !packages::accept_upload(c, &p.guid, "b", &job(&p.guid, "process_upload")).unwrap()
        );
        assert!(packages::accept_upload(c, &p.guid, "c", &job(&p.guid, "process_upload")).unwrap());
        // Accepted: nothing can claim it any more.
        assert!(!packages::claim_upload(c, &p.guid, "d", later).unwrap());
    });
}

#[test]
fn job_runs_that_never_settle_are_counted() {
    both(|db| {
        let c = &mut conn(db);
        let row = job("some-package", "process_upload");
        jobs::insert(c, &row).unwrap();
        assert_eq!(jobs::begin_run(c, &row.id).unwrap(), Some(0));
        // That run ended with an infrastructure error and asked for another: settled.
        jobs::reschedule(c, &row.id, 0, jobs::Rescheduler::Run).unwrap();
        assert_eq!(jobs::begin_run(c, &row.id).unwrap(), Some(0));
        // That one died with its process; so did the next.
        assert_eq!(jobs::begin_run(c, &row.id).unwrap(), Some(1));
        // The sweep re-driving a lost job settles no run.
        jobs::reschedule(c, &row.id, 0, jobs::Rescheduler::Sweep).unwrap();
        assert_eq!(jobs::begin_run(c, &row.id).unwrap(), Some(2));
        jobs::delete(c, &row.id).unwrap();
        assert_eq!(jobs::begin_run(c, &row.id).unwrap(), None);
    });
}

#[test]
fn package_lifecycle() {
    both(|db| {
        let c = &mut conn(db);
        let (_, _, app) = seed(c);
        let created = packages::insert(c, &new_bits(&app)).unwrap();
        assert_eq!(created.state, PackageState::AwaitingUpload);
        assert_eq!(created.updated_at, None);

        assert!(upload(c, &created.guid, "first"));
        // A second upload finds the package no longer awaiting and records nothing.
        assert!(!upload(c, &created.guid, "second"));
        assert!(
            jobs::find_for_package(c, &created.guid, &[JobKind::ProcessUpload])
                .unwrap()
                .is_some()
        );

        let outcome = Outcome {
            sha1: Some("a".repeat(40)),
            sha256: Some("b".repeat(64)),
            error: None,
        };
        assert!(
            packages::finish(
                c,
                &created.guid,
                Transition::UploadSucceeded,
                &outcome,
                &[JobKind::ProcessUpload]
            )
            .unwrap()
        );
        let ready = packages::find(c, &created.guid).unwrap().unwrap();
        assert_eq!(ready.state, PackageState::Ready);
        assert_eq!(ready.sha1, outcome.sha1);
        assert_eq!(ready.sha256, outcome.sha256);
        assert!(ready.updated_at.is_some());
        assert!(
            jobs::find_for_package(c, &created.guid, &[JobKind::ProcessUpload])
                .unwrap()
                .is_none()
        );

        // A late failure changes nothing.
        let failure = Outcome {
            error: Some("late".into()),
            ..Outcome::default()
        };
        assert!(
            !packages::finish(
                c,
                &created.guid,
                Transition::UploadFailed,
                &failure,
                &[JobKind::ProcessUpload]
            )
            .unwrap()
        );
        assert_eq!(
            packages::find(c, &created.guid).unwrap().unwrap().state,
            PackageState::Ready
        );

        assert!(packages::delete(c, &created.guid, |p| job(&p.guid, "delete_bits")).unwrap());
        assert!(packages::find(c, &created.guid).unwrap().is_none());
        assert!(
            jobs::find_for_package(c, &created.guid, &[JobKind::DeleteBits])
                .unwrap()
                .is_some()
        );
        assert!(!packages::delete(c, &created.guid, |p| job(&p.guid, "delete_bits")).unwrap());
    });
}

#[test]
fn concurrent_uploads_admit_exactly_one() {
    both(|db| {
        let (_, _, app) = seed(&mut conn(db));
        let package = packages::insert(&mut conn(db), &new_bits(&app)).unwrap();
        let barrier = Arc::new(Barrier::new(10));
        let handles: Vec<_> = (0..10)
            .map(|_| {
                let (db, barrier, guid) = (db.clone(), barrier.clone(), package.guid.clone());
                std::thread::spawn(move || {
                    let mut c = db.pool().get().unwrap();
                    barrier.wait();
                    upload(&mut c, &guid, &uuid::Uuid::new_v4().to_string())
                })
            })
            .collect();
        let admitted = handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .filter(|a| *a)
            .count();
        assert_eq!(admitted, 1);
        assert_eq!(
            jobs::count_unpublished(&mut conn(db)).unwrap(),
            1,
            "exactly one job recorded"
        );
    });
}

#[test]
fn lists_respect_roles_and_pages() {
    both(|db| {
        let c = &mut conn(db);
        let (org, space, app) = seed(c);
        let (_, _, other_app) = {
            let now = Timestamp::now();
            let org2 = Organization {
                guid: packages_domain::new_guid().into(),
                name: "o2".into(),
                suspended: false,
                created_at: now,
                updated_at: now,
            };
            context::insert_org(c, &org2).unwrap();
            let space2 = Space {
                guid: packages_domain::new_guid().into(),
                name: "s".into(),
                organization_guid: org2.guid.clone(),
                created_at: now,
                updated_at: now,
            };
            context::insert_space(c, &space2).unwrap();
            let app2 = App {
                guid: packages_domain::new_guid().into(),
                name: "a".into(),
                space_guid: space2.guid.clone(),
                created_at: now,
                updated_at: now,
            };
            context::insert_app(c, &app2).unwrap();
            (org2.guid, space2.guid, app2.guid)
        };
        let mine: Vec<packages_domain::PackageGuid> = (0..3)
            .map(|_| packages::insert(c, &new_bits(&app)).unwrap().guid)
            .collect();
        packages::insert(c, &new_bits(&other_app)).unwrap();

        let query = ListQuery {
            page: 1,
            per_page: 2,
        };
        let (all, total) = list_page(
            c,
            &Visibility::All,
            None,
            &PackageFilter::default(),
            None,
            &query,
        )
        .unwrap();
        assert_eq!((all.len(), total), (2, 4));

        let user = Visibility::User("dev".into());
        assert_eq!(
            list_page(c, &user, None, &PackageFilter::default(), None, &query)
                .unwrap()
                .1,
            0
        );
        let now = Timestamp::now();
        context::insert_role(
            c,
            &Role {
                guid: packages_domain::new_guid(),
                role_type: RoleType::SpaceAuditor,
                user_guid: "dev".into(),
                target: RoleTarget::Space(space.clone()),
                created_at: now,
                updated_at: now,
            },
        )
        .unwrap();
        let (page1, total) =
            list_page(c, &user, None, &PackageFilter::default(), None, &query).unwrap();
        assert_eq!(total, 3);
        assert_eq!(
            page1.iter().map(|p| p.guid.clone()).collect::<Vec<_>>(),
            mine[..2].to_vec()
        );
        let (page2, _) = list_page(
            c,
            &user,
            None,
            &PackageFilter::default(),
            None,
            &ListQuery {
                page: 2,
                per_page: 2,
            },
        )
        .unwrap();
        assert_eq!(page2[0].guid, mine[2]);
        assert_eq!(
            list_page(
                c,
                &user,
                Some(&other_app),
                &PackageFilter::default(),
                None,
                &query
            )
            .unwrap()
            .1,
            0
        );

        // Org managers see the spaces of their org.
        context::insert_role(
            c,
            &Role {
                guid: packages_domain::new_guid(),
                role_type: RoleType::OrganizationManager,
                user_guid: "mgr".into(),
                target: RoleTarget::Organization(org.clone()),
                created_at: now,
                updated_at: now,
            },
        )
        .unwrap();
        assert_eq!(
            list_page(
                c,
                &Visibility::User("mgr".into()),
                None,
                &PackageFilter::default(),
                None,
                &query
            )
            .unwrap()
            .1,
            3
        );
        let m = context::membership(c, "mgr", &space).unwrap().unwrap();
        assert!(m.org_manager && m.space_roles.is_empty() && !m.org_suspended);
        let m = context::membership(c, "dev", &space).unwrap().unwrap();
        assert_eq!(m.space_roles, vec![RoleType::SpaceAuditor]);
        assert!(context::membership(c, "dev", "nope").unwrap().is_none());
        assert!(context::is_org_member(c, "dev", &org).unwrap());
        assert_eq!(
            context::list_orgs(c, &Visibility::User("dev".into()), &ListQuery::default())
                .unwrap()
                .1,
            1
        );
        assert_eq!(
            context::list_spaces(c, &Visibility::User("mgr".into()), &ListQuery::default())
                .unwrap()
                .1,
            1
        );
        assert_eq!(
            context::list_roles(c, &Visibility::User("dev".into()), &ListQuery::default())
                .unwrap()
                .1,
            2
        );
    });
}

#[test]
fn uniqueness_is_enforced() {
    both(|db| {
        let c = &mut conn(db);
        let (_, space, _) = seed(c);
        let now = Timestamp::now();
        let dup = App {
            guid: packages_domain::new_guid().into(),
            name: "a".into(),
            space_guid: space,
            created_at: now,
            updated_at: now,
        };
        assert!(matches!(
            context::insert_app(c, &dup),
            Err(packages_storage::StorageError::Conflict(_))
        ));
    });
}

#[test]
fn expiration_keeps_the_newest_ready_packages() {
    both(|db| {
        let c = &mut conn(db);
        let (_, _, app) = seed(c);
        let mut guids = Vec::new();
        for i in 0..4 {
            let mut p = new_bits(&app);
            p.created_at = Timestamp(1_000 + i);
            let p = packages::insert(c, &p).unwrap();
            assert!(upload(c, &p.guid, "claim"));
            let outcome = Outcome {
                sha1: Some("1".repeat(40)),
                sha256: Some("2".repeat(64)),
                error: None,
            };
            packages::finish(
                c,
                &p.guid,
                Transition::UploadSucceeded,
                &outcome,
                &[JobKind::ProcessUpload],
            )
            .unwrap();
            guids.push(p.guid);
        }
        let expired = packages::expire(c, &app, 2, |p| job(&p.guid, "delete_bits")).unwrap();
        assert_eq!(expired, vec![guids[1].clone(), guids[0].clone()]);
        let oldest = packages::find(c, &guids[0]).unwrap().unwrap();
        assert_eq!(oldest.state, PackageState::Expired);
        assert_eq!((oldest.sha1, oldest.sha256), (None, None));
        assert_eq!(
            packages::find(c, &guids[3]).unwrap().unwrap().state,
            PackageState::Ready
        );
        assert!(
            packages::expire(c, &app, 2, |p| job(&p.guid, "delete_bits"))
                .unwrap()
                .is_empty()
        );
    });
}

#[test]
fn outbox_claims_publishes_and_reschedules() {
    both(|db| {
        let c = &mut conn(db);
        jobs::insert(c, &job("p1", "process_upload")).unwrap();
        jobs::insert(c, &job("p2", "copy_bits")).unwrap();
        let claimed = jobs::claim_due(c, 10, 30_000).unwrap();
        assert_eq!(claimed.len(), 2);
        // Claimed rows are not handed to a second relay.
        assert!(jobs::claim_due(c, 10, 30_000).unwrap().is_empty());
        jobs::mark_published(c, &claimed[0].id).unwrap();
        jobs::release(c, &claimed[1].id).unwrap();
        let again = jobs::claim_due(c, 10, 30_000).unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].id, claimed[1].id);
        assert_eq!(
            jobs::reschedule(c, &claimed[0].id, 60_000, jobs::Rescheduler::Run).unwrap(),
            Some(1)
        );
        // Not due yet.
        assert!(
            jobs::claim_due(c, 10, 30_000)
                .unwrap()
                .iter()
                .all(|j| j.id != claimed[0].id)
        );
        jobs::mark_published(c, &again[0].id).unwrap();
        // A row claimed by a relay that died before publishing it.
        jobs::insert(c, &job("p3", "delete_bits")).unwrap();
        let orphan = jobs::claim_due(c, 10, 30_000).unwrap();
        assert_eq!(orphan.len(), 1);
        assert_eq!(jobs::republish_all(c).unwrap(), 2);
        assert_eq!(jobs::count_unpublished(c).unwrap(), 3);
        // Its claim is gone with the relay: due at once, not after the lease.
        let due: Vec<String> = jobs::claim_due(c, 10, 30_000)
            .unwrap()
            .into_iter()
            .map(|j| j.id)
            .collect();
        assert!(due.contains(&orphan[0].id), "{due:?}");
        assert!(due.contains(&again[0].id), "{due:?}");
        jobs::delete(c, &claimed[0].id).unwrap();
        assert_eq!(
            jobs::reschedule(c, &claimed[0].id, 0, jobs::Rescheduler::Run).unwrap(),
            None
        );
    });
}

#[test]
fn deleting_an_org_cascades_and_records_bit_deletions() {
    both(|db| {
        let c = &mut conn(db);
        let (org, space, app) = seed(c);
        let p = packages::insert(c, &new_bits(&app)).unwrap();
        assert!(context::delete_org(c, &org, &|p| job(&p.guid, "delete_bits")).unwrap());
        assert!(context::find_space(c, &space).unwrap().is_none());
        assert!(context::find_app(c, &app).unwrap().is_none());
        assert!(packages::find(c, &p.guid).unwrap().is_none());
        assert!(
            jobs::find_for_package(c, &p.guid, &[JobKind::DeleteBits])
                .unwrap()
                .is_some()
        );
    });
}

#[test]
fn bad_urls_and_unreachable_servers_fail_fast() {
    assert!(matches!(
        Database::connect("mysql://x", 1),
        Err(packages_storage::StorageError::BadUrl(_))
    ));
    assert!(matches!(
        Database::connect("packages.db", 1),
        Err(packages_storage::StorageError::BadUrl(_))
    ));
    let started = std::time::Instant::now();
    let err = Database::connect("postgres://postgres@127.0.0.1:1/none", 1)
        .err()
        .unwrap();
    assert!(err.is_retryable(), "{err}");
    assert!(started.elapsed().as_secs() < 20);
}

#[test]
fn migrations_go_down_and_up_again() {
    both(|db| {
        let c = &mut conn(db);
        let (_, _, app) = seed(c);
        let p = packages::insert(c, &new_bits(&app)).unwrap();
        metadata::save(c, &p.guid, &metadata(&[("env", "prod")], &[("note", "n")])).unwrap();
        resource_pool::insert(c, &"a".repeat(40), 1).unwrap();
        packages_storage::revert_all(c).unwrap();
        // Every table is gone with its rows.
        for table in [
            "packages",
            "jobs",
            "apps",
            "spaces",
            "roles",
            "organizations",
            "package_labels",
            "package_annotations",
            "resource_pool",
        ] {
            assert!(
                c.batch_execute(&format!("SELECT 1 FROM {table}")).is_err(),
                "{table} survived the revert"
            );
        }
        packages_storage::migrate(c).unwrap();
        let (_, _, app) = seed(c);
        let p = packages::insert(c, &new_bits(&app)).unwrap();
        assert!(upload(c, &p.guid, "after the round trip"));
    });
}

#[test]
fn the_metadata_size_column_counts_the_metadata_stored_before_it() {
    let up =
        include_str!("../migrations/postgres/00000000000005_package_metadata_characters/up.sql");
    assert_eq!(
        up,
        include_str!("../migrations/sqlite/00000000000005_package_metadata_characters/up.sql"),
        "one statement for both backends"
    );
    both(|db| {
        let c = &mut conn(db);
        let (_, _, app) = seed(c);
        let p = packages::insert(c, &new_bits(&app)).unwrap();
        let bare = packages::insert(c, &new_bits(&app)).unwrap();
        let stored = metadata(&[("env", "prod")], &[("example.com/note", "é")]);
        metadata::save(c, &p.guid, &stored).unwrap();
        // The tables as they were before the column, then the migration that adds it.
        c.batch_execute("ALTER TABLE packages DROP COLUMN metadata_characters")
            .unwrap();
        c.batch_execute(up).unwrap();
        let listed = packages::list(
            c,
            &Visibility::All,
            None,
            &PackageFilter::default(),
            None,
            &ListQuery {
                page: 1,
                per_page: 50,
            },
        )
        .unwrap();
        let guids: Vec<&str> = listed.packages.iter().map(|p| p.guid.as_str()).collect();
        assert_eq!(guids, [p.guid.as_str(), bare.guid.as_str()]);
        // env prod; example.com note é: characters, as the row keeps them after a save.
        assert_eq!(listed.metadata_sizes, [(3 + 4) + (11 + 4 + 1), 0]);
        assert_eq!(listed.metadata_sizes[0], stored.characters());
    });
}

// GA: metadata, filtered lists, docker credentials, the resource pool index.

fn key(text: &str) -> MetadataKey {
    match text.split_once('/') {
        Some((prefix, name)) => MetadataKey {
            prefix: Some(prefix.into()),
            name: name.into(),
        },
        None => MetadataKey {
            prefix: None,
            name: text.into(),
        },
    }
}

fn metadata(labels: &[(&str, &str)], annotations: &[(&str, &str)]) -> Metadata {
    let map = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (key(k), v.to_string())).collect();
    Metadata {
        labels: map(labels),
        annotations: map(annotations),
    }
}

/// Rows of `table`, to see what deletes leave behind.
fn count_rows(c: &mut AnyConnection, table: &str) -> i64 {
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    diesel::sql_query(format!("SELECT COUNT(*) AS n FROM {table}"))
        .get_result::<Count>(c)
        .unwrap()
        .n
}

/// The GUIDs an admin's list returns, in order, on one page.
/// A page and the total, the parts of a listed page most tests look at.
fn list_page(
    c: &mut AnyConnection,
    visibility: &Visibility,
    app_guid: Option<&str>,
    filter: &PackageFilter,
    order_by: Option<OrderBy>,
    page: &ListQuery,
) -> Result<(Vec<packages_domain::Package>, u64), StorageError> {
    let listed = packages::list(c, visibility, app_guid, filter, order_by, page)?;
    Ok((listed.packages, listed.total))
}

fn listed(
    c: &mut AnyConnection,
    filter: &PackageFilter,
    order_by: Option<OrderBy>,
) -> Vec<PackageGuid> {
    let (page, total) = list_page(
        c,
        &Visibility::All,
        None,
        filter,
        order_by,
        &ListQuery {
            page: 1,
            per_page: 5000,
        },
    )
    .unwrap();
    assert_eq!(page.len() as u64, total, "the count uses the same filters");
    page.into_iter().map(|p| p.guid).collect()
}

fn with_labels(c: &mut AnyConnection, app: &str, labels: &[(&str, &str)]) -> PackageGuid {
    let p = packages::insert(c, &new_bits(app)).unwrap();
    metadata::save(c, &p.guid, &metadata(labels, &[])).unwrap();
    p.guid
}

#[test]
fn metadata_is_saved_loaded_by_page_and_deleted_with_its_package() {
    both(|db| {
        let c = &mut conn(db);
        let (_, _, app) = seed(c);
        let a = packages::insert(c, &new_bits(&app)).unwrap().guid;
        let b = packages::insert(c, &new_bits(&app)).unwrap().guid;
        let none = packages::insert(c, &new_bits(&app)).unwrap().guid;
        // The same name with and without a prefix are two keys.
        let first = metadata(
            &[
                ("env", "prod"),
                ("example.com/env", "staging"),
                ("tier", ""),
            ],
            &[("note", "a long note"), ("example.com/owner", "team a")],
        );
        write_transaction(c, |c| metadata::save(c, &a, &first)).unwrap();
        metadata::save(c, &b, &metadata(&[("env", "dev")], &[])).unwrap();
        assert_eq!(metadata::load(c, &a).unwrap(), first);

        // Merged: one key changed, one gone, one new; the others stay as they were.
        let second = metadata(
            &[
                ("env", "staging"),
                ("example.com/env", "staging"),
                ("new", "1"),
            ],
            &[("example.com/owner", "team a")],
        );
        metadata::save(c, &a, &second).unwrap();
        assert_eq!(metadata::load(c, &a).unwrap(), second);
        // Keys and values are case-sensitive.
        let cased = metadata(&[("env", "dev"), ("Env", "Dev")], &[]);
        metadata::save(c, &b, &cased).unwrap();
        assert_eq!(metadata::load(c, &b).unwrap(), cased);

        // A page's metadata in one call, in the page's order, empty where none.
        let page = metadata::load_many(c, &[&none, &b, &a, "unknown"]).unwrap();
        assert_eq!(
            page,
            vec![
                Metadata::default(),
                cased.clone(),
                second,
                Metadata::default()
            ]
        );
        assert!(metadata::load_many(c, &[]).unwrap().is_empty());
        // A listed page tells each package's metadata size, and its total past its last
        // page too.
        let all = ListQuery {
            page: 1,
            per_page: 50,
        };
        let listed = packages::list(
            c,
            &Visibility::All,
            None,
            &PackageFilter::default(),
            None,
            &all,
        )
        .unwrap();
        // Their sizes without loading them: the characters of every key and value.
        // `second`: env staging, example.com/env staging, new 1; example.com/owner team a.
        let a_size = (3 + 7) + (11 + 3 + 7) + (3 + 1) + (11 + 5 + 6);
        let listed_guids: Vec<&str> = listed.packages.iter().map(|p| p.guid.as_str()).collect();
        assert_eq!(listed_guids, [a.as_str(), b.as_str(), none.as_str()]);
        assert_eq!(listed.metadata_sizes, vec![a_size, (3 + 3) + (3 + 3), 0]);
        assert_eq!(listed.total, 3);
        let past_the_end = ListQuery {
            page: 3,
            per_page: 2,
        };
        let listed = packages::list(
            c,
            &Visibility::All,
            None,
            &PackageFilter::default(),
            None,
            &past_the_end,
        )
        .unwrap();
        assert_eq!((listed.packages.len(), listed.total), (0, 3));

        // Metadata of a package that does not exist is refused.
        assert!(matches!(
            metadata::save(c, "unknown", &cased),
            Err(StorageError::MissingParent(_))
        ));

        assert!(packages::delete(c, &a, |p| job(&p.guid, "delete_bits")).unwrap());
        assert_eq!(metadata::load(c, &a).unwrap(), Metadata::default());
        assert_eq!(count_rows(c, "package_labels"), 2, "b's labels stay");
        assert_eq!(count_rows(c, "package_annotations"), 0);
        // Deleting the app (or its space or organization) cascades to its packages' metadata.
        assert!(context::delete_app(c, &app, &|p| job(&p.guid, "delete_bits")).unwrap());
        assert_eq!(count_rows(c, "package_labels"), 0);
    });
}

#[test]
fn a_package_with_its_space_and_metadata_reads_as_the_separate_reads_do() {
    both(|db| {
        let c = &mut conn(db);
        let (_, space, app) = seed(c);
        let bare = packages::insert(c, &new_bits(&app)).unwrap().guid;
        let rich = packages::insert(c, &new_bits(&app)).unwrap().guid;
        // Values JSON must escape on the way through the aggregate, and a large one.
        let large = "x".repeat(100_000);
        let stored = metadata(
            &[
                ("env", "prod"),
                ("example.com/env", "a \"quoted\" \\ value"),
                ("tier", ""),
            ],
            &[
                ("note", "line one\nline two\t\u{1F680} ünïcødé"),
                ("example.com/owner", &large),
            ],
        );
        metadata::save(c, &rich, &stored).unwrap();
        for guid in [&bare, &rich] {
            let (package, space_guid, read) = packages::find_with_space_and_metadata(c, guid)
                .unwrap()
                .unwrap();
            let (separately, separate_space) = packages::find_with_space(c, guid).unwrap().unwrap();
            assert_eq!(package, separately);
            assert_eq!(space_guid, separate_space);
            assert_eq!(space_guid, space.as_str());
            assert_eq!(read, metadata::load(c, guid).unwrap());
        }
        assert_eq!(
            packages::find_with_space_and_metadata(c, &rich)
                .unwrap()
                .unwrap()
                .2,
            stored
        );
        assert!(
            packages::find_with_space_and_metadata(c, "unknown")
                .unwrap()
                .is_none()
        );
        // Many in one statement: in the order asked, a GUID asked twice answered twice,
        // an unknown one answered `None`, each as the single read answers it.
        let asked = [rich.as_str(), "unknown", bare.as_str(), rich.as_str()];
        let many = packages::find_many_with_space_and_metadata(c, &asked).unwrap();
        assert_eq!(many.len(), asked.len());
        for (guid, read) in asked.iter().zip(many) {
            assert_eq!(
                read,
                packages::find_with_space_and_metadata(c, guid).unwrap(),
                "{guid}"
            );
        }
        assert!(
            packages::find_many_with_space_and_metadata(c, &[])
                .unwrap()
                .is_empty()
        );
    });
}

#[test]
fn label_selectors_filter_in_sql() {
    both(|db| {
        let c = &mut conn(db);
        let (_, _, app) = seed(c);
        let a = with_labels(c, &app, &[("env", "prod"), ("tier", "web")]);
        let b = with_labels(c, &app, &[("env", "staging")]);
        let none = with_labels(c, &app, &[]);
        let prefixed = with_labels(c, &app, &[("example.com/env", "prod")]);
        // An annotation is not a label.
        metadata::save(c, &none, &metadata(&[], &[("env", "prod")])).unwrap();

        let select = |c: &mut AnyConnection, requirements: Vec<Requirement>| {
            let filter = PackageFilter {
                label_selector: Some(LabelSelector(requirements)),
                ..PackageFilter::default()
            };
            listed(c, &filter, None)
        };
        let values = |vs: &[&str]| vs.iter().map(|v| v.to_string()).collect::<Vec<_>>();
        let equal = |k: &str, v: &str| Requirement::Equal {
            key: key(k),
            value: v.into(),
        };
        assert_eq!(select(c, vec![equal("env", "prod")]), vec![a.clone()]);
        assert_eq!(
            select(c, vec![equal("example.com/env", "prod")]),
            vec![prefixed.clone()]
        );
        assert_eq!(
            select(c, vec![equal("env", "Prod")]),
            Vec::<PackageGuid>::new()
        );
        assert_eq!(
            select(
                c,
                vec![Requirement::NotEqual {
                    key: key("env"),
                    value: "prod".into()
                }]
            ),
            vec![b.clone(), none.clone(), prefixed.clone()]
        );
        assert_eq!(
            select(
                c,
                vec![Requirement::In {
                    key: key("env"),
                    values: values(&["prod", "staging"])
                }]
            ),
            vec![a.clone(), b.clone()]
        );
        assert_eq!(
            select(
                c,
                vec![Requirement::NotIn {
                    key: key("env"),
                    values: values(&["prod", "qa"])
                }]
            ),
            vec![b.clone(), none.clone(), prefixed.clone()]
        );
        assert_eq!(
            select(c, vec![Requirement::Exists { key: key("env") }]),
            vec![a.clone(), b.clone()]
        );
        assert_eq!(
            select(c, vec![Requirement::NotExists { key: key("env") }]),
            vec![none.clone(), prefixed.clone()]
        );
        // Requirements combine with AND.
        assert_eq!(
            select(
                c,
                vec![
                    Requirement::Exists { key: key("env") },
                    Requirement::NotExists { key: key("tier") }
                ]
            ),
            vec![b.clone()]
        );
        assert_eq!(
            select(c, vec![equal("env", "prod"), equal("tier", "db")]),
            Vec::<PackageGuid>::new()
        );
    });
}

#[test]
fn list_filters_narrow_what_the_caller_sees() {
    both(|db| {
        let c = &mut conn(db);
        let (org, space, app) = seed(c);
        let now = Timestamp::now();
        let org2 = Organization {
            guid: packages_domain::new_guid().into(),
            name: "o2".into(),
            suspended: false,
            created_at: now,
            updated_at: now,
        };
        context::insert_org(c, &org2).unwrap();
        let space2 = Space {
            guid: packages_domain::new_guid().into(),
            name: "s2".into(),
            organization_guid: org2.guid.clone(),
            created_at: now,
            updated_at: now,
        };
        context::insert_space(c, &space2).unwrap();
        let app2 = App {
            guid: packages_domain::new_guid().into(),
            name: "a2".into(),
            space_guid: space2.guid.clone(),
            created_at: now,
            updated_at: now,
        };
        context::insert_app(c, &app2).unwrap();
        let (org2, app2) = (org2.guid, app2.guid);

        let bits = packages::insert(c, &new_bits(&app)).unwrap().guid;
        let mut docker = new_bits(&app);
        docker.package_type = PackageType::Docker;
        docker.state = PackageState::Ready;
        docker.url = Some("registry/image:1".into());
        let docker = packages::insert(c, &docker).unwrap().guid;
        let elsewhere = packages::insert(c, &new_bits(&app2)).unwrap().guid;

        let some = |vs: &[&str]| Some(vs.iter().map(|v| v.to_string()).collect::<Vec<_>>());
        let all = listed(c, &PackageFilter::default(), None);
        assert_eq!(all, vec![bits.clone(), docker.clone(), elsewhere.clone()]);
        let cases: Vec<(PackageFilter, Vec<PackageGuid>)> = vec![
            (
                PackageFilter {
                    guids: some(&[&bits, &elsewhere, "unknown"]),
                    ..PackageFilter::default()
                },
                vec![bits.clone(), elsewhere.clone()],
            ),
            (
                PackageFilter {
                    guids: some(&[]),
                    ..PackageFilter::default()
                },
                vec![],
            ),
            (
                PackageFilter {
                    states: some(&["READY"]),
                    ..PackageFilter::default()
                },
                vec![docker.clone()],
            ),
            (
                PackageFilter {
                    states: some(&["ready", "AWAITING_UPLOAD"]),
                    ..PackageFilter::default()
                },
                vec![bits.clone(), elsewhere.clone()],
            ),
            (
                PackageFilter {
                    states: some(&[]),
                    ..PackageFilter::default()
                },
                vec![],
            ),
            (
                PackageFilter {
                    types: some(&["docker"]),
                    ..PackageFilter::default()
                },
                vec![docker.clone()],
            ),
            (
                PackageFilter {
                    types: some(&["bits", "zip"]),
                    ..PackageFilter::default()
                },
                vec![bits.clone(), elsewhere.clone()],
            ),
            (
                PackageFilter {
                    app_guids: some(&[&app2]),
                    ..PackageFilter::default()
                },
                vec![elsewhere.clone()],
            ),
            (
                PackageFilter {
                    app_guids: some(&[]),
                    ..PackageFilter::default()
                },
                vec![],
            ),
            (
                PackageFilter {
                    space_guids: some(&[&space]),
                    ..PackageFilter::default()
                },
                vec![bits.clone(), docker.clone()],
            ),
            (
                PackageFilter {
                    space_guids: some(&[]),
                    ..PackageFilter::default()
                },
                vec![],
            ),
            (
                PackageFilter {
                    organization_guids: some(&[&org2, "unknown"]),
                    ..PackageFilter::default()
                },
                vec![elsewhere.clone()],
            ),
            (
                PackageFilter {
                    organization_guids: some(&[&org, &org2]),
                    ..PackageFilter::default()
                },
                all.clone(),
            ),
            (
                PackageFilter {
                    organization_guids: some(&[]),
                    ..PackageFilter::default()
                },
                vec![],
            ),
            // Filters combine with AND.
            (
                PackageFilter {
                    types: some(&["bits"]),
                    space_guids: some(&[&space]),
                    ..PackageFilter::default()
                },
                vec![bits.clone()],
            ),
        ];
        for (filter, expected) in cases {
            assert_eq!(listed(c, &filter, None), expected, "{filter:?}");
        }

        // Visibility first: a filter never widens it.
        let by_guid = PackageFilter {
            guids: some(&[&bits, &elsewhere]),
            ..PackageFilter::default()
        };
        let page = ListQuery::default();
        let nobody = Visibility::User("nobody".into());
        assert_eq!(
            list_page(c, &nobody, None, &by_guid, None, &page)
                .unwrap()
                .1,
            0
        );
        context::insert_role(
            c,
            &Role {
                guid: packages_domain::new_guid(),
                role_type: RoleType::SpaceDeveloper,
                user_guid: "dev".into(),
                target: RoleTarget::Space(space.clone()),
                created_at: now,
                updated_at: now,
            },
        )
        .unwrap();
        let dev = Visibility::User("dev".into());
        let (seen, total) = list_page(c, &dev, None, &by_guid, None, &page).unwrap();
        assert_eq!((seen.len(), total), (1, 1));
        assert_eq!(seen[0].guid, bits);
        // The app narrowing of a nested list holds as well.
        let (seen, total) =
            list_page(c, &Visibility::All, Some(&app2), &by_guid, None, &page).unwrap();
        assert_eq!((seen.len(), total), (1, 1));
        assert_eq!(seen[0].guid, elsewhere);
        // The count is of every match, the page a slice of them.
        let (seen, total) = list_page(
            c,
            &Visibility::All,
            None,
            &PackageFilter {
                types: some(&["bits"]),
                ..PackageFilter::default()
            },
            None,
            &ListQuery {
                page: 2,
                per_page: 1,
            },
        )
        .unwrap();
        assert_eq!(total, 2);
        assert_eq!(
            seen.into_iter().map(|p| p.guid).collect::<Vec<_>>(),
            vec![elsewhere]
        );
    });
}

#[test]
fn time_filters_and_ordering_count_a_null_updated_at_as_created_at() {
    both(|db| {
        let c = &mut conn(db);
        let (_, _, app) = seed(c);
        // (created_at, updated_at): changed at 1000, 3000, 2000, 1500 and 1500.
        let times = [
            (1000, None),
            (1000, Some(3000)),
            (2000, None),
            (2000, Some(1500)),
            (500, Some(1500)),
        ];
        let mut p = Vec::new();
        for (created, updated) in times {
            let mut new = new_bits(&app);
            new.created_at = Timestamp(created);
            let guid = packages::insert(c, &new).unwrap().guid;
            if let Some(updated) = updated {
                c.batch_execute(&format!(
                    "UPDATE packages SET updated_at = {updated} WHERE guid = '{guid}'"
                ))
                .unwrap();
            }
            p.push(guid);
        }
        let pick = |indexes: &[usize]| indexes.iter().map(|&i| p[i].clone()).collect::<Vec<_>>();
        // Ties broken by guid in the order's direction.
        let by_guid = |mut guids: Vec<PackageGuid>| {
            guids.sort();
            guids
        };

        let created = |f: TimeFilter| PackageFilter {
            created_ats: Some(f),
            ..PackageFilter::default()
        };
        let updated = |f: TimeFilter| PackageFilter {
            updated_ats: Some(f),
            ..PackageFilter::default()
        };
        let at = |relation, seconds| TimeFilter::Compare(vec![(relation, Timestamp(seconds))]);
        let cases: Vec<(PackageFilter, Vec<PackageGuid>)> = vec![
            (
                created(TimeFilter::Within(vec![Timestamp(1000)])),
                pick(&[0, 1]),
            ),
            (
                created(TimeFilter::Within(vec![Timestamp(500), Timestamp(2000)])),
                pick(&[2, 3, 4]),
            ),
            (created(TimeFilter::Within(vec![Timestamp(1001)])), vec![]),
            (created(at(Relation::Lt, 1000)), pick(&[4])),
            (created(at(Relation::Lte, 1000)), pick(&[0, 1, 4])),
            (created(at(Relation::Gt, 1000)), pick(&[2, 3])),
            (created(at(Relation::Gte, 1000)), pick(&[0, 1, 2, 3])),
            // Several operators combine with AND.
            (
                created(TimeFilter::Compare(vec![
                    (Relation::Gt, Timestamp(500)),
                    (Relation::Lt, Timestamp(2000)),
                ])),
                pick(&[0, 1]),
            ),
            (
                updated(TimeFilter::Within(vec![Timestamp(1000)])),
                pick(&[0]),
            ),
            (
                updated(TimeFilter::Within(vec![Timestamp(2000)])),
                pick(&[2]),
            ),
            (
                updated(TimeFilter::Within(vec![Timestamp(1500)])),
                pick(&[3, 4]),
            ),
            (updated(at(Relation::Lt, 2000)), pick(&[0, 3, 4])),
            (updated(at(Relation::Lte, 2000)), pick(&[0, 2, 3, 4])),
            (updated(at(Relation::Gt, 1500)), pick(&[1, 2])),
            (updated(at(Relation::Gte, 3000)), pick(&[1])),
        ];
        for (filter, expected) in cases {
            assert_eq!(listed(c, &filter, None), expected, "{filter:?}");
        }

        let order = |field, descending| Some(OrderBy { field, descending });
        let all = PackageFilter::default();
        // Default: creation order (ascending id), whatever the timestamps.
        assert_eq!(listed(c, &all, None), p);
        let mut created_asc = pick(&[4]);
        created_asc.extend(by_guid(pick(&[0, 1])));
        created_asc.extend(by_guid(pick(&[2, 3])));
        assert_eq!(
            listed(c, &all, order(OrderField::CreatedAt, false)),
            created_asc
        );
        let mut created_desc = created_asc.clone();
        created_desc.reverse();
        assert_eq!(
            listed(c, &all, order(OrderField::CreatedAt, true)),
            created_desc
        );
        let mut updated_asc = pick(&[0]);
        updated_asc.extend(by_guid(pick(&[3, 4])));
        updated_asc.extend(pick(&[2, 1]));
        assert_eq!(
            listed(c, &all, order(OrderField::UpdatedAt, false)),
            updated_asc
        );
        let mut updated_desc = updated_asc.clone();
        updated_desc.reverse();
        assert_eq!(
            listed(c, &all, order(OrderField::UpdatedAt, true)),
            updated_desc
        );
        // Ordered pages slice the same order.
        let (second, total) = list_page(
            c,
            &Visibility::All,
            None,
            &all,
            order(OrderField::UpdatedAt, true),
            &ListQuery {
                page: 2,
                per_page: 2,
            },
        )
        .unwrap();
        assert_eq!(total, 5);
        assert_eq!(
            second.into_iter().map(|p| p.guid).collect::<Vec<_>>(),
            updated_desc[2..4].to_vec()
        );
    });
}

#[test]
fn docker_credentials_move_updated_at_only_when_they_change() {
    both(|db| {
        let c = &mut conn(db);
        let (_, _, app) = seed(c);
        let mut new = new_bits(&app);
        new.package_type = PackageType::Docker;
        new.state = PackageState::Ready;
        new.url = Some("registry/image:1".into());
        new.docker_username = Some("deployer".into());
        new.docker_password = Some("sealed-1".into());
        let created = packages::insert(c, &new).unwrap();
        assert_eq!(created.docker_username.as_deref(), Some("deployer"));
        assert_eq!(created.docker_password.as_deref(), Some("sealed-1"));
        assert_eq!(created.updated_at, None);

        let set = |c: &mut AnyConnection, user: Option<&str>, password: Option<&str>| {
            packages::set_docker_credentials(c, &created.guid, user, password).unwrap()
        };
        let stamp = |c: &mut AnyConnection, seconds: i64| {
            diesel::sql_query(format!(
                "UPDATE packages SET updated_at = {seconds} WHERE guid = '{}'",
                created.guid
            ))
            .execute(c)
            .unwrap();
        };
        let now = |c: &mut AnyConnection| packages::find(c, &created.guid).unwrap().unwrap();

        // Nothing given, or what is stored already: nothing changes.
        assert!(!set(c, None, None));
        assert!(!set(c, Some("deployer"), None));
        assert!(!set(c, None, Some("sealed-1")));
        assert!(!set(c, Some("deployer"), Some("sealed-1")));
        assert_eq!(now(c).updated_at, None);

        // A new username alone: the password stays.
        assert!(set(c, Some("other"), None));
        let p = now(c);
        assert_eq!(
            (p.docker_username.as_deref(), p.docker_password.as_deref()),
            (Some("other"), Some("sealed-1"))
        );
        assert!(p.updated_at.is_some());

        // A password sealed afresh, with the same username.
        stamp(c, 5);
        assert!(set(c, Some("other"), Some("sealed-2")));
        let p = now(c);
        assert_eq!(
            (p.docker_username.as_deref(), p.docker_password.as_deref()),
            (Some("other"), Some("sealed-2"))
        );
        assert_ne!(p.updated_at, Some(Timestamp(5)));
        stamp(c, 5);
        assert!(!set(c, Some("other"), Some("sealed-2")));
        assert_eq!(now(c).updated_at, Some(Timestamp(5)));

        // Credentials stored where there were none.
        let mut bare = new.clone();
        bare.guid = packages_domain::new_guid().into();
        bare.docker_username = None;
        bare.docker_password = None;
        let bare = packages::insert(c, &bare).unwrap();
        assert!(packages::set_docker_credentials(c, &bare.guid, None, Some("sealed")).unwrap());
        let p = packages::find(c, &bare.guid).unwrap().unwrap();
        assert_eq!(
            (p.docker_username, p.docker_password.as_deref()),
            (None, Some("sealed"))
        );

        // A bits package never holds credentials.
        let bits = packages::insert(c, &new_bits(&app)).unwrap();
        assert!(!packages::set_docker_credentials(c, &bits.guid, Some("u"), Some("p")).unwrap());
        let p = packages::find(c, &bits.guid).unwrap().unwrap();
        assert_eq!(
            (p.docker_username, p.docker_password, p.updated_at),
            (None, None, None)
        );
        assert!(!packages::set_docker_credentials(c, "unknown", Some("u"), None).unwrap());
    });
}

#[test]
fn the_resource_pool_index_matches_sha1_and_size() {
    both(|db| {
        let c = &mut conn(db);
        let abc = "a9993e364706816aba3e25717850c26c9cd0d89d";
        let big = "002d760bea1be268e27077412e11a320d0f164d3";
        assert!(resource_pool::insert(c, abc, 3).unwrap());
        // Idempotent, whatever the case of the hex.
        assert!(!resource_pool::insert(c, abc, 3).unwrap());
        assert!(!resource_pool::insert(c, &abc.to_uppercase(), 3).unwrap());
        assert!(resource_pool::insert(c, &big.to_uppercase(), 102_400).unwrap());
        assert_eq!(count_rows(c, "resource_pool"), 2);
        // Inside a transaction, a duplicate leaves the transaction usable.
        write_transaction(c, |c| {
            assert!(!resource_pool::insert(c, abc, 3)?);
            assert!(resource_pool::insert(c, &"c".repeat(40), 1)?);
            Ok::<_, StorageError>(())
        })
        .unwrap();

        let unknown = "f".repeat(40);
        let wanted: Vec<(&str, u64)> = vec![
            (big, 102_400),
            (abc, 4),
            (&unknown, 3),
            ("A9993E364706816ABA3E25717850C26C9CD0D89D", 3),
            (abc, 3),
            (abc, u64::MAX),
        ];
        assert_eq!(
            resource_pool::contains_each(c, &wanted).unwrap(),
            vec![true, false, false, true, true, false]
        );
        assert!(resource_pool::contains_each(c, &[]).unwrap().is_empty());
        assert!(resource_pool::insert(c, abc, u64::MAX).is_err());

        // Sizes: 1, 3 and 102,400 are held, whichever SHA-1 has them.
        assert_eq!(
            resource_pool::sizes_held(c, &[3, 4, 102_400, 3, 1, u64::MAX / 2])
                .unwrap()
                .into_iter()
                .collect::<Vec<_>>(),
            vec![1, 3, 102_400]
        );
        assert!(resource_pool::sizes_held(c, &[]).unwrap().is_empty());

        // A full request (5000 entries) is answered at once.
        let many: Vec<String> = (0..5000).map(|i| format!("{i:040x}")).collect();
        for sha1 in many.iter().step_by(1000) {
            resource_pool::insert(c, sha1, 7).unwrap();
        }
        let request: Vec<(&str, u64)> = many.iter().map(|s| (s.as_str(), 7)).collect();
        let found = resource_pool::contains_each(c, &request).unwrap();
        assert_eq!(found.len(), 5000);
        assert_eq!(
            found
                .iter()
                .enumerate()
                .filter(|(_, f)| **f)
                .map(|(i, _)| i)
                .collect::<Vec<_>>(),
            vec![0, 1000, 2000, 3000, 4000]
        );

        assert!(resource_pool::remove(c, &abc.to_uppercase()).unwrap());
        assert!(!resource_pool::remove(c, abc).unwrap());
        assert_eq!(
            resource_pool::contains_each(c, &[(abc, 3)]).unwrap(),
            vec![false]
        );
    });
}

#[test]
fn concurrent_pool_inserts_leave_one_entry() {
    both(|db| {
        let sha1 = "d".repeat(40);
        let barrier = Arc::new(Barrier::new(8));
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let (db, barrier, sha1) = (db.clone(), barrier.clone(), sha1.clone());
                std::thread::spawn(move || {
                    let mut c = db.pool().get().unwrap();
                    barrier.wait();
                    resource_pool::insert(&mut c, &sha1, 10).unwrap()
                })
            })
            .collect();
        let added = handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .filter(|a| *a)
            .count();
        assert_eq!(added, 1);
        assert_eq!(count_rows(&mut conn(db), "resource_pool"), 1);
    });
}

// Batched reads. SQLite reads on the calling thread, so these run on PostgreSQL only.

/// The size of each batch `gated_find` was given, and whether it may answer.
static BATCHES: std::sync::Mutex<Vec<usize>> = std::sync::Mutex::new(Vec::new());
static GATE: (std::sync::Mutex<bool>, std::sync::Condvar) =
    (std::sync::Mutex::new(false), std::sync::Condvar::new());

type Found = Option<(packages_domain::Package, String, Metadata)>;

fn gated_find(c: &mut AnyConnection, guids: &[String]) -> Result<Vec<Found>, StorageError> {
    BATCHES.lock().unwrap().push(guids.len());
    let (open, opened) = &GATE;
    let _open = opened
        .wait_while(open.lock().unwrap(), |open| !*open)
        .unwrap();
    let guids: Vec<&str> = guids.iter().map(String::as_str).collect();
    packages::find_many_with_space_and_metadata(c, &guids)
}

async fn until(what: &str, done: impl Fn() -> bool) {
    let waited = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        while !done() {
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(waited.is_ok(), "gave up waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_that_queue_behind_statements_in_flight_share_the_next_and_each_gets_its_own_answer()
{
    let test = postgres();
    let db = test.db.clone();
    let (guids, unknown) = {
        let c = &mut conn(&db);
        let (_, _, app) = seed(c);
        let a = packages::insert(c, &new_bits(&app)).unwrap().guid;
        let b = with_labels(c, &app, &[("env", "prod")]);
        (vec![a.to_string(), b.to_string()], "unknown".to_string())
    };
    let batched = packages_storage::batch::Batched::new(db.clone(), gated_find);
    let get = |guid: &str| {
        let (batched, guid) = (batched.clone(), guid.to_string());
        tokio::spawn(async move { (guid.clone(), batched.get(guid).await) })
    };
    // Two reads, one after the other, take the two statements in flight and hold them at
    // the gate.
    let mut reads = Vec::new();
    for (n, guid) in guids.iter().enumerate() {
        reads.push(get(guid));
        until("a statement in flight", || {
            BATCHES.lock().unwrap().len() == n + 1
        })
        .await;
    }
    // Six more queue: known, unknown and repeated GUIDs.
    for guid in [
        &guids[0], &unknown, &guids[1], &guids[1], &guids[0], &unknown,
    ] {
        reads.push(get(guid));
    }
    until("six queued reads", || batched.queued() == 6).await;
    assert_eq!(
        *BATCHES.lock().unwrap(),
        [1, 1],
        "queued reads wait for a statement"
    );

    *GATE.0.lock().unwrap() = true;
    GATE.1.notify_all();
    let c = &mut conn(&db);
    for read in reads {
        let (guid, found) = read.await.unwrap();
        assert_eq!(
            found.unwrap(),
            packages::find_with_space_and_metadata(c, &guid).unwrap(),
            "{guid}"
        );
    }
    let mut batches = BATCHES.lock().unwrap().clone();
    batches.sort();
    assert_eq!(
        batches,
        [1, 1, 6],
        "the six queued reads went in one statement"
    );
}

fn failing_find(c: &mut AnyConnection, guids: &[String]) -> Result<Vec<Found>, StorageError> {
    if guids.iter().any(|g| g == "panic") {
        panic!("a read that panics");
    }
    if guids.iter().any(|g| g == "broken") {
        return Err(StorageError::ConnectionLost(
            diesel::result::Error::BrokenTransactionManager,
        ));
    }
    let guids: Vec<&str> = guids.iter().map(String::as_str).collect();
    packages::find_many_with_space_and_metadata(c, &guids)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batched_read_that_fails_or_panics_answers_an_error_and_the_next_read_works() {
    let test = postgres();
    let batched = packages_storage::batch::Batched::new(test.db.clone(), failing_find);
    let lost = batched.get("broken".to_string()).await.unwrap_err();
    assert!(lost.is_retryable(), "{lost}");
    let panicked = batched.get("panic".to_string()).await.unwrap_err();
    assert!(matches!(panicked, StorageError::Shared(_)), "{panicked:?}");
    assert!(!panicked.is_retryable(), "{panicked}");
    assert_eq!(batched.get("unknown".to_string()).await.unwrap(), None);
    assert_eq!(batched.queued(), 0);
}
