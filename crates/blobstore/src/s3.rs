//! Blobs as objects in an S3 (or S3-compatible) bucket.
//!
//! Large blobs are written with a multipart upload that only completes in
//! [`BlobWriter::finish`], so nothing is visible under a key before then; downloads are
//! presigned URLs so the bytes never pass through this service.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::TryStreamExt as _;
use s3::error::S3Error;
use s3::request::Request as _;
use s3::request::tokio_backend::ReqwestRequest;
use s3::serde_types::Part;
use s3::{Bucket, BucketConfiguration, Region, command::Command, creds::Credentials};
use tokio::task::JoinHandle;

use crate::{BlobError, BlobInfo, BlobWriter, Blobstore, ByteStream, Download, validate_key};

/// Requests that move little data (HEAD, list, delete, multipart bookkeeping) fail fast,
/// so a dead or black-holed endpoint shows up in seconds.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(10);
/// Requests that carry a part, a blob or a server-side copy get longer.
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(300);
const CONTENT_TYPE: &str = "application/octet-stream";

/// Largest object S3 takes in one PUT; larger streams go through a multipart writer.
const SINGLE_PUT_MAX: u64 = 5 << 30;
/// Lifetime of the presigned URLs of streaming reads and writes: they only have to
/// outlive the request.
const PUT_URL_EXPIRY_SECS: u32 = 3600;

/// Parts uploaded at once by one writer: enough to keep the connection busy while the
/// next part fills, few enough to bound memory (each costs about two part sizes).
const PARTS_IN_FLIGHT: usize = 2;
/// S3 numbers parts 1..=10000.
const MAX_PARTS: u32 = 10_000;
/// Longest presigned URL lifetime S3 accepts (one week).
const MAX_PRESIGN_EXPIRY: u32 = 604_800;
const US_EAST_1: &str = "us-east-1";

/// Where and how to reach the bucket.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Settings {
    /// `http(s)://host[:port]` of an S3-compatible server; `None` for AWS itself.
    pub endpoint: Option<String>,
    pub region: String,
    pub bucket: String,
    /// Both keys or neither; with neither, the usual AWS credential chain applies
    /// (environment, profile, web identity, container or instance credentials).
    pub access_key: Option<String>,
    pub secret_key: Option<String>,
    /// `endpoint/bucket/key` URLs instead of `bucket.endpoint/key`; most self-hosted
    /// servers need this.
    pub path_style: bool,
    /// Lifetime of download URLs, at most one week.
    pub presign_expiry_secs: u32,
    /// Multipart part size; memory per writer is a small multiple of it.
    pub part_size: usize,
}

impl S3Settings {
    pub const DEFAULT_PART_SIZE: usize = 5 << 20;
    /// S3 refuses smaller parts (except the last one).
    pub const MIN_PART_SIZE: usize = 5 << 20;
    /// S3 refuses larger parts.
    pub const MAX_PART_SIZE: usize = 5 << 30;
}

impl std::fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret must never reach a log line.
        f.debug_struct("S3Settings")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("bucket", &self.bucket)
            .field("access_key", &self.access_key)
            .field(
                "secret_key",
                &self.secret_key.as_ref().map(|_| "<redacted>"),
            )
            .field("path_style", &self.path_style)
            .field("presign_expiry_secs", &self.presign_expiry_secs)
            .field("part_size", &self.part_size)
            .finish()
    }
}

/// A blobstore backed by one S3 bucket.
#[derive(Clone)]
pub struct S3Blobstore {
    /// Same client and credentials as `transfer`, with [`CONTROL_TIMEOUT`].
    control: Arc<Bucket>,
    /// Same client and credentials as `control`, with [`TRANSFER_TIMEOUT`].
    transfer: Arc<Bucket>,
    region: String,
    presign_expiry_secs: u32,
    part_size: usize,
    /// Keys per list request; `None` lets the server choose (1000 on S3).
    list_page_size: Option<usize>,
    /// Plain HTTP client for streaming PUTs to presigned URLs.
    http: reqwest::Client,
}

