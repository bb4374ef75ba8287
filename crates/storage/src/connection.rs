//! One connection type for PostgreSQL and SQLite, so every query is written once.

use std::path::Path;

#[cfg(feature = "postgres")]
use diesel::PgConnection;
use diesel::SqliteConnection;
use diesel::connection::{AnsiTransactionManager, SimpleConnection, TransactionManager};
use diesel::prelude::*;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use crate::StorageError;

#[cfg(feature = "postgres")]
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");
const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");

#[derive(diesel::MultiConnection)]
pub enum AnyConnection {
    #[cfg(feature = "postgres")]
    Postgresql(PgConnection),
    Sqlite(SqliteConnection),
}

/// A parsed `database.url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    #[cfg(feature = "postgres")]
    Postgres(String),
    /// Path of the SQLite file.
    Sqlite(String),
}

impl DatabaseUrl {
    /// `postgres://…` / `postgresql://…`, or `sqlite://PATH` (relative or, with a third
    /// slash, absolute). Anything else is refused rather than guessed, and so is
    /// `postgres://` in a build without PostgreSQL (the embedded default's).
    pub fn parse(url: &str) -> Result<Self, StorageError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            #[cfg(feature = "postgres")]
            return Ok(DatabaseUrl::Postgres(url.to_owned()));
            #[cfg(not(feature = "postgres"))]
            return Err(StorageError::BadUrl(
                "this build has no PostgreSQL support (`make run` builds the embedded default only); build with `cargo build --release` for postgres:// URLs".to_owned(),
            ));
        }
        match url.strip_prefix("sqlite://") {
            Some(path) if !path.is_empty() => Ok(DatabaseUrl::Sqlite(path.to_owned())),
            _ => Err(StorageError::BadUrl(format!(
                "database.url must be sqlite://PATH or postgres://…, got '{url}'"
            ))),
        }
    }

    pub fn backend(&self) -> &'static str {
        match self {
            #[cfg(feature = "postgres")]
            DatabaseUrl::Postgres(_) => "postgres",
            DatabaseUrl::Sqlite(_) => "sqlite",
        }
    }
}

/// An r2d2 manager that dispatches on the URL scheme, so an unreachable PostgreSQL server
/// reports its own error instead of diesel's generic multi-connection one.
#[derive(Debug, Clone)]
pub struct Manager {
    url: DatabaseUrl,
}

