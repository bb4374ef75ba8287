//! The backends configuration asks for, behind the traits the rest of the code uses.
//! PostgreSQL, RabbitMQ and S3 are cargo features (`stack`); a build without one refuses
//! its URLs as a configuration error.

use std::sync::Arc;
#[cfg(feature = "amqp")]
use std::time::{Duration, Instant};

use packages_blobstore::{Blobstore, LocalBlobstore};
use packages_config::{BlobstoreKind, QueueUrl, Settings};
use packages_jobs::EmbeddedQueue;
use packages_service::Services;
use packages_storage::{Database, StorageError};

use crate::cli::Binary;
use crate::{Queue, StartError};

/// How long a process waits for the broker at start-up before giving up.
#[cfg(feature = "amqp")]
const BROKER_WAIT: Duration = Duration::from_secs(30);

/// Connects and migrates; an unreachable database stops start-up.
pub async fn database(settings: &Settings) -> Result<Database, StartError> {
    let (url, pool_size) = (settings.database.url.clone(), settings.database.pool_size);
    let connected = tokio::task::spawn_blocking(move || Database::connect(&url, pool_size))
        .await
        .map_err(|e| StartError::Setup(format!("database: {}", packages_blobstore::Chain(&e))))?;
    connected.map_err(|e| match e {
        StorageError::BadUrl(text) => StartError::Usage(format!("database.url: {text}")),
        e => StartError::Setup(format!("database: {}", packages_blobstore::Chain(&e))),
    })
}

pub async fn blobstore(settings: &Settings) -> Result<Arc<dyn Blobstore>, StartError> {
    let b = &settings.blobstore;
    match b.kind {
        BlobstoreKind::Local => {
            let store = LocalBlobstore::new(b.local.root.clone()).map_err(|e| {
                StartError::Setup(format!(
                    "blobstore.local.root: {}",
                    packages_blobstore::Chain(&e)
                ))
            })?;
            Ok(Arc::new(store))
        }
        BlobstoreKind::S3 => s3(settings).await,
    }
}

#[cfg(feature = "s3")]
async fn s3(settings: &Settings) -> Result<Arc<dyn Blobstore>, StartError> {
    use packages_blobstore::{S3Blobstore, S3Settings};
    let b = &settings.blobstore;
    let store = S3Blobstore::connect(S3Settings {
        endpoint: b.s3.endpoint.clone(),
        public_endpoint: b.s3.public_endpoint.clone(),
        region: b.s3.region.clone(),
        bucket: b.s3.bucket.clone(),
        access_key: b.s3.access_key.clone(),
        secret_key: b.s3.secret_key.clone(),
        path_style: b.s3.path_style,
        presign_expiry_secs: b.presign_expiry_secs,
        part_size: S3Settings::DEFAULT_PART_SIZE,
    })
    .map_err(|e| StartError::Usage(format!("blobstore.s3: {e}")))?;
    store
        .ensure_bucket()
        .await
        .map_err(|e| StartError::Setup(format!("blobstore.s3.bucket {}: {e}", b.s3.bucket)))?;
    Ok(Arc::new(store))
}

#[cfg(not(feature = "s3"))]
async fn s3(_: &Settings) -> Result<Arc<dyn Blobstore>, StartError> {
    Err(StartError::Usage(not_built_in("blobstore.kind = s3", "S3")))
}

/// Why a build without a backend refuses the settings that name it.
#[cfg(not(all(feature = "s3", feature = "amqp")))]
fn not_built_in(what: &str, feature: &str) -> String {
    format!(
        "{what}: this build has no {feature} support (`make run` builds the embedded default only); build with `cargo build --release` for it"
    )
}

pub async fn queue(settings: &Settings, binary: Binary) -> Result<Queue, StartError> {
    match &settings.queue.url {
        QueueUrl::Embedded => {
            let queue = Arc::new(EmbeddedQueue::new(settings.queue.delivery_limit));
            Ok(Queue {
                publisher: queue.clone(),
                consumer: queue,
            })
        }
        QueueUrl::Amqp(url) => amqp(settings, url, binary).await,
    }
}

#[cfg(feature = "amqp")]
async fn amqp(settings: &Settings, url: &str, binary: Binary) -> Result<Queue, StartError> {
    use packages_jobs::{AmqpQueue, AmqpSettings, QueueError};
    let amqp = AmqpSettings {
        url: url.to_owned(),
        prefix: settings.queue.prefix.clone(),
        prefetch: u16::try_from(settings.worker.concurrency).unwrap_or(u16::MAX),
        delivery_limit: settings.queue.delivery_limit,
    };
    let started = Instant::now();
    let queue = loop {
        match AmqpQueue::connect(amqp.clone()).await {
            Ok(queue) => break Arc::new(queue),
            Err(e @ QueueError::Settings(_)) => {
                return Err(StartError::Usage(format!(
                    "queue.url: {}",
                    packages_blobstore::Chain(&e)
                )));
            }
            Err(e) if started.elapsed() < BROKER_WAIT => {
                tracing::warn!(error = %packages_blobstore::Chain(&e), binary = binary.name(), "broker not reachable yet; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => {
                return Err(StartError::Setup(format!(
                    "queue.url: {}",
                    packages_blobstore::Chain(&e)
                )));
            }
        }
    };
    Ok(Queue {
        publisher: queue.clone(),
        consumer: queue,
    })
}

#[cfg(not(feature = "amqp"))]
async fn amqp(_: &Settings, _: &str, _: Binary) -> Result<Queue, StartError> {
    Err(StartError::Usage(not_built_in("queue.url amqp://", "AMQP")))
}

/// An in-process queue starts empty: every job it held before a restart is published
/// again from the outbox (jobs are idempotent).
pub async fn requeue_for_embedded(
    settings: &Settings,
    services: &Services,
) -> Result<(), StartError> {
    if !settings.queue.url.is_embedded() {
        return Ok(());
    }
    let republished = services
        .republish_all_jobs()
        .await
        .map_err(|e| StartError::Setup(format!("database: {}", packages_blobstore::Chain(&e))))?;
    if republished > 0 {
        tracing::info!(
            jobs = republished,
            "jobs from before the restart will be published again"
        );
    }
    Ok(())
}
