//! `make bench`: measures the package store on this machine next to the physical floor
//! measured in the same run, and writes `BENCHMARKS.md`.
//!
//! Run through `scripts/bench.sh`, which builds the release binaries, starts the test
//! services and installs `wrk` if missing. `--quick` keeps it under three minutes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use packages_tests::{Mode, Options, S3Server, Service, metric, peak_rss, zips};
use sha1::Digest;

const MIB: u64 = 1 << 20;

struct Plan {
    quick: bool,
    /// Pool files of the assembly benchmark, and the size of each.
    assembly_files: (usize, u64),
    match_runs: usize,
    upload_sizes: Vec<u64>,
    big_embedded: u64,
    wrk_duration: &'static str,
    concurrency: Vec<u32>,
    drain_packages: usize,
    /// Back-to-back pairs measured for each ratio of two rates: a read against its
    /// ceiling, two workers against one.
    pairs_per_ratio: usize,
}

impl Plan {
    /// `wrk_duration` in seconds, as pgbench's `-T` takes it.
    fn wrk_seconds(&self) -> &'static str {
        self.wrk_duration.trim_end_matches('s')
    }

    fn new(quick: bool) -> Plan {
        if quick {
            Plan {
                quick,
                assembly_files: (8, 8 * MIB),
                match_runs: 5,
                upload_sizes: vec![64 * MIB],
                big_embedded: 256 * MIB,
                wrk_duration: "3s",
                concurrency: vec![16],
                drain_packages: 60,
                pairs_per_ratio: 1,
            }
        } else {
            Plan {
                quick,
                assembly_files: (8, 64 * MIB),
                match_runs: 21,
                upload_sizes: vec![64 * MIB, 512 * MIB],
                big_embedded: 1024 * MIB,
                wrk_duration: "10s",
                concurrency: vec![1, 16, 64],
                drain_packages: 200,
                // On a shared box one pair's ratio moves by a tenth from run to run.
                pairs_per_ratio: 3,
            }
        }
    }
}

fn seconds(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / MIB as f64)
}

fn run(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_default();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| format!("{:.1} GiB", kb as f64 / 1024.0 / 1024.0))
        .unwrap_or_default();
    let disk_free = run("sh", &["-c", "df -h --output=avail /tmp | tail -1"]);
    format!(
        "- CPU: {model} ({cores} cores)\n- Memory: {memory}\n- Kernel: {}\n- Free disk under /tmp: {disk_free}\n",
        run("uname", &["-sr"])
    )
}

/// Reading the file once through SHA-1 and SHA-256: the hashing floor.
fn hash_floor(path: &Path) -> Duration {
    use std::io::Read;
    let started = Instant::now();
    let mut file = std::fs::File::open(path).unwrap();
    let (mut a, mut b) = (sha1::Sha1::new(), sha2::Sha256::new());
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        a.update(&buf[..n]);
        b.update(&buf[..n]);
    }
    let _ = (a.finalize(), b.finalize());
    started.elapsed()
}

/// A plain single PUT of the file to the same S3 server, then a plain GET of it (curl,
/// SigV4, streamed): the least a store-then-read pipeline moves through that server.
fn s3_put_get_floor(svc: &Service, path: &Path) -> (Duration, Duration) {
    let s3 = svc.s3.as_ref().unwrap();
    let url = format!(
        "{}/{}/floor-{}",
        s3.endpoint.as_deref().unwrap(),
        s3.bucket,
        uuid::Uuid::new_v4()
    );
    let user = format!(
        "{}:{}",
        s3.access_key.as_deref().unwrap(),
        s3.secret_key.as_deref().unwrap()
    );
    let curl = |args: &[&str]| {
        let started = Instant::now();
        let status = Command::new("curl")
            .args([
                "-sS",
                "-f",
                "-o",
                "/dev/null",
                "--aws-sigv4",
                &format!("aws:amz:{}:s3", s3.region),
                "--user",
                &user,
                // Streamed as is: the body is not hashed for the signature.
                "-H",
                "x-amz-content-sha256: UNSIGNED-PAYLOAD",
            ])
            .args(args)
            .arg(&url)
            .status()
            .unwrap();
        assert!(status.success(), "curl {args:?} {url} failed");
        started.elapsed()
    };
    let put = curl(&["-T", path.to_str().unwrap()]);
    let get = curl(&[]);
    let _ = curl(&["-X", "DELETE"]);
    (put, get)
}

/// Writes back every dirty page of the machine, so that a measurement starts on a quiet
/// disk.
fn sync_disks() {
    let status = std::process::Command::new("sync").status().unwrap();
    assert!(status.success(), "sync failed");
}

/// A copy on the same disk: the floor of the local blobstore.
fn disk_copy_floor(svc: &Service, path: &Path) -> Duration {
    let target = svc.dir.path().join("floor-copy");
    let started = Instant::now();
    std::fs::copy(path, &target).unwrap();
    std::fs::File::open(&target).unwrap().sync_all().unwrap();
    let elapsed = started.elapsed();
    let _ = std::fs::remove_file(&target);
    elapsed
}

fn options(mode: Mode, workers: usize) -> Options {
    Options {
        mode: Some(mode),
        workers,
        ..Options::default()
    }
    .with(
        "log.level",
        if std::env::var_os("PACKAGES_BENCH_PHASES").is_some() {
            "info"
        } else {
            "warn"
        },
    )
    .with("packages.max_package_size", 4u64 << 30)
    .with("upload.max_body_bytes", 4u64 << 30)
}

struct UploadRun {
    to_ready: Duration,
    rss: Vec<(String, u64)>,
}

