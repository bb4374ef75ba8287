//! Persistence: organizations, spaces, roles, apps, packages and the job outbox, in
//! PostgreSQL or SQLite through one diesel code path.
//!
//! Every function takes `&mut AnyConnection` and is plain synchronous diesel; [`Database`]
//! runs them on the blocking thread pool. State changes that must be exclusive are single
//! conditional updates (see `packages-domain`'s `Transition`), atomic on both backends.

pub mod connection;
pub mod context;
pub mod jobs;
pub mod packages;
mod rows;
mod schema;

use std::time::Duration;

pub use connection::{AnyConnection, DatabaseUrl, migrate, write_transaction};

pub type Pool = r2d2::Pool<connection::Manager>;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The database cannot be reached (pool exhausted or connection lost); worth retrying.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A unique key refused the row (duplicate name, role, …).
    #[error("conflicting row: {0}")]
    Conflict(String),
    /// A foreign key refused the row (its parent is gone).
    #[error("referenced row missing: {0}")]
    MissingParent(String),
    /// A row holds a value this build does not know.
    #[error("corrupt row: {0}")]
    Corrupt(String),
    #[error("bad database URL: {0}")]
    BadUrl(String),
    #[error("migration failed: {0}")]
    Migration(String),
    #[error("database error: {0}")]
    Query(diesel::result::Error),
}

impl StorageError {
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StorageError::Unavailable(_))
    }
}

impl From<diesel::result::Error> for StorageError {
    fn from(e: diesel::result::Error) -> Self {
        use diesel::result::{DatabaseErrorKind as Kind, Error};
        match e {
            Error::DatabaseError(Kind::UniqueViolation, info) => {
                StorageError::Conflict(info.message().to_owned())
            }
            Error::DatabaseError(Kind::ForeignKeyViolation, info) => {
                StorageError::MissingParent(info.message().to_owned())
            }
            Error::DatabaseError(Kind::ClosedConnection | Kind::UnableToSendCommand, info) => {
                StorageError::Unavailable(info.message().to_owned())
            }
            Error::DatabaseError(_, ref info) if is_connection_loss(info.message()) => {
                StorageError::Unavailable(info.message().to_owned())
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
            .map_err(|e| StorageError::Unavailable(e.to_string()))?;
        let mut conn = pool
            .get()
            .map_err(|e| StorageError::Unavailable(e.to_string()))?;
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
            let mut pooled = pool
                .get()
                .map_err(|e| StorageError::Unavailable(e.to_string()))?;
            let result = f(&mut pooled);
            // After a lost connection or an unexpected error the connection may be
            // unusable; a fresh one costs less than another failed request.
            if matches!(
                result,
                Err(StorageError::Unavailable(_) | StorageError::Query(_))
            ) {
                pooled.mark_broken();
            }
            result
        })
        .await
        .map_err(|e| StorageError::Unavailable(format!("database task failed: {e}")))?
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
