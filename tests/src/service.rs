//! Starts the real binaries on random ports in a temporary directory, on the backend the
//! run asks for (`PACKAGES_TEST_BACKEND`):
//!
//! * `embedded` (default): one `packages` process on SQLite, local blobs, in-process queue;
//! * `stack`: `packages-api` plus worker processes on a fresh PostgreSQL database, a fresh
//!   S3 bucket and a unique RabbitMQ prefix.
//!
//! Everything a run creates is removed when the [`Service`] is dropped.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use diesel::Connection;
use diesel::connection::SimpleConnection;

use crate::proxy::Proxy;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Embedded,
    Stack,
}

pub fn mode() -> Mode {
    match std::env::var("PACKAGES_TEST_BACKEND").as_deref() {
        Ok("stack") => Mode::Stack,
        Ok("embedded") | Err(_) => Mode::Embedded,
        Ok(other) => panic!("PACKAGES_TEST_BACKEND must be embedded or stack, not {other}"),
    }
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

fn required_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: the stack tests need the S3 server that `make test` starts")
    })
}

/// Directory of the binaries under test (next to this test executable's `deps/`).
fn bin_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("PACKAGES_TEST_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().unwrap();
    exe.parent().and_then(Path::parent).unwrap().to_path_buf()
}

/// A port free now. It is released before the process under test binds it, so another
/// process may take it first; the harness then starts the process again on another
/// (see `Service::wait_ready`).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// How to start a service.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Worker processes (stack mode); the embedded default runs its worker in process.
    pub workers: usize,
    /// Configuration keys for every process, e.g. `("upload.max_body_bytes", "1000")`.
    pub settings: Vec<(String, String)>,
    /// Extra environment for the API process only (e.g. `FAILPOINTS`).
    pub api_env: Vec<(String, String)>,
    /// Extra environment for worker processes (and the embedded process).
    pub worker_env: Vec<(String, String)>,
    /// Reach RabbitMQ through a proxy the test can cut (stack).
    pub broker_proxy: bool,
    /// Reach PostgreSQL through a proxy the test can cut (stack).
    pub database_proxy: bool,
    /// Workers reach the blobstore through a proxy the test can cut (stack).
    pub worker_blobstore_proxy: bool,
    /// Do not start the API (and, embedded, the whole process) right away.
    pub defer_start: bool,
    /// The backend to run on, instead of `PACKAGES_TEST_BACKEND` (benchmarks run both).
    pub mode: Option<Mode>,
    /// Configuration keys the harness would set that this run leaves unset.
    pub unset: Vec<String>,
    /// The S3 server to use instead of the one `PACKAGES_TEST_S3_*` names (stack): the
    /// benchmark runs on a second server too.
    pub s3_server: Option<S3Server>,
}

/// Where an S3 server listens and how to sign for it.
#[derive(Debug, Clone)]
pub struct S3Server {
    pub endpoint: String,
    pub region: String,
    pub access_key: String,
    pub secret_key: String,
}

impl S3Server {
    /// The server `make test` started, as `PACKAGES_TEST_S3_*` names it.
    pub fn from_env() -> S3Server {
        S3Server {
            endpoint: required_env("PACKAGES_TEST_S3_ENDPOINT"),
            region: env_or("PACKAGES_TEST_S3_REGION", "us-east-1"),
            access_key: required_env("PACKAGES_TEST_S3_ACCESS_KEY"),
            secret_key: required_env("PACKAGES_TEST_S3_SECRET_KEY"),
        }
    }
}

impl Options {
    pub fn with(mut self, key: &str, value: impl ToString) -> Self {
        self.settings.push((key.to_owned(), value.to_string()));
        self
    }

    /// Leaves `key` unset even where the harness sets it for every run (e.g.
    /// `packages.encryption_key` on the stack).
    pub fn without(mut self, key: &str) -> Self {
        self.unset.push(env_key(key));
        self
    }
}

