//! Operator endpoints, on the API and on the worker: `/healthz` (the process runs),
//! `/readyz` (its backends answer) and `/metrics` (Prometheus text). None needs a token.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, web};
use async_trait::async_trait;
use packages_blobstore::Blobstore;
use packages_jobs::{JobConsumer, JobPublisher};
use packages_service::Services;
use packages_telemetry::{METRICS_CONTENT_TYPE, Metrics};

use crate::middleware::RoutePattern;
use serde_json::{Map, Value, json};

/// How long a backend may take to answer a readiness check.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// One backend a process needs.
#[async_trait]
pub trait Probe: Send + Sync {
    fn name(&self) -> &'static str;
    async fn check(&self) -> Result<(), String>;
    /// Whether the process is unready while this backend is unavailable. A backend the
    /// process can work without for a while is still checked and reported.
    fn gates_readiness(&self) -> bool {
        true
    }
}

/// How long one round of checks answers `/readyz`: the endpoint needs no token, so
/// without this every request would cost a database query and a blobstore write.
const CACHE_FOR: Duration = Duration::from_secs(1);

/// The backends `/readyz` checks, all at once, each with a short timeout. Every check
/// also sets `readiness_status{component}`, so dashboards see flapping backends.
#[derive(Default)]
pub struct Readiness {
    probes: Vec<Box<dyn Probe>>,
    metrics: Option<Metrics>,
    /// The last round and when it ran; the lock also makes concurrent requests share one
    /// round instead of each starting its own.
    last: tokio::sync::Mutex<Option<Round>>,
}

/// One round of checks: when it ran, whether everything answered, each backend's status.
type Round = (Instant, bool, Map<String, Value>);

/// How often [`Readiness::watch`] checks, for the gauge.
const WATCH_INTERVAL: Duration = Duration::from_secs(10);

impl Readiness {
    pub fn new(probes: Vec<Box<dyn Probe>>, metrics: Metrics) -> Self {
        Readiness {
            probes,
            metrics: Some(metrics),
            last: tokio::sync::Mutex::new(None),
        }
    }

    /// Checks every [`WATCH_INTERVAL`] until `stop` turns true, keeping the gauge fresh
    /// between probe requests.
    pub async fn watch(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(WATCH_INTERVAL);
        loop {
            tokio::select! {
                _ = tick.tick() => { self.check().await; }
                _ = stop.changed() => return,
            }
        }
    }

    /// Whether everything answered, and each backend's status, from a round at most
    /// [`CACHE_FOR`] old.
    pub async fn cached(&self) -> (bool, Map<String, Value>) {
        let mut last = self.last.lock().await;
        if let Some((at, ready, checks)) = last.as_ref()
            && at.elapsed() < CACHE_FOR
        {
            return (*ready, checks.clone());
        }
        let (ready, checks) = self.check().await;
        *last = Some((Instant::now(), ready, checks.clone()));
        (ready, checks)
    }

    /// Whether everything answered, and each backend's status. The status names the
    /// component only: the cause (with its hosts and paths) goes to the log.
    pub async fn check(&self) -> (bool, Map<String, Value>) {
        let results = futures_util::future::join_all(self.probes.iter().map(|probe| async move {
            let outcome = match tokio::time::timeout(CHECK_TIMEOUT, probe.check()).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(e),
                Err(_) => Err(format!("no answer within {} ms", CHECK_TIMEOUT.as_millis())),
            };
            (probe.name(), probe.gates_readiness(), outcome)
        }))
        .await;
        if let Some(metrics) = &self.metrics {
            metrics.readiness_checked();
        }
        let mut ready = true;
        let mut checks = Map::new();
        for (name, gates, outcome) in results {
            if let Some(metrics) = &self.metrics {
                metrics.set_ready(name, outcome.is_ok());
            }
            let status = match outcome {
                Ok(()) => json!("ok"),
                Err(e) => {
                    ready &= !gates;
                    tracing::warn!(component = name, cause = %e, "readiness check failed");
                    json!("unavailable")
                }
            };
            checks.insert(name.to_owned(), status);
        }
        (ready, checks)
    }
}

/// The database, as the service reaches it.
pub struct DatabaseProbe(pub Services);

#[async_trait]
impl Probe for DatabaseProbe {
    fn name(&self) -> &'static str {
        "database"
    }
    async fn check(&self) -> Result<(), String> {
        self.0
            .check_database()
            .await
            .map_err(|e| packages_blobstore::Chain(&e).to_string())
    }
}

pub struct BlobstoreProbe(pub Arc<dyn Blobstore>);

#[async_trait]
impl Probe for BlobstoreProbe {
    fn name(&self) -> &'static str {
        "blobstore"
    }
    async fn check(&self) -> Result<(), String> {
        self.0
            .check()
            .await
            .map_err(|e| packages_blobstore::Chain(&e).to_string())
    }
}

pub struct PublisherProbe(pub Arc<dyn JobPublisher>);

#[async_trait]
impl Probe for PublisherProbe {
    fn name(&self) -> &'static str {
        "queue"
    }
    async fn check(&self) -> Result<(), String> {
        self.0
            .check()
            .await
            .map_err(|e| packages_blobstore::Chain(&e).to_string())
    }
    /// The API records jobs in the outbox and publishes them once the broker is back,
    /// so uploads keep being accepted: taking the API out of its load balancer for a
    /// broker outage would refuse them for nothing.
    fn gates_readiness(&self) -> bool {
        false
    }
}

pub struct ConsumerProbe(pub Arc<dyn JobConsumer>);

#[async_trait]
impl Probe for ConsumerProbe {
    fn name(&self) -> &'static str {
        "queue"
    }
    async fn check(&self) -> Result<(), String> {
        self.0
            .depths()
            .await
            .map(|_| ())
            .map_err(|e| packages_blobstore::Chain(&e).to_string())
    }
}

fn json_response(status: StatusCode, body: &Value) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((
            header::CONTENT_TYPE,
            HeaderValue::from_static(crate::JSON_CONTENT_TYPE),
        ))
        .body(serde_json::to_vec(body).unwrap_or_default())
}

async fn healthz() -> HttpResponse {
    json_response(StatusCode::OK, &json!({"status": "ok"}))
}

async fn readyz(readiness: web::Data<Arc<Readiness>>) -> HttpResponse {
    let (ready, checks) = readiness.cached().await;
    if ready {
        json_response(
            StatusCode::OK,
            &json!({"status": "ready", "checks": checks}),
        )
    } else {
        json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"status": "unavailable", "checks": checks}),
        )
    }
}

async fn metrics(metrics: web::Data<Metrics>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((
            header::CONTENT_TYPE,
            HeaderValue::from_static(METRICS_CONTENT_TYPE),
        ))
        .body(metrics.render())
}

/// Registers `/healthz`, `/readyz` and `/metrics`.
pub fn configure(
    cfg: &mut web::ServiceConfig,
    metrics_registry: Metrics,
    readiness: Arc<Readiness>,
) {
    cfg.app_data(web::Data::new(readiness))
        .app_data(web::Data::new(metrics_registry))
        .service(operator("/healthz").route(web::get().to(healthz)))
        .service(operator("/readyz").route(web::get().to(readyz)))
        .service(operator("/metrics").route(web::get().to(metrics)));
}

/// An operator endpoint, carrying its pattern for the request labels as every route does.
fn operator(path: &str) -> actix_web::Resource {
    web::resource(path).app_data(RoutePattern::new(path))
}
