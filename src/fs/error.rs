//! `FsError`: every way a filesystem operation can fail, and the one place
//! that maps each to the errno the kernel passes back to the caller.

use crate::admin::AdminError;
use crate::engine::EngineError;
use crate::store::StoreError;
use crate::types::TypeError;

/// Why a filesystem operation failed. `errno()` is what the caller sees;
/// `Display` is what the daemon logs and what `reef mount` prints.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    #[error("no such file or directory")]
    NotFound,
    #[error("file exists")]
    Exists,
    #[error("directory not empty")]
    NotEmpty,
    #[error("not a directory")]
    NotDir,
    #[error("is a directory")]
    IsDir,
    #[error("operation not permitted: {0}")]
    NotPermitted(&'static str),
    #[error("permission denied: {0}")]
    Access(&'static str),
    #[error("read-only: {0}")]
    ReadOnly(String),
    /// Another writer took the namespace over (EROFS). The engine logs the
    /// one line naming that writer; this text does not repeat it, so a
    /// failure per file adds no duplicate of that line.
    #[error(
        "read-only: namespace {0} was taken over by another writer (named in the error logged \
         when it happened); this mount makes no more changes to it"
    )]
    Fenced(String),
    #[error("invalid: {0}")]
    Invalid(String),
    #[error("too large: {0}")]
    TooLarge(String),
    #[error("no space: {0}")]
    NoSpace(String),
    #[error("I/O error: {0}")]
    Io(String),
    #[error("cannot rename across namespaces")]
    CrossDevice,
    #[error("bad file handle")]
    BadHandle,
    #[error("name too long")]
    NameTooLong,
    #[error("not supported: {0}")]
    NotSupported(&'static str),
    #[error("busy: {0}")]
    Busy(String),
    /// Setting up or tearing down a mount failed; the message says what to do.
    #[error("{0}")]
    Mount(String),
}

impl FsError {
    /// The errno for this error: the single errno mapping of the fs layer.
    pub fn errno(&self) -> i32 {
        match self {
            FsError::NotFound => libc::ENOENT,
            FsError::Exists => libc::EEXIST,
            FsError::NotEmpty => libc::ENOTEMPTY,
            FsError::NotDir => libc::ENOTDIR,
            FsError::IsDir => libc::EISDIR,
            FsError::NotPermitted(_) => libc::EPERM,
            FsError::Access(_) => libc::EACCES,
            FsError::ReadOnly(_) | FsError::Fenced(_) => libc::EROFS,
            FsError::Invalid(_) => libc::EINVAL,
            FsError::TooLarge(_) => libc::EFBIG,
            FsError::NoSpace(_) => libc::ENOSPC,
            FsError::Io(_) | FsError::Mount(_) => libc::EIO,
            FsError::CrossDevice => libc::EXDEV,
            FsError::BadHandle => libc::EBADF,
            FsError::NameTooLong => libc::ENAMETOOLONG,
            FsError::NotSupported(_) => libc::ENOTSUP,
            FsError::Busy(_) => libc::EBUSY,
        }
    }

    pub(crate) fn read_only() -> FsError {
        FsError::ReadOnly("the mount is read-only".into())
    }
}

impl From<TypeError> for FsError {
    fn from(e: TypeError) -> Self {
        match e {
            TypeError::DocumentTooLarge { .. } => FsError::TooLarge(e.to_string()),
            other => FsError::Invalid(other.to_string()),
        }
    }
}

impl From<StoreError> for FsError {
    fn from(e: StoreError) -> Self {
        FsError::Io(e.to_string())
    }
}

impl From<EngineError> for FsError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Invalid(t) => t.into(),
            EngineError::Fenced { ns, .. } => FsError::Fenced(ns),
            EngineError::ReadOnly(_) => FsError::ReadOnly(e.to_string()),
            EngineError::BadNamespace(..) => FsError::Invalid(e.to_string()),
            EngineError::NoSuchNamespace(_) => FsError::NotFound,
            EngineError::NotEmpty(_) => FsError::NotEmpty,
            EngineError::Busy(_) => FsError::Busy(e.to_string()),
            EngineError::BadCheckpointName { .. } => FsError::Invalid(e.to_string()),
            EngineError::CheckpointExists { .. } => FsError::Exists,
            EngineError::NoSuchCheckpoint { .. }
            | EngineError::CheckpointPending { .. }
            | EngineError::NotRetained { .. }
            | EngineError::TimeNotRetained { .. } => FsError::NotFound,
            // Store failures, corrupt objects, failed WAL writes, and
            // anything the engine adds later: the data did not move.
            #[allow(unreachable_patterns)]
            other => FsError::Io(other.to_string()),
        }
    }
}

impl From<AdminError> for FsError {
    fn from(e: AdminError) -> Self {
        match e {
            AdminError::Engine(e) => e.into(),
            AdminError::Store(e) => e.into(),
            AdminError::Busy(_) => FsError::Busy(e.to_string()),
        }
    }
}

pub type FsResult<T> = Result<T, FsError>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::DocId;

    #[test]
    fn errno_mapping_follows_the_design() {
        let big = TypeError::DocumentTooLarge {
            id: DocId::from("x"),
            len: 10,
            max: 1,
        };
        assert_eq!(FsError::from(big).errno(), libc::EFBIG);
        let bad = TypeError::InvalidJson("x".into());
        assert_eq!(FsError::from(bad).errno(), libc::EINVAL);
        let fenced = EngineError::Fenced {
            ns: "a".into(),
            by: "writer-b".into(),
        };
        let fenced = FsError::from(fenced);
        assert_eq!(fenced.errno(), libc::EROFS);
        // The engine's log line names the new writer; the fs layer's
        // per-file lines must not repeat it.
        assert!(!fenced.to_string().contains("writer-b"), "{fenced}");
        let io = EngineError::Store(StoreError::Injected("k".into()));
        assert_eq!(FsError::from(io).errno(), libc::EIO);
    }
}
