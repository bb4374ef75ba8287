//! Tokens that passed verification, so that a client sending the same token again (as
//! clients do for the token's whole lifetime) is not decoded and checked again on every
//! request.
//!
//! Only a token that passed every check is kept, so a flood of forged tokens keeps
//! nothing. An entry answers only while the token's `exp` is still ahead, for at most
//! [`KEPT_FOR`] after its check, and while UAA's key set is the one it was checked
//! against: a key withdrawn from the set stops verifying as soon as the new set is taken.
//! Bounded in entries and in the length of a kept token.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use packages_domain::Principal;

/// How long a passed check is reused, at most.
pub(crate) const KEPT_FOR: Duration = Duration::from_secs(60);
/// Entries kept at most; with [`LONGEST_KEPT`], at most 2 MiB of tokens.
pub(crate) const MAX_ENTRIES: usize = 256;
/// Longer tokens are checked every time (UAA's are 1–2 KiB).
pub(crate) const LONGEST_KEPT: usize = 8 * 1024;

struct Accepted {
    principal: Principal,
    /// The token's `exp`, seconds since the Unix epoch.
    expires_at: u64,
    checked_at: Instant,
    /// The generation of UAA's key set the check used.
    keys: u64,
}

#[derive(Default)]
pub(crate) struct AcceptedTokens {
    entries: Mutex<HashMap<Box<str>, Accepted>>,
}

impl std::fmt::Debug for AcceptedTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the tokens themselves.
        f.write_str("AcceptedTokens")
    }
}

impl AcceptedTokens {
    /// The caller of `token` if it passed a check within [`KEPT_FOR`] against the key set
    /// `keys`, and its `exp` is still ahead of `now_secs`.
    pub(crate) fn get(
        &self,
        token: &str,
        keys: u64,
        now_secs: u64,
        now: Instant,
    ) -> Option<Principal> {
        let entries = self.entries.lock().ok()?;
        let accepted = entries.get(token)?;
        (accepted.keys == keys
            && now_secs < accepted.expires_at
            && now.saturating_duration_since(accepted.checked_at) < KEPT_FOR)
            .then(|| accepted.principal.clone())
    }

    /// Keeps a token that just passed every check against the key set `keys`.
    pub(crate) fn keep(
        &self,
        token: &str,
        principal: &Principal,
        keys: u64,
        expires_at: u64,
        now: Instant,
    ) {
        if token.len() > LONGEST_KEPT {
            return;
        }
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        if entries.len() >= MAX_ENTRIES {
            entries.retain(|_, accepted| {
                accepted.keys == keys
                    && now.saturating_duration_since(accepted.checked_at) < KEPT_FOR
            });
        }
        if entries.len() >= MAX_ENTRIES {
            // More live callers than entries: start over rather than track recency.
            entries.clear();
        }
        entries.insert(
            token.into(),
            Accepted {
                principal: principal.clone(),
                expires_at,
                checked_at: now,
                keys,
            },
        );
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.lock().map(|e| e.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller() -> Principal {
        Principal::new("user", &["cloud_controller.read"])
    }

    #[test]
    fn a_kept_token_answers_until_its_exp() {
        let tokens = AcceptedTokens::default();
        let now = Instant::now();
        tokens.keep("t", &caller(), 0, 1_000, now);
        assert_eq!(tokens.get("t", 0, 999, now), Some(caller()));
        assert_eq!(tokens.get("t", 0, 1_000, now), None, "exp reached");
        assert_eq!(tokens.get("other", 0, 999, now), None);
        assert_eq!(tokens.get("t", 1, 999, now), None, "another key set");
    }

    #[test]
    fn a_kept_token_is_checked_again_after_kept_for() {
        let tokens = AcceptedTokens::default();
        let now = Instant::now();
        tokens.keep("t", &caller(), 0, u64::MAX, now);
        let almost = now + KEPT_FOR - Duration::from_millis(1);
        assert_eq!(tokens.get("t", 0, 0, almost), Some(caller()));
        assert_eq!(tokens.get("t", 0, 0, now + KEPT_FOR), None);
    }

    #[test]
    fn entries_and_token_length_are_bounded() {
        let tokens = AcceptedTokens::default();
        let now = Instant::now();
        for i in 0..MAX_ENTRIES * 3 {
            tokens.keep(&format!("token-{i}"), &caller(), 0, u64::MAX, now);
            assert!(tokens.len() <= MAX_ENTRIES);
        }
        let long = "x".repeat(LONGEST_KEPT + 1);
        tokens.keep(&long, &caller(), 0, u64::MAX, now);
        assert_eq!(tokens.get(&long, 0, 0, now), None);
    }

    #[test]
    fn stale_entries_make_room_before_live_ones_go() {
        let tokens = AcceptedTokens::default();
        let then = Instant::now();
        for i in 0..MAX_ENTRIES - 1 {
            tokens.keep(&format!("stale-{i}"), &caller(), 0, u64::MAX, then);
        }
        let now = then + KEPT_FOR;
        tokens.keep("live", &caller(), 0, u64::MAX, now);
        tokens.keep("newer", &caller(), 0, u64::MAX, now);
        assert_eq!(tokens.len(), 2);
        assert_eq!(tokens.get("live", 0, 0, now), Some(caller()));
    }
}
