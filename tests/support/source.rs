//! A SOURCE that several mounts and `reef` processes share, on a local
//! directory or on S3 (moto): the one definition the mount tests use.
#![allow(dead_code)]

use std::sync::Arc;

use reef::store::{LocalFsStore, ObjectStore};

use crate::s3;

/// A SOURCE that several mounts share; `open` is a fresh client each time.
pub enum Source {
    Local(tempfile::TempDir),
    S3 {
        server: &'static s3::MotoServer,
        prefix: String,
    },
}

impl Source {
    pub fn name(&self) -> &'static str {
        match self {
            Source::Local(_) => "local",
            Source::S3 { .. } => "s3",
        }
    }

    pub fn open(&self) -> Arc<dyn ObjectStore> {
        match self {
            Source::Local(dir) => {
                Arc::new(LocalFsStore::new(dir.path().to_path_buf()).expect("local store"))
            }
            Source::S3 { server, prefix } => server.s3_store(prefix),
        }
    }

    /// SOURCE as `reef` takes it on the command line.
    pub fn url(&self) -> String {
        match self {
            Source::Local(dir) => dir.path().display().to_string(),
            Source::S3 { prefix, .. } => format!("s3://{}/{prefix}", s3::BUCKET),
        }
    }

    /// Environment a `reef` child process needs to reach the source.
    pub fn env(&self) -> Vec<(String, String)> {
        match self {
            Source::Local(_) => Vec::new(),
            Source::S3 { server, .. } => server.env(),
        }
    }
}

/// A fresh local directory.
pub fn local() -> Source {
    Source::Local(tempfile::tempdir().expect("tempdir"))
}

/// A fresh prefix named after `test` on the shared moto server, when moto
/// is installed (required with REEF_REQUIRE_S3=1).
pub fn s3(test: &str) -> Option<Source> {
    let server = s3::shared()?;
    Some(Source::S3 {
        server,
        prefix: s3::unique_prefix(test),
    })
}

/// A local directory, and S3 when moto is installed (required with
/// REEF_REQUIRE_S3=1).
pub fn sources(test: &str) -> Vec<Source> {
    let mut out = vec![local()];
    out.extend(s3(test));
    out
}