async fn upload_to_ready(
    mode: Mode,
    s3: Option<S3Server>,
    (pool, ingest): (Pool, Ingest),
    path: &Path,
    sha1: &str,
) -> (UploadRun, Service) {
    let mut options = Options {
        s3_server: s3,
        ..options(mode, 1)
    };
    if pool == Pool::TakesNothing {
        let size = std::fs::metadata(path).unwrap().len();
        options = options.with("resource_pool.maximum_size", size / 2);
    }
    // The front proxy's directory: outside the service's own scratch, which holds the
    // blobstore.
    let proxy_root = tempfile::tempdir().unwrap();
    if ingest == Ingest::ProxyFile {
        options = options
            .with("upload.bits_path_root", proxy_root.path().display())
            .with("upload.proxy_secret", PROXY_SECRET);
    }
    let svc = Service::start_with(options).await;
    let ctx = svc.ctx().await;
    let guid = svc.new_package(&ctx.app).await;
    let stored = proxy_root.path().join("upload");
    if ingest == Ingest::ProxyFile {
        // What the proxy wrote before it called the API: not part of the time.
        std::fs::copy(path, &stored).unwrap();
        sync_disks();
    }
    let started = Instant::now();
    let r = match ingest {
        Ingest::Form => svc.upload_file(&guid, &svc.admin(), path).await,
        Ingest::ProxyFile => {
            svc.upload_proxy_file(&guid, &svc.admin(), PROXY_SECRET, &stored)
                .await
        }
        Ingest::Direct => direct_upload(&svc, &guid, path).await,
    };
    assert_eq!(r.status, 200, "{}", r.text());
    if std::env::var_os("PACKAGES_BENCH_PHASES").is_some() {
        eprintln!(
            "upload answered after {:.2} s",
            started.elapsed().as_secs_f64()
        );
    }
    loop {
        let p = svc.package(&guid).await;
        if p["state"] != "PROCESSING_UPLOAD" {
            assert_eq!(p["state"], "READY", "{p}");
            assert_eq!(p["data"]["hash"]["value"], sha1);
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let to_ready = started.elapsed();
    // The job goes on after READY (it syncs the pool's files): the floor is measured
    // once it is done, on a quiet disk.
    loop {
        let metrics = svc.metrics().await;
        let done = metric(
            &metrics,
            "jobs_total",
            &[("kind", "process_upload"), ("outcome", "succeeded")],
        );
        if done >= 1.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let rss = match mode {
        Mode::Embedded => vec![("packages".to_owned(), peak_rss(svc.api_pid()))],
        Mode::Stack => {
            let mut rss = vec![("packages-api".to_owned(), peak_rss(svc.api_pid()))];
            rss.extend(
                svc.worker_pids()
                    .into_iter()
                    .map(|pid| ("packages-worker".to_owned(), peak_rss(pid))),
            );
            rss
        }
    };
    (UploadRun { to_ready, rss }, svc)
}

/// Whether the resource pool takes the zip's one file, as it does by default (the file
/// is no larger than `resource_pool.maximum_size`): the spec has it written to the pool
/// before READY, a second write of the same bytes that the floor does not count.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Pool {
    TakesTheFile,
    TakesNothing,
}

/// How the bits reach the API: streamed in a multipart form (the length of the bits part
/// is not known until it ends, so the API stores it in parts), or stored by the front
/// proxy, whose file the API streams to the store knowing its length, or PUT by the
/// client to a direct-upload link (on the stack, the S3 server itself).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ingest {
    Form,
    ProxyFile,
    Direct,
}

const PROXY_SECRET: &str = "the-benchmark-front-proxy";

/// Upload→READY of an incompressible zip next to the floor measured on the same file.
async fn upload_pipeline(plan: &Plan, scratch: &Path, report: &mut String, embedded_only: bool) {
    writeln!(report, "## Upload pipeline\n").unwrap();
    writeln!(report, "Time from the start of the upload request to READY, for an incompressible zip, next to the floor measured on the same file. Stack: one plain PUT plus one plain GET of the same bytes on the same S3 server (the API must store the bits and the worker must read them). Embedded default: one copy on the same disk (with fsync) plus one read through SHA-1 + SHA-256. Ratio = upload→READY / floor. The zip holds one file, which the resource pool takes by default: the spec has it written to the pool before READY, a second write of the same bytes that the floor does not count. The \"no pool write\" rows change one setting, `resource_pool.maximum_size`, set below the file's size: the pool takes nothing, and the pipeline alone is measured. The \"proxy's file\" rows (stack) post the form a front proxy sends once it has stored the bits (Cloud Controller's nginx does this), naming the file by `bits_path`: its length is known, so the API stores it in one streamed PUT; of the form's bits part only a lower bound is known (the request's length less what may follow the bits), so the API streams that much as the first part of a multipart upload and the rest in buffered parts. The \"direct\" rows time a direct upload from the link's request (the client PUTs the file to the S3 server, then completes).\n").unwrap();
    writeln!(
        report,
        "| backend | size | upload→READY | floor | floor parts | ratio | peak RSS |"
    )
    .unwrap();
    writeln!(report, "| --- | --- | --- | --- | --- | --- | --- |").unwrap();
    for &size in &plan.upload_sizes {
        let path = scratch.join(format!("upload-{}.zip", size / MIB));
        let floor_path = scratch.join(format!("floor-{}.zip", size / MIB));
        let mut runs = Vec::new();
        if !embedded_only {
            runs.push(("stack (s3s-fs)", Mode::Stack, None));
            if let Some(garage) = second_s3_server() {
                runs.push(("stack (garage)", Mode::Stack, Some(garage)));
            }
        }
        runs.push(("embedded", Mode::Embedded, None));
        let runs = runs.into_iter().flat_map(|(backend, mode, s3)| {
            let mut runs = vec![
                (
                    backend.to_owned(),
                    mode,
                    s3.clone(),
                    (Pool::TakesTheFile, Ingest::Form),
                ),
                (
                    format!("{backend}, no pool write"),
                    mode,
                    s3.clone(),
                    (Pool::TakesNothing, Ingest::Form),
                ),
            ];
            if mode == Mode::Stack {
                for (how, ingest) in [
                    ("proxy's file", Ingest::ProxyFile),
                    ("direct", Ingest::Direct),
                ] {
                    runs.push((
                        format!("{backend}, no pool write, {how}"),
                        mode,
                        s3.clone(),
                        (Pool::TakesNothing, ingest),
                    ));
                }
            }
            runs
        });
        // `PACKAGES_BENCH_ROWS=garage` keeps the rows whose backend names it: a quicker
        // loop when one change is measured against one server.
        let rows = std::env::var("PACKAGES_BENCH_ROWS").unwrap_or_default();
        for (backend, mode, s3, pool) in runs.filter(|(backend, ..)| backend.contains(&rows)) {
            // What earlier runs left for the kernel to write back (the S3 server does not
            // sync) would otherwise slow this run's disk.
            //
            // Every upload and every floor gets bytes no server has seen: garage keeps
            // each block once, so a PUT of blocks it already holds stores nothing, and a
            // floor measured on the bits just uploaded (or an upload of an earlier row's)
            // would be a PUT that writes nothing.
            let sha1 = zips::write_large_zip(&path, size);
            sync_disks();
            let (result, svc) = upload_to_ready(mode, s3, pool, &path, &sha1).await;
            let _ = std::fs::remove_file(&path);
            zips::write_large_zip(&floor_path, size);
            sync_disks();
            let path = &floor_path;
            let (floor, parts) = match mode {
                Mode::Stack => {
                    let (put, get) = s3_put_get_floor(&svc, path);
                    (
                        put + get,
                        format!("PUT {} + GET {}", seconds(put), seconds(get)),
                    )
                }
                Mode::Embedded => {
                    let copy = disk_copy_floor(&svc, path);
                    let hash = hash_floor(path);
                    (
                        copy + hash,
                        format!("copy {} + hash {}", seconds(copy), seconds(hash)),
                    )
                }
            };
            let ratio = result.to_ready.as_secs_f64() / floor.as_secs_f64();
            let rss: Vec<String> = result
                .rss
                .iter()
                .map(|(who, bytes)| format!("{who} {}", mib(*bytes)))
                .collect();
            let line = format!(
                "| {backend} | {} | {} | {} | {parts} | {ratio:.2} | {} |",
                mib(size),
                seconds(result.to_ready),
                seconds(floor),
                rss.join(", ")
            );
            println!("{line}");
            if std::env::var_os("PACKAGES_BENCH_PHASES").is_some() {
                println!("{}", phases(&svc));
            }
            writeln!(report, "{line}").unwrap();
            drop(svc);
        }
        let _ = std::fs::remove_file(&floor_path);
    }
}

/// The second S3 server `scripts/bench.sh` started (garage), if it did.
fn second_s3_server() -> Option<S3Server> {
    Some(S3Server {
        endpoint: std::env::var("PACKAGES_BENCH_GARAGE_ENDPOINT").ok()?,
        region: std::env::var("PACKAGES_BENCH_GARAGE_REGION").ok()?,
        access_key: std::env::var("PACKAGES_BENCH_GARAGE_ACCESS_KEY").ok()?,
        secret_key: std::env::var("PACKAGES_BENCH_GARAGE_SECRET_KEY").ok()?,
    })
}

/// The worker's log lines that mark the phases of a job, for `PACKAGES_BENCH_PHASES=1`.
fn phases(svc: &Service) -> String {
    const MARKS: [&str; 8] = [
        "job received",
        "zip checked",
        "bits hashed",
        "bits renamed",
        "pool candidates hashed",
        "resource pool filled",
        "package READY",
        "job done",
    ];
    let logs = svc.api_log() + &svc.worker_logs();
    logs.lines()
        .filter(|line| MARKS.iter().any(|mark| line.contains(mark)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// CPU seconds (user + system) a process has used so far.
fn process_cpu(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name may hold spaces; the fields after it start at field 3.
    let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<u64> = rest
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    // utime and stime are fields 14 and 15 of the line.
    let ticks = fields.get(11).copied().unwrap_or(0) + fields.get(12).copied().unwrap_or(0);
    let per_second: f64 = run("getconf", &["CLK_TCK"]).trim().parse().unwrap_or(100.0);
    ticks as f64 / per_second
}

/// A direct upload: a link, the file PUT to it, and the completion's reply.
async fn direct_upload(svc: &Service, guid: &str, path: &Path) -> packages_tests::Reply {
    let admin = svc.admin();
    let r = svc
        .post(
            &format!("/v3/packages/{guid}/direct_uploads"),
            &admin,
            &serde_json::json!({}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let link = r.json();
    let file = tokio::fs::File::open(path).await.unwrap();
    let len = file.metadata().await.unwrap().len();
    let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::with_capacity(
        file,
        256 * 1024,
    ));
    let put = svc
        .http
        .put(link["links"]["upload"]["href"].as_str().unwrap())
        .header(reqwest::header::CONTENT_LENGTH, len)
        .body(body)
        .send()
        .await
        .unwrap();
    assert!(put.status().is_success(), "{}", put.status());
    svc.send(
        svc.http
            .post(link["links"]["complete"]["href"].as_str().unwrap())
            .bearer_auth(&admin),
    )
    .await
}

/// A direct upload from link to READY: the time, and the API process's CPU seconds in
/// that span (on the stack, the bytes go to S3 and the job runs in the worker).
async fn direct_upload_to_ready(mode: Mode, path: &Path, sha1: &str) -> (Duration, f64) {
    let svc = Service::start_with(options(mode, 1)).await;
    let ctx = svc.ctx().await;
    let guid = svc.new_package(&ctx.app).await;
    let api_cpu = process_cpu(svc.api_pid());
    let started = Instant::now();
    let r = direct_upload(&svc, &guid, path).await;
    assert_eq!(r.status, 200, "{}", r.text());
    wait_ready(&svc, &guid).await;
    let to_ready = started.elapsed();
    assert_eq!(svc.package(&guid).await["data"]["hash"]["value"], sha1);
    (to_ready, process_cpu(svc.api_pid()) - api_cpu)
}

struct WrkResult {
    rps: f64,
    p50: String,
    p99: String,
    errors: u64,
}

fn wrk(
    url: &str,
    token: &str,
    connections: u32,
    duration: &str,
    script: Option<&Path>,
) -> WrkResult {
    let threads = connections.clamp(1, 2).to_string();
    let connections = connections.to_string();
    let auth = format!("Authorization: bearer {token}");
    let mut args = vec![
        "-t",
        &threads,
        "-c",
        &connections,
        "-d",
        duration,
        "--latency",
        "-H",
        &auth,
    ];
    let script_path;
    if let Some(script) = script {
        script_path = script.display().to_string();
        args.extend(["-s", &script_path]);
    }
    args.push(url);
    let out = Command::new("wrk")
        .args(&args)
        .output()
        .expect("wrk is installed by scripts/bench.sh");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let rps = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0);
    let percentile = |p: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(p))
            .map(|v| v.trim().to_owned())
            .unwrap_or_else(|| "?".to_owned())
    };
    let non_2xx: u64 = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Non-2xx or 3xx responses:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let socket: u64 = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Socket errors:"))
        .map(|v| {
            v.split(',')
                .filter_map(|part| part.split_whitespace().last()?.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0);
    WrkResult {
        rps,
        p50: percentile("50%"),
        p99: percentile("99%"),
        errors: non_2xx + socket,
    }
}

/// Busy share of all cores between two readings of /proc/stat.
fn cpu_busy(before: &(u64, u64), after: &(u64, u64)) -> f64 {
    let total = after.0.saturating_sub(before.0) as f64;
    let idle = after.1.saturating_sub(before.1) as f64;
    if total == 0.0 {
        0.0
    } else {
        1.0 - idle / total
    }
}

fn cpu_times() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let fields: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let total = fields.iter().sum();
    let idle = fields.get(3).copied().unwrap_or(0) + fields.get(4).copied().unwrap_or(0);
    (total, idle)
}

/// Jobs per second (and CPU busy) of `workers` workers, started together, draining
/// `count` small packages uploaded while none ran, each worker running `concurrency`
/// jobs at once (`None`: the default, one per core).
async fn drain(workers: usize, count: usize, concurrency: Option<usize>) -> (f64, f64) {
    let mut options = Options {
        mode: Some(Mode::Stack),
        defer_start: true,
        ..Options::default()
    }
    .with("log.level", "warn")
    .with("packages.max_valid_packages_stored", 100_000);
    if let Some(concurrency) = concurrency {
        options = options.with("worker.concurrency", concurrency);
    }
    let mut svc = Service::start_with(options).await;
    svc.start_api(&[]).await;
    let ctx = svc.ctx().await;
    let admin = svc.admin();
    let mut guids = Vec::with_capacity(count);
    for i in 0..count {
        let guid = svc.new_package(&ctx.app).await;
        let r = svc
            .upload(&guid, &admin, zips::small_app(&format!("drain {i}")))
            .await;
        assert_eq!(r.status, 200);
        guids.push(guid);
    }
    let spawned = Instant::now();
    for _ in 0..workers {
        svc.spawn_worker(&[]);
    }
    // The rate from the first package READY to the last: a process's start (its
    // connections, the broker's first deliveries) is not a job, and with it in the
    // measurement two workers were measured against one with a start of their own.
    // Jobs that ended beside the first one (others were in flight) are not counted in
    // the rate, or more workers, holding more jobs in flight, would gain from them.
    let mut first: Option<(Instant, (u64, u64), usize)> = None;
    for guid in &guids {
        loop {
            let p = svc.package(guid).await;
            if p["state"] == "READY" {
                break;
            }
            assert_ne!(p["state"], "FAILED", "{p}");
            assert!(
                spawned.elapsed() < Duration::from_secs(300),
                "not drained after 300 s\n{}",
                svc.logs()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if first.is_none() {
            let (at, cpu) = (Instant::now(), cpu_times());
            let ready = svc
                .get("/v3/packages?states=READY&per_page=1", &admin)
                .await
                .json()["pagination"]["total_results"]
                .as_u64()
                .expect("a list's total");
            first = Some((at, cpu, usize::try_from(ready).expect("a count")));
        }
    }
    let (started, cpu_before, ready_then) = first.expect("at least one package");
    let elapsed = started.elapsed().as_secs_f64();
    (
        (count - ready_then) as f64 / elapsed,
        cpu_busy(&cpu_before, &cpu_times()),
    )
}

/// A service for the API measurements: warnings only in its logs, and links with a fixed
/// origin, so the bodies measured do not depend on the request's host.
async fn quiet_service(mode: Mode) -> Service {
    Service::start_with(
        Options {
            mode: Some(mode),
            ..Options::default()
        }
        .with("log.level", "warn")
        .with("server.external_url", "http://127.0.0.1"),
    )
    .await
}

/// Requests per second of `GET /v3/packages/:guid` and of `/healthz` on one embedded
/// process, back to back (`wrk -t2 -c16`), `pairs` times.
async fn embedded_get_and_healthz(plan: &Plan, pairs: usize) -> Vec<(f64, f64)> {
    let embedded = quiet_service(Mode::Embedded).await;
    let ctx = embedded.ctx().await;
    let guid = embedded.new_package(&ctx.app).await;
    let admin = embedded.admin();
    let rps = |path: &str| {
        wrk(
            &format!("{}{path}", embedded.base),
            &admin,
            16,
            plan.wrk_duration,
            None,
        )
        .rps
    };
    (0..pairs)
        .map(|_| {
            let healthz = rps("/healthz");
            (rps(&format!("/v3/packages/{guid}")), healthz)
        })
        .collect()
}

/// Vacuums and analyses the stack's database and writes a checkpoint, so that no
/// background work of earlier writes lands in a measurement.
fn settle_database(stack: &Service) {
    let db = stack.database_url().expect("the stack has a database");
    let out = Command::new("psql")
        .args([
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            "VACUUM ANALYZE",
            "-c",
            "CHECKPOINT",
        ])
        .arg(&db)
        .output()
        .expect("psql comes with PostgreSQL");
    assert!(
        out.status.success(),
        "psql: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A rate over its ceiling (or over the rate it is compared with).
fn rate_ratio(&(rate, ceiling): &(f64, f64)) -> f64 {
    rate / ceiling
}

/// The pair of median `ratio`, and each pair's ratio in the order measured.
fn median_pair<T: Copy>(pairs: &[T], ratio: impl Fn(&T) -> f64) -> (T, String) {
    let mut sorted = pairs.to_vec();
    sorted.sort_by(|a, b| ratio(a).total_cmp(&ratio(b)));
    let ratios = pairs
        .iter()
        .map(|p| format!("{:.2}", ratio(p)))
        .collect::<Vec<_>>()
        .join(", ");
    (sorted[sorted.len() / 2], ratios)
}

/// Requests per second of `GET /v3/packages/:guid` on the stack, and transactions per
/// second of PostgreSQL serving the statement that GET runs (pgbench, prepared, `-c16
/// -j2`), back to back.
fn stack_get_and_pgbench(plan: &Plan, stack: &Service, guid: &str, scratch: &Path) -> (f64, f64) {
    // The statement the API runs for a GET (`find_with_space_and_metadata`): the package
    // joined with its app's space, its labels and annotations aggregated.
    let db = stack.database_url().expect("the stack has a database");
    let sql = scratch.join("get.sql");
    let aggregated = |table: &str| {
        format!(
            "(SELECT COALESCE(json_agg(json_build_array(key_prefix, key_name, value)), '[]')::text FROM {table} WHERE package_guid = packages.guid)"
        )
    };
    std::fs::write(
        &sql,
        format!(
            "SELECT packages.guid, packages.app_guid, packages.type, packages.state, packages.package_hash, packages.sha256_checksum, packages.error, packages.url, packages.created_at, packages.updated_at, packages.docker_username, packages.docker_password, apps.space_guid, {}, {} FROM packages INNER JOIN apps ON apps.guid = packages.app_guid WHERE packages.guid = '{guid}';\n",
            aggregated("package_labels"),
            aggregated("package_annotations"),
        ),
    )
    .unwrap();
    let seconds = plan.wrk_seconds();
    let get = wrk(
        &format!("{}/v3/packages/{guid}", stack.base),
        &stack.admin(),
        16,
        plan.wrk_duration,
        None,
    );
    let out = Command::new("pgbench")
        .args([
            "-n", "-M", "prepared", "-c", "16", "-j", "2", "-T", seconds, "-f",
        ])
        .arg(&sql)
        .arg(&db)
        .output()
        .expect("pgbench comes with PostgreSQL");
    let text = String::from_utf8_lossy(&out.stdout);
    let tps: f64 = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("tps = "))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("pgbench: {text}{}", String::from_utf8_lossy(&out.stderr)));
    (get.rps, tps)
}

/// `GET /v3/packages/:guid` next to what bounds it, each pair measured back to back with
/// `wrk -t2 -c16`: the same process's `/healthz` (embedded default) and PostgreSQL
/// serving the same row query itself (pgbench, prepared, `-c16 -j2`, stack); and a list
/// page of 50 next to a single GET (stack, from the table above).
async fn reads_against_ceilings(
    plan: &Plan,
    stack: &Service,
    stack_guid: &str,
    at_16: &[f64],
    scratch: &Path,
    report: &mut String,
) {
    writeln!(report, "\n## Reads against their ceilings\n").unwrap();
    writeln!(
        report,
        "Each pair measured back to back, `wrk -t2 -c16` ({}), admin token. The GETs: {} pairs one after the other, the pair of median ratio shown, every pair's ratio in brackets in the order measured (on a box shared with the load generator and the database, one pair's ratio moves by a tenth from run to run).\n",
        plan.wrk_duration, plan.pairs_per_ratio
    )
    .unwrap();
    writeln!(
        report,
        "| read | requests/s | ceiling | ceiling/s | ratio | target |"
    )
    .unwrap();
    writeln!(report, "| --- | --- | --- | --- | --- | --- |").unwrap();

    let ((get, healthz), ratios) = median_pair(
        &embedded_get_and_healthz(plan, plan.pairs_per_ratio).await,
        rate_ratio,
    );
    let line = format!(
        "| `GET /v3/packages/:guid`, embedded | {get:.0} | `/healthz` of the same process | {healthz:.0} | {:.2} ({ratios}) | ≥ 0.40 |",
        get / healthz
    );
    println!("{line}");
    writeln!(report, "{line}").unwrap();

    // The creates above left the database tens of thousands of new rows: their vacuum,
    // statistics and checkpoint are done now rather than during some of the pairs.
    settle_database(stack);
    let pairs: Vec<(f64, f64)> = (0..plan.pairs_per_ratio)
        .map(|_| stack_get_and_pgbench(plan, stack, stack_guid, scratch))
        .collect();
    let ((get, tps), ratios) = median_pair(&pairs, rate_ratio);
    let line = format!(
        "| `GET /v3/packages/:guid`, stack | {get:.0} | pgbench, the same statement, prepared, `-c16 -j2` | {tps:.0} | {:.2} ({ratios}) | ≥ 0.50 |",
        get / tps
    );
    println!("{line}");
    writeln!(report, "{line}").unwrap();
    if let [single, list, ..] = at_16 {
        let line = format!(
            "| `GET /v3/packages?per_page=50`, stack | {list:.0} | a single `GET /v3/packages/:guid` (table above, 16 connections) | {single:.0} | {:.2} | ≥ 0.25 |",
            list / single
        );
        println!("{line}");
        writeln!(report, "{line}").unwrap();
    }
}

/// Small packages queued with no worker, then drained by one worker and by two.
/// Jobs/s of one and two workers: with the default concurrency (one job per core), and
/// with `worker.concurrency` raised for small packages.
async fn scale_out(plan: &Plan, report: &mut String) {
    writeln!(report, "\n## Scale-out\n").unwrap();
    writeln!(
        report,
        "{} small packages queued with no worker running, then drained by workers started together; jobs/s and CPU from the first package READY to the last (the processes' start left out). A drain lasts seconds, so one pair's ratio moves by a tenth or more from run to run: {} pairs (one worker, then two) one after the other for each setting, the pair of median ratio shown, every pair's ratio in brackets in the order measured:\n",
        plan.drain_packages, plan.pairs_per_ratio
    )
    .unwrap();
    writeln!(
        report,
        "| `worker.concurrency` | workers | jobs/s | CPU busy (all cores) | 2 workers / 1 |"
    )
    .unwrap();
    writeln!(report, "| --- | --- | --- | --- | --- |").unwrap();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let default = format!("default (one per core: {cores})");
    for (label, concurrency) in [(default.as_str(), None), ("16", Some(RAISED_CONCURRENCY))] {
        let mut pairs = Vec::with_capacity(plan.pairs_per_ratio);
        for _ in 0..plan.pairs_per_ratio {
            let one = drain(1, plan.drain_packages, concurrency).await;
            let two = drain(2, plan.drain_packages, concurrency).await;
            pairs.push((two, one));
        }
        let (((two, cpu_two), (one, cpu_one)), ratios) =
            median_pair(&pairs, |(two, one)| two.0 / one.0);
        let speedup = two / one;
        writeln!(
            report,
            "| {label} | 1 | {one:.1} | {:.0} % | |",
            cpu_one * 100.0
        )
        .unwrap();
        writeln!(
            report,
            "| {label} | 2 | {two:.1} | {:.0} % | {speedup:.2}× ({ratios}) |",
            cpu_two * 100.0
        )
        .unwrap();
        println!(
            "scale-out, concurrency {label}: 1 worker {one:.1} jobs/s ({:.0} % CPU), 2 workers {two:.1} jobs/s ({:.0} % CPU), {speedup:.2}x ({ratios})",
            cpu_one * 100.0,
            cpu_two * 100.0
        );
    }
}

/// The `worker.concurrency` the scale-out section also measures.
const RAISED_CONCURRENCY: usize = 16;

/// Polls a package until it leaves PROCESSING_UPLOAD; it must end READY.
async fn wait_ready(svc: &Service, guid: &str) {
    loop {
        let p = svc.package(guid).await;
        if p["state"] != "PROCESSING_UPLOAD" {
            assert_eq!(p["state"], "READY", "{p}");
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn fingerprints(files: &[zips::WrittenFile]) -> serde_json::Value {
    files
        .iter()
        .map(|f| {
            serde_json::json!({
                "checksum": {"value": f.sha1},
                "size_in_bytes": f.size,
                "path": format!("pooled/{}", f.name),
                "mode": "644",
            })
        })
        .collect()
}

/// GA resource matching: the time to match 5,000 fingerprints against a pool holding
/// them (embedded), and the memory of assembling a package from pool files.
async fn resource_matching(plan: &Plan, scratch: &Path, report: &mut String) {
    writeln!(report, "\n## Resource matching (GA)\n").unwrap();
    // 5,000 small files, pooled by a first upload (the pool takes any size here).
    let svc = Service::start_with(
        options(Mode::Embedded, 1)
            .with("resource_pool.minimum_size", 1)
            .with("resource_pool.maximum_size", 1 << 20),
    )
    .await;
    let ctx = svc.ctx().await;
    let path = scratch.join("many.zip");
    let files = zips::write_random_files_zip(&path, 5000, 256);
    let guid = svc.new_package(&ctx.app).await;
    let r = svc.upload_file(&guid, &svc.admin(), &path).await;
    assert_eq!(r.status, 200, "{}", r.text());
    wait_ready(&svc, &guid).await;
    let body = serde_json::json!({ "resources": fingerprints(&files) });
    let mut times = Vec::with_capacity(plan.match_runs);
    for _ in 0..plan.match_runs {
        let started = Instant::now();
        let r = svc.post("/v3/resource_matches", &svc.admin(), &body).await;
        times.push(started.elapsed());
        assert_eq!(r.status, 201, "{}", r.text());
        assert_eq!(r.json()["resources"].as_array().map(Vec::len), Some(5000));
    }
    times.sort();
    let median = times[times.len() / 2];
    let worst = times[times.len() - 1];
    let line = format!(
        "`POST /v3/resource_matches` with 5,000 fingerprints, all pooled (embedded, {} runs, measured by the client over HTTP): median {:.1} ms, slowest {:.1} ms.\n",
        plan.match_runs,
        median.as_secs_f64() * 1000.0,
        worst.as_secs_f64() * 1000.0
    );
    println!("{line}");
    writeln!(report, "{line}").unwrap();
    drop(svc);
    let _ = std::fs::remove_file(&path);

    // A package assembled from pool files: the pool is filled by a first package, the
    // processes restarted (so peak RSS is the assembly's alone), then a second package
    // uploads one small file and names the pooled ones.
    let (count, each) = plan.assembly_files;
    writeln!(report, "A package assembled from {count} pooled files of {} ({} in all) and one uploaded file; upload→READY and peak RSS (VmHWM) of each process since a restart before the assembly:\n", mib(each), mib(each * count as u64)).unwrap();
    writeln!(report, "| backend | upload→READY | peak RSS |").unwrap();
    writeln!(report, "| --- | --- | --- |").unwrap();
    let path = scratch.join("pooled.zip");
    let files = zips::write_random_files_zip(&path, count, each);
    for mode in [Mode::Stack, Mode::Embedded] {
        let mut svc = Service::start_with(options(mode, 1)).await;
        let ctx = svc.ctx().await;
        let first = svc.new_package(&ctx.app).await;
        let r = svc.upload_file(&first, &svc.admin(), &path).await;
        assert_eq!(r.status, 200, "{}", r.text());
        wait_ready(&svc, &first).await;
        svc.kill_api();
        svc.start_api(&[]).await;
        if mode == Mode::Stack {
            svc.kill_worker(0);
            svc.start_worker().await;
        }
        let second = svc.new_package(&ctx.app).await;
        let form = reqwest::multipart::Form::new()
            .text("resources", fingerprints(&files).to_string())
            .part(
                "bits",
                reqwest::multipart::Part::bytes(zips::small_app("assembled"))
                    .file_name("package.zip"),
            );
        let started = Instant::now();
        let r = svc
            .send(
                svc.http
                    .post(format!("{}/v3/packages/{second}/upload", svc.base))
                    .bearer_auth(svc.admin())
                    .multipart(form),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        wait_ready(&svc, &second).await;
        let to_ready = started.elapsed();
        let mut rss = vec![(
            match mode {
                Mode::Embedded => "packages",
                Mode::Stack => "packages-api",
            },
            peak_rss(svc.api_pid()),
        )];
        rss.extend(
            svc.worker_pids()
                .into_iter()
                .map(|pid| ("packages-worker", peak_rss(pid))),
        );
        let rss: Vec<String> = rss
            .iter()
            .map(|(who, bytes)| format!("{who} {}", mib(*bytes)))
            .collect();
        let backend = match mode {
            Mode::Stack => "stack",
            Mode::Embedded => "embedded",
        };
        let line = format!("| {backend} | {} | {} |", seconds(to_ready), rss.join(", "));
        println!("{line}");
        writeln!(report, "{line}").unwrap();
    }
    let _ = std::fs::remove_file(&path);
}

fn bin_dir() -> PathBuf {
    std::env::var("PACKAGES_TEST_BIN_DIR")
        .map(PathBuf::from)
        .expect("PACKAGES_TEST_BIN_DIR (scripts/bench.sh sets it)")
}

#[tokio::main]
async fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let plan = Plan::new(quick);
    let _ = bin_dir();
    if std::env::args().any(|a| a == "--scale-out-only") {
        // One section, printed only: for comparing a change without a full run.
        scale_out(&plan, &mut String::new()).await;
        return;
    }
    if std::env::args().any(|a| a == "--embedded-reads-only") {
        for (get, healthz) in embedded_get_and_healthz(&plan, 1).await {
            println!(
                "GET {get:.0}/s, /healthz {healthz:.0}/s: {:.2}",
                get / healthz
            );
        }
        return;
    }
    if std::env::args().any(|a| a == "--stack-reads-only") {
        let stack = quiet_service(Mode::Stack).await;
        let ctx = stack.ctx().await;
        let guid = stack.new_package(&ctx.app).await;
        // As many packages as the full run's API table has.
        for _ in 0..60 {
            stack.new_package(&ctx.app).await;
        }
        let scratch = tempfile::tempdir().unwrap();
        let cpu = process_cpu(stack.api_pid());
        let (get, tps) = stack_get_and_pgbench(&plan, &stack, &guid, scratch.path());
        // pgbench runs after the GETs and does not touch the API: the API's CPU time per
        // request, a second view of the same run beside the rates.
        let gets = get
            * plan
                .wrk_seconds()
                .parse::<f64>()
                .expect("a whole number of seconds");
        let api_cpu = process_cpu(stack.api_pid()) - cpu;
        println!(
            "GET {get:.0}/s, pgbench {tps:.0}/s: {:.2}; API CPU per GET {:.1} µs",
            get / tps,
            api_cpu * 1e6 / gets
        );
        // One connection: the latency of a single GET, with nothing queued beside it.
        let single = wrk(
            &format!("{}/v3/packages/{guid}", stack.base),
            &stack.admin(),
            1,
            plan.wrk_duration,
            None,
        );
        println!(
            "GET, 1 connection: {:.0}/s, p50 {}, p99 {}",
            single.rps, single.p50, single.p99
        );
        let list = wrk(
            &format!("{}/v3/packages?per_page=50", stack.base),
            &stack.admin(),
            16,
            plan.wrk_duration,
            None,
        );
        println!(
            "list of 50 {:.0}/s, GET {get:.0}/s: {:.2}",
            list.rps,
            list.rps / get
        );
        return;
    }
    if std::env::args().any(|a| a == "--uploads-only" || a == "--embedded-uploads-only") {
        let scratch = tempfile::tempdir().unwrap();
        let embedded_only = std::env::args().any(|a| a == "--embedded-uploads-only");
        upload_pipeline(&plan, scratch.path(), &mut String::new(), embedded_only).await;
        return;
    }
    let scratch = tempfile::tempdir().unwrap();
    let mut report = String::new();
    let command = if quick {
        "make bench-quick"
    } else {
        "make bench"
    };
    let commit = run("git", &["rev-parse", "--short", "HEAD"]);
    let dirty = if run("git", &["status", "--porcelain"]).is_empty() {
        ""
    } else {
        " (with local changes)"
    };
    writeln!(report, "# Benchmarks\n").unwrap();
    writeln!(
        report,
        "Measured by `{command}` on {}, commit `{commit}`{dirty}. Load generator (wrk), PostgreSQL, RabbitMQ, the S3 servers (s3s-fs; garage too in the full run's uploads) and the service share one machine; the service is the `production` build (release, optimised across crates).\n",
        run("date", &["-u", "+%Y-%m-%d %H:%M UTC"])
    )
    .unwrap();
    writeln!(report, "## Machine\n\n{}", machine()).unwrap();

    upload_pipeline(&plan, scratch.path(), &mut report, false).await;

    // Direct uploads.
    writeln!(report, "\n### Direct uploads\n").unwrap();
    writeln!(report, "The same zip through a direct-upload link: issue the link, PUT the file to it (the S3 server on the stack, the service's signed link on the embedded default), complete, READY. API CPU = CPU seconds of the API process from the link to READY (on the embedded default that process also runs the worker).\n").unwrap();
    writeln!(report, "| backend | size | link→READY | API CPU |").unwrap();
    writeln!(report, "| --- | --- | --- | --- |").unwrap();
    for &size in &plan.upload_sizes {
        let path = scratch.path().join(format!("direct-{}.zip", size / MIB));
        let sha1 = zips::write_large_zip(&path, size);
        for (mode, backend) in [(Mode::Stack, "stack"), (Mode::Embedded, "embedded")] {
            let (to_ready, api_cpu) = direct_upload_to_ready(mode, &path, &sha1).await;
            let line = format!(
                "| {backend} | {} | {} | {api_cpu:.2} s |",
                mib(size),
                seconds(to_ready)
            );
            println!("{line}");
            writeln!(report, "{line}").unwrap();
        }
        let _ = std::fs::remove_file(&path);
    }

    // Memory of `packages` for the largest embedded case.
    let path = scratch.path().join("big.zip");
    let sha1 = zips::write_large_zip(&path, plan.big_embedded);
    let (result, svc) = upload_to_ready(
        Mode::Embedded,
        None,
        (Pool::TakesTheFile, Ingest::Form),
        &path,
        &sha1,
    )
    .await;
    drop(svc);
    let _ = std::fs::remove_file(&path);
    let line = format!(
        "\nPeak RSS (VmHWM) of `packages` from the start of a {} upload to READY: {} (upload→READY {}).\n",
        mib(plan.big_embedded),
        mib(result.rss[0].1),
        seconds(result.to_ready)
    );
    println!("{line}");
    writeln!(report, "{line}").unwrap();

    // API.
    writeln!(report, "## API (stack: PostgreSQL)\n").unwrap();
    writeln!(
        report,
        "wrk on the same machine, {} per run, admin token.\n",
        plan.wrk_duration
    )
    .unwrap();
    writeln!(
        report,
        "| request | connections | requests/s | p50 | p99 | errors |"
    )
    .unwrap();
    writeln!(report, "| --- | --- | --- | --- | --- | --- |").unwrap();
    let svc = quiet_service(Mode::Stack).await;
    let ctx = svc.ctx().await;
    let admin = svc.admin();
    let guid = svc.new_package(&ctx.app).await;
    for _ in 0..60 {
        svc.new_package(&ctx.app).await;
    }
    let script = scratch.path().join("create.lua");
    std::fs::write(&script, "wrk.method = \"POST\"\nwrk.body = '{\"type\":\"bits\"}'\nwrk.headers[\"Content-Type\"] = \"application/json\"\n").unwrap();
    let cases: Vec<(String, String, Option<&Path>)> = vec![
        (
            "`GET /v3/packages/:guid`".into(),
            format!("{}/v3/packages/{guid}", svc.base),
            None,
        ),
        (
            "`GET /v3/packages?per_page=50`".into(),
            format!("{}/v3/packages?per_page=50", svc.base),
            None,
        ),
        (
            "`POST /v3/apps/:guid/packages`".into(),
            format!("{}/v3/apps/{}/packages", svc.base, ctx.app),
            Some(script.as_path()),
        ),
    ];
    let mut at_16 = Vec::new();
    for (name, url, script) in &cases {
        for &c in &plan.concurrency {
            let r = wrk(url, &admin, c, plan.wrk_duration, *script);
            let line = format!(
                "| {name} | {c} | {:.0} | {} | {} | {} |",
                r.rps, r.p50, r.p99, r.errors
            );
            println!("{line}");
            writeln!(report, "{line}").unwrap();
            if c == 16 {
                at_16.push(r.rps);
            }
        }
    }
    reads_against_ceilings(&plan, &svc, &guid, &at_16, scratch.path(), &mut report).await;
    drop(svc);

    resource_matching(&plan, scratch.path(), &mut report).await;

    scale_out(&plan, &mut report).await;

    if !plan.quick {
        let notes = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/bench-notes.md");
        if let Ok(text) = std::fs::read_to_string(notes) {
            writeln!(report, "\n{text}").unwrap();
        }
    }
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join(if plan.quick {
        "../target/BENCHMARKS-quick.md"
    } else {
        "../BENCHMARKS.md"
    });
    std::fs::write(&out, &report).unwrap();
    println!("\nwritten to {}", out.display());
}
