//! A moto S3 server for tests, shared by all tests of one test binary.
//!
//! Include with `#[path = "support/s3.rs"] mod s3;` and call [`shared`]:
//! it returns `None` (after printing why) when `.venv/bin/moto_server` is
//! missing, unless `REEF_REQUIRE_S3=1`, in which case it panics, so CI
//! cannot silently skip S3 coverage. `scripts/moto-venv.sh` installs moto.
//!
//! The server runs under a small `sh` wrapper that kills it once our end
//! of its stdin pipe closes, i.e. when the test process exits however it
//! exits: a `static` is never dropped, so a `Drop` alone would leak it.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use object_store::aws::AmazonS3Builder;
use reef::store::ObjectStore;

pub const BUCKET: &str = "reef-test";
const START_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs moto with stdin from /dev/null; a background reader holds the real
/// stdin (fd 3) and kills moto at EOF. The wrapper exits when moto does.
const WRAPPER: &str = r#"
exec 3<&0
"$1" -H 127.0.0.1 -p "$2" </dev/null 3<&- &
pid=$!
{ read -r _ <&3; kill "$pid" 2>/dev/null; } &
wait "$pid"
"#;

pub fn moto_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/moto_server")
}

#[derive(Debug)]
pub struct MotoServer {
    pub endpoint: String,
    pub bucket: String,
    log: PathBuf,
    child: Mutex<Option<(Child, ChildStdin)>>,
}

static SHARED: OnceLock<Option<MotoServer>> = OnceLock::new();

/// The per-binary server, or `None` when moto is not installed (see module
/// docs). Panics if moto is installed but does not come up.
pub fn shared() -> Option<&'static MotoServer> {
    let server = SHARED.get_or_init(|| {
        if !moto_bin().exists() {
            return None;
        }
        match MotoServer::start() {
            Ok(server) => Some(server),
            Err(e) => panic!("moto S3 server did not start: {e}"),
        }
    });
    if server.is_none() {
        let msg = format!(
            "{} not found: run scripts/moto-venv.sh to enable the S3 tests",
            moto_bin().display()
        );
        if std::env::var("REEF_REQUIRE_S3").as_deref() == Ok("1") {
            panic!("REEF_REQUIRE_S3=1 but {msg}");
        }
        eprintln!("skipping S3 test: {msg}");
    }
    server.as_ref()
}

/// A prefix no other test of this process uses, so tests can share a bucket.
pub fn unique_prefix(name: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("{name}-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

impl MotoServer {
    /// Starts a private server (stopped on drop) with [`BUCKET`] created.
    pub fn start() -> Result<MotoServer, String> {
        let mut last_error = String::new();
        // The free port found by binding :0 may be taken again before moto
        // binds it; a fresh port then usually works.
        for _ in 0..3 {
            match Self::start_on(free_port()?) {
                Ok(server) => return Ok(server),
                Err(e) => last_error = e,
            }
        }
        Err(last_error)
    }

    fn start_on(port: u16) -> Result<MotoServer, String> {
        let log = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("moto-{}-{port}.log", std::process::id()));
        let log_file =
            std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let log_err = log_file.try_clone().map_err(|e| e.to_string())?;
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(WRAPPER)
            .arg("moto-wrapper")
            .arg(moto_bin())
            .arg(port.to_string())
            .stdin(Stdio::piped())
            .stdout(log_file)
            .stderr(log_err)
            .spawn()
            .map_err(|e| format!("spawning {}: {e}", moto_bin().display()))?;
        let stdin = child.stdin.take().ok_or("no stdin pipe")?;
        let server = MotoServer {
            endpoint: format!("http://127.0.0.1:{port}"),
            bucket: BUCKET.to_string(),
            log,
            child: Mutex::new(Some((child, stdin))),
        };
        server.wait_ready(port)?;
        Ok(server)
    }

    /// Polls until moto answers by creating the bucket, or gives up.
    fn wait_ready(&self, port: u16) -> Result<(), String> {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.exit_status() {
                return Err(format!("moto exited ({status}): {}", self.log_tail()));
            }
            match http_put(addr, &format!("/{}", self.bucket)) {
                Ok(200) => return Ok(()),
                Ok(code) => {
                    return Err(format!("creating bucket: HTTP {code}: {}", self.log_tail()))
                }
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                Err(e) => {
                    return Err(format!(
                        "not answering after {START_TIMEOUT:?}: {e}: {}",
                        self.log_tail()
                    ))
                }
            }
        }
    }

    fn exit_status(&self) -> Option<String> {
        let mut guard = self.child.lock().unwrap_or_else(|p| p.into_inner());
        let (child, _) = guard.as_mut()?;
        match child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            Ok(None) => None,
            Err(e) => Some(e.to_string()),
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(20).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        format!("log {}:\n{}", self.log.display(), tail.join("\n"))
    }

    /// Settings for `open_store_with_env("s3://BUCKET/prefix", ..)`.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT", self.endpoint.as_str()),
            ("AWS_ALLOW_HTTP", "true"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    pub fn builder(&self) -> AmazonS3Builder {
        AmazonS3Builder::new()
            .with_endpoint(&self.endpoint)
            .with_allow_http(true)
            .with_region("us-east-1")
            .with_bucket_name(&self.bucket)
            .with_access_key_id("test")
            .with_secret_access_key("test")
    }

    /// reef's S3 store on this server, scoped to `prefix` in the bucket.
    pub fn s3_store(&self, prefix: &str) -> Arc<dyn ObjectStore> {
        let description = format!("s3://{}/{prefix}", self.bucket);
        reef::store::s3_store(self.builder(), prefix, &description)
            .unwrap_or_else(|e| panic!("building S3 store for moto: {e}"))
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let mut guard = self.child.lock().unwrap_or_else(|p| p.into_inner());
        let Some((mut child, stdin)) = guard.take() else {
            return;
        };
        drop(stdin);
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                let _ = std::fs::remove_file(&self.log);
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("binding :0: {e}"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| e.to_string())
}

/// A minimal unsigned `PUT path`; moto accepts bucket creation without auth.
fn http_put(addr: SocketAddr, path: &str) -> std::io::Result<u16> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "PUT {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad HTTP response: {response:?}")))
}
