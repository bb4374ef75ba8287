//! Process-wide limits set once at start: private file modes and the open-files limit.

/// Files and directories this process creates (SQLite database and journal, generated
/// secret, blobs, temporary uploads) are private to its user: 0600 and 0700. Bits and
/// tokens are nobody else's business on a shared machine.
#[allow(unsafe_code)]
pub(crate) fn private_files() {
    // SAFETY: umask only sets the process's file-creation mask; it cannot fail and runs
    // first in main, before any other thread exists.
    unsafe {
        libc::umask(0o077);
    }
}

/// Raises the soft open-files limit to the hard limit: every connection and every upload
/// holds a descriptor, and the distribution default (often 1024) is far below what the
/// connection cap allows. Logs both limits either way.
#[allow(unsafe_code)]
pub(crate) fn raise_open_files() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own; setrlimit reads it.
    let got = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    if got != 0 {
        tracing::warn!(error = %std::io::Error::last_os_error(), "cannot read the open-files limit");
        return;
    }
    let before = limit.rlim_cur;
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit = raised;
        } else {
            tracing::warn!(error = %std::io::Error::last_os_error(), "cannot raise the open-files limit");
        }
    }
    tracing::info!(
        soft_before = before,
        soft = limit.rlim_cur,
        hard = limit.rlim_max,
        "open-files limit"
    );
}