impl std::fmt::Debug for S3Blobstore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Blobstore")
            .field("url", &self.control.url())
            .field("region", &self.region)
            .field("part_size", &self.part_size)
            .finish_non_exhaustive()
    }
}

impl S3Blobstore {
    /// Validates the settings and prepares the client; no request is sent.
    pub fn connect(settings: S3Settings) -> Result<Self, BlobError> {
        let invalid = |what: String| Err(BlobError::Other(format!("S3 settings: {what}")));
        if settings.bucket.is_empty() {
            return invalid("bucket is empty".to_string());
        }
        if !(S3Settings::MIN_PART_SIZE..=S3Settings::MAX_PART_SIZE).contains(&settings.part_size) {
            return invalid(format!(
                "part_size {} is outside {}..={} bytes",
                settings.part_size,
                S3Settings::MIN_PART_SIZE,
                S3Settings::MAX_PART_SIZE
            ));
        }
        if settings.presign_expiry_secs == 0 || settings.presign_expiry_secs > MAX_PRESIGN_EXPIRY {
            return invalid(format!(
                "presign_expiry_secs {} is outside 1..={MAX_PRESIGN_EXPIRY}",
                settings.presign_expiry_secs
            ));
        }
        let region_name = if settings.region.is_empty() {
            US_EAST_1.to_string()
        } else {
            settings.region.clone()
        };
        let region = match &settings.endpoint {
            Some(endpoint) => {
                if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
                    return invalid(format!(
                        "endpoint {endpoint:?} must start with http:// or https://"
                    ));
                }
                Region::Custom {
                    region: region_name.clone(),
                    endpoint: endpoint.trim_end_matches('/').to_string(),
                }
            }
            None => {
                let region: Region = region_name
                    .parse()
                    .map_err(|e| BlobError::Other(format!("S3 region {region_name:?}: {e}")))?;
                if matches!(region, Region::Custom { .. }) {
                    return invalid(format!(
                        "unknown AWS region {region_name:?}; set an endpoint for other servers"
                    ));
                }
                region
            }
        };
        let credentials = match (&settings.access_key, &settings.secret_key) {
            (Some(access), Some(secret)) => {
                Credentials::new(Some(access), Some(secret), None, None, None)
            }
            (None, None) => Credentials::default(),
            _ => return invalid("access_key and secret_key must be set together".to_string()),
        }
        .map_err(|e| BlobError::Other(format!("S3 credentials: {e}")))?;

