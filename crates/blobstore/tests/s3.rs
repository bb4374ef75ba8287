//! The S3 store against a real S3 server (s3s-fs under `make test`): what only this store
//! does (multipart parts and their aborts, paged listings, presigned URLs, the bucket,
//! unreachable or refusing servers). What every store promises is in `contract.rs`.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use common::{MIB, data, fresh_store, raw_bucket, settings};
use packages_blobstore::{
    BlobError, BlobWriter, Blobstore, Chain, Download, S3Blobstore, S3Settings,
};

const PART: usize = S3Settings::MIN_PART_SIZE;

async fn put(store: &S3Blobstore, key: &str, bytes: &[u8]) {
    let mut writer = store.writer(key).await.unwrap();
    writer.write(Bytes::copy_from_slice(bytes)).await.unwrap();
    assert_eq!(writer.finish().await.unwrap(), bytes.len() as u64);
}

async fn write_chunked(writer: &mut dyn BlobWriter, bytes: &[u8], chunk: usize) {
    for piece in bytes.chunks(chunk) {
        writer.write(Bytes::copy_from_slice(piece)).await.unwrap();
    }
}

async fn read_all(store: &S3Blobstore, key: &str) -> Vec<u8> {
    store.read_range(key, 0, u64::MAX).await.unwrap().to_vec()
}

fn redirect_url(download: Download) -> String {
    match download {
        Download::Redirect { url } => url,
        Download::Stream { .. } => panic!("the S3 store must hand out presigned URLs"),
    }
}

/// Fetches a presigned URL the way a client does: plain HTTP, no credentials.
async fn fetch(url: &str) -> (u16, Vec<u8>) {
    let response = reqwest::get(url).await.unwrap();
    let status = response.status().as_u16();
    (status, response.bytes().await.unwrap().to_vec())
}

/// Whether the multipart upload still exists: uploading a part to it only works then.
async fn upload_exists(bucket: &str, key: &str, upload_id: &str) -> bool {
    raw_bucket(bucket)
        .put_multipart_chunk(
            b"probe".to_vec(),
            key,
            10_000,
            upload_id,
            "application/octet-stream",
        )
        .await
        .is_ok()
}

#[tokio::test]
async fn small_blob_is_a_single_put() {
    let (store, _) = fresh_store(PART).await;
    let bytes = data(100_000, 1);
    let mut writer = store.s3_writer("gu/id/small").unwrap();
    write_chunked(&mut writer, &bytes, 7_000).await;
    assert_eq!(
        writer.upload_id(),
        None,
        "no multipart upload below one part"
    );
    assert_eq!(Box::new(writer).finish().await.unwrap(), 100_000);
    assert_eq!(read_all(&store, "gu/id/small").await, bytes);
}

#[tokio::test]
async fn multipart_blob_round_trips() {
    let (store, _) = fresh_store(PART).await;
    let bytes = data(20 * MIB + 12_345, 2);
    let mut writer = store.s3_writer("gu/id/big").unwrap();
    write_chunked(&mut writer, &bytes, 64 * 1024).await;
    assert!(writer.upload_id().is_some(), "20 MiB must go multipart");
    // Parts are uploaded, but nothing is visible before finish.
    assert_eq!(store.size("gu/id/big").await.unwrap(), None);
    assert!(store.list("gu/").await.unwrap().is_empty());
    assert_eq!(Box::new(writer).finish().await.unwrap(), bytes.len() as u64);

    assert_eq!(
        store.size("gu/id/big").await.unwrap(),
        Some(bytes.len() as u64)
    );
    assert_eq!(read_all(&store, "gu/id/big").await, bytes);
    // Ranges across part boundaries.
    for (offset, len) in [(PART - 10, 20), (2 * PART - 1, PART + 2), (0, 1)] {
        assert_eq!(
            store
                .read_range("gu/id/big", offset as u64, len as u64)
                .await
                .unwrap(),
            &bytes[offset..offset + len],
            "range {offset}+{len}"
        );
    }
    let url = redirect_url(store.download("gu/id/big").await.unwrap());
    let (status, body) = fetch(&url).await;
    assert_eq!(status, 200);
    assert!(body == bytes, "presigned download differs");
}

#[tokio::test]
async fn blob_of_exactly_whole_parts() {
    let (store, _) = fresh_store(PART).await;
    let bytes = data(2 * PART, 3);
    let mut writer = store.writer("whole").await.unwrap();
    write_chunked(writer.as_mut(), &bytes, 1 << 20).await;
    assert_eq!(writer.finish().await.unwrap(), bytes.len() as u64);
    assert_eq!(read_all(&store, "whole").await, bytes);
}

