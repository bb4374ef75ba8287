//! Blobs as objects in an S3 (or S3-compatible) bucket.
//!
//! Large blobs are written with a multipart upload that only completes in
//! [`BlobWriter::finish`](crate::BlobWriter::finish), so nothing is visible under a key
//! before then; downloads are presigned URLs so the bytes never pass through this service.
//!
//! This module holds the store itself (connecting, the bucket); `settings` says where the
//! bucket is, `objects` implements the blob operations, `writer` the multipart writer and
//! `errors` maps S3 failures onto [`BlobError`].

use std::sync::Arc;
use std::time::Duration;

use s3::error::S3Error;
use s3::request::Request as _;
use s3::request::tokio_backend::ReqwestRequest;
use s3::{Bucket, BucketConfiguration, Region, command::Command, creds::Credentials};

use crate::BlobError;
use crate::error::http_error;

mod errors;
mod objects;
mod settings;
mod writer;

use errors::{map_error, summarize};
pub use settings::S3Settings;
pub use writer::S3Writer;

/// Requests that move little data (HEAD, list, delete, multipart bookkeeping) fail fast,
/// so a dead or black-holed endpoint shows up in seconds.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(10);
/// Requests that carry a part, a blob or a server-side copy get longer.
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(300);
const CONTENT_TYPE: &str = "application/octet-stream";

/// Lifetime of the presigned URLs of streaming reads and writes: they only have to
/// outlive the request.
const PUT_URL_EXPIRY_SECS: u32 = 3600;

/// Longest presigned URL lifetime S3 accepts (one week).
const MAX_PRESIGN_EXPIRY: u32 = 604_800;
const US_EAST_1: &str = "us-east-1";

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
    /// Signs the links clients receive: `control` itself, or the same bucket at
    /// `public_endpoint` (a presigned URL's signature covers its host).
    public: Arc<Bucket>,
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
        let invalid = |what: String| Err(BlobError::Settings(what));
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
        let custom = |name: &str, endpoint: &str| {
            if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
                return Err(BlobError::Settings(format!(
                    "{name} {endpoint:?} must start with http:// or https://"
                )));
            }
            Ok(Region::Custom {
                region: region_name.clone(),
                endpoint: endpoint.trim_end_matches('/').to_string(),
            })
        };
        let public_region = match &settings.public_endpoint {
            Some(endpoint) => Some(custom("public_endpoint", endpoint)?),
            None => None,
        };
        let region = match &settings.endpoint {
            Some(endpoint) => custom("endpoint", endpoint)?,
            None => {
                let region: Region = region_name.parse().map_err(|e| BlobError::S3 {
                    what: "S3 region is unreadable",
                    source: S3Error::Utf8(e),
                })?;
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
        .map_err(|e| BlobError::S3 {
            what: "S3 credentials are unavailable",
            source: e.into(),
        })?;

        let new_bucket =
            |region: Region| {
                let mut bucket = Bucket::new(&settings.bucket, region, credentials.clone())
                    .map_err(|source| BlobError::S3 {
                        what: "S3 client setup failed",
                        source,
                    })?;
                if settings.path_style {
                    bucket.set_path_style();
                }
                Ok::<_, BlobError>(bucket)
            };
        let bucket = new_bucket(region)?;
        let with_timeout = |timeout| {
            bucket
                .with_request_timeout(timeout)
                .map(Arc::<Bucket>::from)
                .map_err(|source| BlobError::S3 {
                    what: "S3 client setup failed",
                    source,
                })
        };
        let control = with_timeout(CONTROL_TIMEOUT)?;
        let public = match public_region {
            Some(region) => Arc::from(new_bucket(region)?),
            None => control.clone(),
        };
        Ok(Self {
            control,
            public,
            transfer: with_timeout(TRANSFER_TIMEOUT)?,
            region: region_name,
            presign_expiry_secs: settings.presign_expiry_secs,
            part_size: settings.part_size,
            list_page_size: None,
            http: reqwest::Client::builder()
                .timeout(TRANSFER_TIMEOUT)
                .build()
                .map_err(|e| http_error("HTTP client setup failed", None, e))?,
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
                Err(_) => Err(BlobError::Settings(format!(
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
                BlobError::Settings(format!("bucket {} does not exist", self.control.name()))
            }
            other => other,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    pub(super) fn settings() -> S3Settings {
        S3Settings {
            endpoint: Some("http://127.0.0.1:9".to_string()),
            public_endpoint: None,
            region: "us-east-1".to_string(),
            bucket: "b".to_string(),
            access_key: Some("ak".to_string()),
            secret_key: Some("sk".to_string()),
            path_style: true,
            presign_expiry_secs: 600,
            part_size: S3Settings::DEFAULT_PART_SIZE,
        }
    }

    /// Access key id of [`dead_store`], to look for in error texts.
    pub(super) const ACCESS_KEY: &str = "AKIDPRESIGNTEST";

    /// A store whose endpoint refuses connections: a port that was free a moment ago.
    pub(super) fn dead_store() -> S3Blobstore {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        S3Blobstore::connect(S3Settings {
            endpoint: Some(format!("http://127.0.0.1:{port}")),
            public_endpoint: None,
            access_key: Some(ACCESS_KEY.to_string()),
            ..settings()
        })
        .unwrap()
    }

    /// No rendering of `e` (its text, the whole chain, Debug) holds a presigned URL's
    /// signature or credential, while the chain still names `path`.
    pub(super) fn assert_no_credentials(e: &BlobError, path: &str) {
        let chain = crate::Chain(e).to_string();
        assert!(chain.contains(path), "{chain}");
        for text in [e.to_string(), chain, format!("{e:?}")] {
            for secret in ["X-Amz-Signature", "X-Amz-Credential", ACCESS_KEY, "?"] {
                assert!(!text.contains(secret), "{secret} in {text}");
            }
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
                matches!(S3Blobstore::connect(s), Err(BlobError::Settings(_))),
                "case {i}"
            );
        }
    }
}
