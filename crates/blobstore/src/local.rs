//! Blobs as files under a root directory.
//!
//! A blob is written to `root/.tmp/<session>/<uuid>` and renamed into place when finished,
//! so a reader sees either the old blob, the new one or none, never a partial file. Each
//! process writes into its own session directory, locked while the process lives: at
//! start, sessions whose lock is free belong to processes that died, and are removed
//! whole (a process killed mid-upload leaves nothing behind for long).

use std::io::{self, Write as _};
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::TryStreamExt as _;
use tokio::io::{AsyncWriteExt as _, BufWriter};
use tokio_util::io::ReaderStream;

use crate::{
    BlobError, BlobInfo, BlobWriter, Blobstore, ByteStream, Download, validate_key, validate_prefix,
};

/// Temporary files live inside the root so the final rename stays on one filesystem.
const TMP_DIR: &str = ".tmp";
/// Large enough that a 1 GiB upload in 64 KiB chunks costs ~1k write calls, not 16k.
const WRITE_BUFFER: usize = 1 << 20;
const DOWNLOAD_CHUNK: usize = 64 * 1024;
/// Reads inside the service (the worker's pass) go in larger chunks: each chunk costs a
/// hop to a blocking thread, and 64 KiB ones made that hop a fifth of a pass.
const READ_CHUNK: usize = 1 << 20;
/// Renames are retried when a concurrent delete pruned the freshly created parent.
const INSTALL_ATTEMPTS: usize = 3;

/// Name of the lock file inside a session directory.
const SESSION_LOCK: &str = "lock";

/// A blobstore on a local (or mounted) filesystem.
#[derive(Debug, Clone)]
pub struct LocalBlobstore {
    root: PathBuf,
    session: Arc<Session>,
}

/// This process's directory for temporary files, and the lock that says it is alive.
#[derive(Debug)]
struct Session {
    dir: PathBuf,
    _lock: std::fs::File,
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl LocalBlobstore {
    /// A writer for `key` that syncs the file before installing it.
    async fn local_writer(&self, key: &str) -> Result<LocalWriter, BlobError> {
        let dest = self.blob_path(key)?;
        let tmp = self.temp_path();
        let file = match tokio::fs::File::create_new(&tmp).await {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // Someone removed the temp directory since startup.
                tokio::fs::create_dir_all(self.root.join(TMP_DIR)).await?;
                tokio::fs::File::create_new(&tmp).await?
            }
            Err(e) => return Err(e.into()),
        };
        Ok(LocalWriter {
            tmp,
            dest,
            file: Some(BufWriter::with_capacity(WRITE_BUFFER, file)),
            written: 0,
            sync: true,
            done: false,
        })
    }

    /// Opens the store at `root`, creating the directory (private to this user) if needed,
    /// and removes what dead processes left in the temporary area.
    pub fn new(root: PathBuf) -> Result<Self, BlobError> {
        use std::os::unix::fs::DirBuilderExt as _;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(root.join(TMP_DIR))?;
        let removed = remove_dead_sessions(&root.join(TMP_DIR))?;
        if removed > 0 {
            tracing::info!(removed, "removed temporary files of processes that died");
        }
        let dir = root
            .join(TMP_DIR)
            .join(uuid::Uuid::new_v4().simple().to_string());
        std::fs::create_dir(&dir)?;
        let lock = std::fs::File::create(dir.join(SESSION_LOCK))?;
        lock.lock()?;
        Ok(Self {
            root,
            session: Arc::new(Session { dir, _lock: lock }),
        })
    }

    /// The directory holding the blobs.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn blob_path(&self, key: &str) -> Result<PathBuf, BlobError> {
        validate_key(key)?;
        if key == TMP_DIR || key.starts_with(".tmp/") {
            return Err(BlobError::InvalidKey {
                key: key.to_string(),
                reason: "reserved for temporary files",
            });
        }
        Ok(self.root.join(key))
    }

    fn temp_path(&self) -> PathBuf {
        self.session
            .dir
            .join(uuid::Uuid::new_v4().simple().to_string())
    }
}

