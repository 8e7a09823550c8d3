//! `tally import --server` and `tally export --server`: the same work as
//! the offline commands, against a running collector over HTTP, so nothing
//! requires stopping it.

use std::io::{BufRead, Write};
use std::time::{Duration, Instant};

use tally_event::{time::now_ms, validate_event_json_defaults};

use crate::http::ingest::IngestAnswer;
use crate::import::{ImportSummary, LineError, MAX_LISTED_ERRORS};

/// At most this many events per request (the collector's limit).
pub const MAX_BATCH_EVENTS: usize = 1000;
/// At most this many bytes per request body (the collector's limit is
/// 5 MiB; room is left for the envelope).
pub const MAX_BATCH_BYTES: usize = 5 * 1024 * 1024 - 1024;
/// Retrying one request stops after this long without an answer.
pub const RETRY_FOR: Duration = Duration::from_secs(300);

/// Why a remote command failed, and whether it was the user's mistake.
#[derive(Debug)]
pub enum RemoteError {
    /// A bad flag or parameter (exit 2).
    Usage(String),
    /// The collector could not do it (exit 1).
    Failed(String),
}

/// `--server` as a base URL without a trailing slash; a bare `host:port`
/// is a usage error that says to add the scheme.
pub fn server_base(server: &str) -> Result<String, RemoteError> {
    let server = server.trim();
    if !server.contains("://") {
        return Err(RemoteError::Usage(format!(
            "--server: '{server}' has no scheme; add http:// (e.g. --server http://{server})"
        )));
    }
    match reqwest::Url::parse(server) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => {
            Ok(server.trim_end_matches('/').to_string())
        }
        Ok(u) => Err(RemoteError::Usage(format!(
            "--server: unsupported scheme '{}' in '{server}' (expected http:// or https://)",
            u.scheme()
        ))),
        Err(e) => Err(RemoteError::Usage(format!(
            "--server: '{server}' is not a URL ({e})"
        ))),
    }
}

/// A request that got no answer, said in the user's terms.
pub fn request_failure(url: &str, e: &reqwest::Error) -> String {
    if e.is_connect() {
        format!("connection refused at {url} (is `tally serve` running?)")
    } else if e.is_timeout() {
        format!("{url} did not answer in time")
    } else {
        format!("asking {url}: {e}")
    }
}

/// The `{"error": ...}` of a non-200 answer, or the start of its body.
fn error_text(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(String::from))
        .unwrap_or_else(|| body.chars().take(300).collect())
}

/// Streams `GET /v1/export` into `out`; returns the bytes written.
pub fn export(
    server: &str,
    key: &str,
    pairs: &[(&str, String)],
    out: &mut dyn Write,
) -> Result<u64, RemoteError> {
    let url = format!("{}/v1/export", server_base(server)?);
    let client = reqwest::blocking::Client::builder()
        .timeout(None)
        .build()
        .map_err(|e| RemoteError::Failed(e.to_string()))?;
    let mut resp = client
        .get(&url)
        .bearer_auth(key)
        .query(pairs)
        .send()
        .map_err(|e| RemoteError::Failed(request_failure(&url, &e)))?;
    let status = resp.status();
    if !status.is_success() {
        let message = error_text(&resp.text().unwrap_or_default());
        return Err(if status == reqwest::StatusCode::BAD_REQUEST {
            RemoteError::Usage(message)
        } else {
            RemoteError::Failed(format!("{url} answered {status}: {message}"))
        });
    }
    let n = resp.copy_to(out).map_err(|e| {
        RemoteError::Failed(format!(
            "the export from {url} broke off part way ({e}); the output is incomplete"
        ))
    })?;
    out.flush()
        .map_err(|e| RemoteError::Failed(format!("writing the export: {e}")))?;
    Ok(n)
}

/// `POST /v1/admin/backup {"dest": DEST}`; returns the events copied.
pub fn backup(server: &str, key: &str, dest: &str) -> Result<u64, RemoteError> {
    admin(
        server,
        key,
        "backup",
        serde_json::json!({ "dest": dest }),
        "events",
    )
}

/// `POST /v1/admin/delete-person {"person": KEY}`; returns the events deleted.
pub fn delete_person(server: &str, key: &str, person: &str) -> Result<u64, RemoteError> {
    admin(
        server,
        key,
        "delete-person",
        serde_json::json!({ "person": person }),
        "deleted",
    )
}

