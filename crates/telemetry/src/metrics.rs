//! The service's Prometheus metrics. Names are part of the operator contract.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use prometheus::core::Collector;
use prometheus::{
    HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

use crate::TelemetryError;

/// `Content-Type` of [`Metrics::render`]'s output.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// `http_request_duration_seconds` buckets: sub-millisecond reads up to slow uploads.
pub const HTTP_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// `job_duration_seconds` buckets: quick deletes up to minute-long hashing of large zips.
pub const JOB_BUCKETS: &[f64] = &[
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];

/// `outcome` of `packages_uploads_total`.
pub mod upload_outcome {
    /// The bits were stored and a job was enqueued.
    pub const ACCEPTED: &str = "accepted";
    /// Refused before storing: auth, validation, state or a bad `bits_path`.
    pub const REJECTED: &str = "rejected";
    /// The body exceeded `upload.max_body_bytes` (413).
    pub const TOO_LARGE: &str = "too_large";
    /// The service failed to store or enqueue (5xx).
    pub const FAILED: &str = "failed";
    pub const ALL: [&str; 4] = [ACCEPTED, REJECTED, TOO_LARGE, FAILED];
}

/// `method` of the HTTP metrics: the methods of RFC 9110 and PATCH, and one value for
/// anything else, so a client sending made-up methods cannot grow the series.
pub mod http_method {
    pub const OTHER: &str = "OTHER";
    pub const ALL: [&str; 10] = [
        "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE", OTHER,
    ];

    /// The label for a request's method.
    pub fn label(method: &str) -> &'static str {
        ALL.iter()
            .copied()
            .find(|known| *known != OTHER && *known == method)
            .unwrap_or(OTHER)
    }
}

/// `kind` of `jobs_total` and `job_duration_seconds`: the domain's job kinds.
pub mod job_kind {
    use packages_domain::JobKind;

    /// Every label value, in the domain's order.
    pub fn all() -> impl Iterator<Item = &'static str> {
        JobKind::ALL.iter().map(|kind| kind.as_str())
    }
}

/// `outcome` of `jobs_total`.
pub mod job_outcome {
    /// The job did its work.
    pub const SUCCEEDED: &str = "succeeded";
    /// The job ended the package as FAILED (the package's own fault, or retries spent).
    pub const FAILED: &str = "failed";
    /// A transient error; the job goes back to the queue.
    pub const RETRIED: &str = "retried";
    /// Nothing to do: a redelivery, or the package moved on or is gone.
    pub const IGNORED: &str = "ignored";
    /// The message could not be handled at all and went to the dead-letter queue.
    pub const DEAD_LETTERED: &str = "dead_lettered";
    pub const ALL: [&str; 5] = [SUCCEEDED, FAILED, RETRIED, IGNORED, DEAD_LETTERED];
}

/// `reason` of `packages_failed_total`: the domain's failure reasons.
pub mod failure_reason {
    use packages_domain::failure::FailureLabel;
    use strum::VariantArray;

    /// Every label value, in the domain's order.
    pub fn all() -> impl Iterator<Item = &'static str> {
        FailureLabel::VARIANTS
            .iter()
            .map(|label| <&'static str>::from(*label))
    }
}

/// `state` of the `packages` gauge: the package states as the API spells them.
pub mod package_state {
    use packages_domain::PackageState;

    /// Every label value, in the domain's order.
    pub fn all() -> impl Iterator<Item = &'static str> {
        PackageState::ALL.iter().map(|state| state.as_str())
    }
}

/// A request in flight; dropping it ends it.
pub struct InFlight(Metrics);

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(i) = self.0.instruments() {
            i.requests_in_flight.dec();
        }
    }
}

/// The metrics of one process. Cheap to clone: clones share the same series, so the API
/// and the worker of the all-in-one binary report into one registry.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    /// `None` only if the definitions themselves were refused, which the tests rule out;
    /// the service then runs without its own metrics rather than not at all.
    instruments: Option<Instruments>,
    /// Every `state` label the `packages` gauge has shown, so a state that disappears
    /// from a snapshot drops to 0 instead of keeping its last count.
    package_states: Mutex<BTreeSet<String>>,
}

struct Instruments {
    http_requests: IntCounterVec,
    http_duration: HistogramVec,
    uploads: IntCounterVec,
    upload_bytes: IntCounter,
    jobs: IntCounterVec,
    job_duration: HistogramVec,
    bits_hashed: IntCounter,
    jobs_in_flight: IntGauge,
    packages_failed: IntCounterVec,
    queue_depth: IntGauge,
    dead_letter_depth: IntGauge,
    outbox_pending: IntGauge,
    packages: IntGaugeVec,
    pending_oldest: IntGauge,
    readiness: IntGaugeVec,
    connections_open: IntGauge,
    connections_refused: IntCounter,
    readiness_checks: IntCounter,
    requests_in_flight: IntGauge,
}