/// Removes every session directory whose lock nobody holds (its process is gone), and
/// loose files from before sessions existed. Returns how many entries went.
fn remove_dead_sessions(tmp: &Path) -> Result<usize, BlobError> {
    let mut removed = 0;
    for entry in std::fs::read_dir(tmp)? {
        let entry = entry?;
        let path = entry.path();
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        let gone = if kind.is_dir() {
            match std::fs::File::open(path.join(SESSION_LOCK)) {
                // Free lock: the owner died. Held: a live process (WouldBlock).
                Ok(lock) => lock.try_lock().is_ok() && std::fs::remove_dir_all(&path).is_ok(),
                // A directory without a lock is one that died while being set up.
                Err(e) if is_missing(&e) => std::fs::remove_dir_all(&path).is_ok(),
                Err(_) => false,
            }
        } else {
            std::fs::remove_file(&path).is_ok()
        };
        removed += usize::from(gone);
    }
    Ok(removed)
}

/// Runs blocking filesystem work off the async worker threads.
async fn blocking<T, F>(work: F) -> Result<T, BlobError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, BlobError> + Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|source| BlobError::Task {
            what: "blocking filesystem task failed",
            source,
        })?
}

/// Errors that mean "no blob at this path": the file or one of its parents is missing,
/// or a parent is a file.
fn is_missing(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    )
}

fn not_found_or(key: &str, e: io::Error) -> BlobError {
    if is_missing(&e) {
        BlobError::NotFound(key.to_string())
    } else {
        BlobError::Io(e)
    }
}

/// Opens `path` for reading, refusing anything that is not a regular file.
fn open_blob(path: &Path, key: &str) -> Result<(std::fs::File, u64), BlobError> {
    let file = std::fs::File::open(path).map_err(|e| not_found_or(key, e))?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(BlobError::NotFound(key.to_string()));
    }
    Ok((file, meta.len()))
}

/// Moves a complete temporary file to its final path, creating parent directories.
fn install(tmp: &Path, dest: &Path) -> io::Result<()> {
    let mut attempt = 1;
    loop {
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent)?;
        }
        match std::fs::rename(tmp, dest) {
            Ok(()) => break,
            Err(e)
                if e.kind() == io::ErrorKind::NotFound
                    && attempt < INSTALL_ATTEMPTS
                    && tmp.exists() =>
            {
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
    // The rename is only durable once the directory entry is; failing to sync the
    // directory does not undo the rename, so it is not reported.
    if let Some(Ok(dir)) = dest.parent().map(std::fs::File::open) {
        let _ = dir.sync_all();
    }
    Ok(())
}

/// Removes directories left empty between `path` and `root` (exclusive) so deleted
/// blobs do not leave a growing tree of empty directories. Stops at the first
/// directory that is not empty or cannot be removed.
fn prune_empty_parents(root: &Path, path: &Path) {
    let mut dir = path.parent();
    while let Some(current) = dir {
        if current == root || !current.starts_with(root) {
            break;
        }
        if std::fs::remove_dir(current).is_err() {
            break;
        }
        dir = current.parent();
    }
}

fn mtime_secs(meta: &std::fs::Metadata) -> i64 {
    match meta.modified() {
        Ok(modified) => match modified.duration_since(UNIX_EPOCH) {
            Ok(after) => i64::try_from(after.as_secs()).unwrap_or(i64::MAX),
            Err(before) => i64::try_from(before.duration().as_secs())
                .map(|secs| -secs)
                .unwrap_or(i64::MIN),
        },
        Err(_) => 0,
    }
}

/// Collects blobs whose key starts with `prefix`, walking only directories that can
/// hold such keys.
fn walk(root: &Path, prefix: &str) -> Result<Vec<BlobInfo>, BlobError> {
    validate_prefix(prefix)?;
    // Start at the deepest directory named completely by the prefix.
    let start = match prefix.rfind('/') {
        Some(idx) => &prefix[..idx],
        None => "",
    };
    if start == TMP_DIR || start.starts_with(".tmp/") {
        return Ok(Vec::new());
    }

    let mut found = Vec::new();
    let mut pending = vec![start.to_string()];
    while let Some(rel) = pending.pop() {
        let dir = if rel.is_empty() {
            root.to_path_buf()
        } else {
            root.join(&rel)
        };
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            // Removed or replaced while walking, or never there.
            Err(e) if is_missing(&e) => continue,
            Err(e) => return Err(e.into()),
        };
        for entry in entries {
            let entry = entry?;
            let Ok(name) = entry.file_name().into_string() else {
                // Not a key this store could have written.
                continue;
            };
            if rel.is_empty() && name == TMP_DIR {
                continue;
            }
            let key = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            let file_type = match entry.file_type() {
                Ok(file_type) => file_type,
                Err(e) if is_missing(&e) => continue,
                Err(e) => return Err(e.into()),
            };
            if file_type.is_dir() {
                let as_dir = format!("{key}/");
                if as_dir.starts_with(prefix) || prefix.starts_with(&as_dir) {
                    pending.push(key);
                }
            } else if file_type.is_file() && key.starts_with(prefix) {
                let meta = match entry.metadata() {
                    Ok(meta) => meta,
                    Err(e) if is_missing(&e) => continue,
                    Err(e) => return Err(e.into()),
                };
                found.push(BlobInfo {
                    key,
                    size: meta.len(),
                    last_modified: mtime_secs(&meta),
                });
            }
        }
    }
    found.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(found)
}