        let mut bucket = Bucket::new(&settings.bucket, region, credentials)
            .map_err(|e| BlobError::Other(format!("S3 client: {e}")))?;
        if settings.path_style {
            bucket.set_path_style();
        }
        let with_timeout = |timeout| {
            bucket
                .with_request_timeout(timeout)
                .map(Arc::<Bucket>::from)
                .map_err(|e| BlobError::Other(format!("S3 client: {e}")))
        };
        Ok(Self {
            control: with_timeout(CONTROL_TIMEOUT)?,
            transfer: with_timeout(TRANSFER_TIMEOUT)?,
            region: region_name,
            presign_expiry_secs: settings.presign_expiry_secs,
            part_size: settings.part_size,
            list_page_size: None,
            http: reqwest::Client::builder()
                .timeout(TRANSFER_TIMEOUT)
                .build()
                .map_err(|e| BlobError::Other(format!("HTTP client: {e}")))?,
        })
    }

    /// Asks for at most `keys` (1..=1000) keys per list request instead of the
    /// server's default.
    pub fn with_list_page_size(mut self, keys: usize) -> Self {
        self.list_page_size = Some(keys.clamp(1, 1000));
        self
    }

    /// Creates the bucket unless it already exists.
    pub async fn ensure_bucket(&self) -> Result<(), BlobError> {
        match self.probe_bucket().await {
            Ok(()) => return Ok(()),
            Err(S3Error::HttpFailWithBody(404, _)) => {}
            Err(e) => return Err(self.bucket_error(e)),
        }
        // `Bucket::create*` always sends a LocationConstraint naming the region of a
        // custom endpoint, and AWS rejects an explicit `us-east-1` there; so the request
        // is built here with a body only outside us-east-1, as S3 expects.
        let location = (self.region != US_EAST_1).then(|| self.control.region());
        let config = BucketConfiguration::new(None, false, None, None, None, None, None, location);
        let created = async {
            let request =
                ReqwestRequest::new(&self.control, "", Command::CreateBucket { config }).await?;
            request.response_data(false).await
        }
        .await;
        match created {
            Ok(_) => Ok(()),
            // Created meanwhile by another instance (BucketAlreadyOwnedByYou), or the
            // name is taken by someone else (BucketAlreadyExists): only a fresh probe
            // tells which.
            Err(S3Error::HttpFailWithBody(409, body)) => match self.probe_bucket().await {
                Ok(()) => Ok(()),
                Err(_) => Err(BlobError::Other(format!(
                    "cannot create bucket {}: {}",
                    self.control.name(),
                    summarize(&body)
                ))),
            },
            Err(e) => Err(self.bucket_error(e)),
        }
    }

    /// The cheapest authenticated request that proves the bucket is there and readable.
    async fn probe_bucket(&self) -> Result<(), S3Error> {
        self.control
            .list_page(String::new(), None, None, None, Some(1))
            .await
            .map(|_| ())
    }

    fn bucket_error(&self, e: S3Error) -> BlobError {
        match map_error(e, "") {
            BlobError::NotFound(_) => {
                BlobError::Other(format!("bucket {} does not exist", self.control.name()))
            }
            other => other,
        }
    }

    /// The writer behind [`Blobstore::writer`], as its concrete type.
    pub fn s3_writer(&self, key: &str) -> Result<S3Writer, BlobError> {
        validate_key(key)?;
        Ok(S3Writer {
            control: self.control.clone(),
            transfer: self.transfer.clone(),
            http: self.http.clone(),
            key: key.to_string(),
            part_size: self.part_size,
            buf: Vec::new(),
            total: 0,
            upload: None,
            in_flight: VecDeque::new(),
            failed: false,
        })
    }
}

/// Maps rust-s3 errors onto the store's: 404 is NotFound, transport failures, timeouts,
/// throttling and 5xx are Unavailable (worth retrying), the rest is Other.
fn map_error(e: S3Error, key: &str) -> BlobError {
    match e {
        S3Error::HttpFailWithBody(404, _) => BlobError::NotFound(key.to_string()),
        S3Error::HttpFailWithBody(status, body)
            if status >= 500 || status == 408 || status == 429 =>
        {
            BlobError::Unavailable(format!("S3 answered {status}: {}", summarize(&body)))
        }
        S3Error::HttpFailWithBody(status, body) => {
            BlobError::Other(format!("S3 answered {status}: {}", summarize(&body)))
        }
        S3Error::Reqwest(e) if e.is_builder() => {
            BlobError::Other(format!("S3 request: {}", error_chain(&e)))
        }
        // Connect, timeout, or the connection dropping mid-body.
        S3Error::Reqwest(e) => BlobError::Unavailable(format!("S3 request: {}", error_chain(&e))),
        S3Error::Io(e) => BlobError::Unavailable(format!("S3 request: {}", error_chain(&e))),
        other => BlobError::Other(format!("S3: {}", error_chain(&other))),
    }
}

/// reqwest's top-level message ("error sending request") hides the useful cause. Its
/// text names the request's URL, presigned ones included: query strings are removed.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    crate::redact_urls(&text)
}

/// The `<Code>` and `<Message>` of an S3 error document, or the start of the body, with
/// any URL's query string removed.
fn summarize(body: &str) -> String {
    crate::redact_urls(&summarize_raw(body))
}

fn summarize_raw(body: &str) -> String {
    let element = |name: &str| {
        let open = format!("<{name}>");
        let close = format!("</{name}>");
        let start = body.find(&open)? + open.len();
        let len = body[start..].find(&close)?;
        Some(body[start..start + len].to_string())
    };
    match (element("Code"), element("Message")) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code,
        _ => {
            let trimmed = body.trim();
            if trimmed.is_empty() {
                "(empty body)".to_string()
            } else {
                trimmed.chars().take(200).collect()
            }
        }
    }
}

