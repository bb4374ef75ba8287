//! What a started binary runs: the outbox relay, the worker and its sweeper, the HTTP
//! server (the API, or the worker's ops port), and the ordered shutdown. Each is one
//! function; `serve` only decides which ones a binary gets.

use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::{Server, ServerHandle};
use actix_web::{App, HttpServer, middleware::from_fn, web};
use packages_api::ops::{BlobstoreProbe, ConsumerProbe, DatabaseProbe, PublisherProbe};
use packages_api::{ApiState, Readiness};
use packages_auth::{Jwks, Verifier};
use packages_blobstore::{Blobstore, Chain};
use packages_config::Settings;
use packages_service::credentials::CredentialKey;
use packages_service::direct_upload::UploadLinkKey;
use packages_service::{Policy, ResourcePoolBounds, Services};
use packages_telemetry::Metrics;
use packages_worker::{Sweeper, Worker, WorkerSettings};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::cli::Binary;
use crate::{Queue, StartError, backends, connections, secret};

/// Everything one process shares between its servers and loops.
struct Process {
    services: Services,
    blobs: Arc<dyn Blobstore>,
    queue: Queue,
    metrics: Metrics,
    /// Turns true once intake has stopped; every loop finishes its work in hand then.
    stopped: watch::Receiver<bool>,
    tasks: JoinSet<()>,
}

pub(crate) async fn serve(binary: Binary, mut settings: Settings) -> Result<(), StartError> {
    // Registered first, so a SIGTERM during start-up is a clean stop once started.
    let signals = Signals::new()?;
    if binary == Binary::Packages {
        secret::ensure_embedded_secret(&mut settings)?;
        secret::ensure_embedded_encryption_key(&mut settings)?;
    }
    let db = backends::database(&settings).await?;
    let blobs = backends::blobstore(&settings).await?;
    let queue = backends::queue(&settings, binary).await?;
    let services = Services::new(db.clone(), blobs.clone(), policy(&settings));
    backends::requeue_for_embedded(&settings, &services).await?;
    let (stop, stopped) = watch::channel(false);
    let mut process = Process {
        services,
        blobs,
        queue,
        metrics: Metrics::new(),
        stopped,
        tasks: JoinSet::new(),
    };

    process.start_relay();
    if binary != Binary::Api {
        process.start_worker(&settings);
    }
    let (server, ops_server, bound) = match binary {
        Binary::Packages | Binary::Api => {
            let (api, ops) = process.api_server(&settings)?;
            (api, ops, settings.server.bind)
        }
        Binary::Worker => (
            process.worker_ops_server(&settings)?,
            None,
            settings.worker.bind,
        ),
    };
    tracing::info!(binary = binary.name(), bind = %bound, ops_bind = ?settings.server.ops_bind.filter(|_| ops_server.is_some()), database = db.backend(), blobstore = process.blobs.kind(), "started");
    let handle = server.handle();
    let server_task = tokio::spawn(server);
    // The operator endpoints outlive the API during shutdown, so probes and scrapes see
    // it finish its work.
    let ops = ops_server.map(|ops| (ops.handle(), tokio::spawn(ops)));

    signals.wait().await;
    let grace = Duration::from_secs(settings.server.shutdown_timeout_secs);
    process.shut_down(handle, stop, grace).await;
    let _ = server_task.await;
    if let Some((handle, task)) = ops {
        handle.stop(true).await;
        let _ = task.await;
    }
    tracing::info!("stopped");
    Ok(())
}

impl Process {
    /// Publishes what the outbox holds; every process runs one (claims keep them apart).
    fn start_relay(&mut self) {
        self.tasks.spawn(packages_service::relay::run(
            self.services.clone(),
            self.queue.publisher.clone(),
            self.stopped.clone(),
        ));
    }