#[async_trait]
impl Blobstore for LocalBlobstore {
    async fn writer(&self, key: &str) -> Result<Box<dyn BlobWriter>, BlobError> {
        Ok(Box::new(self.local_writer(key).await?))
    }

    async fn size(&self, key: &str) -> Result<Option<u64>, BlobError> {
        let path = self.blob_path(key)?;
        match tokio::fs::metadata(&path).await {
            Ok(meta) if meta.is_file() => Ok(Some(meta.len())),
            Ok(_) => Ok(None),
            Err(e) if is_missing(&e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn read_range(&self, key: &str, offset: u64, len: u64) -> Result<Bytes, BlobError> {
        let path = self.blob_path(key)?;
        let key = key.to_string();
        blocking(move || {
            let (file, size) = open_blob(&path, &key)?;
            if offset >= size || len == 0 {
                return Ok(Bytes::new());
            }
            let want =
                usize::try_from(len.min(size - offset)).map_err(|_| BlobError::TooLarge { len })?;
            let mut buf = vec![0u8; want];
            let mut filled = 0;
            while filled < want {
                match file.read_at(&mut buf[filled..], offset + filled as u64) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e.into()),
                }
            }
            buf.truncate(filled);
            Ok(Bytes::from(buf))
        })
        .await
    }

    async fn copy(&self, from: &str, to: &str) -> Result<(), BlobError> {
        let src = self.blob_path(from)?;
        let dest = self.blob_path(to)?;
        let tmp = self.temp_path();
        let from = from.to_string();
        blocking(move || {
            let result = (|| {
                // Checked first so a directory or missing source reads as "no blob".
                drop(open_blob(&src, &from)?);
                std::fs::copy(&src, &tmp).map_err(|e| not_found_or(&from, e))?;
                std::fs::File::open(&tmp)?.sync_all()?;
                install(&tmp, &dest)?;
                Ok(())
            })();
            if result.is_err() {
                let _ = std::fs::remove_file(&tmp);
            }
            result
        })
        .await
    }

    async fn rename(&self, from: &str, to: &str) -> Result<(), BlobError> {
        let src = self.blob_path(from)?;
        let dest = self.blob_path(to)?;
        let root = self.root.clone();
        let from = from.to_string();
        blocking(move || {
            drop(open_blob(&src, &from)?);
            if src == dest {
                return Ok(());
            }
            // Missing only if the source went away; anything else is the destination's
            // trouble (a file where its directory must go), which is no missing blob.
            install(&src, &dest).map_err(|e| match src.exists() {
                false => BlobError::NotFound(from.clone()),
                true => BlobError::Io(e),
            })?;
            prune_empty_parents(&root, &src);
            Ok(())
        })
        .await
    }

    async fn delete(&self, key: &str) -> Result<(), BlobError> {
        let path = self.blob_path(key)?;
        let root = self.root.clone();
        blocking(move || {
            match std::fs::symlink_metadata(&path) {
                Ok(meta) if meta.is_dir() => return Ok(()),
                Ok(_) => {}
                Err(e) if is_missing(&e) => return Ok(()),
                Err(e) => return Err(e.into()),
            }
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if is_missing(&e) => return Ok(()),
                Err(e) => return Err(e.into()),
            }
            prune_empty_parents(&root, &path);
            Ok(())
        })
        .await
    }

