//! The `/metrics` endpoint of a mount (`-o metrics=ADDR:PORT`): a minimal
//! HTTP/1.x responder on the mount's tokio runtime.
//!
//! Why hand-written: it answers one `GET /metrics` per scrape with
//! `Connection: close`, which needs ~60 lines over a `TcpListener`; an HTTP
//! server crate (hyper and friends) would add more dependencies than all
//! of this. It never runs on a FUSE thread and never touches the
//! mountpoint (a daemon doing so could deadlock on itself).
//!
//! Address forms: `PORT` and `:PORT` bind to loopback (127.0.0.1); an
//! explicit `ADDR:PORT` (`0.0.0.0:9108`, `[::1]:9108`, `localhost:9108`)
//! binds there. The socket is bound when the mount starts, so a bad or
//! busy address fails the mount with an error naming it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::fs::error::FsError;

/// Bound on a request head; scrapers send a few hundred bytes.
const MAX_REQUEST: usize = 8 << 10;
/// A client that sends no complete request head by then is dropped.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Checks the `metrics=` value and returns the address to bind
/// (`PORT` and `:PORT` mean loopback).
pub(crate) fn parse_addr(value: &str) -> Result<String, FsError> {
    let bad = || {
        FsError::Mount(format!(
            "mount option metrics={value}: expected PORT or ADDR:PORT (for example \
             metrics=9108, metrics=127.0.0.1:9108, metrics=0.0.0.0:9108)"
        ))
    };
    let v = value.trim();
    let (host, port) = match v.rsplit_once(':') {
        Some((host, port)) => (host, port),
        None => ("", v),
    };
    port.parse::<u16>().map_err(|_| bad())?;
    if host.is_empty() {
        return Ok(format!("127.0.0.1:{port}"));
    }
    let bracketed = host.starts_with('[') && host.ends_with(']');
    if host.contains(['/', ' ', ',']) || (host.contains(':') && !bracketed) {
        return Err(bad());
    }
    Ok(format!("{host}:{port}"))
}

/// Binds `addr` now, so the mount fails early when it cannot be served.
pub(crate) fn bind(addr: &str) -> Result<std::net::TcpListener, FsError> {
    let listener = std::net::TcpListener::bind(addr)
        .map_err(|e| FsError::Mount(format!("cannot serve metrics on {addr}: {e}")))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| FsError::Mount(format!("metrics socket {addr}: {e}")))?;
    Ok(listener)
}

/// Serves `registry` on `listener` until the runtime shuts down.
pub(crate) fn spawn(
    rt: &tokio::runtime::Handle,
    listener: std::net::TcpListener,
    registry: Registry,
) -> Result<SocketAddr, FsError> {
    let addr = listener
        .local_addr()
        .map_err(|e| FsError::Mount(format!("metrics socket: {e}")))?;
    let listener = {
        let _enter = rt.enter();
        tokio::net::TcpListener::from_std(listener)
            .map_err(|e| FsError::Mount(format!("metrics socket {addr}: {e}")))?
    };
    let registry = Arc::new(registry);
    rt.spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    let registry = registry.clone();
                    tokio::spawn(async move {
                        if let Err(e) = answer(stream, &registry).await {
                            log::debug!("metrics request: {e}");
                        }
                    });
                }
                Err(e) => {
                    // Out of descriptors, typically: back off rather than spin.
                    log::warn!("metrics endpoint {addr}: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    });
    Ok(addr)
}

/// Reads one request head and answers it; the connection then closes.
async fn answer(mut stream: TcpStream, registry: &Registry) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let complete = tokio::time::timeout(REQUEST_TIMEOUT, async {
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_REQUEST {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
        }
        Ok::<_, std::io::Error>(())
    })
    .await;
    match complete {
        Ok(result) => result?,
        Err(_) => return Ok(()),
    }
    let line = String::from_utf8_lossy(head.split(|&b| b == b'\n').next().unwrap_or(&[]));
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let (status, content_type, body) = match (method, path) {
        ("GET" | "HEAD", "/metrics") => {
            let mut text = String::new();
            match prometheus_client::encoding::prometheus_text::encode(&mut text, registry) {
                Ok(()) => ("200 OK", "text/plain; version=0.0.4; charset=utf-8", text),
                Err(_) => (
                    "500 Internal Server Error",
                    "text/plain; charset=utf-8",
                    "encoding the metrics failed\n".to_string(),
                ),
            }
        }
        ("GET" | "HEAD", _) => (
            "404 Not Found",
            "text/plain; charset=utf-8",
            "reef serves Prometheus metrics on /metrics\n".to_string(),
        ),
        _ => (
            "405 Method Not Allowed",
            "text/plain; charset=utf-8",
            "only GET /metrics\n".to_string(),
        ),
    };
    let mut response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if method != "HEAD" {
        response.extend_from_slice(body.as_bytes());
    }
    stream.write_all(&response).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_default_to_loopback_and_bad_ones_are_named() {
        assert_eq!(parse_addr("9108").unwrap(), "127.0.0.1:9108");
        assert_eq!(parse_addr(":9108").unwrap(), "127.0.0.1:9108");
        assert_eq!(parse_addr("0.0.0.0:9108").unwrap(), "0.0.0.0:9108");
        assert_eq!(parse_addr("[::1]:9108").unwrap(), "[::1]:9108");
        assert_eq!(parse_addr("localhost:0").unwrap(), "localhost:0");
        for bad in ["", "x", "127.0.0.1", "1.2.3.4:99999", "::1:9108", "a b:1"] {
            let err = parse_addr(bad).unwrap_err().to_string();
            assert!(
                err.contains("metrics=") && err.contains("ADDR:PORT"),
                "{bad}: {err}"
            );
        }
    }
}