    /// Consumes upload and copy jobs, and sweeps packages whose jobs went missing.
    fn start_worker(&mut self, settings: &Settings) {
        let worker_settings = worker_settings(settings);
        let max_attempts = worker_settings.max_attempts;
        let worker = Worker::new(
            self.services.clone(),
            self.queue.consumer.clone(),
            self.metrics.clone(),
            worker_settings,
        );
        self.tasks.spawn(worker.run(self.stopped.clone()));
        let sweeper = Sweeper {
            services: self.services.clone(),
            metrics: self.metrics.clone(),
            queue: Some(self.queue.consumer.clone()),
            max_attempts,
        };
        self.tasks.spawn(sweeper.run(self.stopped.clone()));
    }

    /// Readiness probes checked in the background, so `/readyz` answers from memory.
    fn readiness(&mut self, probes: Vec<Box<dyn packages_api::ops::Probe>>) -> Arc<Readiness> {
        let readiness = Arc::new(Readiness::new(probes, self.metrics.clone()));
        self.tasks
            .spawn(readiness.clone().watch(self.stopped.clone()));
        readiness
    }

    /// The packages API on `server.bind`, with its ops endpoints there too, or on a
    /// server of their own on `server.ops_bind`.
    fn api_server(&mut self, settings: &Settings) -> Result<(Server, Option<Server>), StartError> {
        let readiness = self.readiness(vec![
            Box::new(DatabaseProbe(self.services.clone())),
            Box::new(PublisherProbe(self.queue.publisher.clone())),
            Box::new(BlobstoreProbe(self.blobs.clone())),
        ]);
        let verifier = verifier(&settings.auth)?;
        let state = web::Data::new(ApiState {
            services: self.services.clone(),
            verifier,
            metrics: self.metrics.clone(),
            external_url: settings.server.external_url.clone(),
            uaa_url: settings.auth.uaa_url.clone(),
            readiness,
            body_idle_timeout: Duration::from_secs(settings.server.body_idle_timeout_secs),
            proxy_secret: settings.upload.proxy_secret.clone(),
            bind: settings.server.bind,
        });
        let ops_server = match settings.server.ops_bind {
            Some(addr) => Some(ops_server(
                "server.ops_bind",
                addr,
                self.metrics.clone(),
                state.readiness.clone(),
                settings,
            )?),
            None => None,
        };
        let with_ops = ops_server.is_none();
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
        let connections = Arc::new(connections::Connections::new(
            settings.server.max_connections,
            self.metrics.clone(),
        ));
        let server = HttpServer::new(move || {
            let app = App::new().wrap(from_fn(packages_api::request_middleware));
            if with_ops {
                app.configure(packages_api::configure(state.clone()))
            } else {
                app.configure(packages_api::configure_packages_api(state.clone()))
            }
        })
        .workers(workers)
        // actix counts per worker thread; together they hold the configured cap.
        .max_connections(settings.server.max_connections.div_ceil(workers))
        .on_connect(move |io, extensions| {
            // A streamed body ends with a small write (its last chunk); with Nagle's
            // algorithm on, it waits for the client's delayed ACK, 40 ms a response.
            if let Some(tcp) = io.downcast_ref::<actix_web::rt::net::TcpStream>() {
                let _ = tcp.set_nodelay(true);
            }
            extensions.insert(connections.opened());
        })
        .shutdown_timeout(settings.server.shutdown_timeout_secs)
        .disable_signals()
        .bind(settings.server.bind)
        .map_err(|e| StartError::Setup(format!("server.bind {}: {e}", settings.server.bind)))?
        .run();
        Ok((server, ops_server))
    }

    /// The worker's `/healthz`, `/readyz` and `/metrics`, on `worker.bind`.
    fn worker_ops_server(&mut self, settings: &Settings) -> Result<Server, StartError> {
        let readiness = self.readiness(vec![
            Box::new(DatabaseProbe(self.services.clone())),
            Box::new(ConsumerProbe(self.queue.consumer.clone())),
            Box::new(BlobstoreProbe(self.blobs.clone())),
        ]);
        ops_server(
            "worker.bind",
            settings.worker.bind,
            self.metrics.clone(),
            readiness,
            settings,
        )
    }