/// Turns "not found" into `None`.
fn optional<T>(result: Result<T, BlobError>) -> Result<Option<T>, BlobError> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(BlobError::NotFound(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// S3 timestamps are ISO 8601 (`2024-05-01T12:00:00.000Z`).
fn parse_timestamp(key: &str, text: &str) -> Result<i64, BlobError> {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.timestamp())
        .map_err(|e| {
            BlobError::Other(format!(
                "S3 listed {key:?} with unreadable LastModified {text:?}: {e}"
            ))
        })
}

#[async_trait]
impl Blobstore for S3Blobstore {
    async fn writer(&self, key: &str) -> Result<Box<dyn BlobWriter>, BlobError> {
        Ok(Box::new(self.s3_writer(key)?))
    }

    async fn size(&self, key: &str) -> Result<Option<u64>, BlobError> {
        validate_key(key)?;
        let head = optional(
            self.control
                .head_object(key)
                .await
                .map_err(|e| map_error(e, key)),
        )?;
        let Some((head, _)) = head else {
            return Ok(None);
        };
        let length = head
            .content_length
            .and_then(|len| u64::try_from(len).ok())
            .ok_or_else(|| BlobError::Other(format!("S3 sent no size for {key:?}")))?;
        Ok(Some(length))
    }

    async fn read_range(&self, key: &str, offset: u64, len: u64) -> Result<Bytes, BlobError> {
        validate_key(key)?;
        // Servers parse range bounds as signed 64-bit numbers.
        const MAX_POSITION: u64 = i64::MAX as u64;
        if len == 0 || offset > MAX_POSITION {
            // Nothing to read, but a missing blob is still reported as a read would.
            return match self.size(key).await? {
                Some(_) => Ok(Bytes::new()),
                None => Err(BlobError::NotFound(key.to_string())),
            };
        }
        // Open-ended ("to the end") when the last byte is out of range anyway.
        let last = offset
            .checked_add(len - 1)
            .filter(|last| *last <= MAX_POSITION);
        let response = match self.transfer.get_object_range(key, offset, last).await {
            Ok(response) => response,
            // Range starts at or past the end: nothing to read there.
            Err(S3Error::HttpFailWithBody(416, _)) => return Ok(Bytes::new()),
            Err(e) => return Err(map_error(e, key)),
        };
        let mut body = response.bytes().clone();
        if response.status_code() == 200 {
            // The server ignored the Range header and sent the whole object.
            let start = usize::try_from(offset)
                .unwrap_or(usize::MAX)
                .min(body.len());
            body = body.slice(start..);
        }
        let max = usize::try_from(len).unwrap_or(usize::MAX);
        if body.len() > max {
            body.truncate(max);
        }
        Ok(body)
    }

    /// One PUT to a presigned URL (UNSIGNED-PAYLOAD): the body streams through without
    /// being buffered, and without the per-part checksums of a multipart upload.
    async fn put_stream(&self, key: &str, size: u64, body: ByteStream) -> Result<(), BlobError> {
        validate_key(key)?;
        if size > SINGLE_PUT_MAX {
            return crate::put_through_writer(self.writer(key).await?, size, body).await;
        }
        let url = self
            .control
            .presign_put(key, PUT_URL_EXPIRY_SECS, None, None)
            .await
            .map_err(|e| map_error(e, key))?;
        let response = self
            .http
            .put(url)
            .header(reqwest::header::CONTENT_LENGTH, size)
            .header(reqwest::header::CONTENT_TYPE, CONTENT_TYPE)
            .body(reqwest::Body::wrap_stream(body))
            .send()
            .await
            .map_err(|e| BlobError::Unavailable(format!("S3 request: {}", error_chain(&e))))?;
        let status = response.status().as_u16();
        if response.status().is_success() {
            return Ok(());
        }
        let body = response.text().await.unwrap_or_default();
        Err(map_error(S3Error::HttpFailWithBody(status, body), key))
    }

    /// A GET of a presigned URL, streamed: rust-s3's own object stream is several
    /// times slower (it was the bottleneck of moving bits in the worker).
    async fn read(&self, key: &str) -> Result<ByteStream, BlobError> {
        validate_key(key)?;
        let url = self
            .control
            .presign_get(key, PUT_URL_EXPIRY_SECS, None)
            .await
            .map_err(|e| map_error(e, key))?;
        let response = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| BlobError::Unavailable(format!("S3 request: {}", error_chain(&e))))?;
        let status = response.status().as_u16();
        if !response.status().is_success() {
            let body = response.text().await.unwrap_or_default();
            return Err(map_error(S3Error::HttpFailWithBody(status, body), key));
        }
        Ok(Box::pin(response.bytes_stream().map_err(|e| {
            BlobError::Unavailable(format!("S3 response: {}", error_chain(&e)))
        })))
    }

    async fn copy(&self, from: &str, to: &str) -> Result<(), BlobError> {
        validate_key(from)?;
        validate_key(to)?;
        // rust-s3 puts the source into x-amz-copy-source verbatim, and S3 reads that
        // header URL-encoded, so encode it here (keeping the slashes).
        let source = s3::signing::uri_encode(from, false);
        self.transfer
            .copy_object_internal(&source, to)
            .await
            .map(|_| ())
            .map_err(|e| map_error(e, from))
    }

    async fn rename(&self, from: &str, to: &str) -> Result<(), BlobError> {
        if from == to {
            validate_key(from)?;
            return match self.size(from).await? {
                Some(_) => Ok(()),
                None => Err(BlobError::NotFound(from.to_string())),
            };
        }
        self.copy(from, to).await?;
        self.delete(from).await
    }

    async fn delete(&self, key: &str) -> Result<(), BlobError> {
        validate_key(key)?;
        match self.control.delete_object(key).await {
            Ok(_) => Ok(()),
            Err(e) => match map_error(e, key) {
                BlobError::NotFound(_) => Ok(()),
                other => Err(other),
            },
        }
    }

    async fn download(&self, key: &str) -> Result<Download, BlobError> {
        // A URL for a missing blob would only turn into an S3 error page at the
        // client; report it here like the local store does.
        if self.size(key).await?.is_none() {
            return Err(BlobError::NotFound(key.to_string()));
        }
        let url = self
            .control
            .presign_get(key, self.presign_expiry_secs, None)
            .await
            .map_err(|e| map_error(e, key))?;
        Ok(Download::Redirect { url })
    }

    async fn list(&self, prefix: &str) -> Result<Vec<BlobInfo>, BlobError> {
        let mut found = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let (page, _) = self
                .control
                .list_page(
                    prefix.to_string(),
                    None,
                    token.clone(),
                    None,
                    self.list_page_size,
                )
                .await
                .map_err(|e| self.bucket_error(e))?;
            for object in page.contents {
                let last_modified = parse_timestamp(&object.key, &object.last_modified)?;
                found.push(BlobInfo {
                    key: object.key,
                    size: object.size,
                    last_modified,
                });
            }
            match page.next_continuation_token {
                Some(next) if !next.is_empty() => {
                    if token.as_deref() == Some(next.as_str()) {
                        return Err(BlobError::Other(
                            "S3 listing repeated its continuation token".to_string(),
                        ));
                    }
                    token = Some(next);
                }
                _ if page.is_truncated => {
                    return Err(BlobError::Other(
                        "S3 listing truncated without a continuation token".to_string(),
                    ));
                }
                _ => break,
            }
        }
        Ok(found)
    }

    async fn check(&self) -> Result<(), BlobError> {
        self.probe_bucket().await.map_err(|e| self.bucket_error(e))
    }

    fn kind(&self) -> &'static str {
        "s3"
    }
}

