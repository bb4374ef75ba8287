//! Installing the global log subscriber.
#![allow(clippy::unwrap_used)]

use packages_telemetry::{TelemetryError, init_tracing};

#[test]
fn second_init_reports_instead_of_panicking() {
    // `RUST_LOG` overrides the level, so only check the level when it is unset.
    if std::env::var("RUST_LOG").map_or(true, |v| v.trim().is_empty()) {
        assert!(matches!(
            init_tracing(false, "not a level=="),
            Err(TelemetryError::Filter { .. })
        ));
    }
    init_tracing(true, "info").unwrap();
    tracing::info!(check = "json", "first subscriber installed");
    assert!(matches!(
        init_tracing(false, "debug"),
        Err(TelemetryError::AlreadyInitialised(_))
    ));
    assert!(init_tracing(true, "info").is_err());
}