impl Manager {
    pub fn new(url: DatabaseUrl) -> Self {
        Manager { url }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error(transparent)]
    Connection(#[from] diesel::ConnectionError),
    #[error(transparent)]
    Query(#[from] diesel::result::Error),
    #[error("cannot create the database directory: {0}")]
    Directory(#[from] std::io::Error),
}

/// A pooled connection that remembers whether it failed in a way that may have left it
/// unusable, so the pool drops it instead of handing it out again. (Checking every
/// connection on checkout would cost a round trip per request.)
pub struct Pooled {
    conn: AnyConnection,
    broken: bool,
}

impl Pooled {
    pub(crate) fn mark_broken(&mut self) {
        self.broken = true;
    }
}

impl std::ops::Deref for Pooled {
    type Target = AnyConnection;
    fn deref(&self) -> &AnyConnection {
        &self.conn
    }
}

impl std::ops::DerefMut for Pooled {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        &mut self.conn
    }
}

impl r2d2::ManageConnection for Manager {
    type Connection = Pooled;
    type Error = ConnectError;

    fn connect(&self) -> Result<Pooled, ConnectError> {
        Ok(Pooled {
            conn: self.open()?,
            broken: false,
        })
    }

    fn is_valid(&self, conn: &mut Pooled) -> Result<(), ConnectError> {
        Ok(conn.batch_execute("SELECT 1")?)
    }

    fn has_broken(&self, pooled: &mut Pooled) -> bool {
        pooled.broken
            || match &mut pooled.conn {
                #[cfg(feature = "postgres")]
                AnyConnection::Postgresql(c) => {
                    AnsiTransactionManager::is_broken_transaction_manager(c)
                }
                AnyConnection::Sqlite(c) => {
                    AnsiTransactionManager::is_broken_transaction_manager(c)
                }
            }
    }
}

impl Manager {
    fn open(&self) -> Result<AnyConnection, ConnectError> {
        match &self.url {
            #[cfg(feature = "postgres")]
            DatabaseUrl::Postgres(url) => Ok(AnyConnection::Postgresql(PgConnection::establish(
                &with_connect_timeout(url),
            )?)),
            DatabaseUrl::Sqlite(path) => {
                if let Some(dir) = Path::new(path)
                    .parent()
                    .filter(|d| !d.as_os_str().is_empty())
                {
                    std::fs::create_dir_all(dir)?;
                }
                configure_sqlite();
                let mut conn = SqliteConnection::establish(path)?;
                // WAL lets readers run beside the single writer; the busy timeout makes a
                // writer wait for the lock instead of failing at once.
                conn.batch_execute(
                    "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                     PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON;",
                )?;
                Ok(AnyConnection::Sqlite(conn))
            }
        }
    }
}

/// SQLite's process-wide threading mode, set before its first connection opens (it
/// refuses it after): multi-thread. The pool hands each connection to one holder at a
/// time, so SQLite need not lock a connection's mutex around every call (diesel makes
/// one per column read); those locks showed near the top of a profile of GETs on the
/// embedded default. (Its allocation statistics, whose mutex every allocation took, are
/// compiled out: `.cargo/config.toml`.)
#[allow(unsafe_code)]
fn configure_sqlite() {
    static CONFIGURED: std::sync::Once = std::sync::Once::new();
    CONFIGURED.call_once(|| {
        // SAFETY: sqlite3_config must run before SQLite initialises and not beside any
        // other use of SQLite. Every connection of this process opens here, after this
        // call, and the Once makes other openers wait for it; the option takes no
        // argument. Should SQLite already be initialised, it answers SQLITE_MISUSE and
        // changes nothing.
        unsafe {
            libsqlite3_sys::sqlite3_config(libsqlite3_sys::SQLITE_CONFIG_MULTITHREAD);
        }
    });
}

#[cfg(feature = "postgres")]
/// libpq waits for the OS TCP timeout (minutes) on an unreachable host unless told.
fn with_connect_timeout(url: &str) -> String {
    if url.contains("connect_timeout=") {
        url.to_owned()
    } else if url.contains('?') {
        format!("{url}&connect_timeout=5")
    } else {
        format!("{url}?connect_timeout=5")
    }
}

/// Applies pending migrations. On PostgreSQL an advisory lock keeps processes that start
/// together (an API and several workers) from migrating at the same time.
pub fn migrate(conn: &mut AnyConnection) -> Result<(), StorageError> {
    #[cfg(feature = "postgres")]
    const LOCK: i64 = 0x7061_636b_6167_6573; // "packages"
    match conn {
        #[cfg(feature = "postgres")]
        AnyConnection::Postgresql(c) => {
            c.batch_execute(&format!("SELECT pg_advisory_lock({LOCK})"))?;
            let result = c
                .run_pending_migrations(POSTGRES_MIGRATIONS)
                .map(|_| ())
                .map_err(StorageError::Migration);
            c.batch_execute(&format!("SELECT pg_advisory_unlock({LOCK})"))?;
            result
        }
        AnyConnection::Sqlite(c) => c
            .run_pending_migrations(SQLITE_MIGRATIONS)
            .map(|_| ())
            .map_err(StorageError::Migration),
    }
}

/// Reverts every migration, newest first: what an operator rolling back a release (and
/// the tests that prove every `down.sql` undoes its `up.sql`) needs.
pub fn revert_all(conn: &mut AnyConnection) -> Result<(), StorageError> {
    match conn {
        #[cfg(feature = "postgres")]
        AnyConnection::Postgresql(c) => c
            .revert_all_migrations(POSTGRES_MIGRATIONS)
            .map(|_| ())
            .map_err(StorageError::Migration),
        AnyConnection::Sqlite(c) => c
            .revert_all_migrations(SQLITE_MIGRATIONS)
            .map(|_| ())
            .map_err(StorageError::Migration),
    }
}

/// Runs `f` in a transaction that holds the write lock from its first statement.
///
/// SQLite's default deferred transactions take the write lock at their first write; two
/// such transactions that both read first then fail with SQLITE_BUSY instead of waiting.
/// `BEGIN IMMEDIATE` makes them queue. PostgreSQL needs nothing special: its conditional
/// updates re-check their condition after waiting for a row lock.
pub fn write_transaction<T, E, F>(conn: &mut AnyConnection, f: F) -> Result<T, E>
where
    F: FnOnce(&mut AnyConnection) -> Result<T, E>,
    E: From<diesel::result::Error>,
{
    #[cfg(feature = "postgres")]
    let AnyConnection::Sqlite(c) = conn else {
        return conn.transaction(f);
    };
    #[cfg(not(feature = "postgres"))]
    let AnyConnection::Sqlite(c) = conn;
    AnsiTransactionManager::begin_transaction_sql(c, "BEGIN IMMEDIATE")?;
    match f(conn) {
        Ok(value) => {
            end_transaction(conn, true)?;
            Ok(value)
        }
        Err(e) => {
            end_transaction(conn, false)?;
            Err(e)
        }
    }
}

fn end_transaction(conn: &mut AnyConnection, commit: bool) -> QueryResult<()> {
    match (conn, commit) {
        #[cfg(feature = "postgres")]
        (AnyConnection::Postgresql(c), true) => AnsiTransactionManager::commit_transaction(c),
        #[cfg(feature = "postgres")]
        (AnyConnection::Postgresql(c), false) => AnsiTransactionManager::rollback_transaction(c),
        (AnyConnection::Sqlite(c), true) => AnsiTransactionManager::commit_transaction(c),
        (AnyConnection::Sqlite(c), false) => AnsiTransactionManager::rollback_transaction(c),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, unsafe_code)]
mod tests {
    /// Connections opened once the pool has opened its own have no mutex: SQLite was
    /// put in multi-thread mode before it initialised.
    #[test]
    fn sqlite_runs_in_multi_thread_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("configured.db");
        let db = crate::Database::connect(&format!("sqlite://{}", path.display()), 1).unwrap();
        let _pooled = db.pool().get().unwrap();
        let name = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
        let mut raw = std::ptr::null_mut();
        // SAFETY: opens, inspects and closes a connection of its own, with a valid
        // name and out-pointer.
        let (opened, mutex) = unsafe {
            let opened = libsqlite3_sys::sqlite3_open_v2(
                name.as_ptr(),
                &mut raw,
                libsqlite3_sys::SQLITE_OPEN_READWRITE,
                std::ptr::null(),
            );
            let mutex = libsqlite3_sys::sqlite3_db_mutex(raw);
            libsqlite3_sys::sqlite3_close(raw);
            (opened, mutex)
        };
        assert_eq!(opened, libsqlite3_sys::SQLITE_OK);
        assert!(mutex.is_null(), "SQLite still locks a mutex per connection");
    }
}
