//! Talking to the service over HTTP as a Cloud Controller client would.

use std::time::{Duration, Instant};

use reqwest::header::HeaderMap;
use serde_json::{Value, json};

use crate::service::Service;

pub const ADMIN: &[&str] = &["cloud_controller.admin"];
pub const READ_WRITE: &[&str] = &["cloud_controller.read", "cloud_controller.write"];

/// A response, read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: bytes::Bytes,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts a Cloud Controller error in both formats: status, numeric code, name, the
    /// GA `detail` and the 2015 `description` (which prefixes unprocessable entities'
    /// messages, as 2015 clients read them).
    pub fn assert_error(&self, status: u16, code: u64, name: &str, detail: &str) {
        assert_eq!(self.status, status, "status of {}", self.text());
        let v = self.json();
        let description = if name == "UnprocessableEntity" {
            format!("The request is semantically invalid: {detail}")
        } else {
            detail.to_owned()
        };
        assert_eq!(v["description"], description, "{v}");
        assert_eq!(v["code"], code, "{v}");
        assert_eq!(v["error_code"], format!("CF-{name}"), "{v}");
        assert_eq!(v["errors"][0]["code"], code, "{v}");
        assert_eq!(v["errors"][0]["title"], format!("CF-{name}"), "{v}");
        assert_eq!(v["errors"][0]["detail"], detail, "{v}");
        assert_eq!(
            self.body.last(),
            Some(&b'\n'),
            "error bodies end with a newline"
        );
    }
}

/// An organization, space and app to hang packages off.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub org: String,
    pub space: String,
    pub app: String,
}

impl Service {
    pub fn token(&self, user: &str, scopes: &[&str]) -> String {
        let scopes: Vec<String> = scopes.iter().map(|s| (*s).to_owned()).collect();
        packages_auth::mint(
            &self.secret,
            user,
            &scopes,
            "cloud_controller",
            Duration::from_secs(3600),
        )
        .unwrap()
    }

    pub fn admin(&self) -> String {
        self.token("admin-user", ADMIN)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn read(res: reqwest::Response) -> Reply {
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let body = res.bytes().await.unwrap();
        Reply {
            status,
            headers,
            body,
        }
    }

    pub async fn send(&self, req: reqwest::RequestBuilder) -> Reply {
        let (client, request) = req.build_split();
        let request = request.unwrap();
        let (method, url) = (request.method().clone(), request.url().clone());
        let reply = Self::read(client.execute(request).await.unwrap()).await;
        self.record(&method, &url, &reply);
        reply
    }

    /// Like [`Client::send`], for a request whose server may die before it answers.
    pub async fn try_send(&self, req: reqwest::RequestBuilder) -> Result<Reply, reqwest::Error> {
        let (client, request) = req.build_split();
        let request = request?;
        let (method, url) = (request.method().clone(), request.url().clone());
        let res = client.execute(request).await?;
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let body = res.bytes().await?;
        let reply = Reply {
            status,
            headers,
            body,
        };
        self.record(&method, &url, &reply);
        Ok(reply)
    }

    /// Which process answered a URL: the API, a worker's operator endpoints, or something
    /// else (a presigned S3 URL).
    fn answered_by(&self, url: &reqwest::Url) -> &'static str {
        let origin = url.origin().ascii_serialization();
        if origin == self.base {
            "api"
        } else if url.host_str() == Some("127.0.0.1")
            && url.port().is_some_and(|p| self.worker_ports().contains(&p))
        {
            "worker"
        } else {
            "other"
        }
    }

    /// Appends the response to `$PACKAGES_TEST_RESPONSES/responses-<pid>.jsonl` when that
    /// variable names a directory, for `scripts/check-openapi.py` to hold against
    /// `proto/openapi.yaml`.
    fn record(&self, method: &reqwest::Method, url: &reqwest::Url, reply: &Reply) {
        record_response(self.answered_by(url), method, url, reply);
    }

    pub async fn get(&self, path: &str, token: &str) -> Reply {
        self.send(self.http.get(self.url(path)).bearer_auth(token))
            .await
    }

    pub async fn get_anonymous(&self, path: &str) -> Reply {
        self.send(self.http.get(self.url(path))).await
    }

    pub async fn post(&self, path: &str, token: &str, body: &Value) -> Reply {
        self.send(self.http.post(self.url(path)).bearer_auth(token).json(body))
            .await
    }

    /// A JSON POST by `user` with read and write scopes (roles decide the rest).
    pub async fn post_as(&self, user: &str, path: &str, body: &Value) -> Reply {
        self.post(path, &self.token(user, READ_WRITE), body).await
    }

