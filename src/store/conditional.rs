//! Create-if-absent with a known outcome.
//!
//! A conditional put can fail ambiguously: the connection drops or resets
//! after the store received the whole request, or a timeout fires while it
//! works. The object may or may not be there, and object_store does not
//! retry such a put (it is not idempotent). Treating that as a refusal
//! would tell a writer "failed" about a WAL object that a restart then
//! replays; treating the retry's "already exists" as a lost race would
//! fence a writer by its own object (both seen through a fault proxy in
//! tests/s3_faults.rs).
//!
//! [`create_resolved`] settles it: it repeats the create-if-absent a few
//! times while the store answers ambiguously, and when the key is taken it
//! reads the object back. Bytes identical to ours mean the earlier attempt
//! landed: created. Our bytes are unique (each carries its writer id and
//! sequence or version, and a timestamp), so no other writer's object can
//! match. Repeating the conditional put is safe: it can only land once.

use std::time::Duration;

use bytes::Bytes;

use super::{ObjectStore, StoreError, StoreResult};

/// Pauses between the attempts that follow an ambiguous answer.
const BACKOFF: [Duration; 3] = [
    Duration::from_millis(200),
    Duration::from_secs(1),
    Duration::from_secs(3),
];

/// No attempt starts later than this after the first one did.
const ASK_AGAIN_WITHIN: Duration = Duration::from_secs(10);

/// Creates `key` with `data` unless it exists. `Ok` means the object now
/// holds `data` (put now or by an earlier ambiguous attempt);
/// `AlreadyExists` means it holds something else. Any other error means
/// the store stayed unreachable through every attempt: the outcome is
/// still unknown (the object may appear as written).
pub async fn create_resolved(store: &dyn ObjectStore, key: &str, data: Bytes) -> StoreResult<()> {
    let started = std::time::Instant::now();
    let mut attempt = 0;
    loop {
        let result = match store.put_if_absent(key, data.clone()).await {
            Err(StoreError::AlreadyExists(_)) => match store.get(key).await {
                Ok(existing) if existing == data => {
                    log::info!("{key}: an earlier, unanswered attempt had created it");
                    return Ok(());
                }
                Ok(_) | Err(StoreError::NotFound(_)) => {
                    Err(StoreError::AlreadyExists(key.to_string()))
                }
                Err(e) => Err(e),
            },
            other => other,
        };
        match result {
            // A store that kept failing through object_store's own retries
            // (503s for many seconds) is down, not ambiguous: no more
            // attempts once ASK_AGAIN_WITHIN has passed.
            Err(e @ StoreError::Backend { .. })
                if attempt < BACKOFF.len() && started.elapsed() < ASK_AGAIN_WITHIN =>
            {
                // Not a failure yet: the caller logs the one line if it becomes one.
                log::info!(
                    "{key}: create-if-absent answered ambiguously ({e}); asking again in {:?}",
                    BACKOFF[attempt]
                );
                tokio::time::sleep(BACKOFF[attempt]).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}
