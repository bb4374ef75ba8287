//! Logs: JSON lines with `log.format = "json"`, every line of a request carrying its
//! request id, and the worker's lines for an upload carrying the same id and the package.
#![allow(clippy::unwrap_used)]

use packages_tests::{Options, Service, zips};
use serde_json::Value;

#[tokio::test]
async fn json_logs_follow_an_upload_from_request_to_ready() {
    let svc = Service::start_with(Options::default().with("log.format", "json")).await;
    let ctx = svc.ctx().await;
    let guid = svc.new_package(&ctx.app).await;
    let form = reqwest::multipart::Form::new().part(
        "bits",
        reqwest::multipart::Part::bytes(zips::small_app("traced")).file_name("package.zip"),
    );
    let r = svc
        .send(
            svc.http
                .post(format!("{}/v3/packages/{guid}/upload", svc.base))
                .bearer_auth(svc.admin())
                .header("X-VCAP-Request-ID", "trace-me")
                .multipart(form),
        )
        .await;
    assert_eq!(r.status, 200);
    let request_id = r.header("x-vcap-request-id").unwrap().to_owned();
    assert!(request_id.starts_with("trace-me::"));
    assert_eq!(svc.wait_final(&guid).await["state"], "READY");
    // The worker logs READY right after the final update: wait for the line itself.
    svc.wait_until(std::time::Duration::from_secs(30), || {
        format!("{}{}", svc.api_log(), svc.worker_logs()).contains("package READY")
    })
    .await;

    let text = format!("{}{}", svc.api_log(), svc.worker_logs());
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect();
    let of_request: Vec<&Value> = lines
        .iter()
        .filter(|l| l["span"]["request_id"] == request_id.as_str())
        .collect();
    let request_lines: Vec<&&Value> = of_request
        .iter()
        .filter(|l| l["span"]["name"] == "request")
        .collect();
    assert!(
        !request_lines.is_empty(),
        "no line of the request carries its id"
    );
    assert!(request_lines.iter().any(
        |l| l["fields"]["message"] == "request finished" || l["message"] == "request finished"
    ));
    let job_lines: Vec<&&Value> = of_request
        .iter()
        .filter(|l| l["span"]["name"] == "job")
        .collect();
    assert!(
        !job_lines.is_empty(),
        "the worker's lines do not carry the request id\n{text}"
    );
    for line in &job_lines {
        assert_eq!(line["span"]["package_guid"], guid.as_str(), "{line}");
    }
    let ready = job_lines
        .iter()
        .any(|l| l["fields"]["message"] == "package READY" || l["message"] == "package READY");
    assert!(
        ready,
        "the READY line carries the request id and package\n{text}"
    );
}
