//! reef: namespaces of JSON documents kept entirely in object storage, in a
//! write-ahead-log / segment / manifest engine, shown as plain files via FUSE.
//!
//! Layers point one way: `fs` -> `engine`/`admin` -> `store` -> `types`.
//! `../DESIGN.md` (shared) fixes the contracts; each module documents the
//! on-storage format it writes beside the code that writes it.

pub mod admin;
pub mod engine;
pub mod fs;
pub mod store;
pub mod transfer;
pub mod types;