    async fn put_stream(&self, key: &str, size: u64, body: ByteStream) -> Result<(), BlobError> {
        crate::put_through_writer(self.writer(key).await?, size, body).await
    }

    async fn put_stream_unsynced(
        &self,
        key: &str,
        size: u64,
        body: ByteStream,
    ) -> Result<(), BlobError> {
        let mut writer = self.local_writer(key).await?;
        writer.sync = false;
        crate::put_through_writer(Box::new(writer), size, body).await
    }

    async fn sync(&self, key: &str) -> Result<(), BlobError> {
        let path = self.blob_path(key)?;
        let key = key.to_string();
        blocking(move || {
            let file = match open_blob(&path, &key) {
                Ok((file, _)) => file,
                Err(BlobError::NotFound(_)) => return Ok(()),
                Err(e) => return Err(e),
            };
            file.sync_all()?;
            if let Some(Ok(dir)) = path.parent().map(std::fs::File::open) {
                dir.sync_all()?;
            }
            Ok(())
        })
        .await
    }

    async fn read(&self, key: &str) -> Result<ByteStream, BlobError> {
        self.read_from(key, 0).await
    }

    async fn read_from(&self, key: &str, offset: u64) -> Result<ByteStream, BlobError> {
        use tokio::io::AsyncSeekExt;
        let path = self.blob_path(key)?;
        let mut file = tokio::fs::File::open(&path)
            .await
            .map_err(|e| not_found_or(key, e))?;
        let meta = file.metadata().await?;
        if !meta.is_file() {
            return Err(BlobError::NotFound(key.to_string()));
        }
        // The kernel refuses offsets past i64::MAX; past the end there is nothing anyway.
        file.seek(std::io::SeekFrom::Start(offset.min(meta.len())))
            .await?;
        let body = ReaderStream::with_capacity(file, READ_CHUNK).map_err(BlobError::Io);
        Ok(Box::pin(body))
    }

    async fn download(&self, key: &str) -> Result<Download, BlobError> {
        let path = self.blob_path(key)?;
        let file = tokio::fs::File::open(&path)
            .await
            .map_err(|e| not_found_or(key, e))?;
        let meta = file.metadata().await?;
        if !meta.is_file() {
            return Err(BlobError::NotFound(key.to_string()));
        }
        // The open handle keeps serving this blob even if it is replaced or deleted
        // meanwhile, so the length stays right.
        let body = ReaderStream::with_capacity(file, DOWNLOAD_CHUNK).map_err(BlobError::Io);
        Ok(Download::Stream {
            length: meta.len(),
            body: Box::pin(body),
        })
    }

    async fn list(&self, prefix: &str) -> Result<Vec<BlobInfo>, BlobError> {
        let root = self.root.clone();
        let prefix = prefix.to_string();
        blocking(move || walk(&root, &prefix)).await
    }

    async fn check(&self) -> Result<(), BlobError> {
        let root = self.root.clone();
        let session = self.session.dir.clone();
        blocking(move || {
            let fs = |what, path: &Path| {
                let path = path.to_path_buf();
                move |source| BlobError::Fs { what, path, source }
            };
            let meta = std::fs::metadata(&root).map_err(fs("cannot reach the blob root", &root))?;
            if !meta.is_dir() {
                let not_dir = io::Error::from(io::ErrorKind::NotADirectory);
                return Err(fs("cannot use the blob root", &root)(not_dir));
            }
            // Someone may have removed the temporary area since start-up.
            std::fs::create_dir_all(&session).map_err(fs("cannot create", &session))?;
            let probe = session.join(format!("probe-{}", uuid::Uuid::new_v4().simple()));
            let written = std::fs::File::create_new(&probe).and_then(|mut f| f.write_all(b"ok"));
            let removed = std::fs::remove_file(&probe);
            written.map_err(fs("cannot write", &probe))?;
            removed.map_err(fs("cannot remove", &probe))?;
            Ok(())
        })
        .await
    }

