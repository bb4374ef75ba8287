//! How the worker fills the resource pool on a store that copies byte ranges itself (S3's
//! UploadPartCopy), shown on the local store behind a stand-in that claims the ability:
//! a large stored file is copied from its range of the staged package while the pass
//! reads it, a deflated one is written by the worker, and a store that refuses the copy
//! still gets the file, streamed. The real S3 copy is tested against an S3 server in the
//! blobstore's contract tests and the black-box suite.
#![allow(clippy::unwrap_used)]

use std::io::Write as _;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use packages_blobstore::{BlobError, BlobInfo, BlobWriter, Blobstore, ByteStream, Download};
use packages_domain::{PackageState, STAGING_PREFIX};
use packages_jobs::{JobPayload, JobPublisher};
use packages_service::resource_pool::pool_key;
use packages_testkit::{Rig, incompressible};
use sha1::Digest;

/// The local store, claiming to copy ranges inside itself; `refuse` makes every range
/// copy fail as a server without UploadPartCopy would. Records each copy asked for.
struct RangeCopying {
    inner: Arc<dyn Blobstore>,
    refuse: bool,
    copies: Arc<Mutex<Vec<(String, u64, u64)>>>,
}

#[async_trait]
impl Blobstore for RangeCopying {
    fn copies_ranges(&self) -> bool {
        true
    }
    async fn copy_range(
        &self,
        from: &str,
        offset: u64,
        len: u64,
        to: &str,
    ) -> Result<(), BlobError> {
        self.copies
            .lock()
            .unwrap()
            .push((from.to_owned(), offset, len));
        if self.refuse {
            return Err(BlobError::Status {
                status: 501,
                code: Some("NotImplemented".into()),
                message: "UploadPartCopy".into(),
            });
        }
        self.inner.copy_range(from, offset, len, to).await
    }
    async fn writer(&self, key: &str) -> Result<Box<dyn BlobWriter>, BlobError> {
        self.inner.writer(key).await
    }
    async fn put_stream(&self, key: &str, size: u64, body: ByteStream) -> Result<(), BlobError> {
        self.inner.put_stream(key, size, body).await
    }
    async fn put_stream_unsynced(
        &self,
        key: &str,
        size: u64,
        body: ByteStream,
    ) -> Result<(), BlobError> {
        self.inner.put_stream_unsynced(key, size, body).await
    }
    async fn sync(&self, key: &str) -> Result<(), BlobError> {
        self.inner.sync(key).await
    }
    async fn size(&self, key: &str) -> Result<Option<u64>, BlobError> {
        self.inner.size(key).await
    }
    async fn read_range(&self, key: &str, offset: u64, len: u64) -> Result<Bytes, BlobError> {
        self.inner.read_range(key, offset, len).await
    }
    async fn read(&self, key: &str) -> Result<ByteStream, BlobError> {
        self.inner.read(key).await
    }
    async fn read_from(&self, key: &str, offset: u64) -> Result<ByteStream, BlobError> {
        self.inner.read_from(key, offset).await
    }
    async fn copy(&self, from: &str, to: &str) -> Result<(), BlobError> {
        self.inner.copy(from, to).await
    }
    async fn rename(&self, from: &str, to: &str) -> Result<(), BlobError> {
        self.inner.rename(from, to).await
    }
    async fn delete(&self, key: &str) -> Result<(), BlobError> {
        self.inner.delete(key).await
    }
    async fn download(&self, key: &str) -> Result<Download, BlobError> {
        self.inner.download(key).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<BlobInfo>, BlobError> {
        self.inner.list(prefix).await
    }
    async fn check(&self) -> Result<(), BlobError> {
        self.inner.check().await
    }
    fn kind(&self) -> &'static str {
        "local"
    }
}

fn sha1_hex(bytes: &[u8]) -> String {
    hex::encode(sha1::Sha1::digest(bytes))
}

/// A zip of `files` (name, bytes, deflated?).
fn zip_of(files: &[(&str, &[u8], bool)]) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, bytes, deflated) in files {
        let method = if *deflated {
            zip::CompressionMethod::Deflated
        } else {
            zip::CompressionMethod::Stored
        };
        let options = zip::write::SimpleFileOptions::default().compression_method(method);
        zip.start_file(*name, options).unwrap();
        zip.write_all(bytes).unwrap();
    }
    zip.finish().unwrap().into_inner()
}

/// What a rig's store was asked to copy for one upload, and where the stored file lies.
struct Copies {
    asked: Vec<(String, u64, u64)>,
    staging_key: String,
    stored_at: u64,
    stored_len: u64,
}

/// Uploads a zip with a large stored file and a large deflated one through a rig whose
/// store claims range copies (refusing them when `refuse`), waits for READY, and checks
/// that the pool holds both files' bytes and that nothing is left in the staging area.
async fn upload_both(refuse: bool) -> Copies {
    let copies = Arc::new(Mutex::new(Vec::new()));
    let asked = copies.clone();
    let rig = Rig::with_worker_on(move |inner| {
        Arc::new(RangeCopying {
            inner,
            refuse,
            copies: asked,
        })
    })
    .await;
    let stored = incompressible(2 << 20, 1);
    let deflated = incompressible(3 << 20, 2);
    let zip = zip_of(&[
        ("lib/stored.bin", &stored, false),
        ("deflated.bin", &deflated, true),
    ]);
    let (guid, message) = rig.accepted_upload(&zip).await;
    let JobPayload::ProcessUpload(job) = &message.payload else {
        unreachable!()
    };
    let staging_key = job.staging_key.to_string();
    rig.queue.publish(message.encode()).await.unwrap();
    rig.wait_for(&guid, PackageState::Ready).await;
    for file in [&stored, &deflated] {
        let key = pool_key(&sha1_hex(file));
        let mut body = rig.blobs.read(&key).await.unwrap();
        let mut pooled = Vec::new();
        while let Some(chunk) = futures_util::StreamExt::next(&mut body).await {
            pooled.extend_from_slice(&chunk.unwrap());
        }
        assert!(pooled == *file, "the pool holds the file's bytes");
    }
    let left = rig.blobs.list(STAGING_PREFIX).await.unwrap();
    assert!(
        left.is_empty(),
        "nothing left in the staging area: {left:?}"
    );
    let stored_at = zip.windows(64).position(|w| w == &stored[..64]).unwrap() as u64;
    let asked = copies.lock().unwrap().clone();
    rig.stop().await;
    Copies {
        asked,
        staging_key,
        stored_at,
        stored_len: stored.len() as u64,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_copies_ranges_copies_large_stored_files_only() {
    let copies = upload_both(false).await;
    // One copy, beside the pass: the stored file's bytes where they lie in the staged
    // package. The deflated file was written by the worker.
    assert_eq!(
        copies.asked,
        [(copies.staging_key, copies.stored_at, copies.stored_len)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_refuses_range_copies_still_gets_the_file() {
    let copies = upload_both(true).await;
    // Asked beside the pass and once more after it, from the package's own key; the file
    // was then streamed through the worker.
    assert_eq!(copies.asked.len(), 2, "{:?}", copies.asked);
    assert_eq!(copies.asked[0].0, copies.staging_key);
    assert!(
        copies
            .asked
            .iter()
            .all(|(_, at, len)| (*at, *len) == (copies.stored_at, copies.stored_len))
    );
}
