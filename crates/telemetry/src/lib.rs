//! Metrics and logging shared by the API and the worker.
//!
//! Every metric the service exports is defined in [`metrics`], so names, help texts,
//! labels and buckets live in one place; [`init_tracing`] sets up the log output.

mod logging;
pub mod metrics;

pub use logging::init_tracing;
pub use metrics::{
    HTTP_BUCKETS, InFlight, JOB_BUCKETS, JobTimer, METRICS_CONTENT_TYPE, Metrics, failure_reason,
    http_method, job_kind, job_outcome, package_state, upload_outcome,
};

/// Telemetry could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("metrics could not be defined: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("invalid log filter {filter:?}: {reason}")]
    Filter { filter: String, reason: String },
    #[error("logging is already initialised: {0}")]
    AlreadyInitialised(String),
}