/// `POST /v1/admin/{what}` with `body`; returns the number in field `field`.
fn admin(
    server: &str,
    key: &str,
    what: &str,
    body: serde_json::Value,
    field: &str,
) -> Result<u64, RemoteError> {
    let url = format!("{}/v1/admin/{what}", server_base(server)?);
    let client = reqwest::blocking::Client::builder()
        .timeout(None)
        .build()
        .map_err(|e| RemoteError::Failed(e.to_string()))?;
    let resp = client
        .post(&url)
        .bearer_auth(key)
        .json(&body)
        .send()
        .map_err(|e| RemoteError::Failed(request_failure(&url, &e)))?;
    let status = resp.status();
    let body = resp.text().unwrap_or_default();
    if !status.is_success() {
        let message = error_text(&body);
        return Err(if status == reqwest::StatusCode::BAD_REQUEST {
            RemoteError::Usage(message)
        } else {
            RemoteError::Failed(format!("{url} answered {status}: {message}"))
        });
    }
    serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v[field].as_u64())
        .ok_or_else(|| RemoteError::Failed(format!("{url} answered {body}")))
}

/// One event on its way: its file line and its wire-form JSON (with the
/// id and timestamp fixed here, so a retried request is deduplicated).
struct Pending {
    line: u64,
    json: String,
}

/// Sends NDJSON `input` to `POST /v1/batch` in batches of at most 1000
/// events and 5 MiB, each retried with backoff (connection errors, 5xx,
/// 429) until the collector acknowledges it. Lines are validated here
/// first, exactly as offline import does, so the summary (line numbers
/// included) is the same; the collector's own rejections map back to
/// their lines. `progress` gets the bytes read so far.
pub fn import(
    mut input: impl BufRead,
    server: &str,
    key: &str,
    progress: &dyn Fn(u64),
) -> Result<ImportSummary, RemoteError> {
    let url = format!("{}/v1/batch", server_base(server)?);
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| RemoteError::Failed(e.to_string()))?;
    let mut sender = Sender {
        client,
        url,
        key: key.to_string(),
        summary: ImportSummary::default(),
        errors: Vec::new(),
        acknowledged_once: false,
    };
    let mut batch: Vec<Pending> = Vec::new();
    let mut batch_bytes = 0usize;
    let mut line_no = 0u64;
    let mut bytes = 0u64;
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = input
            .read_until(b'\n', &mut buf)
            .map_err(|e| RemoteError::Failed(format!("reading line {}: {e}", line_no + 1)))?;
        if n == 0 {
            break;
        }
        bytes += n as u64;
        line_no += 1;
        let text = match std::str::from_utf8(&buf) {
            Ok(t) => t.trim_start_matches('\u{feff}').trim(),
            Err(e) => {
                sender.reject(
                    line_no,
                    format!("line is not UTF-8 (at byte {})", e.valid_up_to()),
                );
                continue;
            }
        };
        if text.is_empty() {
            continue;
        }
        match validate_event_json_defaults(text, now_ms()) {
            Err(e) => sender.reject(line_no, e.to_string()),
            Ok((event, defaulted)) => {
                sender.summary.without_id += u64::from(defaulted.id);
                sender.summary.without_timestamp += u64::from(defaulted.timestamp);
                let json = event.to_json_line();
                if !batch.is_empty()
                    && (batch.len() >= MAX_BATCH_EVENTS
                        || batch_bytes + json.len() + 1 > MAX_BATCH_BYTES)
                {
                    sender.send(std::mem::take(&mut batch))?;
                    batch_bytes = 0;
                    progress(bytes);
                }
                batch_bytes += json.len() + 1;
                batch.push(Pending {
                    line: line_no,
                    json,
                });
            }
        }
    }
    if !batch.is_empty() {
        sender.send(batch)?;
    }
    progress(bytes);
    let mut summary = sender.summary;
    sender.errors.sort_by_key(|e| e.line);
    sender.errors.truncate(MAX_LISTED_ERRORS);
    summary.errors = sender.errors;
    Ok(summary)
}

struct Sender {
    client: reqwest::blocking::Client,
    url: String,
    key: String,
    summary: ImportSummary,
    /// Rejected lines, kept to the first [`MAX_LISTED_ERRORS`] by line.
    errors: Vec<LineError>,
    acknowledged_once: bool,
}

/// What one request came to.
enum Reply {
    Answer(IngestAnswer),
    TooLarge(String),
}