    fn kind(&self) -> &'static str {
        "local"
    }
}

struct LocalWriter {
    tmp: PathBuf,
    dest: PathBuf,
    /// `None` once finished, aborted or broken by a failed write.
    file: Option<BufWriter<tokio::fs::File>>,
    written: u64,
    /// Whether `finish` waits for the file to reach the disk.
    sync: bool,
    /// Set once the temporary file is gone (renamed or removed), so Drop leaves it be.
    done: bool,
}

impl LocalWriter {
    fn file(&mut self) -> Result<&mut BufWriter<tokio::fs::File>, BlobError> {
        self.file.as_mut().ok_or(BlobError::WriterFailed)
    }
}

#[async_trait]
impl BlobWriter for LocalWriter {
    async fn write(&mut self, chunk: Bytes) -> Result<(), BlobError> {
        let file = self.file()?;
        if let Err(e) = file.write_all(&chunk).await {
            // What reached the file is unknown now; refuse to finish it.
            self.file = None;
            return Err(e.into());
        }
        self.written += chunk.len() as u64;
        Ok(())
    }

    async fn finish(mut self: Box<Self>) -> Result<u64, BlobError> {
        let mut file = self.file.take().ok_or(BlobError::WriterFailed)?;
        file.flush().await?;
        let file = file.into_inner();
        if self.sync {
            file.sync_all().await?;
        }
        drop(file);
        let tmp = self.tmp.clone();
        let dest = self.dest.clone();
        blocking(move || install(&tmp, &dest).map_err(BlobError::Io)).await?;
        self.done = true;
        Ok(self.written)
    }

    async fn abort(mut self: Box<Self>) -> Result<(), BlobError> {
        drop(self.file.take());
        let result = match tokio::fs::remove_file(&self.tmp).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        };
        self.done = result.is_ok();
        result
    }
}

impl Drop for LocalWriter {
    fn drop(&mut self) {
        if !self.done {
            drop(self.file.take());
            // Best effort: the next start removes whatever is left.
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    //! What only the local store does: its temporary area, its directories, and how it
    //! fails on disk. What every store promises is in `tests/contract.rs`.

    use super::*;
    use crate::Chain;
    use futures_util::StreamExt as _;

    fn store() -> (tempfile::TempDir, LocalBlobstore) {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalBlobstore::new(dir.path().join("blobs")).unwrap();
        (dir, store)
    }

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    async fn put(store: &LocalBlobstore, key: &str, data: &[u8]) {
        let mut w = store.writer(key).await.unwrap();
        w.write(Bytes::copy_from_slice(data)).await.unwrap();
        assert_eq!(w.finish().await.unwrap(), data.len() as u64);
    }

    /// Temporary files of this store's session (its lock aside).
    fn tmp_entries(store: &LocalBlobstore) -> Vec<PathBuf> {
        std::fs::read_dir(&store.session.dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| !p.ends_with(SESSION_LOCK))
            .collect()
    }

    #[test]
    fn sessions_of_dead_processes_are_removed_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("blobs");
        let live = LocalBlobstore::new(root.clone()).unwrap();
        std::fs::write(live.session.dir.join("upload-in-progress"), b"x").unwrap();
        // A session whose process died: its lock file exists but nobody holds it.
        let dead = root.join(TMP_DIR).join("dead-session");
        std::fs::create_dir_all(&dead).unwrap();
        std::fs::write(dead.join(SESSION_LOCK), b"").unwrap();
        std::fs::write(dead.join("partial-upload"), b"x").unwrap();
        std::fs::write(root.join(TMP_DIR).join("loose-old-file"), b"x").unwrap();

        let second = LocalBlobstore::new(root.clone()).unwrap();
        assert!(!dead.exists());
        assert!(!root.join(TMP_DIR).join("loose-old-file").exists());
        assert!(live.session.dir.join("upload-in-progress").exists());
        let own = second.session.dir.clone();
        drop(second);
        assert!(!own.exists(), "a clean stop removes its own session");
    }

    #[tokio::test]
    async fn finished_writer_leaves_no_temporary_file() {
        let (_dir, store) = store();
        // Not a multiple of the chunk or buffer size, to catch lost tails.
        let data = pattern(3 * WRITE_BUFFER + 12_345);
        let mut w = store.writer("gu/id/guid-1").await.unwrap();
        for chunk in data.chunks(64 * 1024) {
            w.write(Bytes::copy_from_slice(chunk)).await.unwrap();
        }
        assert_eq!(tmp_entries(&store).len(), 1);
        assert_eq!(w.finish().await.unwrap(), data.len() as u64);
        assert!(tmp_entries(&store).is_empty());
    }

    #[tokio::test]
    async fn downloads_stream_in_bounded_chunks() {
        let (_dir, store) = store();
        let data = pattern(3 * DOWNLOAD_CHUNK + 7);
        put(&store, "k", &data).await;
        let Download::Stream { length, mut body } = store.download("k").await.unwrap() else {
            panic!("local store must stream");
        };
        assert_eq!(length, data.len() as u64);
        let mut out = Vec::new();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.unwrap();
            assert!(chunk.len() <= DOWNLOAD_CHUNK);
            out.extend_from_slice(&chunk);
        }
        assert_eq!(out, data);
    }

