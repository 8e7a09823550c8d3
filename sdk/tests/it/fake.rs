//! A tiny fake collector: raw HTTP/1.1 on 127.0.0.1 with keep-alive,
//! scripted answers, and a record of every request (bodies gunzipped and
//! parsed). It implements just enough of SPEC §2 for the SDK: the write key
//! check, per-event rejection (events named `reject...`), and dedup by `id`.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::Read;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub const KEY: &str = "test-key";

/// How the fake answers one request.
#[allow(dead_code)] // `Close` is used by the durable tests only
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// 200 with accepted / duplicates / rejected, storing new events.
    Ok,
    /// This status with an `{"error"}` body; nothing is stored.
    Status(u16),
    /// 429 with `Retry-After: secs`.
    TooMany { retry_after: u64 },
    /// Read the request and never answer (until the client gives up).
    Stall,
    /// Read the request and close the connection without answering.
    Close,
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct Request {
    pub at: Instant,
    pub headers: HashMap<String, String>,
    pub body: Value,
    pub reply: Reply,
}

impl Request {
    pub fn events(&self) -> &[Value] {
        self.body["batch"].as_array().map_or(&[], Vec::as_slice)
    }

    pub fn ids(&self) -> Vec<String> {
        self.events()
            .iter()
            .map(|e| e["id"].as_str().unwrap_or_default().to_owned())
            .collect()
    }
}

#[derive(Default)]
struct State {
    script: VecDeque<Reply>,
    default: Option<Reply>,
    requests: Vec<Request>,
    stored: Vec<Value>,
    seen: HashSet<String>,
    duplicates: u64,
}

pub struct FakeCollector {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: watch::Sender<bool>,
    accept: JoinHandle<()>,
}

impl FakeCollector {
    pub async fn start() -> FakeCollector {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State::default()));
        let (stop, stop_rx) = watch::channel(false);
        let st = state.clone();
        let accept = tokio::spawn(async move {
            loop {
                let Ok((conn, _)) = listener.accept().await else {
                    break;
                };
                let _ = conn.set_nodelay(true);
                tokio::spawn(serve(conn, st.clone(), stop_rx.clone()));
            }
        });
        FakeCollector {
            addr,
            state,
            stop,
            accept,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Answers for the next requests, in order; then the default.
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.state.lock().unwrap().script.extend(replies);
    }

    /// The answer once the script is used up (initially `Ok`).
    pub fn set_default(&self, reply: Reply) {
        self.state.lock().unwrap().default = Some(reply);
    }

    pub fn requests(&self) -> Vec<Request> {
        self.state.lock().unwrap().requests.clone()
    }

    /// Events stored (first copy of each id), in arrival order.
    pub fn stored(&self) -> Vec<Value> {
        self.state.lock().unwrap().stored.clone()
    }

    pub fn stored_ids(&self) -> Vec<String> {
        self.stored()
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_owned())
            .collect()
    }

    pub fn duplicates(&self) -> u64 {
        self.state.lock().unwrap().duplicates
    }

    /// Waits (at most `timeout`) until `cond` holds for the state.
    pub async fn wait_for(&self, timeout: Duration, cond: impl Fn(&FakeCollector) -> bool) -> bool {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if cond(self) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        cond(self)
    }

    /// Closes stalled connections and stops accepting.
    pub fn stop(&self) {
        let _ = self.stop.send(true);
        self.accept.abort();
    }
}