    /// Intake stops first; requests in flight (uploads still arriving) finish, up to
    /// `grace`, before the server stops; then the loops finish the jobs in hand.
    async fn shut_down(mut self, server: ServerHandle, stop: watch::Sender<bool>, grace: Duration) {
        tracing::info!("shutting down: no new requests or jobs; finishing those in hand");
        server.pause().await;
        let deadline = tokio::time::Instant::now() + grace;
        while self.metrics.requests_in_flight() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let left = self.metrics.requests_in_flight();
        if left > 0 {
            tracing::warn!(
                requests = left,
                "shutdown grace period over; cutting requests in flight"
            );
        }
        server.stop(true).await;
        let _ = stop.send(true);
        while self.tasks.join_next().await.is_some() {}
        self.queue.consumer.close().await;
    }
}

/// `/healthz`, `/readyz` and `/metrics` alone, on `addr` (the setting `key` names it).
fn ops_server(
    key: &str,
    addr: std::net::SocketAddr,
    metrics: Metrics,
    readiness: Arc<Readiness>,
    settings: &Settings,
) -> Result<Server, StartError> {
    let server = HttpServer::new(move || {
        let (metrics, readiness) = (metrics.clone(), readiness.clone());
        App::new().configure(move |cfg| packages_api::ops::configure(cfg, metrics, readiness))
    })
    .workers(1)
    .shutdown_timeout(settings.server.shutdown_timeout_secs)
    .disable_signals()
    .bind(addr)
    .map_err(|e| StartError::Setup(format!("{key} {addr}: {e}")))?
    .run();
    Ok(server)
}

/// The token checks: the configured keys, and UAA's keys when `auth.uaa_url` is set
/// (fetched once now, in the background, so a first token does not wait for them).
fn verifier(auth: &packages_config::Auth) -> Result<Verifier, StartError> {
    let secret = auth.jwt_secret.as_deref();
    let pem = auth.jwt_public_key.as_deref();
    let verifier = match &auth.uaa_url {
        None => Verifier::new(secret, pem, &auth.audience),
        Some(uaa) => {
            let jwks = Arc::new(Jwks::new(
                uaa,
                Duration::from_secs(auth.token_keys_min_interval_secs),
            ));
            let first = jwks.clone();
            tokio::spawn(async move {
                if let Err(e) = first.refresh().await {
                    tracing::warn!(error = %Chain(&e), "UAA signing keys could not be fetched; tokens naming them will fetch again");
                }
            });
            Verifier::with_uaa_keys(secret, pem, jwks, &auth.audience)
        }
    }
    .map_err(|e| StartError::Usage(format!("auth: {}", Chain(&e))))?;
    Ok(match &auth.issuer {
        Some(issuer) => verifier.require_issuer(issuer),
        None => verifier,
    })
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
        credential_key: settings
            .packages
            .encryption_key
            .as_deref()
            .map(CredentialKey::from_material),
        resource_pool: ResourcePoolBounds {
            minimum_size: settings.resource_pool.minimum_size,
            maximum_size: settings.resource_pool.maximum_size,
        },
        upload_link_key: settings
            .packages
            .encryption_key
            .as_deref()
            .map(UploadLinkKey::from_material),
        direct_link_ttl: Duration::from_secs(settings.upload.direct_link_ttl_secs),
    }
}

fn worker_settings(settings: &Settings) -> WorkerSettings {
    WorkerSettings {
        concurrency: settings.worker.concurrency,
        large_job_concurrency: settings.worker.large_job_concurrency,
        max_attempts: i32::try_from(settings.worker.max_attempts).unwrap_or(i32::MAX),
        retry_base: Duration::from_millis(settings.worker.retry_base_ms),
    }
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
            signal(kind).map_err(|e| StartError::Setup(format!("signal handler: {}", Chain(&e))))
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
