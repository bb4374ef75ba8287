//! Counts the API's open connections for `http_connections_open`, and warns when the
//! `server.max_connections` cap is reached (actix then stops accepting until one closes,
//! so clients wait in the kernel's backlog instead of exhausting file descriptors).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use packages_telemetry::Metrics;

/// At most one warning per this many seconds, however long the cap stays reached.
const WARN_EVERY_SECS: u64 = 10;

pub(crate) struct Connections {
    open: AtomicUsize,
    cap: usize,
    metrics: Metrics,
    last_warning: AtomicU64,
}

/// Lives as long as its connection (actix keeps it in the connection's extensions).
pub(crate) struct Open(Arc<Connections>);

impl Connections {
    pub(crate) fn new(cap: usize, metrics: Metrics) -> Connections {
        Connections {
            open: AtomicUsize::new(0),
            cap,
            metrics,
            last_warning: AtomicU64::new(0),
        }
    }

    pub(crate) fn opened(self: &Arc<Self>) -> Open {
        let open = self.open.fetch_add(1, Ordering::Relaxed) + 1;
        self.metrics.set_connections_open(open as u64);
        if open >= self.cap {
            self.metrics.connections_at_cap();
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let last = self.last_warning.load(Ordering::Relaxed);
            if now >= last + WARN_EVERY_SECS
                && self
                    .last_warning
                    .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
            {
                tracing::warn!(
                    open,
                    cap = self.cap,
                    "server.max_connections reached: new connections wait until one closes"
                );
            }
        }
        Open(self.clone())
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        let open = self
            .0
            .open
            .fetch_sub(1, Ordering::Relaxed)
            .saturating_sub(1);
        self.0.metrics.set_connections_open(open as u64);
    }
}
