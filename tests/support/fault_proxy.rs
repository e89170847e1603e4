//! A fault-injecting HTTP/1.1 proxy on loopback, to sit between reef and
//! the S3 server (moto) in tests.
//!
//! Include with `#[path = "support/fault_proxy.rs"] mod fault_proxy;`.
//! [`FaultProxy::start`] listens on 127.0.0.1 and forwards every connection
//! to `upstream`. Requests are parsed just enough (request line and
//! `Content-Length`) to match them against [`Rule`]s, which a test arms and
//! disarms at any time:
//!
//! - [`Fault::DropRequest`]: forward only the head and half the body, then
//!   close both sides: the server never sees a whole request.
//! - [`Fault::DropResponse`]: forward the whole request, wait for the first
//!   bytes of the server's answer (so it did the work), and close the
//!   client's connection without passing any of it on (FIN).
//! - [`Fault::ResetResponse`]: the same, but the client gets a TCP reset.
//! - [`Fault::Delay`]: hold the request this long, then forward it.
//! - [`Fault::Status`]: answer with a canned status (503 SlowDown) without
//!   forwarding, keeping the connection open.
//!
//! Every request is recorded with the fault applied to it ([`FaultProxy::log`]),
//! so a test can check which requests a code path really made. HTTP/1.1
//! clients (hyper) do not pipeline, so whatever the server sends after a
//! request was forwarded is that request's response.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    DropRequest,
    DropResponse,
    ResetResponse,
    Delay(Duration),
    /// `Status(503)` answers `503 Slow Down` with S3's SlowDown error body.
    Status(u16),
}

/// Applies `fault` to the next `times` requests whose method is `method`
/// (any when `None`) and whose path contains `path_contains`.
#[derive(Debug, Clone)]
pub struct Rule {
    pub method: Option<&'static str>,
    pub path_contains: String,
    pub fault: Fault,
    pub times: u32,
}

impl Rule {
    pub fn new(method: &'static str, path_contains: &str, fault: Fault, times: u32) -> Rule {
        Rule {
            method: Some(method),
            path_contains: path_contains.to_string(),
            fault,
            times,
        }
    }
}

/// One request as the proxy saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub fault: Option<Fault>,
}

#[derive(Default)]
struct Shared {
    rules: Vec<Rule>,
    log: Vec<Seen>,
}

pub struct FaultProxy {
    pub addr: SocketAddr,
    shared: Arc<Mutex<Shared>>,
}

impl FaultProxy {
    /// Starts the proxy on a thread and runtime of its own (so it works
    /// from sync and async tests alike); it serves until the process exits.
    pub fn start(upstream: SocketAddr) -> FaultProxy {
        let shared = Arc::new(Mutex::new(Shared::default()));
        let state = shared.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("fault-proxy".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("proxy runtime");
                runtime.block_on(async move {
                    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
                    let _ = tx.send(listener.local_addr().expect("proxy address"));
                    while let Ok((client, _)) = listener.accept().await {
                        let state = state.clone();
                        tokio::spawn(async move {
                            if let Ok(server) = TcpStream::connect(upstream).await {
                                let _ = serve(client, server, state).await;
                            }
                        });
                    }
                });
            })
            .expect("proxy thread");
        let addr = rx.recv().expect("proxy started");
        FaultProxy { addr, shared }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn arm(&self, rule: Rule) {
        self.shared.lock().expect("proxy state").rules.push(rule);
    }

    pub fn disarm(&self) {
        self.shared.lock().expect("proxy state").rules.clear();
    }

    /// Rules not used up yet.
    pub fn armed(&self) -> usize {
        self.shared.lock().expect("proxy state").rules.len()
    }

    pub fn log(&self) -> Vec<Seen> {
        self.shared.lock().expect("proxy state").log.clone()
    }

    pub fn clear_log(&self) {
        self.shared.lock().expect("proxy state").log.clear();
    }
}