fn register<C: Collector + Clone + 'static>(
    registry: &Registry,
    collector: C,
) -> Result<C, prometheus::Error> {
    registry.register(Box::new(collector.clone()))?;
    Ok(collector)
}

impl Instruments {
    fn register(registry: &Registry) -> Result<Instruments, prometheus::Error> {
        let counter = |name: &str, help: &str| register(registry, IntCounter::new(name, help)?);
        let gauge = |name: &str, help: &str| register(registry, IntGauge::new(name, help)?);
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            register(registry, IntCounterVec::new(Opts::new(name, help), labels)?)
        };
        let histogram_vec = |name: &str, help: &str, labels: &[&str], buckets: &[f64]| {
            let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
            register(registry, HistogramVec::new(opts, labels)?)
        };

        Ok(Instruments {
            http_requests: counter_vec(
                "http_requests_total",
                "HTTP requests answered, by method, route pattern and status code.",
                &["method", "route", "status"],
            )?,
            http_duration: histogram_vec(
                "http_request_duration_seconds",
                "Time from receiving an HTTP request to its response, by method and route pattern.",
                &["method", "route"],
                HTTP_BUCKETS,
            )?,
            uploads: counter_vec(
                "packages_uploads_total",
                "Package bits uploads, by outcome: accepted, rejected, too_large or failed.",
                &["outcome"],
            )?,
            upload_bytes: counter(
                "upload_bytes_total",
                "Bytes of package bits the API received in uploads (including uploads refused later).",
            )?,
            jobs: counter_vec(
                "jobs_total",
                "Jobs the worker finished, by kind and outcome: succeeded, failed, retried, ignored or dead_lettered.",
                &["kind", "outcome"],
            )?,
            job_duration: histogram_vec(
                "job_duration_seconds",
                "Time the worker spent on one job, by kind.",
                &["kind"],
                JOB_BUCKETS,
            )?,
            bits_hashed: counter(
                "bits_hashed_bytes_total",
                "Bytes of package bits hashed (sha1 and sha256 in one pass).",
            )?,
            jobs_in_flight: gauge(
                "jobs_in_flight",
                "Jobs this process is working on right now.",
            )?,
            packages_failed: counter_vec(
                "packages_failed_total",
                "Packages that ended FAILED, by reason.",
                &["reason"],
            )?,
            queue_depth: gauge(
                "jobs_queue_depth",
                "Jobs waiting on the work queue, as last observed.",
            )?,
            dead_letter_depth: gauge(
                "jobs_dead_letter_depth",
                "Jobs on the dead-letter queue, as last observed; anything above 0 needs an operator.",
            )?,
            outbox_pending: gauge(
                "jobs_outbox_pending",
                "Jobs recorded in the database but not yet published to the queue.",
            )?,
            packages: register(
                registry,
                IntGaugeVec::new(
                    Opts::new("packages", "Packages stored, by state, as last counted."),
                    &["state"],
                )?,
            )?,
            pending_oldest: gauge(
                "packages_pending_oldest_seconds",
                "Age of the oldest package in PROCESSING_UPLOAD or COPYING, in seconds; 0 when none.",
            )?,
            readiness: register(
                registry,
                IntGaugeVec::new(
                    Opts::new(
                        "readiness_status",
                        "Whether this process reaches a backend (1) or not (0), by component: database, queue, blobstore.",
                    ),
                    &["component"],
                )?,
            )?,
            connections_open: gauge(
                "http_connections_open",
                "HTTP connections this process holds open right now.",
            )?,
            connections_refused: counter(
                "http_connections_at_cap_total",
                "Times the API reached server.max_connections; new clients then wait in the kernel's backlog.",
            )?,
            requests_in_flight: gauge(
                "http_requests_in_flight",
                "HTTP requests being handled right now (uploads included, until answered).",
            )?,
            readiness_checks: counter(
                "readiness_checks_total",
                "Rounds of backend checks run for /readyz and the readiness gauge (answers are cached for a second).",
            )?,
        })
    }

    /// Creates the label sets dashboards and alerts expect, so they read 0 rather than
    /// "no data" before the first event.
    fn preinitialise(&self) -> Result<(), prometheus::Error> {
        for outcome in upload_outcome::ALL {
            self.uploads.get_metric_with_label_values(&[outcome])?;
        }
        for kind in job_kind::all() {
            self.job_duration.get_metric_with_label_values(&[kind])?;
            for outcome in job_outcome::ALL {
                self.jobs.get_metric_with_label_values(&[kind, outcome])?;
            }
        }
        for reason in failure_reason::all() {
            self.packages_failed
                .get_metric_with_label_values(&[reason])?;
        }
        for state in package_state::all() {
            self.packages.get_metric_with_label_values(&[state])?;
        }
        Ok(())
    }
}

