//! Persistence: organizations, spaces, roles, apps, packages with their labels and
//! annotations, the job outbox and the resource pool's index, in PostgreSQL or SQLite
//! through one diesel code path.
//!
//! Every function takes `&mut AnyConnection` and is plain synchronous diesel; [`Database`]
//! runs them on the blocking thread pool. State changes that must be exclusive are single
//! conditional updates (see `packages-domain`'s `Transition`), atomic on both backends.

/// Runs `$body` with `$c` bound to the concrete connection inside an [`AnyConnection`],
/// for SQL both backends speak but diesel's multi-backend does not express (`ON
/// CONFLICT`, `UNION ALL`). The query is still typed diesel, checked for each backend.
macro_rules! on_each_backend {
    ($conn:expr, |$c:ident| $body:expr) => {
        match $conn {
            #[cfg(feature = "postgres")]
            $crate::AnyConnection::Postgresql($c) => $body,
            $crate::AnyConnection::Sqlite($c) => $body,
        }
    };
}

pub mod batch;
pub mod connection;
pub mod context;
pub mod jobs;
pub mod metadata;
pub mod packages;
pub mod resource_pool;
mod rows;
mod schema;

use std::sync::Arc;
use std::time::Duration;

pub use connection::{AnyConnection, DatabaseUrl, migrate, revert_all, write_transaction};

/// The backend of [`AnyConnection`], for boxed queries and expressions.
pub(crate) type Db = <AnyConnection as diesel::Connection>::Backend;

pub type Pool = r2d2::Pool<connection::Manager>;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// No connection could be had from the pool (the database is unreachable, or every
    /// connection is busy for longer than the pool waits); worth retrying.
    #[error("no database connection")]
    Pool(#[source] r2d2::Error),
    /// The connection broke during a query; worth retrying.
    #[error("the database connection was lost")]
    ConnectionLost(#[source] diesel::result::Error),
    /// The blocking task that ran the query did not finish (runtime shutting down).
    #[error("the database task did not finish")]
    Task(#[source] tokio::task::JoinError),
    /// A batched read was dropped unanswered (runtime shutting down).
    #[error("the batched read was not answered")]
    Abandoned,
    /// The failure of a batched read, shared by every caller in the batch.
    #[error(transparent)]
    Shared(Arc<StorageError>),
    /// A unique key refused the row (duplicate name, role, …).
    #[error("a row with the same key exists")]
    Conflict(#[source] diesel::result::Error),
    /// A foreign key refused the row (its parent is gone).
    #[error("the row it refers to is gone")]
    MissingParent(#[source] diesel::result::Error),
    /// A row holds a value this build does not know.
    #[error("corrupt row: {0}")]
    Corrupt(String),
    #[error("bad database URL: {0}")]
    BadUrl(String),
    #[error("migration failed")]
    Migration(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("database query failed")]
    Query(#[source] diesel::result::Error),
}

impl StorageError {
    /// Whether the same operation may succeed later: the database was out of reach, not
    /// the request at fault.
    pub fn is_retryable(&self) -> bool {
        match self {
            StorageError::Shared(error) => error.is_retryable(),
            StorageError::Pool(_)
            | StorageError::ConnectionLost(_)
            | StorageError::Task(_)
            | StorageError::Abandoned => true,
            _ => false,
        }
    }
}

impl From<diesel::result::Error> for StorageError {
    fn from(e: diesel::result::Error) -> Self {
        use diesel::result::{DatabaseErrorKind as Kind, Error};
        match e {
            Error::DatabaseError(Kind::UniqueViolation, _) => StorageError::Conflict(e),
            Error::DatabaseError(Kind::ForeignKeyViolation, _) => StorageError::MissingParent(e),
            Error::DatabaseError(Kind::ClosedConnection | Kind::UnableToSendCommand, _) => {
                StorageError::ConnectionLost(e)
            }
            Error::DatabaseError(_, ref info) if is_connection_loss(info.message()) => {
                StorageError::ConnectionLost(e)
            }
            other => StorageError::Query(other),
        }
    }
}

/// libpq reports a dropped server as a plain error with one of these texts.
fn is_connection_loss(message: &str) -> bool {
    const SIGNS: [&str; 5] = [
        "server closed the connection",
        "terminating connection",
        "no connection to the server",
        "could not receive data",
        "connection to server",
    ];
    SIGNS.iter().any(|s| message.contains(s))
}

/// A pool of connections and a way to run blocking diesel code from async code.
#[derive(Clone)]
pub struct Database {
    pool: Pool,
    backend: &'static str,
}

impl Database {
    /// Connects, fails fast when the database cannot be reached, and migrates.
    pub fn connect(url: &str, pool_size: u32) -> Result<Database, StorageError> {
        let url = DatabaseUrl::parse(url)?;
        let backend = url.backend();
        let pool = r2d2::Pool::builder()
            .max_size(pool_size.max(1))
            // A request waits at most this long for a connection before it answers 503.
            .connection_timeout(Duration::from_secs(5))
            // No round trip per checkout: a connection that failed is marked and dropped
            // instead (see `Pooled`).
            .test_on_check_out(false)
            .min_idle(Some(1))
            .build(connection::Manager::new(url))
            .map_err(StorageError::Pool)?;
        let mut conn = pool.get().map_err(StorageError::Pool)?;
        migrate(&mut conn)?;
        Ok(Database { pool, backend })
    }

    /// The pool, for code that manages its own blocking threads.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    pub fn backend(&self) -> &'static str {
        self.backend
    }

    /// Runs `f` with a pooled connection on the blocking thread pool.
    pub async fn run<T, F>(&self, f: F) -> Result<T, StorageError>
    where
        T: Send + 'static,
        F: FnOnce(&mut AnyConnection) -> Result<T, StorageError> + Send + 'static,
    {
        let pool = self.pool.clone();
        tokio::task::spawn_blocking(move || {
            let mut pooled = pool.get().map_err(StorageError::Pool)?;
            let result = f(&mut pooled);
            // After a lost connection or an unexpected error the connection may be
            // unusable; a fresh one costs less than another failed request.
            if matches!(
                result,
                Err(StorageError::ConnectionLost(_) | StorageError::Query(_))
            ) {
                pooled.mark_broken();
            }
            result
        })
        .await
        .map_err(StorageError::Task)?
    }

    /// Runs a short read like [`Database::run`], but on the calling thread when the
    /// database is SQLite and a connection is idle at once: an indexed read of a local
    /// file takes a few microseconds, less than the hand-off to the blocking pool and
    /// back (two thread wake-ups). In WAL mode a reader never waits for a writer. Any
    /// other case goes through the blocking pool.
    pub async fn read<T, F>(&self, f: F) -> Result<T, StorageError>
    where
        T: Send + 'static,
        F: FnOnce(&mut AnyConnection) -> Result<T, StorageError> + Send + 'static,
    {
        if self.backend == "sqlite"
            && let Some(mut pooled) = self.pool.try_get()
        {
            let result = f(&mut pooled);
            if matches!(
                result,
                Err(StorageError::ConnectionLost(_) | StorageError::Query(_))
            ) {
                pooled.mark_broken();
            }
            return result;
        }
        self.run(f).await
    }

    /// Readiness: a connection can be had and answers.
    pub async fn check(&self) -> Result<(), StorageError> {
        use diesel::connection::SimpleConnection;
        self.run(|conn| Ok(conn.batch_execute("SELECT 1")?)).await
    }
}

/// Milliseconds since the Unix epoch, the unit of the outbox's times.
pub fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
