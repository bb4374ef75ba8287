//! What only the embedded default keeps on local disk: temporary files of uploads and
//! the files the service creates. `make test` runs this file on the embedded default
//! only; it refuses to run elsewhere.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use packages_tests::raw::{self, send};
use packages_tests::{Mode, Service, zips};

#[tokio::test]
async fn a_killed_upload_leaves_no_temporary_file_after_restart() {
    packages_tests::require(Mode::Embedded);
    let mut svc = Service::start().await;
    let ctx = svc.ctx().await;
    let guid = svc.new_package(&ctx.app).await;
    let head = raw::multipart_head(
        &guid,
        &svc.admin(),
        "XBOUNDARY",
        "Content-Length: 100000000\r\n",
    );
    let mut stream = raw::connect(svc.api_port).await;
    send(&mut stream, head.as_bytes()).await;
    send(
        &mut stream,
        b"--XBOUNDARY\r\nContent-Disposition: form-data; name=\"bits\"; filename=\"a.zip\"\r\n\r\n",
    )
    .await;
    send(&mut stream, &vec![b'P'; 4 << 20]).await;
    let tmp = svc.blob_root().join(".tmp");
    svc.wait_until(Duration::from_secs(30), || {
        !packages_tests::temporary_files(&tmp).is_empty()
    })
    .await;
    svc.kill_api();
    drop(stream);
    svc.start_api(&[]).await;
    assert_eq!(
        packages_tests::temporary_files(&tmp),
        Vec::<std::path::PathBuf>::new()
    );
}

#[tokio::test]
async fn files_the_service_creates_are_private() {
    packages_tests::require(Mode::Embedded);
    let svc = Service::start().await;
    let ctx = svc.ctx().await;
    let p = svc
        .upload_and_wait(&ctx.app, zips::small_app("private"))
        .await;
    assert_eq!(p["state"], "READY");
    use std::os::unix::fs::PermissionsExt;
    let mode =
        |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    let guid = p["guid"].as_str().unwrap();
    let bits = svc.blob_root().join(packages_tests::blob_key(guid));
    assert_eq!(mode(&bits), 0o600, "bits");
    assert_eq!(mode(&svc.dir.path().join("packages.db")), 0o600, "database");
    assert_eq!(mode(&svc.blob_root()), 0o700, "blob root");
    assert_eq!(mode(bits.parent().unwrap()), 0o700, "blob directories");
}

/// On local disk the bits are written once: the worker reads and hashes the staged upload,
/// then the staged file itself becomes the package's bits (same inode), by rename.
#[tokio::test]
async fn checked_bits_become_the_package_by_rename() {
    use std::os::unix::fs::MetadataExt;
    packages_tests::require(Mode::Embedded);
    let mut svc = Service::start_with(packages_tests::Options {
        defer_start: true,
        ..packages_tests::Options::default()
    })
    .await;
    // Holds the job between its zip check and the pass over the bits, so the staged
    // file can be looked at.
    svc.start_api(&[("FAILPOINTS", "worker-before-move=sleep(2000)")])
        .await;
    let ctx = svc.ctx().await;
    let guid = svc.new_package(&ctx.app).await;
    let zip = zips::small_app("renamed");
    assert_eq!(
        svc.upload(&guid, &svc.admin(), zip.clone()).await.status,
        200
    );
    svc.wait_until(Duration::from_secs(30), || {
        svc.api_log().contains("zip checked")
    })
    .await;
    let staged = svc.staged_blobs().await;
    assert_eq!(staged.len(), 1, "{staged:?}");
    let staged_inode = std::fs::metadata(svc.blob_root().join(&staged[0]))
        .unwrap()
        .ino();

    let p = svc.wait_final(&guid).await;
    assert_eq!(p["state"], "READY", "{p}");
    let bits = svc.blob_root().join(packages_tests::blob_key(&guid));
    assert_eq!(std::fs::read(&bits).unwrap(), zip);
    assert_eq!(
        std::fs::metadata(&bits).unwrap().ino(),
        staged_inode,
        "the bits were written again instead of renamed"
    );
    assert!(svc.staged_blobs().await.is_empty());
}
