//! The fuser `Filesystem`: a thin layer that turns requests into `FsCore`
//! calls and their results into replies. Unsupported operations fail here,
//! early and explicitly (symlink, hard link, device nodes, xattrs).
//!
//! Dispatch: the commonest requests that memory answers — `getattr` of a
//! known inode, a read-only `open` of a document of known state — are
//! answered by plain functions on the FUSE thread (`Adapter::fast`), with
//! no future, box or runtime context; under 16 concurrent clients on two
//! cores every microsecond of a request's own CPU is throughput.
//!
//! Everything else (`Adapter::run`): each request's future is polled once on the
//! FUSE thread that read it, inside the runtime's context. What memory can
//! answer (a cached lookup or getattr, open and release of a known
//! document, a read of content the engine holds, a cached listing page)
//! completes in that poll and is answered without waking any other thread:
//! a hop to a tokio worker and back costs more than the work itself. A
//! future that has to wait (object-store I/O, a contended handle or
//! commit) returns `Pending` and is handed, as it is, to the runtime, so a
//! FUSE thread never waits on the object store. Handing it over is safe:
//! the runtime polls a spawned task at once, so a wake-up lost to the
//! first poll's no-op waker is never needed.

use std::ffi::OsStr;
use std::future::Future;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant, SystemTime};

use fuser::{
    AccessFlags, Errno, FileHandle, Filesystem, Generation, INodeNo, KernelConfig, LockOwner,
    OpenFlags, RenameFlags as FuseRenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory,
    ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr,
    Request, TimeOrNow, WriteFlags,
};

use super::fuse_conv::{
    configure_kernel, dir_open_flags, empty_reply, entry_reply, errno, file_type, fopen_flags,
    time_of, to_fuser, utf8,
};
use super::metrics::{FuseMetrics, FuseOp};
use super::notify::InFlight;
use crate::fs::attr::{Attr, OpenMode, SetAttr};
use crate::fs::core::FsCore;
use crate::fs::error::FsResult;
use crate::fs::rename::RenameFlags;
use crate::fs::Listed;

/// Filled once the session exists; see `Filesystem::destroy` below.
pub(crate) type UnmounterSlot = Arc<parking_lot::Mutex<Option<fuser::SessionUnmounter>>>;

pub(crate) struct Adapter {
    core: Arc<FsCore>,
    /// How long the kernel may cache entries and attributes: long for a
    /// writer (it invalidates what it changes), at most the refresh
    /// interval for a read-only follower (`CoreConfig::attr_ttl`).
    ttl: Duration,
    rt: tokio::runtime::Handle,
    inflight: Arc<InFlight>,
    unmounter: UnmounterSlot,
    /// Set with `-o metrics=`: each request's latency, by kind.
    metrics: Option<Arc<FuseMetrics>>,
}

impl Adapter {
    pub fn new(
        core: Arc<FsCore>,
        rt: tokio::runtime::Handle,
        inflight: Arc<InFlight>,
        unmounter: UnmounterSlot,
        metrics: Option<Arc<FuseMetrics>>,
    ) -> Adapter {
        Adapter {
            ttl: core.config().attr_ttl(),
            core,
            rt,
            inflight,
            unmounter,
            metrics,
        }
    }

    /// Runs a request: on this thread if it completes without waiting,
    /// else on the runtime (see the module docs). With metrics on, times it
    /// from here until its future (which sends the reply) is done.
    fn run<F>(&self, op: FuseOp, fut: impl FnOnce(Arc<FsCore>) -> F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let guard = self.inflight.enter();
        let timer = self.metrics.clone().map(|m| (m, Instant::now()));
        let mut fut = Box::pin(fut(self.core.clone()));
        let first = {
            let _runtime = self.rt.enter();
            fut.as_mut().poll(&mut Context::from_waker(Waker::noop()))
        };
        if let Poll::Ready(()) = first {
            if let Some((metrics, started)) = timer {
                metrics.observe(op, started);
            }
            drop(guard);
            return;
        }
        self.rt.spawn(async move {
            fut.await;
            if let Some((metrics, started)) = timer {
                metrics.observe(op, started);
            }
            drop(guard);
        });
    }