/// The request head: method, path, body length (None: not a plain
/// Content-Length body, so the rest of the connection is piped as is).
fn parse_head(head: &[u8]) -> Option<(String, String, Option<usize>)> {
    let text = std::str::from_utf8(head).ok()?;
    let mut lines = text.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let (method, path) = (first.next()?.to_string(), first.next()?.to_string());
    let mut len = Some(0);
    for line in lines.filter(|l| !l.is_empty()) {
        let (k, v) = line.split_once(':')?;
        match k.trim().to_ascii_lowercase().as_str() {
            "content-length" => len = v.trim().parse().ok(),
            "transfer-encoding" => len = None,
            _ => {}
        }
    }
    Some((method, path, len))
}

fn take_fault(state: &Mutex<Shared>, method: &str, path: &str) -> Option<Fault> {
    let mut s = state.lock().ok()?;
    let i = s
        .rules
        .iter()
        .position(|r| r.method.is_none_or(|m| m == method) && path.contains(&r.path_contains))?;
    let fault = s.rules[i].fault;
    s.rules[i].times -= 1;
    if s.rules[i].times == 0 {
        s.rules.remove(i);
    }
    Some(fault)
}

fn record(state: &Mutex<Shared>, method: &str, path: &str, fault: Option<Fault>) {
    if let Ok(mut s) = state.lock() {
        s.log.push(Seen {
            method: method.to_string(),
            path: path.to_string(),
            fault,
        });
    }
}

// tokio deprecates set_linger because a positive linger blocks the thread
// in close(); a zero linger never waits: it resets the connection at once.
#[allow(deprecated)]
fn reset(stream: TcpStream) {
    // Linger 0: close() sends RST instead of FIN.
    let _ = stream.set_linger(Some(Duration::ZERO));
    drop(stream);
}

fn canned(status: u16) -> Vec<u8> {
    let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SlowDown</Code>\
                <Message>Please reduce your request rate.</Message></Error>";
    let reason = if status == 503 {
        "Slow Down"
    } else {
        "Injected"
    };
    format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// One client connection: requests are buffered whole, matched against the
/// rules and forwarded (or not); the server's bytes are passed back unless
/// a response-side fault cuts the connection at the first of them.
async fn serve(
    mut client: TcpStream,
    mut server: TcpStream,
    state: Arc<Mutex<Shared>>,
) -> std::io::Result<()> {
    let mut pending: Vec<u8> = Vec::new();
    let mut passthrough = false;
    let mut cut: Option<Fault> = None;
    let (mut cbuf, mut sbuf) = (vec![0u8; 64 << 10], vec![0u8; 64 << 10]);
    loop {
        tokio::select! {
            r = client.read(&mut cbuf) => {
                let n = r?;
                if n == 0 {
                    return Ok(());
                }
                if passthrough {
                    server.write_all(&cbuf[..n]).await?;
                    continue;
                }
                pending.extend_from_slice(&cbuf[..n]);
                while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head_len = end + 4;
                    let Some((method, path, body)) = parse_head(&pending[..head_len]) else {
                        passthrough = true;
                        server.write_all(&pending).await?;
                        pending.clear();
                        break;
                    };
                    let Some(body) = body else {
                        record(&state, &method, &path, None);
                        passthrough = true;
                        server.write_all(&pending).await?;
                        pending.clear();
                        break;
                    };
                    if pending.len() < head_len + body {
                        break;
                    }
                    let request: Vec<u8> = pending.drain(..head_len + body).collect();
                    let fault = take_fault(&state, &method, &path);
                    record(&state, &method, &path, fault);
                    match fault {
                        None => server.write_all(&request).await?,
                        Some(Fault::Delay(d)) => {
                            tokio::time::sleep(d).await;
                            server.write_all(&request).await?;
                        }
                        Some(Fault::DropRequest) => {
                            server.write_all(&request[..head_len + body / 2]).await?;
                            return Ok(());
                        }
                        Some(f @ (Fault::DropResponse | Fault::ResetResponse)) => {
                            server.write_all(&request).await?;
                            cut = Some(f);
                        }
                        Some(Fault::Status(code)) => client.write_all(&canned(code)).await?,
                    }
                }
            }
            r = server.read(&mut sbuf) => {
                let n = r?;
                if n == 0 {
                    return Ok(());
                }
                match cut.take() {
                    Some(Fault::ResetResponse) => {
                        reset(client);
                        return Ok(());
                    }
                    Some(_) => return Ok(()),
                    None => client.write_all(&sbuf[..n]).await?,
                }
            }
        }
    }
}
