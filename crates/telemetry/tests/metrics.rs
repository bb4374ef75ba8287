//! The exported metrics: contract names, label sets, counters, gauges and histograms.
#![allow(clippy::unwrap_used)]

use packages_telemetry::{
    HTTP_BUCKETS, JOB_BUCKETS, Metrics, failure_reason, job_kind, job_outcome, package_state,
    upload_outcome,
};

/// The value of one series line, `name{labels} value`, or `None` if absent.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map(|value| value.parse().unwrap())
}

fn value(metrics: &Metrics, series: &str) -> f64 {
    let text = metrics.render();
    sample(&text, series).unwrap_or_else(|| panic!("{series} missing from\n{text}"))
}

fn assert_described(text: &str, name: &str, kind: &str) {
    assert!(
        text.lines()
            .any(|l| l.starts_with(&format!("# HELP {name} ")) && l.len() > name.len() + 12),
        "no help for {name}"
    );
    assert!(
        text.contains(&format!("# TYPE {name} {kind}\n")),
        "no type {kind} for {name}"
    );
}

#[test]
fn every_contract_metric_is_described() {
    let metrics = Metrics::try_new().unwrap();
    // Series without a pre-set label set appear with their first event.
    metrics.http_request("GET", "/v3/packages/{guid}", 200, 0.002);

    let text = metrics.render();
    for (name, kind) in [
        ("http_requests_total", "counter"),
        ("http_request_duration_seconds", "histogram"),
        ("packages_uploads_total", "counter"),
        ("upload_bytes_total", "counter"),
        ("jobs_total", "counter"),
        ("job_duration_seconds", "histogram"),
        ("bits_hashed_bytes_total", "counter"),
        ("jobs_in_flight", "gauge"),
        ("packages_failed_total", "counter"),
        ("jobs_queue_depth", "gauge"),
        ("jobs_dead_letter_depth", "gauge"),
        ("jobs_outbox_pending", "gauge"),
        ("packages", "gauge"),
    ] {
        assert_described(&text, name, kind);
    }
}

#[test]
fn expected_label_sets_exist_at_zero() {
    let text = Metrics::new().render();
    for outcome in upload_outcome::ALL {
        assert_eq!(
            sample(
                &text,
                &format!("packages_uploads_total{{outcome=\"{outcome}\"}}")
            ),
            Some(0.0)
        );
    }
    for kind in job_kind::all() {
        for outcome in job_outcome::ALL {
            assert_eq!(
                sample(
                    &text,
                    &format!("jobs_total{{kind=\"{kind}\",outcome=\"{outcome}\"}}")
                ),
                Some(0.0),
                "{kind} {outcome}"
            );
        }
        assert_eq!(
            sample(
                &text,
                &format!("job_duration_seconds_count{{kind=\"{kind}\"}}")
            ),
            Some(0.0)
        );
    }
    for reason in failure_reason::all() {
        assert_eq!(
            sample(
                &text,
                &format!("packages_failed_total{{reason=\"{reason}\"}}")
            ),
            Some(0.0)
        );
    }
    for state in package_state::all() {
        assert_eq!(
            sample(&text, &format!("packages{{state=\"{state}\"}}")),
            Some(0.0)
        );
    }
    for name in [
        "upload_bytes_total",
        "bits_hashed_bytes_total",
        "jobs_in_flight",
        "jobs_queue_depth",
        "jobs_dead_letter_depth",
        "jobs_outbox_pending",
    ] {
        assert_eq!(sample(&text, name), Some(0.0), "{name}");
    }
    // No request has been seen yet, so no HTTP series.
    assert!(!text.contains("http_requests_total{"));
}

#[test]
fn label_values_match_the_domain() {
    use packages_domain::{FailureReason, PackageState};
    let reasons = [
        FailureReason::InvalidZip,
        FailureReason::UnsafeEntry(String::new()),
        FailureReason::ZipLimit(String::new()),
        FailureReason::InconsistentZip(String::new()),
        FailureReason::TooLarge,
        FailureReason::CopyFailed(String::new()),
        FailureReason::TimedOut { seconds: 1 },
        FailureReason::GaveUp(String::new()),
        FailureReason::UnsafeResource(String::new()),
        FailureReason::UnknownResource(String::new()),
        FailureReason::ResourceChecksum,
        FailureReason::Crashed { runs: 1 },
    ];
    let labels: Vec<&str> = reasons.iter().map(FailureReason::label).collect();
    assert_eq!(labels, failure_reason::all().collect::<Vec<_>>());
    let states: Vec<&str> = PackageState::ALL.iter().map(|s| s.as_str()).collect();
    assert_eq!(states, package_state::all().collect::<Vec<_>>());
}

