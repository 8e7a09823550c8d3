//! A fault-injecting HTTP proxy for tests, listening on 127.0.0.1 only.
//!
//! Put it between an HTTP client (the SDK) and a server (a fake collector, or
//! a real `tally serve` subprocess) and decide, per request, what happens:
//! pass it through, answer 500 or 429 in the server's place, stall, reset
//! the connection, or forward it and lose the answer (the case that makes
//! idempotent ids matter: the server stored the events, the client retries).
//!
//! Self-contained: depends on `tokio` (features `net`, `io-util`, `time`,
//! `sync`, `rt`, `macros`) and std only, so other test crates can include it
//! with `#[path = ".../sdk/tests/it/proxy.rs"] mod proxy;`.
//!
//! It speaks HTTP/1.1 just enough for one request per connection: it reads
//! the request head and its `Content-Length` body, forwards it upstream with
//! `Connection: close`, and relays the whole answer, also with
//! `Connection: close`, so each request gets a fresh connection and its own
//! fault. Chunked request bodies are not supported.
//!
//! ```ignore
//! let proxy = FaultProxy::start(collector_addr).await?;
//! let client = tally_sdk::Client::builder(proxy.url(), key).build()?;
//! proxy.set(Fault::Fail500);                       // every request, from now on
//! proxy.script([Fault::LoseResponse, Fault::Stall]); // the next two, then the default
//! proxy.chaos(&[(Fault::PassThrough, 6), (Fault::TooMany { retry_after_secs: 0 }, 1)], 42);
//! ```
#![allow(dead_code)]

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What the proxy does with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Forward to the upstream and relay its answer (502 if it is down).
    PassThrough,
    /// Answer `500` without forwarding.
    Fail500,
    /// Answer `429` with `Retry-After: retry_after_secs` without forwarding.
    TooMany { retry_after_secs: u64 },
    /// Read the request, never answer; the connection is held until the
    /// client hangs up, [`FaultProxy::release_stalled`], or 60 s.
    Stall,
    /// Read the request and close the connection without an answer.
    Reset,
    /// Forward to the upstream, wait for its answer, then close the client's
    /// connection without relaying it.
    LoseResponse,
}

/// How many requests met each fault.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProxyCounts {
    pub requests: u64,
    pub passed: u64,
    pub upstream_down: u64,
    pub fail500: u64,
    pub too_many: u64,
    pub stalled: u64,
    pub reset: u64,
    pub lost: u64,
}

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    passed: AtomicU64,
    upstream_down: AtomicU64,
    fail500: AtomicU64,
    too_many: AtomicU64,
    stalled: AtomicU64,
    reset: AtomicU64,
    lost: AtomicU64,
}

struct Plan {
    script: VecDeque<Fault>,
    default: Fault,
    chaos: Option<(Vec<(Fault, u32)>, u64)>,
}

impl Plan {
    fn next(&mut self) -> Fault {
        if let Some(f) = self.script.pop_front() {
            return f;
        }
        if let Some((weights, state)) = &mut self.chaos {
            let total: u64 = weights.iter().map(|(_, w)| u64::from(*w)).sum();
            if total > 0 {
                // xorshift64*: deterministic for a seed, no dependency.
                *state ^= *state >> 12;
                *state ^= *state << 25;
                *state ^= *state >> 27;
                let r = state.wrapping_mul(0x2545_F491_4F6C_DD1D) % total;
                let mut acc = 0;
                for (f, w) in weights.iter() {
                    acc += u64::from(*w);
                    if r < acc {
                        return *f;
                    }
                }
            }
        }
        self.default
    }
}

struct Shared {
    upstream: Mutex<SocketAddr>,
    plan: Mutex<Plan>,
    counts: Counters,
    release: watch::Sender<u64>,
}

/// The proxy; stops (and closes stalled connections) when dropped.
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
}

/// Longest a stalled connection is held, and longest the upstream may take.
const HOLD_MAX: Duration = Duration::from_secs(60);