impl Drop for FakeCollector {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn serve(mut conn: TcpStream, state: Arc<Mutex<State>>, mut stop: watch::Receiver<bool>) {
    let mut buf = Vec::new();
    loop {
        let Some((head, body)) = read_request(&mut conn, &mut buf).await else {
            return;
        };
        let headers = parse_headers(&head);
        let raw = if headers.get("content-encoding").is_some_and(|v| v == "gzip") {
            let mut out = Vec::new();
            if flate2::read::GzDecoder::new(&body[..])
                .read_to_end(&mut out)
                .is_err()
            {
                let _ = respond(&mut conn, 400, &json!({"error": "bad gzip"}), None).await;
                return;
            }
            out
        } else {
            body
        };
        let parsed: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
        let reply = {
            let mut st = state.lock().unwrap();
            let reply = st.script.pop_front().or(st.default).unwrap_or(Reply::Ok);
            st.requests.push(Request {
                at: Instant::now(),
                headers: headers.clone(),
                body: parsed.clone(),
                reply,
            });
            reply
        };
        let ok = match reply {
            Reply::Ok => {
                let auth_ok = headers.get("authorization").map(String::as_str)
                    == Some(&format!("Bearer {KEY}"));
                if !auth_ok {
                    respond(
                        &mut conn,
                        401,
                        &json!({"error": "missing or wrong key"}),
                        None,
                    )
                    .await
                } else if let Some(batch) = parsed["batch"].as_array() {
                    let answer = store(&state, batch);
                    respond(&mut conn, 200, &answer, None).await
                } else {
                    respond(
                        &mut conn,
                        400,
                        &json!({"error": "body: expected {\"batch\": [...]}"}),
                        None,
                    )
                    .await
                }
            }
            Reply::Status(s) => {
                respond(&mut conn, s, &json!({"error": format!("fake {s}")}), None).await
            }
            Reply::TooMany { retry_after } => {
                respond(
                    &mut conn,
                    429,
                    &json!({"error": "slow down"}),
                    Some(retry_after),
                )
                .await
            }
            Reply::Close => return,
            Reply::Stall => {
                // Hold the connection until the client hangs up or the test ends.
                let mut sink = [0u8; 1024];
                let _ = tokio::time::timeout(Duration::from_secs(30), async {
                    tokio::select! {
                        _ = conn.read(&mut sink) => {}
                        _ = stop.wait_for(|s| *s) => {}
                    }
                })
                .await;
                return;
            }
        };
        let close = headers
            .get("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        if !ok || close {
            return;
        }
    }
}

fn store(state: &Mutex<State>, batch: &[Value]) -> Value {
    let mut st = state.lock().unwrap();
    let (mut accepted, mut duplicates, mut rejected) = (0, 0, Vec::new());
    for (i, e) in batch.iter().enumerate() {
        let name = e["event"].as_str().unwrap_or_default();
        if name.starts_with("reject") {
            rejected.push(json!({"index": i, "error": "event: rejected by the fake collector"}));
            continue;
        }
        let id = e["id"].as_str().unwrap_or_default().to_lowercase();
        if st.seen.insert(id) {
            st.stored.push(e.clone());
            accepted += 1;
        } else {
            st.duplicates += 1;
            duplicates += 1;
        }
    }
    json!({"accepted": accepted, "duplicates": duplicates, "rejected": rejected})
}

/// Reads one request (head and Content-Length body). `buf` carries bytes of
/// the next request on a keep-alive connection.
async fn read_request(conn: &mut TcpStream, buf: &mut Vec<u8>) -> Option<(String, Vec<u8>)> {
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(p) = find(buf, b"\r\n\r\n") {
            break p;
        }
        let n = conn.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let len = parse_headers(&head)
        .get("content-length")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0);
    let start = head_end + 4;
    while buf.len() < start + len {
        let n = conn.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = buf[start..start + len].to_vec();
    buf.drain(..start + len);
    Some((head, body))
}

fn parse_headers(head: &str) -> HashMap<String, String> {
    head.lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect()
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

async fn respond(
    conn: &mut TcpStream,
    status: u16,
    body: &Value,
    retry_after: Option<u64>,
) -> bool {
    let body = body.to_string();
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        413 => "Payload Too Large",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    };
    let mut head = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
        body.len()
    );
    if let Some(s) = retry_after {
        head.push_str(&format!("retry-after: {s}\r\n"));
    }
    head.push_str("\r\n");
    head.push_str(&body);
    conn.write_all(head.as_bytes()).await.is_ok()
}
