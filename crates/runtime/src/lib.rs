//! Start-up and shutdown of the three binaries: configuration, logging, backends chosen
//! by configuration, the servers and loops each binary runs, and a clean exit on
//! SIGTERM/SIGINT. The binaries themselves are one line each.

mod backends;
mod cli;
mod connections;
mod limits;
mod secret;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use actix_web::{App, HttpServer, middleware::from_fn, web};
use packages_api::ops::{BlobstoreProbe, ConsumerProbe, DatabaseProbe, PublisherProbe};
use packages_api::{ApiState, Readiness};
use packages_auth::Verifier;
use packages_config::Settings;
use packages_jobs::{JobConsumer, JobPublisher};
use packages_service::{Policy, Services};
use packages_telemetry::Metrics;
use packages_worker::{Sweeper, Worker, WorkerSettings};
use tokio::sync::watch;

pub use cli::Binary;

/// Why a process could not start; printed as one line.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("configuration: {0}")]
    Config(#[from] packages_config::ConfigError),
    #[error("{0}")]
    Setup(String),
}

/// The whole life of a binary; the exit code follows the operator contract.
pub fn main(binary: Binary) -> ExitCode {
    pin_mmap_threshold();
    limits::private_files();
    let _failpoints = fail::FailScenario::setup();
    let command = cli::parse(binary);
    match run(binary, command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line, whatever the cause's own text (libpq's spans several).
            let text = e.to_string();
            let line: Vec<&str> = text.split_whitespace().collect();
            eprintln!("{}: {}", binary.name(), line.join(" "));
            ExitCode::from(2)
        }
    }
}

/// Keeps glibc from raising its mmap threshold as large blocks are freed. Upload parts
/// (megabytes each, allocated and freed on different threads) would otherwise move into
/// the heap arenas and stay resident after every large upload: measured, a worker kept
/// 60 MiB after a 128 MiB package instead of returning to its 19 MiB baseline.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn pin_mmap_threshold() {
    // SAFETY: mallopt only sets an allocator parameter; it runs first in main, before
    // any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn pin_mmap_threshold() {}

fn run(binary: Binary, command: cli::Command) -> Result<(), StartError> {
    let settings = packages_config::load(command.config.as_deref())?;
    if let Some(token) = command.token {
        return secret::print_token(binary, &settings, &token);
    }
    if settings.queue.url.is_embedded() && binary != Binary::Packages {
        return Err(StartError::Setup(format!(
            "queue.url: 'embedded' only works in the all-in-one `packages`; {} needs amqp://…",
            binary.name()
        )));
    }
    packages_telemetry::init_tracing(
        matches!(settings.log.format, packages_config::LogFormat::Json),
        &settings.log.level,
    )
    .map_err(|e| StartError::Setup(format!("log: {}", packages_blobstore::Chain(&e))))?;
    limits::raise_open_files();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            StartError::Setup(format!(
                "cannot start the runtime: {}",
                packages_blobstore::Chain(&e)
            ))
        })?;
    runtime.block_on(serve(binary, settings))
}

fn policy(settings: &Settings) -> Policy {
    Policy {
        max_body_bytes: settings.upload.max_body_bytes,
        bits_path_root: settings.upload.bits_path_root.clone(),
        max_package_size: settings.packages.max_package_size,
        max_valid_packages_stored: settings.packages.max_valid_packages_stored,
        pending_timeout: Duration::from_secs(settings.packages.pending_timeout_secs),
        max_zip_entries: settings.packages.max_zip_entries,
        max_zip_name_bytes: settings.packages.max_zip_name_bytes,
        max_zip_symlinks: settings.packages.max_zip_symlinks,
    }
}

fn worker_settings(settings: &Settings) -> WorkerSettings {
    WorkerSettings {
        concurrency: settings.worker.concurrency,
        max_attempts: i32::try_from(settings.worker.max_attempts).unwrap_or(i32::MAX),
        retry_base: Duration::from_millis(settings.worker.retry_base_ms),
    }
}

