//! Kernel cache invalidation, and the count of requests in flight.
//!
//! Notifications are written to /dev/fuse from a thread of their own: an
//! invalidation may wait in the kernel for a lock held by a request that
//! this daemon is still answering, so neither a FUSE thread nor a tokio
//! worker may ever block on one.

use std::ffi::OsStr;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use fuser::{INodeNo, Notifier};
use parking_lot::{Condvar, Mutex};

use crate::fs::invalidate::Invalidation;

pub(crate) fn spawn_notifier(
    notifier: Notifier,
) -> std::io::Result<(mpsc::Sender<Invalidation>, JoinHandle<()>)> {
    let (tx, rx) = mpsc::channel::<Invalidation>();
    let thread = std::thread::Builder::new()
        .name("reef-notify".into())
        .spawn(move || {
            for msg in rx {
                match msg {
                    Invalidation::Inode { ino, done } => {
                        if let Err(e) = notifier.inval_inode(INodeNo(ino), 0, 0) {
                            log::debug!("invalidate inode {ino}: {e}");
                        }
                        if let Some(done) = done {
                            let _ = done.send(());
                        }
                    }
                    Invalidation::Attrs { ino, done } => {
                        // A negative offset: attributes only, pages stay.
                        if let Err(e) = notifier.inval_inode(INodeNo(ino), -1, 0) {
                            log::debug!("invalidate attributes of inode {ino}: {e}");
                        }
                        if let Some(done) = done {
                            let _ = done.send(());
                        }
                    }
                    Invalidation::Store {
                        ino,
                        offset,
                        data,
                        done,
                    } => {
                        if let Err(e) = notifier.store(INodeNo(ino), offset, &data) {
                            log::debug!("store pages of inode {ino}: {e}");
                        }
                        if let Some(done) = done {
                            let _ = done.send(());
                        }
                    }
                    Invalidation::Entry { parent, name, done } => {
                        if let Err(e) = notifier.inval_entry(INodeNo(parent), OsStr::new(&name)) {
                            log::debug!("invalidate entry {parent}/{name}: {e}");
                        }
                        if let Some(done) = done {
                            let _ = done.send(());
                        }
                    }
                }
            }
        })?;
    Ok((tx, thread))
}

/// Counts requests being served, so shutdown can wait for commits.
#[derive(Default)]
pub(crate) struct InFlight {
    count: Mutex<usize>,
    idle: Condvar,
}

pub(crate) struct InFlightGuard(Arc<InFlight>);

impl InFlight {
    pub fn enter(self: &Arc<Self>) -> InFlightGuard {
        *self.count.lock() += 1;
        InFlightGuard(self.clone())
    }

    /// Waits until no request is in flight; false on timeout.
    pub fn wait_idle(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut count = self.count.lock();
        while *count > 0 {
            if self.idle.wait_until(&mut count, deadline).timed_out() {
                return *count == 0;
            }
        }
        true
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        let mut count = self.0.count.lock();
        *count = count.saturating_sub(1);
        if *count == 0 {
            self.0.idle.notify_all();
        }
    }
}