struct Process {
    child: Child,
    log: PathBuf,
    /// Where this process's lines begin in `log` (a restarted API appends to the same).
    log_from: u64,
    /// Port of its ops endpoints (workers).
    port: u16,
}

/// Starts tried before a process that keeps finding its port taken fails the test.
const BIND_ATTEMPTS: usize = 5;

/// How waiting for a process ended.
#[derive(Debug, PartialEq, Eq)]
enum Ready {
    Yes,
    /// It exited because the port it was given was taken meanwhile.
    PortTaken,
}

impl Process {
    /// What this process logged (not an earlier run's lines in the same log).
    fn own_log(&self) -> String {
        let mut own = String::new();
        if let Ok(mut file) = File::open(&self.log)
            && file.seek(SeekFrom::Start(self.log_from)).is_ok()
        {
            let _ = file.read_to_string(&mut own);
        }
        own
    }

    /// Whether it could not bind a port the harness picked (`server.bind`,
    /// `worker.bind`): the runtime names the key in its setup error.
    fn port_was_taken(&self) -> bool {
        self.own_log().lines().any(|line| {
            (line.contains("server.bind") || line.contains("worker.bind"))
                && line.contains("Address already in use")
        })
    }

    /// Whether the process logged `started`, which it does once its listeners are bound.
    fn has_started(&self) -> bool {
        self.own_log()
            .lines()
            .any(|line| line.contains("started") && line.contains("binary"))
    }
}

pub struct Service {
    pub mode: Mode,
    pub dir: tempfile::TempDir,
    pub base: String,
    pub api_port: u16,
    pub http: reqwest::Client,
    pub secret: String,
    pub prefix: String,
    /// S3 settings of this run's bucket (stack).
    pub s3: Option<packages_blobstore::S3Settings>,
    /// AMQP URL as the test itself reaches the broker (stack).
    pub amqp_url: Option<String>,
    pub broker_proxy: Option<Proxy>,
    pub database_proxy: Option<Proxy>,
    pub blobstore_proxy: Option<Proxy>,
    env: Vec<(String, String)>,
    worker_only_env: Vec<(String, String)>,
    options: Options,
    api: Option<Process>,
    workers: Vec<Process>,
    pg: Option<(String, String)>,
    started_workers: usize,
}

impl Service {
    /// This run's own PostgreSQL database, as the tests reach it (stack).
    pub fn database_url(&self) -> Option<String> {
        let (admin, name) = self.pg.as_ref()?;
        let (server, _) = admin.rsplit_once('/')?;
        Some(format!("{server}/{name}"))
    }
}

fn env_key(key: &str) -> String {
    format!("PACKAGES__{}", key.replace('.', "__").to_uppercase())
}

impl Service {
    pub async fn start() -> Service {
        Service::start_with(Options::default()).await
    }