/// A writer told how many bytes to expect sends its first part as they come: the first
/// write opens the part's request, where a buffering writer waits for a whole part.
#[tokio::test]
async fn promised_bytes_stream_as_the_first_part() {
    let (store, _) = fresh_store(PART).await;
    let bytes = data(3 * PART + 4321, 7);
    let mut writer = store.s3_writer("gu/id/streamed").unwrap();
    writer.expect_at_least(2 * PART as u64 + 10);
    write_chunked(&mut writer, &bytes[..100_000], 7_000).await;
    assert!(
        writer.upload_id().is_some(),
        "the first bytes must open the streamed part"
    );
    write_chunked(&mut writer, &bytes[100_000..], 64 * 1024).await;
    assert_eq!(Box::new(writer).finish().await.unwrap(), bytes.len() as u64);
    assert_eq!(read_all(&store, "gu/id/streamed").await, bytes);

    // Exactly the promise: the streamed part is the whole blob.
    let exact = data(PART + 1, 8);
    let mut writer = store.s3_writer("gu/id/exact").unwrap();
    writer.expect_at_least(exact.len() as u64);
    write_chunked(&mut writer, &exact, 1 << 20).await;
    assert_eq!(Box::new(writer).finish().await.unwrap(), exact.len() as u64);
    assert_eq!(read_all(&store, "gu/id/exact").await, exact);

    // Below one part a promise changes nothing: one PUT at the end.
    let mut writer = store.s3_writer("gu/id/small").unwrap();
    writer.expect_at_least(100_000);
    write_chunked(&mut writer, &bytes[..100_000], 7_000).await;
    assert_eq!(writer.upload_id(), None);
    assert_eq!(Box::new(writer).finish().await.unwrap(), 100_000);
}

/// Fewer bytes than promised: the blob is refused and its upload aborted.
#[tokio::test]
async fn a_broken_promise_stores_nothing() {
    let (store, bucket) = fresh_store(PART).await;
    let mut writer = store.s3_writer("staging/p/short").unwrap();
    writer.expect_at_least(2 * PART as u64);
    write_chunked(&mut writer, &data(PART, 9), 64 * 1024).await;
    let upload_id = writer.upload_id().unwrap().to_string();
    let e = Box::new(writer).finish().await.unwrap_err();
    assert!(
        matches!(e, BlobError::Length { expected, actual } if expected == 2 * PART as u64 && actual == PART as u64),
        "{e:?}"
    );
    assert!(!upload_exists(&bucket, "staging/p/short", &upload_id).await);
    assert_eq!(store.size("staging/p/short").await.unwrap(), None);
    assert!(store.list("").await.unwrap().is_empty());
}

#[tokio::test]
async fn aborted_multipart_writer_leaves_nothing() {
    let (store, bucket) = fresh_store(PART).await;
    let mut writer = store.s3_writer("staging/p/u").unwrap();
    write_chunked(&mut writer, &data(12 * MIB, 4), 64 * 1024).await;
    let upload_id = writer.upload_id().unwrap().to_string();
    assert!(upload_exists(&bucket, "staging/p/u", &upload_id).await);

    Box::new(writer).abort().await.unwrap();
    assert!(!upload_exists(&bucket, "staging/p/u", &upload_id).await);
    assert_eq!(store.size("staging/p/u").await.unwrap(), None);
    assert!(store.list("").await.unwrap().is_empty());
}