struct MultipartUpload {
    id: String,
    parts: Vec<Part>,
    next_part: u32,
}

type PartTask = JoinHandle<Result<Part, BlobError>>;

/// Writes one blob: a single PUT when it fits in one part, otherwise a multipart upload
/// with one part uploading while the next one fills.
pub struct S3Writer {
    control: Arc<Bucket>,
    transfer: Arc<Bucket>,
    http: reqwest::Client,
    key: String,
    part_size: usize,
    buf: Vec<u8>,
    total: u64,
    /// Started with the first full part; `None` again once completed or aborted.
    upload: Option<MultipartUpload>,
    /// Parts being uploaded, oldest first (at most [`PARTS_IN_FLIGHT`]).
    in_flight: VecDeque<PartTask>,
    /// A part failed: finishing would complete a blob with a hole in it.
    failed: bool,
}

impl S3Writer {
    /// The multipart upload id, once the first part has been sent.
    pub fn upload_id(&self) -> Option<&str> {
        self.upload.as_ref().map(|upload| upload.id.as_str())
    }

    /// Appends to the part buffer, growing it no further than one part.
    fn buffer(&mut self, bytes: &[u8]) {
        let needed = self.buf.len() + bytes.len();
        if needed > self.buf.capacity() {
            let target = needed.max(self.buf.capacity() * 2).min(self.part_size);
            self.buf.reserve_exact(target - self.buf.len());
        }
        self.buf.extend_from_slice(bytes);
    }

