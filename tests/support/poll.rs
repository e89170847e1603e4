//! Waiting for a condition in tests: poll it, with a deadline that fails
//! the test naming what it waited for; never a fixed sleep standing in for
//! synchronization. Polls soon at first (1 ms) and then less often (up to
//! every 20 ms), so a quick condition is seen quickly and a slow one does
//! not spin.
#![allow(dead_code)]

use std::time::{Duration, Instant};

const FIRST_POLL: Duration = Duration::from_millis(1);
const LONGEST_POLL: Duration = Duration::from_millis(20);

/// Polls `cond` until it holds; panics after `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    let mut pause = FIRST_POLL;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(pause);
        pause = (pause * 2).min(LONGEST_POLL);
    }
}

/// `wait_until` inside the runtime: the tasks it waits for run meanwhile.
pub async fn wait_until_async(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    let mut pause = FIRST_POLL;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(LONGEST_POLL);
    }
}
