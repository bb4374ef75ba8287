//! What every [`Blobstore`] promises, written once and run against each store: the local
//! store in a temporary directory and the S3 store on a bucket of its own (a real S3
//! server, s3s-fs under `make test`). Behaviour only one store has is tested next to that
//! store (`src/local.rs`, `tests/s3.rs`).
//!
//! Keys that are a prefix of other blobs (`dir` while `dir/inside` exists) hold no blob in
//! either store, but s3s-fs keeps objects as files and answers 500 for such a key where S3
//! answers 404, so that case is tested with the local store only.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use common::{MIB, data};
use futures_util::StreamExt as _;
use packages_blobstore::{
    BlobError, BlobInfo, Blobstore, ByteStream, Chain, Download, LocalBlobstore, S3Settings,
};

/// Runs each contract case once per store, as `local::<case>` and `s3::<case>`.
macro_rules! contract {
    ($($case:ident),+ $(,)?) => {
        mod local {
            $(
                #[tokio::test]
                async fn $case() {
                    let (store, _dir) = super::local_store();
                    super::$case(&store).await;
                }
            )+

            #[tokio::test]
            async fn kind() {
                let (store, _dir) = super::local_store();
                assert_eq!(packages_blobstore::Blobstore::kind(&store), "local");
            }
        }

        mod s3 {
            $(
                #[tokio::test]
                async fn $case() {
                    let store = super::s3_store().await;
                    super::$case(&store).await;
                }
            )+

            #[tokio::test]
            async fn kind() {
                let store = super::s3_store().await;
                assert_eq!(packages_blobstore::Blobstore::kind(&store), "s3");
            }
        }
    };
}

contract!(
    writes_in_odd_chunks_round_trip,
    empty_blob,
    finish_replaces_an_existing_blob,
    missing_blobs,
    read_range_edges,
    read_from_streams_to_the_end,
    aborted_writer_leaves_nothing,
    dropped_writer_leaves_nothing,
    put_stream_round_trips,
    put_stream_of_the_wrong_length_stores_nothing,
    put_stream_error_stores_nothing,
    unsynced_put_round_trips_until_synced,
    copy,
    copy_range,
    rename,
    delete,
    list_by_prefix,
    download_hands_out_the_bytes,
    bad_keys_are_refused,
    check_passes,
);

/// A local store in a fresh temporary directory, which lives as long as the guard.
fn local_store() -> (LocalBlobstore, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalBlobstore::new(dir.path().join("blobs")).unwrap();
    (store, dir)
}

/// An S3 store on a fresh bucket, with the smallest part size S3 allows so that a few
/// MiB already take the multipart path.
async fn s3_store() -> packages_blobstore::S3Blobstore {
    common::fresh_store(S3Settings::MIN_PART_SIZE).await.0
}

/// Larger than every store's write buffer (local: 1 MiB) and than one S3 part, and no
/// multiple of either.
const LARGE: usize = 6 * MIB + 12_345;

async fn put(store: &dyn Blobstore, key: &str, bytes: &[u8]) {
    let mut writer = store.writer(key).await.unwrap();
    writer.write(Bytes::copy_from_slice(bytes)).await.unwrap();
    assert_eq!(writer.finish().await.unwrap(), bytes.len() as u64);
}

async fn drain(mut body: ByteStream) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(chunk) = body.next().await {
        out.extend_from_slice(&chunk.unwrap());
    }
    out
}

/// The whole blob through `read`.
async fn read_all(store: &dyn Blobstore, key: &str) -> Vec<u8> {
    drain(store.read(key).await.unwrap()).await
}

fn stream_of(bytes: &[u8], chunk: usize) -> ByteStream {
    let chunks: Vec<Result<Bytes, BlobError>> = bytes
        .chunks(chunk)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    Box::pin(futures_util::stream::iter(chunks))
}

/// A stream that yields a few bytes and then fails with `error`.
fn failing(error: BlobError) -> ByteStream {
    Box::pin(futures_util::stream::iter(vec![
        Ok(Bytes::from_static(b"first")),
        Err(error),
    ]))
}