    async fn start_upload(&mut self) -> Result<(), BlobError> {
        if self.upload.is_some() {
            return Ok(());
        }
        let started = self
            .control
            .initiate_multipart_upload(&self.key, CONTENT_TYPE)
            .await
            .map_err(|e| map_error(e, &self.key))?;
        self.upload = Some(MultipartUpload {
            id: started.upload_id,
            parts: Vec::new(),
            next_part: 1,
        });
        Ok(())
    }

    /// Waits for the oldest part in flight, if any, and records it. Parts are settled in
    /// the order they were sent, so the list stays in part-number order.
    async fn settle_oldest(&mut self) -> Result<(), BlobError> {
        let Some(task) = self.in_flight.pop_front() else {
            return Ok(());
        };
        let part = task
            .await
            .map_err(|e| BlobError::Other(format!("part upload task failed: {e}")))??;
        match self.upload.as_mut() {
            Some(upload) => {
                upload.parts.push(part);
                Ok(())
            }
            None => Err(BlobError::Other(
                "part finished without a multipart upload".to_string(),
            )),
        }
    }

    async fn settle_all(&mut self) -> Result<(), BlobError> {
        while !self.in_flight.is_empty() {
            self.settle_oldest().await?;
        }
        Ok(())
    }

    /// Takes the buffer as the next part number.
    fn next_part(&mut self) -> Result<(String, u32, Vec<u8>), BlobError> {
        let upload = self
            .upload
            .as_mut()
            .ok_or_else(|| BlobError::Other("no multipart upload to add a part to".to_string()))?;
        if upload.next_part > MAX_PARTS {
            return Err(BlobError::Other(format!(
                "blob {:?} needs more than {MAX_PARTS} parts; raise part_size",
                self.key
            )));
        }
        let number = upload.next_part;
        upload.next_part += 1;
        let body = std::mem::take(&mut self.buf);
        Ok((upload.id.clone(), number, body))
    }

    /// Starts uploading the full buffer in the background; with [`PARTS_IN_FLIGHT`]
    /// parts already under way it first waits for the oldest, which bounds memory.
    async fn send_full_part(&mut self) -> Result<(), BlobError> {
        self.start_upload().await?;
        while self.in_flight.len() >= PARTS_IN_FLIGHT {
            self.settle_oldest().await?;
        }
        let (upload_id, number, body) = self.next_part()?;
        // Full parts keep coming: allocate the whole part once instead of regrowing.
        self.buf = Vec::with_capacity(self.part_size);
        let (bucket, http, key) = (self.control.clone(), self.http.clone(), self.key.clone());
        self.in_flight.push_back(tokio::spawn(async move {
            upload_part(&bucket, &http, &key, &upload_id, number, body).await
        }));
        Ok(())
    }