impl FaultProxy {
    /// Listens on `127.0.0.1:0` and forwards to `upstream` (which must be a
    /// loopback address).
    pub async fn start(upstream: SocketAddr) -> io::Result<FaultProxy> {
        if !upstream.ip().is_loopback() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the fault proxy only forwards to loopback addresses",
            ));
        }
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (release, _) = watch::channel(0u64);
        let shared = Arc::new(Shared {
            upstream: Mutex::new(upstream),
            plan: Mutex::new(Plan {
                script: VecDeque::new(),
                default: Fault::PassThrough,
                chaos: None,
            }),
            counts: Counters::default(),
            release,
        });
        let sh = shared.clone();
        let accept = tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let _ = conn.set_nodelay(true);
                tokio::spawn(handle(conn, sh.clone()));
            }
        });
        Ok(FaultProxy {
            addr,
            shared,
            accept,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, to give the client as the endpoint.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Points the proxy at another upstream (e.g. a restarted collector on a
    /// new port).
    pub fn set_upstream(&self, upstream: SocketAddr) {
        *self.shared.upstream.lock().unwrap() = upstream;
    }

    /// Applies `fault` to every request from now on (after any script), and
    /// turns chaos off.
    pub fn set(&self, fault: Fault) {
        let mut plan = self.shared.plan.lock().unwrap();
        plan.default = fault;
        plan.chaos = None;
    }

    /// Applies these faults to the next requests, one each, in order.
    pub fn script(&self, faults: impl IntoIterator<Item = Fault>) {
        self.shared.plan.lock().unwrap().script.extend(faults);
    }

    /// Draws each request's fault at random with these weights
    /// (deterministically for a given `seed`), after any script.
    pub fn chaos(&self, weights: &[(Fault, u32)], seed: u64) {
        self.shared.plan.lock().unwrap().chaos = Some((weights.to_vec(), seed | 1));
    }

    /// Closes every connection currently stalled.
    pub fn release_stalled(&self) {
        self.shared.release.send_modify(|n| *n += 1);
    }

    pub fn counts(&self) -> ProxyCounts {
        let c = &self.shared.counts;
        ProxyCounts {
            requests: c.requests.load(Relaxed),
            passed: c.passed.load(Relaxed),
            upstream_down: c.upstream_down.load(Relaxed),
            fail500: c.fail500.load(Relaxed),
            too_many: c.too_many.load(Relaxed),
            stalled: c.stalled.load(Relaxed),
            reset: c.reset.load(Relaxed),
            lost: c.lost.load(Relaxed),
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.release_stalled();
    }
}

async fn handle(mut client: TcpStream, shared: Arc<Shared>) {
    let mut release = shared.release.subscribe();
    let Some(request) = read_request(&mut client).await else {
        return;
    };
    let fault = shared.plan.lock().unwrap().next();
    let c = &shared.counts;
    c.requests.fetch_add(1, Relaxed);
    match fault {
        Fault::PassThrough | Fault::LoseResponse => {
            let upstream = *shared.upstream.lock().unwrap();
            match forward(upstream, &request).await {
                Some(answer) if fault == Fault::PassThrough => {
                    c.passed.fetch_add(1, Relaxed);
                    let _ = client.write_all(&answer).await;
                }
                Some(_) => {
                    c.lost.fetch_add(1, Relaxed);
                }
                None => {
                    c.upstream_down.fetch_add(1, Relaxed);
                    let _ = client
                        .write_all(&canned(
                            502,
                            "Bad Gateway",
                            "upstream unreachable (fault proxy)",
                            None,
                        ))
                        .await;
                }
            }
        }
        Fault::Fail500 => {
            c.fail500.fetch_add(1, Relaxed);
            let _ = client
                .write_all(&canned(
                    500,
                    "Internal Server Error",
                    "injected by the fault proxy",
                    None,
                ))
                .await;
        }
        Fault::TooMany { retry_after_secs } => {
            c.too_many.fetch_add(1, Relaxed);
            let _ = client
                .write_all(&canned(
                    429,
                    "Too Many Requests",
                    "injected by the fault proxy",
                    Some(retry_after_secs),
                ))
                .await;
        }
        Fault::Stall => {
            c.stalled.fetch_add(1, Relaxed);
            let mut sink = [0u8; 1024];
            let _ = tokio::time::timeout(HOLD_MAX, async {
                tokio::select! {
                    _ = client.read(&mut sink) => {}
                    _ = release.changed() => {}
                }
            })
            .await;
        }
        Fault::Reset => {
            c.reset.fetch_add(1, Relaxed);
        }
    }
    let _ = client.shutdown().await;
}

/// Reads one request: head (with `Connection: close` swapped in) and body.
async fn read_request(conn: &mut TcpStream) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let head_end = loop {
        if let Some(p) = find(&buf, b"\r\n\r\n") {
            break p;
        }
        if buf.len() > 64 * 1024 {
            return None;
        }
        let n = tokio::time::timeout(HOLD_MAX, conn.read(&mut chunk))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let len = header(&head, "content-length")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0);
    let start = head_end + 4;
    while buf.len() < start + len {
        let n = tokio::time::timeout(HOLD_MAX, conn.read(&mut chunk))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let mut out = with_connection_close(&head).into_bytes();
    out.extend_from_slice(&buf[start..start + len]);
    Some(out)
}

/// Sends `request` upstream and reads the answer to EOF, with
/// `Connection: close` swapped into its head.
async fn forward(upstream: SocketAddr, request: &[u8]) -> Option<Vec<u8>> {
    let work = async {
        let mut up = TcpStream::connect(upstream).await.ok()?;
        let _ = up.set_nodelay(true);
        up.write_all(request).await.ok()?;
        let mut answer = Vec::new();
        up.read_to_end(&mut answer).await.ok()?;
        let head_end = find(&answer, b"\r\n\r\n")?;
        let head = String::from_utf8_lossy(&answer[..head_end]).into_owned();
        let mut out = with_connection_close(&head).into_bytes();
        out.extend_from_slice(&answer[head_end + 4..]);
        Some(out)
    };
    tokio::time::timeout(HOLD_MAX, work).await.ok().flatten()
}

/// The head without its `Connection`/`Keep-Alive` lines, plus
/// `Connection: close` and the blank line.
fn with_connection_close(head: &str) -> String {
    let mut out = String::with_capacity(head.len() + 24);
    for line in head.split("\r\n") {
        let name = line.split(':').next().unwrap_or_default().trim();
        if name.eq_ignore_ascii_case("connection") || name.eq_ignore_ascii_case("keep-alive") {
            continue;
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str("connection: close\r\n\r\n");
    out
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.split("\r\n").skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn canned(status: u16, reason: &str, error: &str, retry_after: Option<u64>) -> Vec<u8> {
    let body = format!("{{\"error\":\"{error}\"}}");
    let mut head = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
        body.len()
    );
    if let Some(s) = retry_after {
        head.push_str(&format!("retry-after: {s}\r\n"));
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(body.as_bytes());
    out
}