fn keys(infos: Vec<BlobInfo>) -> Vec<String> {
    infos.into_iter().map(|info| info.key).collect()
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// The bytes of `key` the way a client gets them: the local store streams them, the S3
/// store hands out a presigned URL that works with plain HTTP and no credentials.
async fn downloaded(store: &dyn Blobstore, key: &str) -> Vec<u8> {
    match (store.kind(), store.download(key).await.unwrap()) {
        ("local", Download::Stream { length, body }) => {
            let bytes = drain(body).await;
            assert_eq!(length, bytes.len() as u64, "announced length of {key}");
            bytes
        }
        ("s3", Download::Redirect { url }) => {
            let response = reqwest::get(&url).await.unwrap();
            assert_eq!(response.status().as_u16(), 200, "GET of the URL for {key}");
            response.bytes().await.unwrap().to_vec()
        }
        (kind, download) => panic!("{kind} store handed out {download:?}"),
    }
}

/// Nothing under `key`, and nothing listed anywhere.
async fn assert_empty_store(store: &dyn Blobstore, key: &str) {
    assert_eq!(store.size(key).await.unwrap(), None, "{key}");
    assert!(store.read(key).await.err().unwrap().is_not_found(), "{key}");
    assert_eq!(keys(store.list("").await.unwrap()), Vec::<String>::new());
}

async fn writes_in_odd_chunks_round_trip(store: &dyn Blobstore) {
    for (key, len, chunk) in [
        ("one/byte", 1, 1),
        ("gu/id/small", 100_000, 7_001),
        ("gu/id/large", LARGE, 65_537),
    ] {
        let bytes = data(len, len as u64);
        let mut writer = store.writer(key).await.unwrap();
        for (i, piece) in bytes.chunks(chunk).enumerate() {
            writer.write(Bytes::copy_from_slice(piece)).await.unwrap();
            if i == 1 {
                // An empty chunk adds nothing.
                writer.write(Bytes::new()).await.unwrap();
            }
        }
        // Nothing is visible before finish.
        assert_eq!(store.size(key).await.unwrap(), None, "{key}");
        assert!(!keys(store.list("").await.unwrap()).contains(&key.to_string()));
        assert_eq!(writer.finish().await.unwrap(), len as u64, "{key}");

        assert_eq!(store.size(key).await.unwrap(), Some(len as u64), "{key}");
        assert!(read_all(store, key).await == bytes, "read of {key} differs");
        let whole = store.read_range(key, 0, u64::MAX).await.unwrap();
        assert!(whole == bytes, "whole range of {key} differs");
        let (offset, want) = (len / 3, (len / 2).max(1));
        let end = (offset + want).min(len);
        assert_eq!(
            store
                .read_range(key, offset as u64, want as u64)
                .await
                .unwrap(),
            &bytes[offset..end],
            "{key} from {offset}"
        );
        assert_eq!(
            store.read_range(key, len as u64 - 1, 10).await.unwrap(),
            &bytes[len - 1..],
            "last byte of {key}"
        );
    }
}

async fn empty_blob(store: &dyn Blobstore) {
    let writer = store.writer("empty/written").await.unwrap();
    assert_eq!(writer.finish().await.unwrap(), 0);
    store
        .put_stream("empty/streamed", 0, stream_of(b"", 1))
        .await
        .unwrap();
    for key in ["empty/written", "empty/streamed"] {
        assert_eq!(store.size(key).await.unwrap(), Some(0), "{key}");
        assert!(store.read_range(key, 0, 10).await.unwrap().is_empty());
        assert!(store.read_range(key, 5, 10).await.unwrap().is_empty());
        assert!(read_all(store, key).await.is_empty(), "{key}");
        assert!(downloaded(store, key).await.is_empty(), "{key}");
    }
    let sizes: Vec<_> = store
        .list("empty/")
        .await
        .unwrap()
        .into_iter()
        .map(|info| info.size)
        .collect();
    assert_eq!(sizes, [0, 0]);
}

async fn finish_replaces_an_existing_blob(store: &dyn Blobstore) {
    put(store, "a/b", b"old and longer contents").await;
    put(store, "a/b", b"new").await;
    assert_eq!(store.size("a/b").await.unwrap(), Some(3));
    assert_eq!(read_all(store, "a/b").await, b"new");
    assert_eq!(store.read_range("a/b", 0, 100).await.unwrap(), &b"new"[..]);

    let large = data(LARGE, 11);
    let mut writer = store.writer("a/b").await.unwrap();
    for piece in large.chunks(MIB) {
        writer.write(Bytes::copy_from_slice(piece)).await.unwrap();
    }
    // The old blob stays readable until the new one is finished.
    assert_eq!(store.size("a/b").await.unwrap(), Some(3));
    assert_eq!(read_all(store, "a/b").await, b"new");
    writer.finish().await.unwrap();
    assert!(read_all(store, "a/b").await == large, "large replacement");

    put(store, "a/b", b"small again").await;
    assert_eq!(read_all(store, "a/b").await, b"small again");
    assert_eq!(keys(store.list("").await.unwrap()), ["a/b"]);
}

async fn missing_blobs(store: &dyn Blobstore) {
    put(store, "k", b"a blob").await;
    // Never written; below a blob.
    for key in ["no/such", "k/below"] {
        assert_eq!(store.size(key).await.unwrap(), None, "{key}");
        for len in [10, 0] {
            let err = store.read_range(key, 0, len).await.unwrap_err();
            assert!(
                err.is_not_found(),
                "read_range {key} +{len}: {}",
                Chain(&err)
            );
        }
        let err = store.read(key).await.err().unwrap();
        assert!(err.is_not_found(), "read {key}: {}", Chain(&err));
        let err = store.download(key).await.unwrap_err();
        assert!(err.is_not_found(), "download {key}: {}", Chain(&err));
    }
}

async fn read_range_edges(store: &dyn Blobstore) {
    put(store, "k", b"0123456789").await;
    for (offset, len, want) in [
        (0, 1, &b"0"[..]),
        (0, 10, b"0123456789"),
        (0, 100, b"0123456789"),
        (0, u64::MAX, b"0123456789"),
        (3, 4, b"3456"),
        (2, u64::MAX, b"23456789"),
        (8, 100, b"89"),
        (9, 1, b"9"),
        (9, 100, b"9"),
        // At or past the end, or nothing asked for: nothing.
        (10, 5, b""),
        (50, 5, b""),
        (3, 0, b""),
        (u64::MAX, 1, b""),
        (u64::MAX, u64::MAX, b""),
    ] {
        assert_eq!(
            store.read_range("k", offset, len).await.unwrap(),
            want,
            "{offset}+{len}"
        );
    }
}

async fn read_from_streams_to_the_end(store: &dyn Blobstore) {
    let bytes = data(LARGE, 11);
    put(store, "from", &bytes).await;
    let len = LARGE as u64;
    for offset in [
        0,
        1,
        len / 3,
        len - 1,
        len,
        len + 5,
        i64::MAX as u64,
        u64::MAX,
    ] {
        let got = drain(store.read_from("from", offset).await.unwrap()).await;
        let start = usize::try_from(offset).unwrap_or(usize::MAX).min(LARGE);
        assert!(got == bytes[start..], "from {offset}: {} bytes", got.len());
    }
    for offset in [0, 7] {
        let err = store.read_from("absent", offset).await.err().unwrap();
        assert!(matches!(err, BlobError::NotFound(_)), "{err}");
    }
}

async fn aborted_writer_leaves_nothing(store: &dyn Blobstore) {
    for (key, len) in [("x/small", 3), ("x/large", LARGE)] {
        let mut writer = store.writer(key).await.unwrap();
        for piece in data(len, 4).chunks(MIB) {
            writer.write(Bytes::copy_from_slice(piece)).await.unwrap();
        }
        writer.abort().await.unwrap();
        assert_empty_store(store, key).await;
    }
    let writer = store.writer("x/unwritten").await.unwrap();
    writer.abort().await.unwrap();
    assert_empty_store(store, "x/unwritten").await;

    // An aborted replacement leaves the old blob as it was.
    put(store, "kept", b"old").await;
    let mut writer = store.writer("kept").await.unwrap();
    writer.write(Bytes::from(data(LARGE, 5))).await.unwrap();
    writer.abort().await.unwrap();
    assert_eq!(read_all(store, "kept").await, b"old");
}

async fn dropped_writer_leaves_nothing(store: &dyn Blobstore) {
    for (key, len) in [("x/small", 3), ("x/large", LARGE)] {
        let mut writer = store.writer(key).await.unwrap();
        for piece in data(len, 6).chunks(MIB) {
            writer.write(Bytes::copy_from_slice(piece)).await.unwrap();
        }
        drop(writer);
        assert_empty_store(store, key).await;
    }
    drop(store.writer("x/unwritten").await.unwrap());
    assert_empty_store(store, "x/unwritten").await;

    put(store, "kept", b"old").await;
    let mut writer = store.writer("kept").await.unwrap();
    writer.write(Bytes::from(data(LARGE, 7))).await.unwrap();
    drop(writer);
    assert_eq!(read_all(store, "kept").await, b"old");
}

async fn put_stream_round_trips(store: &dyn Blobstore) {
    for (key, len, chunk) in [("s/small", 17, 5), ("s/large", 3 * MIB + 17, 64 * 1024)] {
        let bytes = data(len, 8);
        store
            .put_stream(key, len as u64, stream_of(&bytes, chunk))
            .await
            .unwrap();
        assert_eq!(store.size(key).await.unwrap(), Some(len as u64), "{key}");
        assert!(read_all(store, key).await == bytes, "{key} differs");
    }
    // Replaces what was there.
    store
        .put_stream("s/large", 3, stream_of(b"new", 2))
        .await
        .unwrap();
    assert_eq!(read_all(store, "s/large").await, b"new");
}

async fn unsynced_put_round_trips_until_synced(store: &dyn Blobstore) {
    for (key, len, chunk) in [("u/small", 17, 5), ("u/large", 3 * MIB + 17, 64 * 1024)] {
        let bytes = data(len, 12);
        store
            .put_stream_unsynced(key, len as u64, stream_of(&bytes, chunk))
            .await
            .unwrap();
        assert_eq!(store.size(key).await.unwrap(), Some(len as u64), "{key}");
        store.rename(key, &format!("{key}-moved")).await.unwrap();
        store.sync(&format!("{key}-moved")).await.unwrap();
        assert!(
            read_all(store, &format!("{key}-moved")).await == bytes,
            "{key} differs"
        );
    }
    // The length is held to the same rule as a synced put.
    let bytes = data(MIB, 13);
    let short = store
        .put_stream_unsynced("u/short", bytes.len() as u64 + 1, stream_of(&bytes, 4096))
        .await;
    assert!(short.is_err(), "fewer bytes than announced stored");
    assert_eq!(store.size("u/short").await.unwrap(), None);
    // No blob is nothing to sync; a bad key is still refused.
    store.sync("u/absent").await.unwrap();
    let err = store.sync("../escape").await.unwrap_err();
    assert!(matches!(err, BlobError::InvalidKey { .. }), "{err}");
    assert_eq!(
        keys(store.list("u/").await.unwrap()),
        ["u/large-moved", "u/small-moved"]
    );
}

async fn put_stream_of_the_wrong_length_stores_nothing(store: &dyn Blobstore) {
    let bytes = data(MIB, 9);
    put(store, "s/existing", b"old").await;
    for key in ["s/new", "s/existing"] {
        let short = store
            .put_stream(key, bytes.len() as u64 + 10, stream_of(&bytes, 4096))
            .await;
        assert!(short.is_err(), "{key}: fewer bytes than announced stored");
        let long = store
            .put_stream(key, bytes.len() as u64 - 10, stream_of(&bytes, 4096))
            .await;
        assert!(long.is_err(), "{key}: more bytes than announced stored");
    }
    assert_eq!(store.size("s/new").await.unwrap(), None);
    assert_eq!(read_all(store, "s/existing").await, b"old");
    assert_eq!(keys(store.list("").await.unwrap()), ["s/existing"]);
}

async fn put_stream_error_stores_nothing(store: &dyn Blobstore) {
    put(store, "s/existing", b"old").await;
    for key in ["s/broken", "s/existing"] {
        // The source's failure decides whether storing is worth another attempt.
        let broken = BlobError::Io(std::io::Error::other("the source broke"));
        let err = store
            .put_stream(key, 100, failing(broken))
            .await
            .unwrap_err();
        assert!(err.is_retryable(), "{key}: {}", Chain(&err));
        assert!(
            Chain(&err).to_string().contains("the source broke"),
            "{key}: {}",
            Chain(&err)
        );
        let stopped = BlobError::Stopped("the bytes were refused".into());
        let err = store
            .put_stream(key, 100, failing(stopped))
            .await
            .unwrap_err();
        assert!(!err.is_retryable(), "{key}: {}", Chain(&err));
    }
    assert_eq!(store.size("s/broken").await.unwrap(), None);
    assert_eq!(read_all(store, "s/existing").await, b"old");
    assert_eq!(keys(store.list("").await.unwrap()), ["s/existing"]);
}

async fn copy(store: &dyn Blobstore) {
    // Characters that need encoding in URLs and headers.
    let src = "src/a b+c%20d=e.zip";
    put(store, src, b"hello").await;

    store.copy(src, "dst/deep/b").await.unwrap();
    assert_eq!(read_all(store, "dst/deep/b").await, b"hello");
    assert_eq!(read_all(store, src).await, b"hello", "the source stays");

    // Overwrites.
    put(store, "src/other", b"other").await;
    store.copy("src/other", "dst/deep/b").await.unwrap();
    assert_eq!(read_all(store, "dst/deep/b").await, b"other");
    assert_eq!(store.size("dst/deep/b").await.unwrap(), Some(5));

    let large = data(LARGE, 10);
    put(store, "src/large", &large).await;
    store.copy("src/large", "dst/large").await.unwrap();
    assert!(read_all(store, "dst/large").await == large, "large copy");

    // Onto itself: nothing changes.
    store.copy("src/other", "src/other").await.unwrap();
    assert_eq!(read_all(store, "src/other").await, b"other");

    // Missing sources are not found and create nothing.
    for missing in ["src/none", "src/a b+c%20d=e.zip/below"] {
        let err = store.copy(missing, "x").await.unwrap_err();
        assert!(err.is_not_found(), "{missing}: {}", Chain(&err));
    }
    assert_eq!(store.size("x").await.unwrap(), None);
    assert_eq!(
        keys(store.list("").await.unwrap()),
        ["dst/deep/b", "dst/large", src, "src/large", "src/other"]
    );
}

async fn copy_range(store: &dyn Blobstore) {
    let large = data(LARGE, 11);
    let src = "src/a b+c%20d=e.zip";
    put(store, src, &large).await;

    // A range in the middle, spanning more than a part and a local write buffer.
    let (offset, len) = (12_345u64, 5 * MIB as u64 + 77);
    store
        .copy_range(src, offset, len, "pool/mid")
        .await
        .unwrap();
    let expected = &large[offset as usize..(offset + len) as usize];
    assert!(
        read_all(store, "pool/mid").await == expected,
        "middle range"
    );

    // The first bytes, the last byte, and an empty range.
    store.copy_range(src, 0, 3, "pool/head").await.unwrap();
    assert_eq!(read_all(store, "pool/head").await, large[..3]);
    let last = large.len() as u64 - 1;
    store.copy_range(src, last, 1, "pool/tail").await.unwrap();
    assert_eq!(read_all(store, "pool/tail").await, large[large.len() - 1..]);
    store.copy_range(src, 5, 0, "pool/empty").await.unwrap();
    assert_eq!(store.size("pool/empty").await.unwrap(), Some(0));

    // Overwrites.
    store.copy_range(src, 1, 2, "pool/mid").await.unwrap();
    assert_eq!(read_all(store, "pool/mid").await, large[1..3]);

    // A range past the end, or a missing source, stores nothing.
    let err = store
        .copy_range(src, last, 2, "pool/past")
        .await
        .unwrap_err();
    assert!(!err.is_retryable(), "{}", Chain(&err));
    let err = store
        .copy_range("src/none", 0, 1, "pool/none")
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{}", Chain(&err));
    assert_eq!(
        keys(store.list("").await.unwrap()),
        ["pool/empty", "pool/head", "pool/mid", "pool/tail", src]
    );
    assert_eq!(
        read_all(store, src).await.len(),
        large.len(),
        "the source stays"
    );
}

async fn rename(store: &dyn Blobstore) {
    let src = "src/a b+c%20d=e.zip";
    put(store, src, b"hello").await;

    store.rename(src, "moved/here").await.unwrap();
    assert_eq!(store.size(src).await.unwrap(), None);
    assert_eq!(read_all(store, "moved/here").await, b"hello");

    // Onto itself: nothing changes.
    store.rename("moved/here", "moved/here").await.unwrap();
    assert_eq!(read_all(store, "moved/here").await, b"hello");

    // Overwrites.
    put(store, "src/other", b"other!").await;
    store.rename("src/other", "moved/here").await.unwrap();
    assert_eq!(read_all(store, "moved/here").await, b"other!");
    assert_eq!(store.size("src/other").await.unwrap(), None);

    let large = data(LARGE, 12);
    put(store, "src/large", &large).await;
    store.rename("src/large", "moved/large").await.unwrap();
    assert_eq!(store.size("src/large").await.unwrap(), None);
    assert!(
        read_all(store, "moved/large").await == large,
        "large rename"
    );

    put(store, "src/left", b"left").await;
    for missing in ["src/none", "nowhere", "src/left/below"] {
        let err = store.rename(missing, "x").await.unwrap_err();
        assert!(err.is_not_found(), "{missing}: {}", Chain(&err));
        let err = store.rename(missing, missing).await.unwrap_err();
        assert!(err.is_not_found(), "{missing} onto itself: {}", Chain(&err));
    }
    assert_eq!(
        keys(store.list("").await.unwrap()),
        ["moved/here", "moved/large", "src/left"]
    );
}

async fn delete(store: &dyn Blobstore) {
    put(store, "p/q/one", b"1").await;
    put(store, "p/two", b"22").await;

    store.delete("p/q/one").await.unwrap();
    assert_eq!(store.size("p/q/one").await.unwrap(), None);
    assert!(store.read("p/q/one").await.err().unwrap().is_not_found());
    assert_eq!(store.size("p/two").await.unwrap(), Some(2));

    // Again, never there, or below a blob: fine, and nothing else goes.
    for key in ["p/q/one", "never/was", "p/two/below"] {
        store.delete(key).await.unwrap();
    }
    assert_eq!(keys(store.list("").await.unwrap()), ["p/two"]);
    assert_eq!(read_all(store, "p/two").await, b"22");

    // A deleted key can be written again.
    put(store, "p/q/one", b"again").await;
    assert_eq!(read_all(store, "p/q/one").await, b"again");
}

async fn list_by_prefix(store: &dyn Blobstore) {
    for (key, len) in [
        ("staging/p1/u1", 1),
        ("staging/p1/u2", 2),
        ("staging/p1-x", 6),
        ("staging/p2/u3", 3),
        ("gu/id/g1", 4),
        ("stagingx", 5),
    ] {
        put(store, key, &data(len, len as u64)).await;
    }
    // An unfinished writer does not show.
    let mut open = store.writer("staging/p1/u9").await.unwrap();
    open.write(Bytes::from_static(b"pending")).await.unwrap();

    // Sorted by key, byte by byte: "-" sorts before "/".
    for (prefix, want) in [
        (
            "",
            &[
                "gu/id/g1",
                "staging/p1-x",
                "staging/p1/u1",
                "staging/p1/u2",
                "staging/p2/u3",
                "stagingx",
            ][..],
        ),
        (
            "staging",
            &[
                "staging/p1-x",
                "staging/p1/u1",
                "staging/p1/u2",
                "staging/p2/u3",
                "stagingx",
            ],
        ),
        (
            "staging/",
            &[
                "staging/p1-x",
                "staging/p1/u1",
                "staging/p1/u2",
                "staging/p2/u3",
            ],
        ),
        (
            "staging/p1",
            &["staging/p1-x", "staging/p1/u1", "staging/p1/u2"],
        ),
        ("staging/p1/", &["staging/p1/u1", "staging/p1/u2"]),
        ("staging/p1/u", &["staging/p1/u1", "staging/p1/u2"]),
        ("staging/p1/u2", &["staging/p1/u2"]),
        ("gu/id/g1", &["gu/id/g1"]),
        ("nothing", &[]),
        ("nothing/here/", &[]),
        ("staging/p3/", &[]),
        ("gu/id/g1/", &[]),
        ("stagingx/", &[]),
    ] {
        assert_eq!(keys(store.list(prefix).await.unwrap()), want, "{prefix:?}");
    }

    let infos = store.list("staging/p2/").await.unwrap();
    assert_eq!(infos.len(), 1);
    assert_eq!(infos[0].size, 3);
    assert!(
        (now_secs() - infos[0].last_modified).abs() < 120,
        "{} vs {}",
        infos[0].last_modified,
        now_secs()
    );
    let sizes: Vec<_> = store
        .list("")
        .await
        .unwrap()
        .into_iter()
        .map(|info| info.size)
        .collect();
    assert_eq!(sizes, [4, 6, 1, 2, 3, 5]);

    // Prefixes no valid key can start with are refused as keys are.
    for prefix in ["../", "a//", "a/../b/", "./x", "a\\b/c"] {
        assert!(
            matches!(store.list(prefix).await, Err(BlobError::InvalidKey { .. })),
            "{prefix:?}"
        );
    }
    open.abort().await.unwrap();
}

async fn download_hands_out_the_bytes(store: &dyn Blobstore) {
    let bytes = data(200_003, 13);
    put(store, "gu/id/download", &bytes).await;
    assert!(downloaded(store, "gu/id/download").await == bytes);
    put(store, "gu/id/download", b"replaced").await;
    assert_eq!(downloaded(store, "gu/id/download").await, b"replaced");
}

async fn bad_keys_are_refused(store: &dyn Blobstore) {
    put(store, "a", b"a valid blob").await;
    let too_long = "k".repeat(1025);
    for key in [
        "",
        "/etc/passwd",
        "../outside",
        "a/../../outside",
        "..",
        ".",
        "./a",
        "a/./b",
        "a//b",
        "a/",
        "a\\b",
        "a\nb",
        "a\0b",
        too_long.as_str(),
    ] {
        let invalid = |what: &str, result: Result<(), BlobError>| {
            assert!(
                matches!(result, Err(BlobError::InvalidKey { .. })),
                "{what} {key:?}: {result:?}"
            );
        };
        invalid("writer", store.writer(key).await.map(drop));
        invalid(
            "put_stream",
            store.put_stream(key, 1, stream_of(b"x", 1)).await,
        );
        invalid("size", store.size(key).await.map(drop));
        invalid("read_range", store.read_range(key, 0, 1).await.map(drop));
        invalid("read", store.read(key).await.map(drop));
        invalid("download", store.download(key).await.map(drop));
        invalid("copy from", store.copy(key, "b").await);
        invalid("copy to", store.copy("a", key).await);
        invalid("rename from", store.rename(key, "b").await);
        invalid("rename to", store.rename("a", key).await);
        invalid("rename onto itself", store.rename(key, key).await);
        invalid("delete", store.delete(key).await);
    }
    assert_eq!(keys(store.list("").await.unwrap()), ["a"]);
    assert_eq!(read_all(store, "a").await, b"a valid blob");
}

async fn check_passes(store: &dyn Blobstore) {
    store.check().await.unwrap();
    put(store, "k", b"v").await;
    store.check().await.unwrap();
    // The check leaves nothing a listing would show.
    assert_eq!(keys(store.list("").await.unwrap()), ["k"]);
}