    pub async fn post_raw(
        &self,
        path: &str,
        token: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Reply {
        self.send(
            self.http
                .post(self.url(path))
                .bearer_auth(token)
                .header("content-type", content_type)
                .body(body),
        )
        .await
    }

    pub async fn delete(&self, path: &str, token: &str) -> Reply {
        self.send(self.http.delete(self.url(path)).bearer_auth(token))
            .await
    }

    /// Multipart upload with a `bits` part, as the cf CLI sends it.
    pub async fn upload(&self, guid: &str, token: &str, zip: Vec<u8>) -> Reply {
        self.send(self.upload_request(guid, token, zip)).await
    }

    /// The multipart upload request of `zip`, as CF clients send it.
    pub fn upload_request(&self, guid: &str, token: &str, zip: Vec<u8>) -> reqwest::RequestBuilder {
        let form = reqwest::multipart::Form::new()
            .text("resources", "[]")
            .part(
                "bits",
                reqwest::multipart::Part::bytes(zip).file_name("package.zip"),
            );
        self.http
            .post(self.url(&format!("/v3/packages/{guid}/upload")))
            .bearer_auth(token)
            .multipart(form)
    }

    /// Streams a file from disk as the `bits` part.
    pub async fn upload_file(&self, guid: &str, token: &str, path: &std::path::Path) -> Reply {
        let file = tokio::fs::File::open(path).await.unwrap();
        let len = file.metadata().await.unwrap().len();
        let stream = tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024);
        let part =
            reqwest::multipart::Part::stream_with_length(reqwest::Body::wrap_stream(stream), len)
                .file_name("package.zip");
        let form = reqwest::multipart::Form::new().part("bits", part);
        self.send(
            self.http
                .post(self.url(&format!("/v3/packages/{guid}/upload")))
                .bearer_auth(token)
                .multipart(form),
        )
        .await
    }

    /// The front proxy's upload form (urlencoded `fields`, e.g. `bits_name` and the
    /// `bits_path` of the file it stored), with its shared secret when given.
    pub async fn upload_proxy_form(
        &self,
        guid: &str,
        token: &str,
        secret: Option<&str>,
        fields: &[(&str, &str)],
    ) -> Reply {
        let mut request = self
            .http
            .post(self.url(&format!("/v3/packages/{guid}/upload")))
            .bearer_auth(token)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(serde_urlencoded::to_string(fields).unwrap());
        if let Some(secret) = secret {
            request = request.header("X-Upload-Proxy-Secret", secret);
        }
        self.send(request).await
    }

    /// The front proxy's upload of the file it stored at `bits_path`.
    pub async fn upload_proxy_file(
        &self,
        guid: &str,
        token: &str,
        secret: &str,
        bits_path: &std::path::Path,
    ) -> Reply {
        let bits_path = bits_path.display().to_string();
        let fields = [
            ("bits_name", "package.zip"),
            ("bits_path", bits_path.as_str()),
        ];
        self.upload_proxy_form(guid, token, Some(secret), &fields)
            .await
    }

    pub async fn create_org(&self, name: &str) -> String {
        let r = self
            .post("/v3/organizations", &self.admin(), &json!({"name": name}))
            .await;
        assert_eq!(r.status, 201, "{}", r.text());
        r.json()["guid"].as_str().unwrap().to_owned()
    }

    pub async fn create_space(&self, org: &str, name: &str) -> String {
        let body =
            json!({"name": name, "relationships": {"organization": {"data": {"guid": org}}}});
        let r = self.post("/v3/spaces", &self.admin(), &body).await;
        assert_eq!(r.status, 201, "{}", r.text());
        r.json()["guid"].as_str().unwrap().to_owned()
    }

    pub async fn create_app(&self, space: &str, name: &str) -> String {
        let body = json!({"name": name, "relationships": {"space": {"data": {"guid": space}}}});
        let r = self.post("/v3/apps", &self.admin(), &body).await;
        assert_eq!(r.status, 201, "{}", r.text());
        r.json()["guid"].as_str().unwrap().to_owned()
    }

    /// Gives `user` a role in a space (space roles) or an organization.
    pub async fn grant(&self, user: &str, role: &str, target: &str) {
        let rel = if role.starts_with("organization_") {
            "organization"
        } else {
            "space"
        };
        let body = json!({
            "type": role,
            "relationships": {"user": {"data": {"guid": user}}, rel: {"data": {"guid": target}}}
        });
        let r = self.post("/v3/roles", &self.admin(), &body).await;
        assert_eq!(r.status, 201, "{}", r.text());
    }

    pub async fn ctx(&self) -> Ctx {
        let suffix = &uuid::Uuid::new_v4().simple().to_string()[..8];
        let org = self.create_org(&format!("org-{suffix}")).await;
        let space = self.create_space(&org, "dev").await;
        let app = self.create_app(&space, "web").await;
        Ctx { org, space, app }
    }

