//! An in-process rig for tests of the use cases and the worker: real backends without
//! starting a binary (a SQLite file, a local blobstore and the in-process queue in a
//! temporary directory), an organization, space and app to hang packages off, and ways to
//! wait on state (never on a sleep).
#![allow(clippy::unwrap_used, clippy::missing_panics_doc)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use packages_blobstore::{Blobstore, LocalBlobstore};
use packages_domain::context::{App, Organization, Role, RoleTarget, Space};
use packages_domain::{
    AppGuid, JobKind, NewPackage, OrgGuid, Package, PackageGuid, PackageState, PackageType,
    RoleType, SpaceGuid, Timestamp, new_guid,
};
use packages_jobs::{EmbeddedQueue, JobConsumer, JobMessage, ProcessUpload};
use packages_service::{Policy, Services};
use packages_storage::{Database, context, jobs, packages};
use packages_telemetry::Metrics;
use packages_worker::{Worker, WorkerSettings};
use tokio::sync::watch;

/// The rig. The database handle is the test's own view of the store, for seeding and
/// for looking at rows the API does not show.
pub struct Rig {
    pub services: Services,
    pub db: Database,
    pub blobs: Arc<dyn Blobstore>,
    pub queue: Arc<EmbeddedQueue>,
    pub metrics: Metrics,
    pub org: OrgGuid,
    pub space: SpaceGuid,
    pub app: AppGuid,
    worker: Option<(watch::Sender<bool>, tokio::task::JoinHandle<()>)>,
    _dir: tempfile::TempDir,
}

/// How long a wait on state may take before the test fails.
const PATIENCE: Duration = Duration::from_secs(10);

impl Rig {
    /// A rig whose worker consumes the in-process queue.
    pub async fn with_worker() -> Rig {
        Rig::with_worker_on(|blobs| blobs).await
    }

    /// A rig whose worker consumes the in-process queue, on the local blobstore as `wrap`
    /// wraps it (a test's stand-in for a store with other abilities or failures).
    pub async fn with_worker_on(
        wrap: impl FnOnce(Arc<dyn Blobstore>) -> Arc<dyn Blobstore>,
    ) -> Rig {
        let mut rig = Rig::without_worker_on(Policy::default(), wrap).await;
        let (stop, stopped) = watch::channel(false);
        let worker = Worker::new(
            rig.services.clone(),
            rig.queue.clone(),
            rig.metrics.clone(),
            WorkerSettings::default(),
        );
        rig.worker = Some((stop, tokio::spawn(worker.run(stopped))));
        rig
    }

    /// A rig with no worker: jobs stay on the queue, for use-case tests.
    pub async fn without_worker(policy: Policy) -> Rig {
        Rig::without_worker_on(policy, |blobs| blobs).await
    }

