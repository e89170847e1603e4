//! In-process pins: past states that engines opened in this process with
//! `Engine::open_at` are reading, which garbage collection run by a writer
//! in the same process keeps as if they were checkpoints (DESIGN.md §8: a
//! view held open while GC runs stays readable).
//!
//! Engines share a registry through `EngineOptions::pins` (every engine
//! built from clones of one `EngineOptions` shares it, as all namespaces
//! and views of one mount do). A pin names the manifest version and WAL
//! sequence a past engine was opened on, and lasts until that engine (every
//! clone of it) is dropped. Pins are memory only: a reader in another
//! process is protected by retention or a checkpoint, not by a pin.
//!
//! Pinning is safe against a GC pass that runs concurrently with the open:
//! `open_at` registers the pin and only then checks that the manifest's
//! segments and the WAL it replays are present, so either the pass saw the
//! pin and kept them, or the open sees them gone and fails cleanly.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

type Key = (String, u64, u64);

/// The states pinned by past engines of this process.
#[derive(Debug, Default)]
pub struct Pins {
    held: Mutex<HashMap<Key, usize>>,
}

impl Pins {
    /// Pins `(manifest_version, seq)` of `ns` until the guard drops.
    pub fn pin(self: &Arc<Self>, ns: &str, manifest_version: u64, seq: u64) -> PinGuard {
        let key = (ns.to_string(), manifest_version, seq);
        *self.held.lock().entry(key.clone()).or_default() += 1;
        PinGuard {
            pins: self.clone(),
            key,
        }
    }

    /// `(manifest_version, seq)` of every state of `ns` pinned now.
    pub fn of(&self, ns: &str) -> Vec<(u64, u64)> {
        self.held
            .lock()
            .keys()
            .filter(|(n, _, _)| n == ns)
            .map(|(_, v, s)| (*v, *s))
            .collect()
    }
}

/// Releases its pin when dropped.
#[derive(Debug)]
pub struct PinGuard {
    pins: Arc<Pins>,
    key: Key,
}

impl Drop for PinGuard {
    fn drop(&mut self) {
        let mut held = self.pins.held.lock();
        if let Some(n) = held.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                held.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pin_lasts_as_long_as_any_guard_of_it() {
        let pins = Arc::new(Pins::default());
        let a = pins.pin("n", 3, 10);
        let b = pins.pin("n", 3, 10);
        let _other = pins.pin("m", 1, 1);
        assert_eq!(pins.of("n"), [(3, 10)]);
        drop(a);
        assert_eq!(pins.of("n"), [(3, 10)]);
        drop(b);
        assert!(pins.of("n").is_empty());
        assert_eq!(pins.of("m"), [(1, 1)]);
    }
}