    /// Answers a request from memory on this thread when `f` can (`Some`),
    /// with no future, no allocation and no runtime context: the common
    /// case of `getattr` and `open`. Timed only when it answered, so a
    /// request that falls through to `run` is counted once.
    fn fast<R>(&self, op: FuseOp, f: impl FnOnce(&FsCore) -> Option<R>) -> Option<R> {
        let started = self.metrics.as_ref().map(|_| Instant::now());
        let result = f(&self.core);
        if let (Some(metrics), Some(started), Some(_)) = (&self.metrics, started, &result) {
            metrics.observe(op, started);
        }
        result
    }

    /// Times a request answered on the FUSE thread itself.
    fn inline<R>(&self, op: FuseOp, f: impl FnOnce() -> R) -> R {
        let started = Instant::now();
        let result = f();
        if let Some(metrics) = &self.metrics {
            metrics.observe(op, started);
        }
        result
    }
}

impl Filesystem for Adapter {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> io::Result<()> {
        configure_kernel(config);
        Ok(())
    }

    /// The kernel side is gone. When that was an outside `umount`, settle
    /// the session's unmount now, quietly, rather than have fuser retry it
    /// and warn "Failed to umount filesystem" as the session ends.
    fn destroy(&mut self) {
        if let Some(mut unmounter) = self.unmounter.lock().take() {
            let _ = unmounter.unmount();
        }
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let Some(name) = name.to_str().map(str::to_owned) else {
            return reply.error(Errno::ENOENT);
        };
        let ttl = self.ttl;
        self.run(FuseOp::Lookup, |core| async move {
            entry_reply(reply, ttl, core.lookup(parent.0, &name).await)
        });
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.inline(FuseOp::Forget, || self.core.forget(ino.0, nlookup));
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let ttl = self.ttl;
        let answer = move |reply: ReplyAttr, result: FsResult<Attr>| match result {
            Ok(attr) => reply.attr(&attr.ttl(ttl), &to_fuser(&attr)),
            Err(e) => reply.error(errno(&e)),
        };
        if let Some(result) = self.fast(FuseOp::Getattr, |core| core.cached_attr(ino.0)) {
            return answer(reply, result);
        }
        self.run(FuseOp::Getattr, |core| async move {
            answer(reply, core.getattr(ino.0).await)
        });
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let change = SetAttr {
            mode,
            uid,
            gid,
            size,
            mtime: mtime.map(time_of),
            atime: atime.map(time_of),
            fh: fh.map(|f| f.0),
        };
        let ttl = self.ttl;
        self.run(FuseOp::Setattr, |core| async move {
            match core.setattr(ino.0, change).await {
                Ok(attr) => reply.attr(&attr.ttl(ttl), &to_fuser(&attr)),
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn readlink(&self, _req: &Request, _ino: INodeNo, reply: ReplyData) {
        reply.error(Errno::EINVAL);
    }

    fn mknod(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        if mode & libc::S_IFMT != libc::S_IFREG {
            return reply.error(Errno::EPERM);
        }
        let name = match utf8(name) {
            Ok(n) => n,
            Err(e) => return reply.error(e),
        };
        let ttl = self.ttl;
        self.run(FuseOp::Mknod, |core| async move {
            entry_reply(reply, ttl, core.mknod(parent.0, &name).await)
        });
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        _mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        let name = match utf8(name) {
            Ok(n) => n,
            Err(e) => return reply.error(e),
        };
        let ttl = self.ttl;
        self.run(FuseOp::Mkdir, |core| async move {
            entry_reply(reply, ttl, core.mkdir(parent.0, &name).await)
        });
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let Some(name) = name.to_str().map(str::to_owned) else {
            return reply.error(Errno::ENOENT);
        };
        self.run(FuseOp::Unlink, |core| async move {
            empty_reply(reply, core.unlink(parent.0, &name).await)
        });
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let Some(name) = name.to_str().map(str::to_owned) else {
            return reply.error(Errno::ENOENT);
        };
        self.run(FuseOp::Rmdir, |core| async move {
            empty_reply(reply, core.rmdir(parent.0, &name).await)
        });
    }

    fn symlink(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _link_name: &OsStr,
        _target: &Path,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EPERM);
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: FuseRenameFlags,
        reply: ReplyEmpty,
    ) {
        let (name, newname) = match (utf8(name), utf8(newname)) {
            (Ok(a), Ok(b)) => (a, b),
            _ => return reply.error(Errno::EINVAL),
        };
        let flags = RenameFlags {
            noreplace: flags.contains(FuseRenameFlags::RENAME_NOREPLACE),
            exchange: flags.contains(FuseRenameFlags::RENAME_EXCHANGE),
        };
        self.run(FuseOp::Rename, |core| async move {
            let result = core
                .rename(parent.0, &name, newparent.0, &newname, flags)
                .await;
            empty_reply(reply, result)
        });
    }

    fn link(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _newparent: INodeNo,
        _newname: &OsStr,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EPERM);
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let mode = OpenMode::from_flags(flags.0);
        if let Some(info) = self.fast(FuseOp::Open, |core| core.open_cached(ino.0, mode)) {
            return reply.opened(FileHandle(info.fh), fopen_flags(&info));
        }
        self.run(FuseOp::Open, |core| async move {
            match core.open(ino.0, mode).await {
                Ok(info) => reply.opened(FileHandle(info.fh), fopen_flags(&info)),
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        self.run(FuseOp::Read, |core| async move {
            match core.read(fh.0, offset, size).await {
                Ok(data) => reply.data(&data),
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let data = data.to_vec();
        self.run(FuseOp::Write, |core| async move {
            match core.write(fh.0, offset, &data).await {
                Ok(n) => reply.written(n),
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        self.run(FuseOp::Flush, |core| async move {
            empty_reply(reply, core.flush(fh.0).await)
        });
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.run(FuseOp::Release, |core| async move {
            empty_reply(reply, core.release(fh.0).await)
        });
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.run(FuseOp::Fsync, |core| async move {
            empty_reply(reply, core.fsync(fh.0).await)
        });
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        self.run(FuseOp::Opendir, |core| async move {
            match core.opendir(ino.0).await {
                Ok(fh) => reply.opened(FileHandle(fh), dir_open_flags(core.dir_caching(fh))),
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        self.run(FuseOp::Readdir, |core| async move {
            let fill =
                |e: Listed<'_>| !reply.add(INodeNo(e.ino), e.offset, file_type(e.kind), e.name);
            match core.readdir_into(ino.0, fh.0, offset, false, fill).await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let ttl = self.ttl;
        self.run(FuseOp::Readdirplus, |core| async move {
            // An entry that does not fit is not taken: the core forgets it.
            let fill = |e: Listed<'_>| {
                e.attr.as_ref().is_some_and(|attr| {
                    let attr = to_fuser(attr);
                    !reply.add(INodeNo(e.ino), e.offset, e.name, &ttl, &attr, Generation(0))
                })
            };
            match core.readdir_into(ino.0, fh.0, offset, true, fill).await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.inline(FuseOp::Releasedir, || self.core.releasedir(fh.0));
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let s = self.inline(FuseOp::Statfs, || self.core.statfs());
        reply.statfs(
            s.blocks, s.bfree, s.bavail, s.files, s.ffree, s.bsize, s.namelen, s.bsize,
        );
    }

    // Extended attributes are not kept. ENOSYS makes the kernel stop asking
    // (and report EOPNOTSUPP), which also spares a getxattr per write.
    fn setxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _value: &[u8],
        _flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::ENOSYS);
    }

    fn getxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _size: u32,
        reply: ReplyXattr,
    ) {
        reply.error(Errno::ENOSYS);
    }

    fn listxattr(&self, _req: &Request, _ino: INodeNo, _size: u32, reply: ReplyXattr) {
        reply.error(Errno::ENOSYS);
    }

    fn removexattr(&self, _req: &Request, _ino: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::ENOSYS);
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: AccessFlags, reply: ReplyEmpty) {
        reply.ok();
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        if mode & libc::S_IFMT != 0 && mode & libc::S_IFMT != libc::S_IFREG {
            return reply.error(Errno::EPERM);
        }
        let name = match utf8(name) {
            Ok(n) => n,
            Err(e) => return reply.error(e),
        };
        let mode = OpenMode {
            create_perm: Some((mode & !umask & 0o7777) as u16),
            ..OpenMode::from_flags(flags)
        };
        let ttl = self.ttl;
        self.run(FuseOp::Create, |core| async move {
            match core.create(parent.0, &name, mode).await {
                Ok((attr, info)) => reply.created(
                    &ttl,
                    &to_fuser(&attr),
                    Generation(0),
                    FileHandle(info.fh),
                    fopen_flags(&info),
                ),
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn fallocate(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _offset: u64,
        _length: u64,
        _mode: i32,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::from_i32(libc::EOPNOTSUPP));
    }
}
