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