/// Standard `process_*` metrics (CPU, memory, file descriptors, start time).
#[cfg(target_os = "linux")]
fn register_process_collector(registry: &Registry) -> Result<(), prometheus::Error> {
    registry.register(Box::new(
        prometheus::process_collector::ProcessCollector::for_self(),
    ))
}

/// The platform has no process collector.
#[cfg(not(target_os = "linux"))]
fn register_process_collector(_registry: &Registry) -> Result<(), prometheus::Error> {
    Ok(())
}

/// Histograms take any f64; a clock oddity must not put NaN into a sum.
fn sane_seconds(seconds: f64) -> f64 {
    if seconds.is_finite() {
        seconds.max(0.0)
    } else {
        0.0
    }
}

fn gauge_value(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Metrics {
    /// Metrics in their own registry (never the global default one, so tests and several
    /// instances do not collide), with the `process_*` metrics on Linux.
    ///
    /// Never fails: should the definitions be refused, the error is logged and the
    /// service's own metrics are left out. [`Metrics::try_new`] reports it instead.
    pub fn new() -> Metrics {
        match Metrics::try_new() {
            Ok(metrics) => metrics,
            Err(error) => {
                tracing::error!(%error, "metrics are disabled");
                let registry = Registry::new();
                if let Err(error) = register_process_collector(&registry) {
                    tracing::error!(%error, "process metrics are disabled");
                }
                Metrics::from_parts(registry, None)
            }
        }
    }

    /// Like [`Metrics::new`], but any refused definition is an error.
    pub fn try_new() -> Result<Metrics, TelemetryError> {
        let registry = Registry::new();
        let instruments = Instruments::register(&registry)?;
        instruments.preinitialise()?;
        register_process_collector(&registry)?;
        Ok(Metrics::from_parts(registry, Some(instruments)))
    }

    fn from_parts(registry: Registry, instruments: Option<Instruments>) -> Metrics {
        let package_states = package_state::all().map(str::to_owned).collect();
        Metrics {
            inner: Arc::new(Inner {
                registry,
                instruments,
                package_states: Mutex::new(package_states),
            }),
        }
    }

    fn instruments(&self) -> Option<&Instruments> {
        self.inner.instruments.as_ref()
    }

    /// Everything in the Prometheus text exposition format ([`METRICS_CONTENT_TYPE`]).
    pub fn render(&self) -> String {
        let families = self.inner.registry.gather();
        let mut text = String::new();
        if let Err(error) = TextEncoder::new().encode_utf8(&families, &mut text) {
            tracing::warn!(%error, "metrics could not be rendered completely");
        }
        text
    }

    /// One answered HTTP request. `route` must be the route pattern (`/v3/packages/{guid}`),
    /// never the raw path, or every GUID becomes its own series. The method is reduced to
    /// [`http_method::label`], since any client may invent method names.
    pub fn http_request(&self, method: &str, route: &str, status: u16, seconds: f64) {
        let Some(i) = self.instruments() else { return };
        let method = http_method::label(method);
        let status = if (100..=599).contains(&status) {
            status.to_string()
        } else {
            "other".to_owned()
        };
        if let Ok(counter) =
            i.http_requests
                .get_metric_with_label_values(&[method, route, status.as_str()])
        {
            counter.inc();
        }
        if let Ok(histogram) = i
            .http_duration
            .get_metric_with_label_values(&[method, route])
        {
            histogram.observe(sane_seconds(seconds));
        }
    }

    /// Counts a request as in flight until the returned guard is dropped.
    pub fn request_started(&self) -> InFlight {
        if let Some(i) = self.instruments() {
            i.requests_in_flight.inc();
        }
        InFlight(self.clone())
    }

    /// Requests being handled right now (what a clean shutdown waits for).
    pub fn requests_in_flight(&self) -> i64 {
        self.instruments().map_or(0, |i| i.requests_in_flight.get())
    }

    /// One round of readiness checks ran.
    pub fn readiness_checked(&self) {
        if let Some(i) = self.instruments() {
            i.readiness_checks.inc();
        }
    }

    /// The number of HTTP connections open now.
    pub fn set_connections_open(&self, n: u64) {
        if let Some(i) = self.instruments() {
            i.connections_open.set(gauge_value(n));
        }
    }

    /// The connection cap was reached once more.
    pub fn connections_at_cap(&self) {
        if let Some(i) = self.instruments() {
            i.connections_refused.inc();
        }
    }

    /// One upload attempt; `outcome` is one of [`upload_outcome::ALL`].
    pub fn upload(&self, outcome: &str) {
        let Some(i) = self.instruments() else { return };
        if let Ok(counter) = i.uploads.get_metric_with_label_values(&[outcome]) {
            counter.inc();
        }
    }

    /// Bytes of an accepted upload.
    pub fn upload_bytes(&self, n: u64) {
        if let Some(i) = self.instruments() {
            i.upload_bytes.inc_by(n);
        }
    }

    /// A job starts: `jobs_in_flight` counts it until the timer is finished or dropped.
    pub fn job_started(&self) -> JobTimer {
        if let Some(i) = self.instruments() {
            i.jobs_in_flight.inc();
        }
        JobTimer {
            metrics: self.clone(),
            started: Instant::now(),
        }
    }

    /// Bytes run through the hashers.
    pub fn bits_hashed(&self, n: u64) {
        if let Some(i) = self.instruments() {
            i.bits_hashed.inc_by(n);
        }
    }

    /// A package ended FAILED; `reason` is one of [`failure_reason::ALL`].
    pub fn package_failed(&self, reason: &str) {
        let Some(i) = self.instruments() else { return };
        if let Ok(counter) = i.packages_failed.get_metric_with_label_values(&[reason]) {
            counter.inc();
        }
    }

    /// Messages on the work queue and on the dead-letter queue.
    pub fn set_queue_depths(&self, ready: u64, dead: u64) {
        if let Some(i) = self.instruments() {
            i.queue_depth.set(gauge_value(ready));
            i.dead_letter_depth.set(gauge_value(dead));
        }
    }

    /// Jobs recorded in the database but not yet published.
    pub fn set_outbox_pending(&self, n: u64) {
        if let Some(i) = self.instruments() {
            i.outbox_pending.set(gauge_value(n));
        }
    }

    /// A complete count of packages by state. States missing from `counts` read 0.
    /// Age of the oldest pending package (0 when none is pending).
    pub fn set_pending_oldest(&self, seconds: u64) {
        if let Some(i) = self.instruments() {
            i.pending_oldest.set(gauge_value(seconds));
        }
    }

    /// The outcome of the latest readiness check of one backend.
    pub fn set_ready(&self, component: &str, ready: bool) {
        if let Some(i) = self.instruments()
            && let Ok(gauge) = i.readiness.get_metric_with_label_values(&[component])
        {
            gauge.set(i64::from(ready));
        }
    }

    pub fn set_packages_by_state(&self, counts: &[(String, i64)]) {
        let Some(i) = self.instruments() else { return };
        // A poisoned lock only means another thread panicked mid-update; the set of
        // names is still usable.
        let mut seen = self
            .inner
            .package_states
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for state in seen.iter() {
            if counts.iter().any(|(s, _)| s == state) {
                continue;
            }
            if let Ok(gauge) = i.packages.get_metric_with_label_values(&[state.as_str()]) {
                gauge.set(0);
            }
        }
        for (state, count) in counts {
            if let Ok(gauge) = i.packages.get_metric_with_label_values(&[state.as_str()]) {
                gauge.set(*count);
                seen.insert(state.clone());
            }
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics")
            .field("enabled", &self.inner.instruments.is_some())
            .finish_non_exhaustive()
    }
}

/// One job in flight. [`JobTimer::finish`] records its kind, outcome and duration; a timer
/// dropped without it (a panic, a cancelled task) still leaves `jobs_in_flight`.
#[must_use = "a dropped timer ends the job without recording it"]
#[derive(Debug)]
pub struct JobTimer {
    metrics: Metrics,
    started: Instant,
}

impl JobTimer {
    /// Time since [`Metrics::job_started`].
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// The job ended: `kind` one of [`job_kind::ALL`], `outcome` one of
    /// [`job_outcome::ALL`]. `jobs_in_flight` goes down when `self` is dropped here.
    pub fn finish(self, kind: &str, outcome: &str) {
        let Some(i) = self.metrics.instruments() else {
            return;
        };
        if let Ok(counter) = i.jobs.get_metric_with_label_values(&[kind, outcome]) {
            counter.inc();
        }
        if let Ok(histogram) = i.job_duration.get_metric_with_label_values(&[kind]) {
            histogram.observe(self.started.elapsed().as_secs_f64());
        }
    }
}

impl Drop for JobTimer {
    fn drop(&mut self) {
        if let Some(i) = self.metrics.instruments() {
            i.jobs_in_flight.dec();
        }
    }
}
