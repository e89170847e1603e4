//! Waiting for a condition in tests: poll it, with a deadline that fails
//! the test naming what it waited for; never a fixed sleep standing in for
//! synchronization. Polls soon at first (1 ms) and then less often (up to
//! every 20 ms), so a quick condition is seen quickly and a slow one does
//! not spin.
#![allow(dead_code)]

use std::time::{Duration, Instant};

/// The pauses between polls, and the deadline.
struct Backoff<'a> {
    what: &'a str,
    timeout: Duration,
    start: Instant,
    pause: Duration,
}

impl Backoff<'_> {
    fn new(what: &str, timeout: Duration) -> Backoff<'_> {
        Backoff {
            what,
            timeout,
            start: Instant::now(),
            pause: Duration::from_millis(1),
        }
    }

    /// The pause before the next poll; panics once the deadline passed.
    fn next_pause(&mut self) -> Duration {
        assert!(
            self.start.elapsed() < self.timeout,
            "timed out after {:?} waiting for {}",
            self.timeout,
            self.what
        );
        let pause = self.pause;
        self.pause = (pause * 2).min(Duration::from_millis(20));
        pause
    }
}

/// Polls `probe` until it gives a value; returns it and how long that
/// took. Panics after `timeout`.
pub fn wait_for<T>(
    what: &str,
    timeout: Duration,
    mut probe: impl FnMut() -> Option<T>,
) -> (T, Duration) {
    let mut backoff = Backoff::new(what, timeout);
    loop {
        if let Some(value) = probe() {
            return (value, backoff.start.elapsed());
        }
        std::thread::sleep(backoff.next_pause());
    }
}

/// Polls `cond` until it holds; panics after `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    wait_for(what, timeout, || cond().then_some(()));
}

/// `wait_until` inside the runtime: the tasks it waits for run meanwhile.
pub async fn wait_until_async(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let mut backoff = Backoff::new(what, timeout);
    while !cond() {
        tokio::time::sleep(backoff.next_pause()).await;
    }
}