#[tokio::test]
async fn dropped_multipart_writer_aborts_its_upload() {
    let (store, bucket) = fresh_store(PART).await;
    let mut writer = store.s3_writer("staging/p/dropped").unwrap();
    write_chunked(&mut writer, &data(6 * MIB, 5), 64 * 1024).await;
    let upload_id = writer.upload_id().unwrap().to_string();
    drop(writer);

    let deadline = Instant::now() + Duration::from_secs(10);
    while upload_exists(&bucket, "staging/p/dropped", &upload_id).await {
        assert!(Instant::now() < deadline, "upload still pending after drop");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(store.size("staging/p/dropped").await.unwrap(), None);
}

#[tokio::test]
async fn copy_of_a_multipart_blob() {
    let (store, _) = fresh_store(PART).await;
    let bytes = data(11 * MIB, 6);
    let mut writer = store.writer("big").await.unwrap();
    write_chunked(writer.as_mut(), &bytes, 256 * 1024).await;
    writer.finish().await.unwrap();
    store.rename("big", "big2").await.unwrap();
    assert_eq!(store.size("big").await.unwrap(), None);
    assert_eq!(read_all(&store, "big2").await, bytes);
}

#[tokio::test]
async fn list_across_pages() {
    let (store, _) = fresh_store(PART).await;
    for (key, len) in [
        ("staging/p1/u1", 1),
        ("staging/p1/u2", 2),
        ("staging/p2/u3", 3),
        ("gu/id/g1", 4),
        ("stagingx", 5),
    ] {
        put(&store, key, &data(len, len as u64)).await;
    }
    let keys = |infos: Vec<packages_blobstore::BlobInfo>| {
        infos.into_iter().map(|info| info.key).collect::<Vec<_>>()
    };
    // A page size of 2 makes even these few keys span several pages.
    let paged = store.with_list_page_size(2);
    assert_eq!(
        keys(paged.list("").await.unwrap()),
        [
            "gu/id/g1",
            "staging/p1/u1",
            "staging/p1/u2",
            "staging/p2/u3",
            "stagingx"
        ]
    );
    assert_eq!(
        keys(paged.list("staging/").await.unwrap()),
        ["staging/p1/u1", "staging/p1/u2", "staging/p2/u3"]
    );
    assert_eq!(
        keys(paged.list("staging/p1/").await.unwrap()),
        ["staging/p1/u1", "staging/p1/u2"]
    );
    assert!(paged.list("nothing/").await.unwrap().is_empty());
    let infos = paged.list("staging/p2/").await.unwrap();
    assert_eq!(infos.len(), 1);
    assert_eq!(infos[0].size, 3);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(
        (now - infos[0].last_modified).abs() < 120,
        "{} vs {now}",
        infos[0].last_modified
    );
}

#[tokio::test]
async fn tampered_presigned_url_is_refused() {
    let (store, _) = fresh_store(PART).await;
    put(&store, "k", b"secret bits").await;
    let url = redirect_url(store.download("k").await.unwrap());
    let (status, body) = fetch(&url).await;
    assert_eq!((status, body.as_slice()), (200, &b"secret bits"[..]));

    let marker = "X-Amz-Signature=";
    let at = url.find(marker).unwrap() + marker.len();
    let mut tampered = url.clone().into_bytes();
    tampered[at] = if tampered[at] == b'0' { b'1' } else { b'0' };
    let (status, _) = fetch(&String::from_utf8(tampered).unwrap()).await;
    assert_eq!(status, 403);

    // Another key under the same signature is refused too.
    let (status, _) = fetch(&url.replacen("/k?", "/j?", 1)).await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn expired_presigned_url_is_refused() {
    let (_, bucket) = fresh_store(PART).await;
    let mut short = settings(&bucket, PART);
    short.presign_expiry_secs = 2;
    let store = S3Blobstore::connect(short).unwrap();
    put(&store, "k", b"secret bits").await;
    let url = redirect_url(store.download("k").await.unwrap());
    let (status, body) = fetch(&url).await;
    assert_eq!((status, body.as_slice()), (200, &b"secret bits"[..]));
    // Signing times have whole seconds: wait out the expiry with a second to spare.
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    let (status, body) = fetch(&url).await;
    assert_eq!(status, 403, "{}", String::from_utf8_lossy(&body));
}

#[tokio::test]
async fn a_dead_endpoint_is_a_retryable_failure() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let mut dead = settings("pkgtest-dead", PART);
    dead.endpoint = Some(format!("http://127.0.0.1:{port}"));
    let store = S3Blobstore::connect(dead).unwrap();

    // Bounded by the client's timeouts: a guard against hanging, not a speed claim.
    let err = tokio::time::timeout(Duration::from_secs(60), store.check())
        .await
        .expect("a dead endpoint must not hang the check")
        .unwrap_err();
    assert!(matches!(err, BlobError::Http { .. }), "{}", Chain(&err));
    assert!(err.is_retryable(), "{}", Chain(&err));
    for err in [
        store.size("k").await.unwrap_err(),
        store.ensure_bucket().await.unwrap_err(),
    ] {
        assert!(matches!(err, BlobError::Http { .. }), "{}", Chain(&err));
        assert!(err.is_retryable(), "{}", Chain(&err));
    }
}

#[tokio::test]
async fn wrong_credentials_are_refused() {
    let (_, bucket) = fresh_store(PART).await;
    let mut wrong = settings(&bucket, PART);
    wrong.secret_key = Some("not-the-secret".to_string());
    let store = S3Blobstore::connect(wrong).unwrap();
    let err = store.check().await.unwrap_err();
    assert!(
        matches!(err, BlobError::Status { status: 403, .. }),
        "{}",
        Chain(&err)
    );
    assert!(!err.is_retryable(), "{}", Chain(&err));
}

#[tokio::test]
async fn ensure_bucket_is_idempotent_and_check_passes() {
    let bucket = common::bucket_name();
    let store = S3Blobstore::connect(settings(&bucket, PART)).unwrap();
    // Before the bucket exists the store is not ready.
    assert!(store.check().await.is_err());
    store.ensure_bucket().await.unwrap();
    store.ensure_bucket().await.unwrap();
    store.check().await.unwrap();
    assert_eq!(store.kind(), "s3");

    // A second instance racing to create the same bucket is fine too.
    let other = S3Blobstore::connect(settings(&bucket, PART)).unwrap();
    other.ensure_bucket().await.unwrap();
}

#[tokio::test]
async fn ensure_bucket_outside_us_east_1() {
    let mut eu = settings(&common::bucket_name(), PART);
    eu.region = "eu-west-1".to_string();
    let store = S3Blobstore::connect(eu).unwrap();
    store.ensure_bucket().await.unwrap();
    put(&store, "k", b"v").await;
    assert_eq!(read_all(&store, "k").await, b"v");
}