    /// [`Rig::without_worker`] on the local blobstore as `wrap` wraps it.
    pub async fn without_worker_on(
        policy: Policy,
        wrap: impl FnOnce(Arc<dyn Blobstore>) -> Arc<dyn Blobstore>,
    ) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/packages.db", dir.path().display());
        let db = tokio::task::spawn_blocking(move || Database::connect(&url, 4))
            .await
            .unwrap()
            .unwrap();
        let blobs: Arc<dyn Blobstore> = wrap(Arc::new(
            LocalBlobstore::new(dir.path().join("blobs")).unwrap(),
        ));
        let services = Services::new(db.clone(), blobs.clone(), policy);
        let (org, space, app): (OrgGuid, SpaceGuid, AppGuid) =
            (new_guid().into(), new_guid().into(), new_guid().into());
        let now = Timestamp::now();
        let rows = (org.clone(), space.clone(), app.clone());
        db.run(move |c| {
            context::insert_org(
                c,
                &Organization {
                    guid: rows.0.clone(),
                    name: "o".into(),
                    suspended: false,
                    created_at: now,
                    updated_at: now,
                },
            )?;
            context::insert_space(
                c,
                &Space {
                    guid: rows.1.clone(),
                    name: "s".into(),
                    organization_guid: rows.0,
                    created_at: now,
                    updated_at: now,
                },
            )?;
            context::insert_app(
                c,
                &App {
                    guid: rows.2,
                    name: "a".into(),
                    space_guid: rows.1,
                    created_at: now,
                    updated_at: now,
                },
            )
        })
        .await
        .unwrap();
        Rig {
            services,
            db,
            blobs,
            queue: Arc::new(EmbeddedQueue::new(5)),
            metrics: Metrics::new(),
            org,
            space,
            app,
            worker: None,
            _dir: dir,
        }
    }

    /// A package accepted for processing, `zip` staged as its bits, and the job message
    /// for it (not published: the test decides when, and how often).
    pub async fn accepted_upload(&self, zip: &[u8]) -> (PackageGuid, JobMessage) {
        let guid: PackageGuid = new_guid().into();
        let new = NewPackage {
            guid: guid.clone(),
            app_guid: self.app.clone(),
            package_type: PackageType::Bits,
            state: PackageState::AwaitingUpload,
            url: None,
            created_at: Timestamp::now(),
            docker_username: None,
            docker_password: None,
        };
        let staging_key = packages_domain::staging_key(&guid, "u1");
        let mut writer = self.blobs.writer(&staging_key).await.unwrap();
        writer.write(zip.to_vec().into()).await.unwrap();
        writer.finish().await.unwrap();
        let payload = ProcessUpload::bits(staging_key, zip.len() as u64);
        let row = packages_service::jobs::process_upload(&guid, "req-1", payload);
        let message = JobMessage::decode(row.body.as_bytes()).unwrap();
        let g = guid.clone();
        self.db
            .run(move |c| {
                packages::insert(c, &new)?;
                packages::claim_upload(c, &g, "test-upload", i64::MAX)?;
                packages::accept_upload(c, &g, "test-upload", &row)
            })
            .await
            .unwrap();
        (guid, message)
    }

    /// Gives `user` a role in the rig's space (space roles) or organization.
    pub async fn grant(&self, user: &str, role_type: RoleType) {
        let target = if role_type.is_space_role() {
            RoleTarget::Space(self.space.clone())
        } else {
            RoleTarget::Organization(self.org.clone())
        };
        let now = Timestamp::now();
        let role = Role {
            guid: new_guid(),
            role_type,
            user_guid: user.to_owned(),
            target,
            created_at: now,
            updated_at: now,
        };
        self.db
            .run(move |c| context::insert_role(c, &role))
            .await
            .unwrap();
    }

    /// The package as stored, if it exists.
    pub async fn package(&self, guid: &str) -> Option<Package> {
        let guid = guid.to_owned();
        self.db
            .run(move |c| packages::find(c, &guid))
            .await
            .unwrap()
    }

    /// Kinds of the job rows recorded for a package.
    pub async fn job_kinds(&self, guid: &str) -> Vec<String> {
        let guid = guid.to_owned();
        self.db
            .run(move |c| {
                let mut found = Vec::new();
                for &kind in JobKind::ALL {
                    if jobs::find_for_package(c, &guid, &[kind])?.is_some() {
                        found.push(kind.to_string());
                    }
                }
                Ok(found)
            })
            .await
            .unwrap()
    }

    /// Waits until the package is in `state`.
    pub async fn wait_for(&self, guid: &str, state: PackageState) -> Package {
        let started = Instant::now();
        loop {
            if let Some(p) = self.package(guid).await
                && p.state == state
            {
                return p;
            }
            assert!(started.elapsed() < PATIENCE, "{guid} never became {state}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until the worker has finished `n` jobs in all (whatever their outcome).
    pub async fn wait_jobs_finished(&self, n: u64) {
        let started = Instant::now();
        loop {
            let finished = jobs_finished(&self.metrics.render());
            if finished >= n {
                return;
            }
            assert!(
                started.elapsed() < PATIENCE,
                "{finished} of {n} jobs finished"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Messages waiting on the queue.
    pub async fn queued(&self) -> u64 {
        self.queue.depths().await.unwrap().ready
    }

    /// Stops the worker, letting it finish what it holds.
    pub async fn stop(mut self) {
        if let Some((stop, worker)) = self.worker.take() {
            let _ = stop.send(true);
            worker.await.unwrap();
        }
    }
}

/// The sum of `jobs_total` over every label set.
fn jobs_finished(metrics: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("jobs_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// A zip with one stored file, as `zip -0` writes it.
pub fn tiny_zip() -> Vec<u8> {
    let (name, data) = (b"hello.txt", b"hello");
    let crc: u32 = 0x3610_a686; // CRC-32 of "hello"
    let mut out = Vec::new();
    out.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
    out.extend_from_slice(&[20, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&5u32.to_le_bytes());
    out.extend_from_slice(&5u32.to_le_bytes());
    out.extend_from_slice(&9u16.to_le_bytes());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(name);
    out.extend_from_slice(data);
    let cd = out.len() as u32;
    out.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
    out.extend_from_slice(&[20, 3, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&5u32.to_le_bytes());
    out.extend_from_slice(&5u32.to_le_bytes());
    out.extend_from_slice(&9u16.to_le_bytes());
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&(0o100644u32 << 16).to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(name);
    let cd_len = out.len() as u32 - cd;
    out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    out.extend_from_slice(&[0, 0, 0, 0, 1, 0, 1, 0]);
    out.extend_from_slice(&cd_len.to_le_bytes());
    out.extend_from_slice(&cd.to_le_bytes());
    out.extend_from_slice(&[0, 0]);
    out
}

/// `len` bytes that deflate cannot shrink (xorshift from `seed`): deflated, they are
/// stored blocks, and a zip entry of them is never smaller than they are.
pub fn incompressible(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 32) as u8
        })
        .collect()
}