    pub async fn start_with(options: Options) -> Service {
        let mode = options.mode.unwrap_or_else(mode);
        let dir = tempfile::Builder::new()
            .prefix("packages-test-")
            .tempdir()
            .unwrap();
        let api_port = free_port();
        let id = uuid::Uuid::new_v4().simple().to_string();
        let prefix = format!("pkgtest-{}", &id[..16]);
        let secret = packages_auth::generate_secret();
        let mut env = vec![
            (env_key("server.bind"), format!("127.0.0.1:{api_port}")),
            (env_key("auth.jwt_secret"), secret.clone()),
            (env_key("log.level"), env_or("PACKAGES_TEST_LOG", "info")),
        ];
        let mut worker_only_env = Vec::new();
        let mut s3 = None;
        let mut amqp_url = None;
        let mut pg = None;
        let (mut broker_proxy, mut database_proxy, mut blobstore_proxy) = (None, None, None);
        match mode {
            Mode::Embedded => {
                env.push((
                    env_key("database.url"),
                    format!("sqlite://{}/packages.db", dir.path().display()),
                ));
                env.push((
                    env_key("blobstore.local.root"),
                    format!("{}/blobs", dir.path().display()),
                ));
            }
            Mode::Stack => {
                let admin = env_or(
                    "PACKAGES_TEST_POSTGRES_URL",
                    "postgres://postgres@127.0.0.1:5432/postgres",
                );
                let name = format!("pkgtest_{id}");
                let mut conn =
                    diesel::PgConnection::establish(&admin).expect("PostgreSQL must be running");
                conn.batch_execute(&format!("CREATE DATABASE \"{name}\""))
                    .unwrap();
                let (server, _) = admin.rsplit_once('/').unwrap();
                let mut db_url = format!("{server}/{name}");
                if options.database_proxy {
                    let proxy = Proxy::start(host_port(&db_url)).await;
                    db_url = replace_host_port(&db_url, proxy.port);
                    database_proxy = Some(proxy);
                }
                pg = Some((admin, name));
                env.push((env_key("database.url"), db_url));
                env.push((env_key("database.pool_size"), "8".into()));
                // Every API instance of a deployment shares one key (the embedded
                // default generates its own).
                env.push((
                    env_key("packages.encryption_key"),
                    packages_auth::generate_secret(),
                ));

                let broker = env_or(
                    "PACKAGES_TEST_AMQP_URL",
                    "amqp://guest:guest@127.0.0.1:5672/%2f",
                );
                amqp_url = Some(broker.clone());
                let mut broker_for_service = broker.clone();
                if options.broker_proxy {
                    let proxy = Proxy::start(host_port(&broker)).await;
                    broker_for_service = replace_host_port(&broker, proxy.port);
                    broker_proxy = Some(proxy);
                }
                env.push((env_key("queue.url"), broker_for_service));
                env.push((env_key("queue.prefix"), prefix.clone()));

                let server = options.s3_server.clone().unwrap_or_else(S3Server::from_env);
                let endpoint = server.endpoint.clone();
                let settings = packages_blobstore::S3Settings {
                    endpoint: Some(endpoint.clone()),
                    public_endpoint: None,
                    region: server.region,
                    bucket: format!("pkgtest-{}", &id[..20]),
                    access_key: Some(server.access_key),
                    secret_key: Some(server.secret_key),
                    path_style: true,
                    presign_expiry_secs: 3600,
                    part_size: packages_blobstore::S3Settings::DEFAULT_PART_SIZE,
                };
                env.push((env_key("blobstore.kind"), "s3".into()));
                env.push((env_key("blobstore.s3.endpoint"), endpoint.clone()));
                env.push((env_key("blobstore.s3.region"), settings.region.clone()));
                env.push((env_key("blobstore.s3.bucket"), settings.bucket.clone()));
                env.push((
                    env_key("blobstore.s3.access_key"),
                    settings.access_key.clone().unwrap(),
                ));
                env.push((
                    env_key("blobstore.s3.secret_key"),
                    settings.secret_key.clone().unwrap(),
                ));
                if options.worker_blobstore_proxy {
                    let proxy = Proxy::start(host_port(&endpoint)).await;
                    worker_only_env.push((
                        env_key("blobstore.s3.endpoint"),
                        replace_host_port(&endpoint, proxy.port),
                    ));
                    blobstore_proxy = Some(proxy);
                }
                s3 = Some(settings);
            }
        }
        for (key, value) in &options.settings {
            env.push((env_key(key), value.clone()));
        }
        env.retain(|(key, _)| !options.unset.contains(key));
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            // Below the server's keep-alive (5 s), so an idle pooled connection is never
            // reused just as the server closes it.
            .pool_idle_timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        let mut service = Service {
            mode,
            dir,
            base: format!("http://127.0.0.1:{api_port}"),
            api_port,
            http,
            secret,
            prefix,
            s3,
            amqp_url,
            broker_proxy,
            database_proxy,
            blobstore_proxy,
            env,
            worker_only_env,
            options: options.clone(),
            api: None,
            workers: Vec::new(),
            pg,
            started_workers: 0,
        };
        if !options.defer_start {
            service.start_api(&[]).await;
            if mode == Mode::Stack {
                for _ in 0..options.workers.max(1) {
                    service.start_worker().await;
                }
            }
        }
        service
    }