    pub async fn create_package(&self, app: &str, token: &str) -> Value {
        let r = self
            .post(
                &format!("/v3/apps/{app}/packages"),
                token,
                &json!({"type": "bits"}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text());
        r.json()
    }

    pub async fn new_package(&self, app: &str) -> String {
        self.create_package(app, &self.admin()).await["guid"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    pub async fn package(&self, guid: &str) -> Value {
        let r = self
            .get(&format!("/v3/packages/{guid}"), &self.admin())
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()
    }

    /// Polls until the package leaves PROCESSING_UPLOAD / COPYING.
    pub async fn wait_final(&self, guid: &str) -> Value {
        self.wait_final_for(guid, Duration::from_secs(120)).await
    }

    pub async fn wait_final_for(&self, guid: &str, timeout: Duration) -> Value {
        let started = Instant::now();
        loop {
            let p = self.package(guid).await;
            let state = p["state"].as_str().unwrap_or_default().to_owned();
            if state != "PROCESSING_UPLOAD" && state != "COPYING" {
                return p;
            }
            if started.elapsed() > timeout {
                panic!(
                    "package {guid} still {state} after {timeout:?}\n{}",
                    self.logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Uploads and waits for the outcome.
    pub async fn upload_and_wait(&self, app: &str, zip: Vec<u8>) -> Value {
        let guid = self.new_package(app).await;
        let r = self.upload(&guid, &self.admin(), zip).await;
        assert_eq!(r.status, 200, "{}", r.text());
        self.wait_final(&guid).await
    }

    /// Downloads bits: the stream itself, or the presigned URL a `302` points at, fetched
    /// without the token.
    pub async fn download(&self, guid: &str, token: &str) -> (Reply, Option<Vec<u8>>) {
        let r = self
            .get(&format!("/v3/packages/{guid}/download"), token)
            .await;
        let bytes = match r.status {
            200 => Some(r.body.to_vec()),
            302 => {
                let location = r.header("location").unwrap().to_owned();
                let fetched = reqwest::get(&location).await.unwrap();
                assert_eq!(fetched.status(), 200, "presigned URL {location}");
                Some(fetched.bytes().await.unwrap().to_vec())
            }
            _ => None,
        };
        (r, bytes)
    }

    /// Every `/metrics` of the service (API, and workers in stack mode), concatenated.
    pub async fn metrics(&self) -> String {
        let mut text = self.get_anonymous("/metrics").await.text();
        for port in self.worker_ports() {
            let r = self
                .send(self.http.get(format!("http://127.0.0.1:{port}/metrics")))
                .await;
            text.push_str(&r.text());
        }
        text
    }

    /// Whether the package's bits exist in the blobstore.
    pub async fn bits_exist(&self, guid: &str) -> bool {
        let key = crate::blob_key(guid);
        self.blob_exists(&key).await
    }

    pub async fn blob_exists(&self, key: &str) -> bool {
        match &self.s3 {
            None => self.blob_root().join(key).exists(),
            Some(settings) => {
                use packages_blobstore::Blobstore;
                let store = packages_blobstore::S3Blobstore::connect(settings.clone()).unwrap();
                store.size(key).await.unwrap().is_some()
            }
        }
    }

    /// Keys under `staging/` (uploads waiting for, or left by, the worker).
    pub async fn staged_blobs(&self) -> Vec<String> {
        use packages_blobstore::Blobstore;
        let store: Box<dyn Blobstore> = match &self.s3 {
            None => {
                if !self.blob_root().exists() {
                    return Vec::new();
                }
                Box::new(packages_blobstore::LocalBlobstore::new(self.blob_root()).unwrap())
            }
            Some(settings) => {
                Box::new(packages_blobstore::S3Blobstore::connect(settings.clone()).unwrap())
            }
        };
        store
            .list("staging/")
            .await
            .unwrap()
            .into_iter()
            .map(|b| b.key)
            .collect()
    }
}

/// Reads a metric's value from Prometheus text (sum over series matching all `labels`).
pub fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Where responses are recorded (`PACKAGES_TEST_RESPONSES`), opened once per process.
static RECORDING: std::sync::LazyLock<Option<std::sync::Mutex<std::fs::File>>> =
    std::sync::LazyLock::new(|| {
        let dir = std::env::var_os("PACKAGES_TEST_RESPONSES")?;
        std::fs::create_dir_all(&dir).unwrap();
        let path =
            std::path::Path::new(&dir).join(format!("responses-{}.jsonl", std::process::id()));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        Some(std::sync::Mutex::new(file))
    });

/// One JSON line per response: the request's method and URL, which process answered
/// (`api`, `worker`, `other`), the status, the content type, and the body as text when it
/// is JSON or text, else its length. Also the test (thread) that sent it.
fn record_response(answered_by: &str, method: &reqwest::Method, url: &reqwest::Url, reply: &Reply) {
    use std::io::Write;
    let Some(file) = RECORDING.as_ref() else {
        return;
    };
    let content_type = reply.header("content-type");
    let textual = content_type.is_some_and(|ct| {
        let ct = ct.to_ascii_lowercase();
        ct.contains("json") || ct.starts_with("text/")
    });
    let mut line = json!({
        "test": std::thread::current().name().unwrap_or_default(),
        "answered_by": answered_by,
        "method": method.as_str(),
        "url": url.as_str(),
        "status": reply.status,
        "content_type": content_type,
        "location": reply.header("location"),
        "content_disposition": reply.header("content-disposition"),
        "body_length": reply.body.len(),
    });
    if textual {
        line["body"] = json!(reply.text());
    }
    let mut text = line.to_string();
    text.push('\n');
    let mut file = file
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    file.write_all(text.as_bytes()).unwrap();
}
