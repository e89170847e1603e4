//! The shared moto server reached two ways: through a fault-injecting
//! proxy (`support/fault_proxy.rs`) and directly. A test breaks the network
//! of the engine on `faulty` and checks what became durable on `clean`.
//! Needs `mod s3` and `mod fault_proxy` beside it.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;

use reef::store::ObjectStore;

use crate::fault_proxy::FaultProxy;
use crate::s3;

pub struct ProxiedS3 {
    pub proxy: FaultProxy,
    /// The prefix through the proxy.
    pub faulty: Arc<dyn ObjectStore>,
    /// The same prefix, straight to moto.
    pub clean: Arc<dyn ObjectStore>,
}

/// A fresh prefix named after `name`, through a new proxy; `None` when moto
/// is not installed (a failure with REEF_REQUIRE_S3=1).
pub fn proxied_s3(name: &str) -> Option<ProxiedS3> {
    let server = s3::shared()?;
    let upstream: SocketAddr = server
        .endpoint
        .trim_start_matches("http://")
        .parse()
        .expect("moto address");
    let proxy = FaultProxy::start(upstream);
    let prefix = s3::unique_prefix(name);
    let description = format!("s3://{}/{prefix}", server.bucket);
    let faulty = reef::store::s3_store(
        server.builder().with_endpoint(proxy.endpoint()),
        &prefix,
        &description,
    )
    .expect("store through the proxy");
    let clean = server.s3_store(&prefix);
    Some(ProxiedS3 {
        proxy,
        faulty,
        clean,
    })
}