#[test]
fn http_requests_count_and_time() {
    let metrics = Metrics::new();
    metrics.http_request("GET", "/v3/packages/{guid}", 200, 0.0004);
    metrics.http_request("GET", "/v3/packages/{guid}", 200, 0.003);
    metrics.http_request("GET", "/v3/packages/{guid}", 404, 0.001);
    metrics.http_request("POST", "/v3/packages/{guid}/upload", 201, 12.0);

    let text = metrics.render();
    let count = |labels: &str| sample(&text, &format!("http_requests_total{{{labels}}}"));
    assert_eq!(
        count("method=\"GET\",route=\"/v3/packages/{guid}\",status=\"200\""),
        Some(2.0)
    );
    assert_eq!(
        count("method=\"GET\",route=\"/v3/packages/{guid}\",status=\"404\""),
        Some(1.0)
    );
    let get = "method=\"GET\",route=\"/v3/packages/{guid}\"";
    let bucket = |le: &str| {
        sample(
            &text,
            &format!("http_request_duration_seconds_bucket{{{get},le=\"{le}\"}}"),
        )
    };
    assert_eq!(bucket("0.0005"), Some(1.0));
    assert_eq!(bucket("0.001"), Some(2.0));
    assert_eq!(bucket("0.005"), Some(3.0));
    assert_eq!(bucket("30"), Some(3.0));
    assert_eq!(bucket("+Inf"), Some(3.0));
    assert_eq!(
        sample(
            &text,
            &format!("http_request_duration_seconds_count{{{get}}}")
        ),
        Some(3.0)
    );
    let post = "method=\"POST\",route=\"/v3/packages/{guid}/upload\"";
    assert_eq!(
        sample(
            &text,
            &format!("http_request_duration_seconds_bucket{{{post},le=\"10\"}}")
        ),
        Some(0.0)
    );
    assert_eq!(
        sample(
            &text,
            &format!("http_request_duration_seconds_bucket{{{post},le=\"30\"}}")
        ),
        Some(1.0)
    );
    // Every configured bucket is exported.
    for le in HTTP_BUCKETS {
        assert!(bucket(&le.to_string()).is_some(), "le={le}");
    }
}

#[test]
fn uploads_and_worker_counters_move() {
    let metrics = Metrics::new();
    metrics.upload(upload_outcome::ACCEPTED);
    metrics.upload(upload_outcome::ACCEPTED);
    metrics.upload(upload_outcome::TOO_LARGE);
    metrics.upload_bytes(1000);
    metrics.upload_bytes(24);
    metrics.bits_hashed(4096);
    metrics.package_failed("unsafe_entry");

    assert_eq!(
        value(&metrics, "packages_uploads_total{outcome=\"accepted\"}"),
        2.0
    );
    assert_eq!(
        value(&metrics, "packages_uploads_total{outcome=\"too_large\"}"),
        1.0
    );
    assert_eq!(
        value(&metrics, "packages_uploads_total{outcome=\"rejected\"}"),
        0.0
    );
    assert_eq!(value(&metrics, "upload_bytes_total"), 1024.0);
    assert_eq!(value(&metrics, "bits_hashed_bytes_total"), 4096.0);
    assert_eq!(
        value(&metrics, "packages_failed_total{reason=\"unsafe_entry\"}"),
        1.0
    );
    assert_eq!(
        value(&metrics, "packages_failed_total{reason=\"invalid_zip\"}"),
        0.0
    );

    // Clones share the series.
    let worker_side = metrics.clone();
    worker_side.bits_hashed(4);
    assert_eq!(value(&metrics, "bits_hashed_bytes_total"), 4100.0);
}

