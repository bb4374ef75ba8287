//! Reads that arrive while others wait for the database go to it together.
//!
//! A read of PostgreSQL costs a hand-off to a blocking thread and a round trip, each far
//! more than the row itself. Under load, requests for the same kind of read queue up behind
//! the ones in flight; [`Batched`] gives everything queued to one blocking thread, which
//! asks the database for all of it in one statement and answers each caller. An idle
//! service reads exactly as before: the first caller finds nothing in flight and its read
//! goes alone.
//!
//! Nothing is shared across time: a caller's read is part of a statement that starts after
//! the caller queued, so it sees every change committed before it asked, as a read of its
//! own would. Nothing joins a statement already running.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::oneshot;

use crate::{AnyConnection, Database, Pool, StorageError};

/// Loads the values of `keys`, one for each, in order.
pub type Load<K, V> = fn(&mut AnyConnection, &[K]) -> Result<Vec<V>, StorageError>;

/// Statements in flight at once: one being answered while the next gathers what arrives
/// meanwhile. More would split the queue into smaller batches for the same work.
const STATEMENTS_IN_FLIGHT: usize = 2;

/// The most keys one statement takes; the rest wait for the next.
const MOST_KEYS_PER_STATEMENT: usize = 64;

/// One kind of read, batched. Clones share the queue.
pub struct Batched<K, V> {
    db: Database,
    load: Load<K, V>,
    waiting: Arc<Mutex<Waiting<K, V>>>,
}

impl<K, V> Clone for Batched<K, V> {
    fn clone(&self) -> Self {
        Batched {
            db: self.db.clone(),
            load: self.load,
            waiting: Arc::clone(&self.waiting),
        }
    }
}

type Reply<V> = oneshot::Sender<Result<V, StorageError>>;

struct Waiting<K, V> {
    queue: Vec<(K, Reply<V>)>,
    /// Blocking threads draining `queue`.
    drainers: usize,
}

impl<K: Send + 'static, V: Send + 'static> Batched<K, V> {
    pub fn new(db: Database, load: Load<K, V>) -> Self {
        Batched {
            db,
            load,
            waiting: Arc::new(Mutex::new(Waiting {
                queue: Vec::new(),
                drainers: 0,
            })),
        }
    }

    /// How many keys wait for a statement.
    pub fn queued(&self) -> usize {
        self.waiting
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .queue
            .len()
    }

    /// The value of `key`, read in a statement that started after this call.
    pub async fn get(&self, key: K) -> Result<V, StorageError> {
        let load = self.load;
        // SQLite reads a local file in microseconds, on the calling thread (see
        // `Database::read`): nothing to gain from waiting for company.
        if self.db.backend == "sqlite"
            && let Some(mut pooled) = self.db.pool.try_get()
        {
            return one(answer(&mut pooled, load, std::slice::from_ref(&key)));
        }
        let (reply, answered) = oneshot::channel();
        let start_drainer = {
            let mut waiting = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
            waiting.queue.push((key, reply));
            let start = waiting.drainers < STATEMENTS_IN_FLIGHT;
            if start {
                waiting.drainers += 1;
            }
            start
        };
        if start_drainer {
            let (pool, waiting) = (self.db.pool.clone(), Arc::clone(&self.waiting));
            tokio::task::spawn_blocking(move || drain(&pool, &waiting, load));
        }
        answered.await.unwrap_or(Err(StorageError::Abandoned))
    }
}

/// Answers batches from the queue until it is empty.
fn drain<K, V>(pool: &Pool, waiting: &Mutex<Waiting<K, V>>, load: Load<K, V>) {
    loop {
        let batch: Vec<(K, Reply<V>)> = {
            let mut waiting = waiting.lock().unwrap_or_else(PoisonError::into_inner);
            if waiting.queue.is_empty() {
                // Under the lock: a caller that queues after this starts a drainer.
                waiting.drainers -= 1;
                return;
            }
            let n = waiting.queue.len().min(MOST_KEYS_PER_STATEMENT);
            waiting.queue.drain(..n).collect()
        };
        let (keys, replies): (Vec<K>, Vec<Reply<V>>) = batch.into_iter().unzip();
        let answered = pool
            .get()
            .map_err(StorageError::Pool)
            .and_then(|mut pooled| answer(&mut pooled, load, &keys));
        match answered {
            Ok(values) if values.len() == replies.len() => {
                for (reply, value) in replies.into_iter().zip(values) {
                    // A caller that went away (its client hung up) needs no answer.
                    let _ = reply.send(Ok(value));
                }
            }
            Ok(values) => {
                let error = Arc::new(StorageError::Corrupt(format!(
                    "{} values read for {} keys",
                    values.len(),
                    replies.len()
                )));
                fail(replies, &error);
            }
            Err(error) => fail(replies, &Arc::new(error)),
        }
    }
}

/// Runs `load` on a pooled connection, which it marks broken after a failure that may have
/// left it unusable. A panic in `load` fails this batch, not the thread that drains.
fn answer<K, V>(
    pooled: &mut r2d2::PooledConnection<crate::connection::Manager>,
    load: Load<K, V>,
    keys: &[K],
) -> Result<Vec<V>, StorageError> {
    let Ok(result) = catch_unwind(AssertUnwindSafe(|| load(pooled, keys))) else {
        pooled.mark_broken();
        return Err(StorageError::Corrupt("a batched read panicked".into()));
    };
    if matches!(
        result,
        Err(StorageError::ConnectionLost(_) | StorageError::Query(_))
    ) {
        pooled.mark_broken();
    }
    result
}

fn fail<V>(replies: Vec<Reply<V>>, error: &Arc<StorageError>) {
    for reply in replies {
        let _ = reply.send(Err(StorageError::Shared(Arc::clone(error))));
    }
}

fn one<V>(values: Result<Vec<V>, StorageError>) -> Result<V, StorageError> {
    let mut values = values?;
    match (values.pop(), values.is_empty()) {
        (Some(value), true) => Ok(value),
        _ => Err(StorageError::Corrupt(
            "a batched read answered one key wrongly".into(),
        )),
    }
}