    fn spawn(
        &self,
        binary: &str,
        extra: &[(String, String)],
        log_name: &str,
    ) -> (Child, PathBuf, u64) {
        let log = self.dir.path().join(log_name);
        let out = File::options()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let log_from = out.metadata().map_or(0, |m| m.len());
        let mut command = Command::new(bin_dir().join(binary));
        for (key, _) in std::env::vars() {
            if key.starts_with("PACKAGES_") || key == "FAILPOINTS" {
                command.env_remove(key);
            }
        }
        let child = command
            .current_dir(self.dir.path())
            .envs(self.env.iter().cloned())
            .envs(extra.iter().cloned())
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {binary} (build the binaries first: make test): {e}")
            });
        (child, log, log_from)
    }

    /// Starts the API (`packages` in embedded mode) and waits until it is ready.
    pub async fn start_api(&mut self, extra_env: &[(&str, &str)]) {
        for _ in 0..BIND_ATTEMPTS {
            self.spawn_api(extra_env);
            // With `server.ops_bind` the operator endpoints have a port of their own.
            let url = match self
                .options
                .settings
                .iter()
                .find(|(k, _)| k == "server.ops_bind")
            {
                Some((_, ops)) => format!("http://{ops}/readyz"),
                None => format!("{}/readyz", self.base),
            };
            if self.wait_ready(&url, true).await == Ready::Yes {
                return;
            }
            self.move_api_port();
        }
        panic!("the API found no free port in {BIND_ATTEMPTS} attempts");
    }

    /// Gives the API a new port, after another process took the one it was given.
    fn move_api_port(&mut self) {
        let port = free_port();
        let bind = env_key("server.bind");
        for (key, value) in self.env.iter_mut() {
            if *key == bind {
                *value = format!("127.0.0.1:{port}");
            }
        }
        self.api_port = port;
        self.base = format!("http://127.0.0.1:{port}");
    }

    /// Starts the API without waiting for it: for a process expected to die early.
    pub fn spawn_api(&mut self, extra_env: &[(&str, &str)]) {
        let mut extra: Vec<(String, String)> = self.options.api_env.clone();
        if self.mode == Mode::Embedded {
            extra.extend(self.options.worker_env.clone());
        }
        extra.extend(
            extra_env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        let binary = match self.mode {
            Mode::Embedded => "packages",
            Mode::Stack => "packages-api",
        };
        let (child, log, log_from) = self.spawn(binary, &extra, "api.log");
        self.api = Some(Process {
            child,
            log,
            log_from,
            port: self.api_port,
        });
    }

    /// Starts a service made with `defer_start`, giving `env` to whatever runs the jobs
    /// (failpoints in the worker, say): the one process on the embedded default, the
    /// worker on the stack, whose API starts without it.
    pub async fn start_with_job_env(&mut self, env: &[(&str, &str)]) {
        match self.mode {
            Mode::Embedded => self.start_api(env).await,
            Mode::Stack => {
                self.start_api(&[]).await;
                self.start_worker_with(env).await;
            }
        }
    }

    /// Starts one more worker process (stack) and waits until it is ready.
    pub async fn start_worker(&mut self) -> usize {
        self.start_worker_with(&[]).await
    }

    /// Starts one more worker process with extra environment, and waits until it is ready.
    pub async fn start_worker_with(&mut self, extra_env: &[(&str, &str)]) -> usize {
        for _ in 0..BIND_ATTEMPTS {
            let index = self.spawn_worker(extra_env);
            let port = self.workers[index].port;
            let url = format!("http://127.0.0.1:{port}/readyz");
            if self.wait_ready(&url, false).await == Ready::Yes {
                return index;
            }
            // Its port was taken: the next attempt picks another.
            self.workers.remove(index);
        }
        panic!("the worker found no free port in {BIND_ATTEMPTS} attempts");
    }

    /// Starts one more worker process without waiting for it (it may die early); returns
    /// its index.
    pub fn spawn_worker(&mut self, extra_env: &[(&str, &str)]) -> usize {
        assert_eq!(
            self.mode,
            Mode::Stack,
            "the embedded default has no worker processes"
        );
        let port = free_port();
        let mut extra = vec![(env_key("worker.bind"), format!("127.0.0.1:{port}"))];
        extra.extend(self.worker_only_env.clone());
        extra.extend(self.options.worker_env.clone());
        extra.extend(
            extra_env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        self.started_workers += 1;
        let (child, log, log_from) = self.spawn(
            "packages-worker",
            &extra,
            &format!("worker-{}.log", self.started_workers),
        );
        self.workers.push(Process {
            child,
            log,
            log_from,
            port,
        });
        self.workers.len() - 1
    }

    /// Waits for worker `index` to end by itself; returns whether it ended in time (it is
    /// then forgotten, so later indices shift down).
    pub fn wait_worker_exit(&mut self, index: usize, timeout: Duration) -> bool {
        let started = Instant::now();
        while started.elapsed() < timeout {
            if let Ok(Some(_)) = self.workers[index].child.try_wait() {
                self.workers.remove(index);
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Polls `done` until it holds; fails the test with the logs after `timeout`.
    pub async fn wait_until(&self, timeout: Duration, mut done: impl FnMut() -> bool) {
        let started = Instant::now();
        while !done() {
            assert!(
                started.elapsed() < timeout,
                "condition not reached within {timeout:?}\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Makes the local blobstore unable to store this package's bits: a file stands where
    /// the directory of its key must go (embedded).
    pub fn break_local_blobstore_for(&self, guid: &str) {
        let key = crate::blob_key(guid);
        let root = self.blob_root();
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join(&key[..2]), b"in the way").unwrap();
    }

    /// Waits until the process answers `url` with 200, or reports that it exited because
    /// its port was taken (see [`free_port`]); any other exit fails the test.
    async fn wait_ready(&mut self, url: &str, api: bool) -> Ready {
        let started = Instant::now();
        // `started` is an info line; the benchmark logs warnings only (and runs alone).
        let level_key = env_key("log.level");
        let logs_started = !matches!(
            self.env
                .iter()
                .rev()
                .find(|(key, _)| *key == level_key)
                .map(|(_, level)| level.as_str()),
            Some("warn" | "error")
        );
        loop {
            let process = if api {
                self.api.as_mut()
            } else {
                self.workers.last_mut()
            };
            // Ports are picked free and released, so another test's process may take
            // this one first: its 200 must not count. This process logs `started` once
            // its own listeners are bound, or exits when it cannot bind (below).
            let own = !logs_started || process.as_ref().is_none_or(|p| p.has_started());
            if own
                && let Ok(res) = self.http.get(url).send().await
                && res.status() == 200
            {
                return Ready::Yes;
            }
            let process = if api {
                self.api.as_mut()
            } else {
                self.workers.last_mut()
            };
            if let Some(p) = process
                && let Ok(Some(status)) = p.child.try_wait()
            {
                if p.port_was_taken() {
                    return Ready::PortTaken;
                }
                panic!(
                    "{url}: process exited with {status}\n{}",
                    std::fs::read_to_string(&p.log).unwrap_or_default()
                );
            }
            if started.elapsed() > Duration::from_secs(60) {
                panic!("{url} not ready after 60 s\n{}", self.logs());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The logs of every process of this service, for failure messages.
    pub fn logs(&self) -> String {
        let mut text = String::new();
        for p in self.api.iter().chain(self.workers.iter()) {
            let body = std::fs::read_to_string(&p.log).unwrap_or_default();
            let tail: Vec<&str> = body.lines().rev().take(80).collect();
            text.push_str(&format!("--- {} (last lines)\n", p.log.display()));
            for line in tail.into_iter().rev() {
                text.push_str(line);
                text.push('\n');
            }
        }
        text
    }

    /// Everything the API (embedded: the whole process) logged, across restarts.
    pub fn api_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("api.log")).unwrap_or_default()
    }

    /// Everything every worker process (current or gone) logged.
    pub fn worker_logs(&self) -> String {
        (1..=self.started_workers)
            .map(|n| {
                std::fs::read_to_string(self.dir.path().join(format!("worker-{n}.log")))
                    .unwrap_or_default()
            })
            .collect()
    }

    pub fn api_pid(&self) -> u32 {
        self.api.as_ref().expect("API running").child.id()
    }

    pub fn worker_pids(&self) -> Vec<u32> {
        self.workers.iter().map(|p| p.child.id()).collect()
    }

    /// Ports of the workers' ops endpoints.
    pub fn worker_ports(&self) -> Vec<u16> {
        self.workers.iter().map(|p| p.port).collect()
    }

    /// SIGKILL: the process gets no chance to clean up.
    pub fn kill_api(&mut self) {
        if let Some(mut p) = self.api.take() {
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
    }

    pub fn kill_worker(&mut self, index: usize) {
        let mut p = self.workers.remove(index);
        let _ = p.child.kill();
        let _ = p.child.wait();
    }

    /// Waits for the API process to end by itself (e.g. a crash point); returns whether
    /// it ended within the timeout.
    pub fn wait_api_exit(&mut self, timeout: Duration) -> bool {
        let started = Instant::now();
        while started.elapsed() < timeout {
            if let Some(p) = self.api.as_mut()
                && let Ok(Some(_)) = p.child.try_wait()
            {
                self.api = None;
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// SIGTERM, then waits; returns the exit code.
    pub fn terminate_api(&mut self, timeout: Duration) -> Option<i32> {
        let p = self.api.as_mut()?;
        let pid = p.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let started = Instant::now();
        while started.elapsed() < timeout {
            if let Ok(Some(status)) = p.child.try_wait() {
                self.api = None;
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// SIGTERM to a worker, then waits; returns the exit code.
    pub fn terminate_worker(&mut self, index: usize, timeout: Duration) -> Option<i32> {
        let mut p = self.workers.remove(index);
        let pid = p.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let started = Instant::now();
        while started.elapsed() < timeout {
            if let Ok(Some(status)) = p.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.workers.push(p);
        None
    }

    /// Directory of the local blobstore (embedded).
    pub fn blob_root(&self) -> PathBuf {
        self.dir.path().join("blobs")
    }

    /// The kinds of the job rows recorded for a package, read from the service's own
    /// database (SQLite file or this run's PostgreSQL database).
    pub fn job_kinds(&self, package_guid: &str) -> Vec<String> {
        self.query_texts(&format!(
            "SELECT kind AS value FROM jobs WHERE package_guid = {} ORDER BY kind",
            quoted(package_guid)
        ))
        .into_iter()
        .flatten()
        .collect()
    }

    /// Runs `sql` on the service's own database (SQLite file or this run's PostgreSQL
    /// database); it must select one nullable text column named `value`.
    pub fn query_texts(&self, sql: &str) -> Vec<Option<String>> {
        use diesel::RunQueryDsl;
        #[derive(diesel::QueryableByName)]
        struct Row {
            #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
            value: Option<String>,
        }
        let rows: Vec<Row> = match &self.pg {
            Some((admin, name)) => {
                let (server, _) = admin.rsplit_once('/').unwrap();
                let mut conn =
                    diesel::PgConnection::establish(&format!("{server}/{name}")).unwrap();
                diesel::sql_query(sql).load(&mut conn).unwrap()
            }
            None => {
                let path = self.dir.path().join("packages.db");
                let mut conn =
                    diesel::SqliteConnection::establish(&path.display().to_string()).unwrap();
                diesel::sql_query(sql).load(&mut conn).unwrap()
            }
        };
        rows.into_iter().map(|r| r.value).collect()
    }

    /// The key Docker passwords are sealed with: the one configured (stack), or the one
    /// `packages` generated under `data/` (embedded). `None` when there is none.
    pub fn encryption_key(&self) -> Option<String> {
        let configured = self
            .env
            .iter()
            .rev()
            .find(|(k, _)| *k == env_key("packages.encryption_key"))
            .map(|(_, v)| v.clone());
        match configured {
            Some(key) if key.is_empty() => None,
            Some(key) => Some(key),
            None => std::fs::read_to_string(self.dir.path().join("data/encryption-key"))
                .ok()
                .map(|k| k.trim().to_owned()),
        }
    }
}

/// `text` as an SQL string literal.
pub fn quoted(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// `host:port` of a URL (the default port of the scheme if absent).
fn host_port(url: &str) -> SocketAddr {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    let authority = rest.split(['/', '?']).next().unwrap_or(rest);
    let with_port = if authority.contains(':') {
        authority.to_owned()
    } else if url.starts_with("postgres") {
        format!("{authority}:5432")
    } else if url.starts_with("amqp") {
        format!("{authority}:5672")
    } else {
        format!("{authority}:80")
    };
    let with_port = with_port.replace("localhost", "127.0.0.1");
    with_port.parse().unwrap_or_else(|e| panic!("{url}: {e}"))
}

/// The URL with its host and port replaced by the local proxy's.
fn replace_host_port(url: &str, port: u16) -> String {
    let (scheme, rest) = url.split_once("://").unwrap();
    let (userinfo, rest) = match rest.rsplit_once('@') {
        Some((u, r)) => (format!("{u}@"), r),
        None => (String::new(), rest),
    };
    let cut = rest.find(['/', '?']).unwrap_or(rest.len());
    format!("{scheme}://{userinfo}127.0.0.1:{port}{}", &rest[cut..])
}

impl Drop for Service {
    fn drop(&mut self) {
        for p in self.api.iter_mut().chain(self.workers.iter_mut()) {
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
        if let Some((admin, name)) = &self.pg
            && let Ok(mut conn) = diesel::PgConnection::establish(admin)
        {
            let _ = conn.batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"));
        }
        if let Some(url) = self.amqp_url.clone() {
            let prefix = self.prefix.clone();
            let _ = std::thread::spawn(move || delete_topology(&url, &prefix)).join();
        }
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
    }
}

/// Removes this run's exchanges and queues from the shared broker.
fn delete_topology(url: &str, prefix: &str) {
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    runtime.block_on(async {
        let Ok(conn) =
            lapin::Connection::connect(url, lapin::ConnectionProperties::default()).await
        else {
            return;
        };
        let Ok(channel) = conn.create_channel().await else {
            return;
        };
        for queue in [format!("{prefix}.jobs.work"), format!("{prefix}.jobs.dead")] {
            let _ = channel
                .queue_delete(
                    queue.as_str().into(),
                    lapin::options::QueueDeleteOptions::default(),
                )
                .await;
        }
        for exchange in [format!("{prefix}.jobs"), format!("{prefix}.jobs.dlx")] {
            let _ = channel
                .exchange_delete(
                    exchange.as_str().into(),
                    lapin::options::ExchangeDeleteOptions::default(),
                )
                .await;
        }
        let _ = conn.close(0, "done".into()).await;
    });
}