    #[tokio::test]
    async fn aborted_writer_leaves_no_temporary_file() {
        let (_dir, store) = store();
        let mut w = store.writer("x/y").await.unwrap();
        w.write(Bytes::from(pattern(3 * WRITE_BUFFER)))
            .await
            .unwrap();
        assert_eq!(tmp_entries(&store).len(), 1);
        w.abort().await.unwrap();
        assert!(tmp_entries(&store).is_empty());
        assert!(!store.root().join("x").exists());
    }

    #[tokio::test]
    async fn dropped_writer_leaves_no_temporary_file() {
        let (_dir, store) = store();
        let mut w = store.writer("x/y").await.unwrap();
        w.write(Bytes::from(pattern(3 * WRITE_BUFFER)))
            .await
            .unwrap();
        assert_eq!(tmp_entries(&store).len(), 1);
        drop(w);
        assert!(tmp_entries(&store).is_empty());
        assert!(!store.root().join("x").exists());
    }

    #[tokio::test]
    async fn failed_finish_leaves_no_temp_file() {
        let (_dir, store) = store();
        put(&store, "file", b"x").await;
        // "file" is a regular file, so "file/child" cannot be created.
        let mut w = store.writer("file/child").await.unwrap();
        w.write(Bytes::from_static(b"data")).await.unwrap();
        assert!(w.finish().await.is_err());
        assert!(tmp_entries(&store).is_empty());
    }

    #[tokio::test]
    async fn a_directory_is_not_a_blob() {
        let (_dir, store) = store();
        put(&store, "dir/inside", b"hello").await;
        assert_eq!(store.size("dir").await.unwrap(), None);
        for len in [10, 0] {
            let err = store.read_range("dir", 0, len).await.unwrap_err();
            assert!(err.is_not_found(), "{err}");
        }
        assert!(store.read("dir").await.err().unwrap().is_not_found());
        assert!(store.download("dir").await.unwrap_err().is_not_found());
        assert!(store.copy("dir", "x").await.unwrap_err().is_not_found());
        assert!(store.rename("dir", "x").await.unwrap_err().is_not_found());
        assert_eq!(store.size("x").await.unwrap(), None);
        store.delete("dir").await.unwrap();
        assert_eq!(store.size("dir/inside").await.unwrap(), Some(5));
    }

