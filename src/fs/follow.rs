//! Read-only mounts follow the writer of each namespace they show.
//!
//! A `-o ro` mount opens namespaces as engine followers, which see the
//! store as of their open. For each namespace in use, a background task
//! calls `Engine::refresh` every `CoreConfig::refresh` and, when the
//! manifest version or the last WAL sequence moved, forgets what the inode
//! table knows of that namespace's documents and drops the kernel's cached
//! attributes and names of them. The kernel's entry/attribute TTL of such
//! a mount is no longer than the interval (`CoreConfig::attr_ttl`), so even
//! a notification that went astray costs at most one more interval.
//!
//! Page caches are kept: an open compares the stored sequence with the one
//! the kernel's pages hold (`kernel_cache_seq`) and keeps them only when
//! they match, so unchanged documents stay cached across refreshes.
//!
//! New namespaces show up because listing the root asks the store each
//! time; in a read-only mount, namespaces gone from the store disappear the
//! same way (and when their refresh finds them gone).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::time::{Instant, MissedTickBehavior};

use super::core::FsCore;
use super::inodes::{Node, ROOT_INO};
use super::namespace::{Namespace, OpenHook};
use crate::engine::{Engine, EngineError};

/// Where a follower is: (manifest version, last WAL sequence applied).
fn position(engine: &Engine) -> (u64, u64) {
    let stats = engine.stats();
    let field = |name: &str| stats[name].as_u64().unwrap_or(0);
    (field("manifest_version"), field("last_wal_seq"))
}

impl FsCore {
    /// What a namespace calls when its engine opens: in a read-only mount
    /// with a refresh interval, start following the writer.
    pub(crate) fn open_hook(&self) -> Option<OpenHook> {
        if !self.cfg.read_only {
            return None;
        }
        let every = self.cfg.refresh?;
        let core = self.me.clone();
        Some(Arc::new(move |ns: &Namespace, engine: &Engine| {
            match tokio::runtime::Handle::try_current() {
                Ok(rt) => {
                    rt.spawn(follow(
                        core.clone(),
                        ns.ino,
                        ns.name.clone(),
                        engine.clone(),
                        every,
                    ));
                }
                Err(_) => log::warn!(
                    "namespace {}: no async runtime to refresh it in; it shows the store as of now",
                    ns.name
                ),
            }
        }))
    }

    /// The namespace at `ino` if it is still the one named `name` and in use.
    fn followed(&self, ino: u64, name: &str) -> Option<Arc<Namespace>> {
        self.namespace(ino).ok().filter(|ns| ns.name == name)
    }

    /// The writer changed namespace `ns`: forget the stored state of its
    /// documents (re-read on next use) and drop the kernel's cached
    /// attributes and names of them.
    pub(crate) async fn drop_cached_docs(&self, ns: &Namespace) {
        let known: Vec<(u64, u64, String)> = {
            let mut t = self.table.lock();
            let below = t.descendants(ns.ino);
            below
                .into_iter()
                .filter(|(ino, _, _)| match t.get_mut(*ino).map(|i| &mut i.node) {
                    Some(Node::Doc(d)) => {
                        if !d.pending {
                            d.meta = None;
                        }
                        true
                    }
                    _ => false,
                })
                .collect()
        };
        // Reads that started before the refresh must not settle what they
        // fetched as current (see `settle_doc`).
        self.bump_epoch();
        for (ino, parent, name) in known {
            self.invalidate_attrs(ino, false).await;
            self.invalidate_entry(parent, &name, false).await;
        }
    }

    /// Namespace `ns` is gone from the store (its writer removed it).
    async fn namespace_vanished(&self, ns: &Namespace) {
        log::info!("namespace {}: removed from the store by its writer", ns.name);
        ns.mark_removed();
        let unlinked = {
            let mut t = self.table.lock();
            if t.lookup(ROOT_INO, &ns.name) == Some(ns.ino) {
                t.unlink(ROOT_INO, &ns.name);
                true
            } else {
                false
            }
        };
        if unlinked {
            self.invalidate_entry(ROOT_INO, &ns.name, false).await;
        }
    }
}

/// The refresh loop of one namespace of a read-only mount. Ends when the
/// core is gone, or the namespace is removed or replaced.
async fn follow(core: Weak<FsCore>, ns_ino: u64, name: String, engine: Engine, every: Duration) {
    let mut seen = position(&engine);
    let mut failing = false;
    let mut ticks = tokio::time::interval_at(Instant::now() + every, every);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(core) = core.upgrade() else { return };
        let Some(ns) = core.followed(ns_ino, &name) else {
            return;
        };
        match engine.refresh().await {
            Ok(()) => {
                if failing {
                    log::info!("namespace {name}: following its writer again");
                    failing = false;
                }
                let now = position(&engine);
                let raced = ns.raced.swap(false, Ordering::AcqRel);
                if now != seen || raced {
                    log::debug!("namespace {name}: writer moved from {seen:?} to {now:?}");
                    seen = now;
                    core.drop_cached_docs(&ns).await;
                }
            }
            Err(EngineError::NoSuchNamespace(_)) => {
                core.namespace_vanished(&ns).await;
                return;
            }
            Err(e) => {
                // Once per streak of failures, not once per interval.
                if !failing {
                    log::warn!(
                        "namespace {name}: cannot pick up its writer's changes ({e}); \
                         showing what was there, retrying every {every:?}"
                    );
                    failing = true;
                }
            }
        }
    }
}