    async fn complete(&mut self) -> Result<u64, BlobError> {
        if self.upload.is_none() {
            let body = std::mem::take(&mut self.buf);
            self.transfer
                .put_object_with_content_type(&self.key, &body, CONTENT_TYPE)
                .await
                .map_err(|e| map_error(e, &self.key))?;
            return Ok(self.total);
        }
        self.settle_all().await?;
        if !self.buf.is_empty() {
            let (upload_id, number, body) = self.next_part()?;
            let part = upload_part(
                &self.control,
                &self.http,
                &self.key,
                &upload_id,
                number,
                body,
            )
            .await?;
            if let Some(upload) = self.upload.as_mut() {
                upload.parts.push(part);
            }
        }
        let (upload_id, parts) = match &self.upload {
            Some(upload) => (upload.id.clone(), upload.parts.clone()),
            None => return Err(BlobError::Other("multipart upload vanished".to_string())),
        };
        self.transfer
            .complete_multipart_upload(&self.key, &upload_id, parts)
            .await
            .map_err(|e| map_error(e, &self.key))?;
        // Completed: nothing left for abort or Drop to clean up.
        self.upload = None;
        Ok(self.total)
    }

    async fn abort_upload(&mut self) -> Result<(), BlobError> {
        for task in std::mem::take(&mut self.in_flight) {
            task.abort();
            let _ = task.await;
        }
        self.buf = Vec::new();
        let Some(upload) = self.upload.take() else {
            return Ok(());
        };
        match self.control.abort_upload(&self.key, &upload.id).await {
            Ok(()) => Ok(()),
            Err(e) => match map_error(e, &self.key) {
                // Already gone.
                BlobError::NotFound(_) => Ok(()),
                other => Err(other),
            },
        }
    }
}

/// Uploads one part with a PUT to a presigned UploadPart URL: the buffer becomes the
/// request body as is (rust-s3's own part upload copies it and computes its MD5, which
/// made multipart uploads about three times slower than a plain PUT).
async fn upload_part(
    bucket: &Bucket,
    http: &reqwest::Client,
    key: &str,
    upload_id: &str,
    number: u32,
    body: Vec<u8>,
) -> Result<Part, BlobError> {
    let queries = std::collections::HashMap::from([
        ("partNumber".to_string(), number.to_string()),
        ("uploadId".to_string(), upload_id.to_string()),
    ]);
    let url = bucket
        .presign_put(key, PUT_URL_EXPIRY_SECS, None, Some(queries))
        .await
        .map_err(|e| map_error(e, key))?;
    let response = http
        .put(url)
        .header(reqwest::header::CONTENT_LENGTH, body.len())
        .body(body)
        .send()
        .await
        .map_err(|e| BlobError::Unavailable(format!("S3 request: {}", error_chain(&e))))?;
    let status = response.status().as_u16();
    if !response.status().is_success() {
        let text = response.text().await.unwrap_or_default();
        return Err(map_error(S3Error::HttpFailWithBody(status, text), key));
    }
    let etag = response
        .headers()
        .get(reqwest::header::ETAG)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| BlobError::Other(format!("S3 sent no ETag for part {number} of {key:?}")))?
        .to_string();
    Ok(Part {
        part_number: number,
        etag,
    })
}

#[async_trait]
impl BlobWriter for S3Writer {
    async fn write(&mut self, chunk: Bytes) -> Result<(), BlobError> {
        if self.failed {
            return Err(BlobError::Other(
                "blob writer is unusable after an earlier error".to_string(),
            ));
        }
        let mut rest: &[u8] = &chunk;
        while !rest.is_empty() {
            let take = (self.part_size - self.buf.len()).min(rest.len());
            self.buffer(&rest[..take]);
            rest = &rest[take..];
            self.total += take as u64;
            if self.buf.len() >= self.part_size
                && let Err(e) = self.send_full_part().await
            {
                self.failed = true;
                return Err(e);
            }
        }
        Ok(())
    }

    async fn finish(mut self: Box<Self>) -> Result<u64, BlobError> {
        let result = if self.failed {
            Err(BlobError::Other(
                "blob writer failed earlier; nothing stored".to_string(),
            ))
        } else {
            self.complete().await
        };
        if result.is_err()
            && let Err(e) = self.abort_upload().await
        {
            tracing::warn!(key = %self.key, error = %e, "could not abort multipart upload");
        }
        result
    }

    async fn abort(mut self: Box<Self>) -> Result<(), BlobError> {
        self.abort_upload().await
    }
}