impl Sender {
    fn reject(&mut self, line: u64, error: String) {
        self.summary.rejected += 1;
        self.errors.push(LineError { line, error });
        if self.errors.len() >= 2 * MAX_LISTED_ERRORS {
            self.errors.sort_by_key(|e| e.line);
            self.errors.truncate(MAX_LISTED_ERRORS);
        }
    }

    /// Sends `batch` until acknowledged; halves it if the collector finds
    /// it too large.
    fn send(&mut self, batch: Vec<Pending>) -> Result<(), RemoteError> {
        let mut body =
            String::with_capacity(batch.iter().map(|p| p.json.len() + 1).sum::<usize>() + 16);
        body.push_str("{\"batch\":[");
        for (i, p) in batch.iter().enumerate() {
            if i > 0 {
                body.push(',');
            }
            body.push_str(&p.json);
        }
        body.push_str("]}");
        match self.post(body)? {
            Reply::Answer(answer) => {
                self.acknowledged_once = true;
                self.summary.accepted += answer.accepted as u64;
                self.summary.duplicates += answer.duplicates as u64;
                for r in answer.rejected {
                    if let Some(p) = batch.get(r.index) {
                        self.reject(p.line, r.error);
                    }
                }
                Ok(())
            }
            Reply::TooLarge(_) if batch.len() > 1 => {
                let mut first = batch;
                let second = first.split_off(first.len() / 2);
                self.send(first)?;
                self.send(second)
            }
            Reply::TooLarge(message) => Err(RemoteError::Failed(format!(
                "{} refused line {} as too large: {message}",
                self.url,
                batch.first().map_or(0, |p| p.line)
            ))),
        }
    }

    /// One POST, retried with exponential backoff on connection errors,
    /// 5xx and 429 (honouring `Retry-After`) for up to [`RETRY_FOR`].
    fn post(&self, body: String) -> Result<Reply, RemoteError> {
        let started = Instant::now();
        let mut delay = Duration::from_millis(100);
        loop {
            let sent = self
                .client
                .post(&self.url)
                .bearer_auth(&self.key)
                .header("Content-Type", "application/json")
                .body(body.clone())
                .send();
            let (why, retry_after) = match sent {
                Ok(resp) => {
                    let status = resp.status();
                    let retry_after = resp
                        .headers()
                        .get("Retry-After")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(Duration::from_secs);
                    let text = resp.text().unwrap_or_default();
                    if status.is_success() {
                        return serde_json::from_str::<IngestAnswer>(&text)
                            .map(Reply::Answer)
                            .map_err(|e| {
                                RemoteError::Failed(format!(
                                    "unexpected answer from {}: {e}",
                                    self.url
                                ))
                            });
                    }
                    let message = error_text(&text);
                    if status == reqwest::StatusCode::PAYLOAD_TOO_LARGE {
                        return Ok(Reply::TooLarge(message));
                    }
                    if !(status.is_server_error() || status.as_u16() == 429) {
                        return Err(RemoteError::Failed(format!(
                            "{} answered {status}: {message}",
                            self.url
                        )));
                    }
                    (format!("{status}: {message}"), retry_after)
                }
                // Nobody listening before anything was acknowledged: most
                // likely the wrong URL or a stopped collector, not a blip.
                Err(e) if e.is_connect() && !self.acknowledged_once => {
                    return Err(RemoteError::Failed(request_failure(&self.url, &e)));
                }
                Err(e) => (request_failure(&self.url, &e), None),
            };
            if started.elapsed() >= RETRY_FOR {
                return Err(RemoteError::Failed(format!(
                    "gave up after {}s of retries: {why}",
                    RETRY_FOR.as_secs()
                )));
            }
            let wait = retry_after.unwrap_or(delay).max(delay);
            eprintln!("warning: {why}; retrying in {:.1}s", wait.as_secs_f64());
            std::thread::sleep(wait);
            delay = (delay * 2).min(Duration::from_secs(10));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_urls() {
        assert_eq!(
            server_base("http://127.0.0.1:8080/").unwrap(),
            "http://127.0.0.1:8080"
        );
        assert!(matches!(
            server_base("127.0.0.1:8080"),
            Err(RemoteError::Usage(m)) if m.contains("add http://")
        ));
        assert!(matches!(server_base("ftp://x"), Err(RemoteError::Usage(_))));
    }

    #[test]
    fn error_text_prefers_the_json_error() {
        assert_eq!(error_text(r#"{"error":"bad key"}"#), "bad key");
        assert_eq!(error_text("plain"), "plain");
    }
}
