//! Shared setup for the tests that run against a real S3 server.
#![allow(dead_code, clippy::unwrap_used)]

use std::time::Duration;

use packages_blobstore::{S3Blobstore, S3Settings};
use s3::{Bucket, Region, creds::Credentials};

pub const ENDPOINT_VAR: &str = "PACKAGES_TEST_S3_ENDPOINT";
pub const ACCESS_KEY_VAR: &str = "PACKAGES_TEST_S3_ACCESS_KEY";
pub const SECRET_KEY_VAR: &str = "PACKAGES_TEST_S3_SECRET_KEY";
pub const MIB: usize = 1 << 20;

pub struct Server {
    pub endpoint: String,
    pub access_key: String,
    pub secret_key: String,
}

/// The server under test. Missing variables fail the test: skipping would let a broken
/// S3 store pass unnoticed.
pub fn server() -> Server {
    let var = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
    match (var(ENDPOINT_VAR), var(ACCESS_KEY_VAR), var(SECRET_KEY_VAR)) {
        (Some(endpoint), Some(access_key), Some(secret_key)) => Server {
            endpoint,
            access_key,
            secret_key,
        },
        _ => panic!(
            "the S3 blobstore tests need a real S3 server: run them through `make test`, \
             which starts s3s-fs and sets {ENDPOINT_VAR}, {ACCESS_KEY_VAR} and {SECRET_KEY_VAR}"
        ),
    }
}

pub fn bucket_name() -> String {
    format!("pkgtest-{}", uuid::Uuid::new_v4().simple())
}

pub fn settings(bucket: &str, part_size: usize) -> S3Settings {
    let server = server();
    S3Settings {
        endpoint: Some(server.endpoint),
        public_endpoint: None,
        region: "us-east-1".to_string(),
        bucket: bucket.to_string(),
        access_key: Some(server.access_key),
        secret_key: Some(server.secret_key),
        path_style: true,
        presign_expiry_secs: 600,
        part_size,
    }
}

/// A store on a bucket of its own, created through `ensure_bucket`, and the bucket name.
pub async fn fresh_store(part_size: usize) -> (S3Blobstore, String) {
    let bucket = bucket_name();
    let store = S3Blobstore::connect(settings(&bucket, part_size)).unwrap();
    store.ensure_bucket().await.unwrap();
    (store, bucket)
}

/// A plain rust-s3 handle on the same bucket, to look behind the store's back.
pub fn raw_bucket(store_bucket: &str) -> Box<Bucket> {
    let server = server();
    let region = Region::Custom {
        region: "us-east-1".to_string(),
        endpoint: server.endpoint,
    };
    let credentials = Credentials::new(
        Some(&server.access_key),
        Some(&server.secret_key),
        None,
        None,
        None,
    )
    .unwrap();
    let mut bucket = Bucket::new(store_bucket, region, credentials)
        .unwrap()
        .with_path_style();
    bucket.set_request_timeout(Some(Duration::from_secs(10)));
    bucket
}

/// Bytes without short periods, so a lost, doubled or reordered part changes them.
pub fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}