async fn serve(binary: Binary, mut settings: Settings) -> Result<(), StartError> {
    // Registered first, so a SIGTERM during start-up is a clean stop once started.
    let signals = Signals::new()?;
    if binary == Binary::Packages {
        secret::ensure_embedded_secret(&mut settings)?;
    }
    let db = backends::database(&settings).await?;
    let blobs = backends::blobstore(&settings).await?;
    let queue = backends::queue(&settings, binary).await?;
    let services = Services::new(db.clone(), blobs.clone(), policy(&settings));
    backends::requeue_for_embedded(&settings, &services).await?;
    let metrics = Metrics::new();
    let (stop, stopped) = watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();

    tasks.spawn(packages_service::relay::run(
        services.clone(),
        queue.publisher.clone(),
        stopped.clone(),
    ));

    let runs_worker = binary != Binary::Api;
    if runs_worker {
        let worker = Worker::new(
            services.clone(),
            queue.consumer.clone(),
            metrics.clone(),
            worker_settings(&settings),
        );
        tasks.spawn(worker.run(stopped.clone()));
        let sweeper = Sweeper {
            services: services.clone(),
            metrics: metrics.clone(),
            queue: Some(queue.consumer.clone()),
            max_attempts: worker_settings(&settings).max_attempts,
        };
        tasks.spawn(sweeper.run(stopped.clone()));
    }

    let server = match binary {
        Binary::Packages | Binary::Api => {
            let readiness = Arc::new(Readiness::new(
                vec![
                    Box::new(DatabaseProbe(services.clone())),
                    Box::new(PublisherProbe(queue.publisher.clone())),
                    Box::new(BlobstoreProbe(blobs.clone())),
                ],
                metrics.clone(),
            ));
            tasks.spawn(readiness.clone().watch(stopped.clone()));
            let verifier = Verifier::new(
                settings.auth.jwt_secret.as_deref(),
                settings.auth.jwt_public_key.as_deref(),
                &settings.auth.audience,
            )
            .map_err(|e| StartError::Setup(format!("auth: {}", packages_blobstore::Chain(&e))))?;
            let state = web::Data::new(ApiState {
                services: services.clone(),
                verifier,
                metrics: metrics.clone(),
                external_url: settings.server.external_url.clone(),
                uaa_url: settings.auth.uaa_url.clone(),
                readiness,
                body_idle_timeout: Duration::from_secs(settings.server.body_idle_timeout_secs),
                proxy_secret: settings.upload.proxy_secret.clone(),
                bind: settings.server.bind,
            });
            let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
            let connections = Arc::new(connections::Connections::new(
                settings.server.max_connections,
                metrics.clone(),
            ));
            HttpServer::new(move || {
                App::new()
                    .wrap(from_fn(packages_api::request_middleware))
                    .configure(packages_api::configure(state.clone()))
            })
            .workers(workers)
            // actix counts per worker thread; together they hold the configured cap.
            .max_connections(settings.server.max_connections.div_ceil(workers))
            .on_connect(move |_, extensions| {
                extensions.insert(connections.opened());
            })
            .shutdown_timeout(settings.server.shutdown_timeout_secs)
            .disable_signals()
            .bind(settings.server.bind)
            .map_err(|e| StartError::Setup(format!("server.bind {}: {e}", settings.server.bind)))?
            .run()
        }
        Binary::Worker => {
            let readiness = Arc::new(Readiness::new(
                vec![
                    Box::new(DatabaseProbe(services.clone())),
                    Box::new(ConsumerProbe(queue.consumer.clone())),
                    Box::new(BlobstoreProbe(blobs.clone())),
                ],
                metrics.clone(),
            ));
            tasks.spawn(readiness.clone().watch(stopped.clone()));
            let metrics = metrics.clone();
            HttpServer::new(move || {
                let (metrics, readiness) = (metrics.clone(), readiness.clone());
                App::new()
                    .configure(move |cfg| packages_api::ops::configure(cfg, metrics, readiness))
            })
            .workers(1)
            .shutdown_timeout(settings.server.shutdown_timeout_secs)
            .disable_signals()
            .bind(settings.worker.bind)
            .map_err(|e| StartError::Setup(format!("worker.bind {}: {e}", settings.worker.bind)))?
            .run()
        }
    };
    let bound = match binary {
        Binary::Worker => settings.worker.bind,
        _ => settings.server.bind,
    };
    tracing::info!(binary = binary.name(), bind = %bound, database = db.backend(), blobstore = blobs.kind(), "started");
    let handle = server.handle();
    let server_task = tokio::spawn(server);

    signals.wait().await;
    tracing::info!("shutting down: no new requests or jobs; finishing those in hand");
    // Intake stops first; requests in flight (uploads still arriving) finish, up to
    // server.shutdown_timeout_secs, before the server stops.
    handle.pause().await;
    let grace = Duration::from_secs(settings.server.shutdown_timeout_secs);
    let deadline = tokio::time::Instant::now() + grace;
    while metrics.requests_in_flight() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let left = metrics.requests_in_flight();
    if left > 0 {
        tracing::warn!(
            requests = left,
            "shutdown grace period over; cutting requests in flight"
        );
    }
    handle.stop(true).await;
    let _ = stop.send(true);
    while tasks.join_next().await.is_some() {}
    let _ = server_task.await;
    queue.consumer.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// SIGTERM and SIGINT, the signals that ask for a clean stop.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> Result<Signals, StartError> {
        use tokio::signal::unix::{SignalKind, signal};
        let handler = |kind| {
            signal(kind).map_err(|e| {
                StartError::Setup(format!("signal handler: {}", packages_blobstore::Chain(&e)))
            })
        };
        Ok(Signals {
            term: handler(SignalKind::terminate())?,
            int: handler(SignalKind::interrupt())?,
        })
    }

    async fn wait(mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}

/// The queue, seen as a publisher (relay) and a consumer (worker); one object for both.
pub(crate) struct Queue {
    pub publisher: Arc<dyn JobPublisher>,
    pub consumer: Arc<dyn JobConsumer>,
}