impl Drop for S3Writer {
    fn drop(&mut self) {
        let in_flight = std::mem::take(&mut self.in_flight);
        for task in &in_flight {
            task.abort();
        }
        let Some(upload) = self.upload.take() else {
            return;
        };
        let key = std::mem::take(&mut self.key);
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(%key, upload_id = %upload.id, "writer dropped outside a runtime; multipart upload left pending");
            return;
        };
        let bucket = self.control.clone();
        runtime.spawn(async move {
            // The parts must be gone before the abort, or they could outlive it.
            for task in in_flight {
                let _ = task.await;
            }
            if let Err(e) = bucket.abort_upload(&key, &upload.id).await {
                tracing::warn!(%key, upload_id = %upload.id, error = %e, "could not abort multipart upload of a dropped writer");
            }
        });
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn settings() -> S3Settings {
        S3Settings {
            endpoint: Some("http://127.0.0.1:9".to_string()),
            region: "us-east-1".to_string(),
            bucket: "b".to_string(),
            access_key: Some("ak".to_string()),
            secret_key: Some("sk".to_string()),
            path_style: true,
            presign_expiry_secs: 600,
            part_size: S3Settings::DEFAULT_PART_SIZE,
        }
    }

    #[test]
    fn connect_validates_settings() {
        assert!(S3Blobstore::connect(settings()).is_ok());
        let cases: Vec<fn(&mut S3Settings)> = vec![
            |s| s.bucket.clear(),
            |s| s.part_size = S3Settings::MIN_PART_SIZE - 1,
            |s| s.presign_expiry_secs = 0,
            |s| s.presign_expiry_secs = MAX_PRESIGN_EXPIRY + 1,
            |s| s.secret_key = None,
            |s| s.endpoint = Some("127.0.0.1:9000".to_string()),
            |s| {
                s.endpoint = None;
                s.region = "nowhere-1".to_string();
            },
        ];
        for (i, change) in cases.into_iter().enumerate() {
            let mut s = settings();
            change(&mut s);
            assert!(
                matches!(S3Blobstore::connect(s), Err(BlobError::Other(_))),
                "case {i}"
            );
        }
    }

    #[test]
    fn debug_hides_secret() {
        let text = format!("{:?}", settings());
        assert!(!text.contains("\"sk\""), "{text}");
        assert!(text.contains("redacted"));
    }

    #[test]
    fn errors_map_by_status() {
        let xml = "<Error><Code>NoSuchKey</Code><Message>gone</Message></Error>";
        assert!(map_error(S3Error::HttpFailWithBody(404, xml.into()), "k").is_not_found());
        for status in [500, 503, 408, 429] {
            assert!(matches!(
                map_error(S3Error::HttpFailWithBody(status, String::new()), "k"),
                BlobError::Unavailable(_)
            ));
        }
        match map_error(S3Error::HttpFailWithBody(403, xml.into()), "k") {
            BlobError::Other(msg) => assert!(msg.contains("NoSuchKey: gone"), "{msg}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn summarize_handles_odd_bodies() {
        assert_eq!(summarize(""), "(empty body)");
        assert_eq!(summarize("<Code>X</Code>"), "X");
        assert_eq!(summarize("<Code>X"), "<Code>X");
        assert_eq!(summarize(&"é".repeat(500)).chars().count(), 200);
    }

    #[test]
    fn timestamps_parse() {
        assert_eq!(
            parse_timestamp("k", "2024-05-01T12:00:00.000Z").unwrap(),
            1_714_564_800
        );
        assert!(parse_timestamp("k", "yesterday").is_err());
    }

    #[tokio::test]
    async fn writer_buffer_never_exceeds_a_part() {
        let store = S3Blobstore::connect(settings()).unwrap();
        let mut w = store.s3_writer("k").unwrap();
        for _ in 0..100 {
            w.buffer(&[0u8; 1000]);
        }
        assert!(w.buf.capacity() <= S3Settings::DEFAULT_PART_SIZE);
        let mut w = store.s3_writer("k").unwrap();
        let part = S3Settings::DEFAULT_PART_SIZE;
        w.buffer(&vec![0u8; part - 1]);
        w.buffer(&[0u8; 1]);
        assert_eq!(w.buf.capacity(), part);
    }
}
