//! Where and how to reach the bucket.

/// Where and how to reach the bucket.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Settings {
    /// `http(s)://host[:port]` of an S3-compatible server; `None` for AWS itself.
    pub endpoint: Option<String>,
    /// The endpoint clients outside the service's network reach the same server at, used
    /// for every link a client receives (download redirects, direct-upload links);
    /// `None`: `endpoint`.
    pub public_endpoint: Option<String>,
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
            .field("public_endpoint", &self.public_endpoint)
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

#[cfg(test)]
mod tests {
    use crate::s3::tests::settings;

    #[test]
    fn debug_hides_secret() {
        let text = format!("{:?}", settings());
        assert!(!text.contains("\"sk\""), "{text}");
        assert!(text.contains("redacted"));
    }
}