#[test]
fn jobs_are_timed_and_tracked_in_flight() {
    let metrics = Metrics::new();
    let first = metrics.job_started();
    let second = metrics.job_started();
    assert_eq!(value(&metrics, "jobs_in_flight"), 2.0);

    first.finish("process_upload", job_outcome::SUCCEEDED);
    assert_eq!(value(&metrics, "jobs_in_flight"), 1.0);
    assert_eq!(
        value(
            &metrics,
            "jobs_total{kind=\"process_upload\",outcome=\"succeeded\"}"
        ),
        1.0
    );
    assert_eq!(
        value(
            &metrics,
            "job_duration_seconds_count{kind=\"process_upload\"}"
        ),
        1.0
    );
    assert_eq!(
        value(
            &metrics,
            "job_duration_seconds_bucket{kind=\"process_upload\",le=\"0.01\"}"
        ),
        1.0
    );
    for le in JOB_BUCKETS {
        let series = format!("job_duration_seconds_bucket{{kind=\"copy_bits\",le=\"{le}\"}}");
        assert_eq!(value(&metrics, &series), 0.0);
    }

    // Dropped without finishing (a panic, a cancelled task): no longer in flight, and
    // not counted as any outcome.
    drop(second);
    assert_eq!(value(&metrics, "jobs_in_flight"), 0.0);
    let text = metrics.render();
    let finished: f64 = text
        .lines()
        .filter(|l| l.starts_with("jobs_total{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum();
    assert_eq!(finished, 1.0);

    {
        let _timer = metrics.job_started();
        assert_eq!(value(&metrics, "jobs_in_flight"), 1.0);
    }
    assert_eq!(value(&metrics, "jobs_in_flight"), 0.0);
}

#[test]
fn gauges_follow_the_last_observation() {
    let metrics = Metrics::new();
    metrics.set_queue_depths(7, 2);
    metrics.set_outbox_pending(3);
    assert_eq!(value(&metrics, "jobs_queue_depth"), 7.0);
    assert_eq!(value(&metrics, "jobs_dead_letter_depth"), 2.0);
    assert_eq!(value(&metrics, "jobs_outbox_pending"), 3.0);
    metrics.set_queue_depths(0, 0);
    metrics.set_outbox_pending(0);
    assert_eq!(value(&metrics, "jobs_queue_depth"), 0.0);
    assert_eq!(value(&metrics, "jobs_outbox_pending"), 0.0);

    metrics.set_packages_by_state(&[
        ("READY".to_owned(), 5),
        ("FAILED".to_owned(), 1),
        ("SOMETHING_NEW".to_owned(), 2),
    ]);
    assert_eq!(value(&metrics, "packages{state=\"READY\"}"), 5.0);
    assert_eq!(value(&metrics, "packages{state=\"FAILED\"}"), 1.0);
    assert_eq!(value(&metrics, "packages{state=\"SOMETHING_NEW\"}"), 2.0);
    assert_eq!(value(&metrics, "packages{state=\"COPYING\"}"), 0.0);

    // A state missing from the next snapshot has no packages left.
    metrics.set_packages_by_state(&[("READY".to_owned(), 6)]);
    assert_eq!(value(&metrics, "packages{state=\"READY\"}"), 6.0);
    assert_eq!(value(&metrics, "packages{state=\"FAILED\"}"), 0.0);
    assert_eq!(value(&metrics, "packages{state=\"SOMETHING_NEW\"}"), 0.0);
}

#[test]
fn instances_do_not_share_series() {
    let a = Metrics::new();
    let b = Metrics::new();
    a.upload_bytes(10);
    assert_eq!(value(&a, "upload_bytes_total"), 10.0);
    assert_eq!(value(&b, "upload_bytes_total"), 0.0);
}

#[cfg(target_os = "linux")]
#[test]
fn process_metrics_are_exported() {
    let text = Metrics::new().render();
    let resident = sample(&text, "process_resident_memory_bytes").unwrap();
    assert!(resident > 0.0);
    for name in [
        "process_cpu_seconds_total",
        "process_open_fds",
        "process_start_time_seconds",
    ] {
        assert!(sample(&text, name).is_some(), "{name}");
    }
}

#[test]
fn invented_methods_and_statuses_share_one_series() {
    let metrics = Metrics::new();
    for i in 0..500 {
        metrics.http_request(&format!("M{i}"), "unmatched", 404, 0.001);
    }
    metrics.http_request("get", "unmatched", 404, 0.001);
    metrics.http_request("GET", "unmatched", 1000, 0.001);
    let text = metrics.render();
    let series = text
        .lines()
        .filter(|l| l.starts_with("http_requests_total{"))
        .count();
    assert_eq!(series, 2, "{text}");
    assert_eq!(
        sample(
            &text,
            "http_requests_total{method=\"OTHER\",route=\"unmatched\",status=\"404\"}"
        ),
        Some(501.0)
    );
    assert_eq!(
        sample(
            &text,
            "http_requests_total{method=\"GET\",route=\"unmatched\",status=\"other\"}"
        ),
        Some(1.0)
    );
}
