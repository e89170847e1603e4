//! The daemon's malloc settings (glibc), set once before its threads start.
//!
//! Measured with 1,000,000 files written through a mount by 16 writers
//! (`scripts/bench-daemon-rss.sh`): with glibc's defaults the daemon's RSS
//! stayed near its high-water mark once the kernel forgot every inode (319
//! of 335 MiB, the inode table itself bounded at 20 MB), and its heap was
//! spread over a dozen arenas. Two glibc behaviours do that:
//!
//! - **Arenas.** Each thread that allocates under contention gets an arena
//!   of its own, up to 8 per core; the local store's blocking reads run on
//!   tokio's blocking pool, so a busy daemon had a dozen arenas, and memory
//!   freed in one is never reused by a thread allocating from another.
//!   `M_ARENA_MAX` caps them (small allocations still go through each
//!   thread's tcache without a lock).
//! - **The dynamic mmap threshold.** Blocks over the threshold (128 KiB at
//!   first) are mmapped and go back to the kernel when freed, but freeing
//!   one raises the threshold to its size (up to 32 MiB). After the first
//!   segment build was freed, every later segment buffer, WAL group and
//!   cached block up to that size came from the arenas, whose free space is
//!   not returned. Setting `M_MMAP_THRESHOLD` fixes it (and, as glibc
//!   documents, turns the dynamic adjustment off).
//!
//! Other allocators (musl, or a global allocator a build might choose)
//! are left alone: the settings are glibc's.

/// Arenas glibc may create: enough that the FUSE threads and tokio workers
/// rarely wait for one another's malloc lock, few enough that free memory
/// is shared rather than stranded in per-thread heaps.
const ARENA_MAX: libc::c_int = 4;

/// Blocks this large or larger are mmapped, so freeing one gives it back.
/// 1 MiB keeps the many small allocations (names, documents, index
/// buckets) in the arenas, and puts segment and WAL buffers, decoded
/// blocks' backing data and big writes in mappings of their own; an mmap
/// per such block costs microseconds against the milliseconds they take to
/// fill.
const MMAP_THRESHOLD: libc::c_int = 1 << 20;

/// Applies the settings; call before the daemon starts its threads.
pub(crate) fn tune() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only changes allocator parameters; it returns 0
        // if it refuses one, which leaves glibc's default in place.
        let ok = unsafe {
            libc::mallopt(libc::M_ARENA_MAX, ARENA_MAX) == 1
                && libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
        };
        if !ok {
            log::warn!(
                "glibc refused a malloc setting; the daemon's memory may grow past its bounds"
            );
        }
    }
}