    #[tokio::test]
    async fn a_blocked_destination_is_no_missing_source() {
        let (_dir, store) = store();
        put(&store, "staging/a", b"hello").await;
        put(&store, "ab", b"a file where a directory must go").await;
        let err = store.rename("staging/a", "ab/cd/x").await.unwrap_err();
        assert!(!err.is_not_found(), "{err}");
        assert!(err.is_retryable(), "{err}");
        assert_eq!(store.size("staging/a").await.unwrap(), Some(5));
    }

    #[tokio::test]
    async fn moves_and_deletes_remove_emptied_directories() {
        let (_dir, store) = store();
        put(&store, "src/a", b"hello").await;
        put(&store, "src/c", b"other").await;
        store.copy("src/a", "dst/deep/b").await.unwrap();
        store.copy("src/c", "dst/deep/b").await.unwrap();
        assert!(tmp_entries(&store).is_empty());

        store.rename("src/a", "moved/here").await.unwrap();
        store.rename("src/c", "moved/here").await.unwrap();
        // "src" held only a and c: both moved, so the directory is gone.
        assert!(!store.root().join("src").exists());
        assert!(store.rename("nope", "x").await.unwrap_err().is_not_found());
        assert!(!store.root().join("x").exists());

        store.delete("dst/deep/b").await.unwrap();
        assert!(!store.root().join("dst").exists());
        assert!(store.root().exists());
        assert!(tmp_entries(&store).is_empty());
    }

    #[tokio::test]
    async fn delete_keeps_non_empty_parents() {
        let (_dir, store) = store();
        put(&store, "p/q/one", b"1").await;
        put(&store, "p/two", b"2").await;
        store.delete("p/q/one").await.unwrap();
        assert!(!store.root().join("p/q").exists());
        assert!(store.root().join("p").exists());
        assert_eq!(store.size("p/two").await.unwrap(), Some(1));
    }

    #[tokio::test]
    async fn the_temporary_area_is_out_of_reach() {
        let (dir, store) = store();
        put(&store, "a", b"a").await;
        // A writer in progress has a file in the temporary area.
        let mut open = store.writer("b").await.unwrap();
        open.write(Bytes::from_static(b"pending")).await.unwrap();
        for key in [".tmp", ".tmp/x"] {
            assert!(
                matches!(store.writer(key).await, Err(BlobError::InvalidKey { .. })),
                "{key:?}"
            );
            assert!(matches!(
                store.size(key).await,
                Err(BlobError::InvalidKey { .. })
            ));
            assert!(matches!(
                store.delete(key).await,
                Err(BlobError::InvalidKey { .. })
            ));
            assert!(matches!(
                store.read_range(key, 0, 1).await,
                Err(BlobError::InvalidKey { .. })
            ));
            assert!(matches!(
                store.copy("a", key).await,
                Err(BlobError::InvalidKey { .. })
            ));
        }
        for prefix in [".tmp/", ".tmp", ".t", ""] {
            let listed = store.list(prefix).await.unwrap();
            assert!(
                listed.iter().all(|b| b.key == "a"),
                "{prefix:?}: {listed:?}"
            );
        }
        // Nor can a key reach outside the root.
        assert!(store.writer("../outside").await.is_err());
        assert!(store.copy("a", "../../outside").await.is_err());
        assert!(!dir.path().join("outside").exists());
        open.abort().await.unwrap();
    }

    #[tokio::test]
    async fn check_fails_without_a_usable_root() {
        let (dir, store) = store();
        store.check().await.unwrap();
        // The probe file goes again.
        assert!(tmp_entries(&store).is_empty());
        std::fs::remove_dir_all(store.root()).unwrap();
        let err = store.check().await.unwrap_err();
        assert!(matches!(err, BlobError::Fs { .. }), "{err:?}");
        assert!(err.is_retryable(), "{err:?}");
        std::fs::write(dir.path().join("blobs"), b"not a dir").unwrap();
        let err = store.check().await.unwrap_err();
        assert!(matches!(err, BlobError::Fs { .. }), "{err:?}");
        assert!(err.is_retryable(), "{err:?}");
        assert!(
            Chain(&err).to_string().ends_with(": not a directory"),
            "{}",
            Chain(&err)
        );
    }
}
