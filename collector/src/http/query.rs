//! `GET /v1/{funnel,retention,activation,lifecycle,active,trend,events}`,
//! `GET /v1/review` and `GET /v1/export`.

use actix_web::{HttpRequest, HttpResponse, web};

use super::AppState;
use super::auth::{self, Need};
use super::error::ApiError;

/// Runs one analysis with the query string as its parameters.
pub async fn analysis(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let name = path.into_inner();
    if !crate::analysis::NAMES.contains(&name.as_str()) {
        return Err(ApiError::NotFound(format!("no endpoint /v1/{name}")));
    }
    auth::check(&req, &state.keys, Need::Read)?;
    let mut pairs: Vec<(String, String)> =
        web::Query::<Vec<(String, String)>>::from_query(req.query_string())
            .map_err(|e| ApiError::BadRequest(format!("malformed query string: {e}")))?
            .into_inner()
            .into_iter()
            .map(|(k, v)| {
                let v = restore_offset_plus(&k, v);
                (k, v)
            })
            .collect();
    // `format` is a CLI flag too; over HTTP the answer is always JSON, so
    // `format=json` is accepted and anything else is refused.
    if let Some((_, v)) = pairs.iter().find(|(k, v)| k == "format" && v != "json") {
        return Err(ApiError::BadRequest(format!(
            "--format: '{v}' is not available over HTTP (answers are JSON; give format=json or nothing)"
        )));
    }
    pairs.retain(|(k, _)| k != "format");
    let state2 = state.clone();
    let answer =
        web::block(move || crate::analysis::run_json(&name, pairs, &*state2.store, &state2.names))
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?
            .map_err(|e| match e {
                tally_query::QueryError::BadParam { .. } => ApiError::BadRequest(e.to_string()),
                tally_query::QueryError::Source(m) => ApiError::Internal(m),
            })?;
    let mut resp = HttpResponse::Ok();
    resp.content_type("application/json");
    if !answer.warnings.is_empty() {
        resp.insert_header((WARNING_HEADER, ascii_json(&answer.warnings)));
    }
    Ok(resp.body(answer.body))
}

/// `GET /v1/review?period=&as-of=&tz=`: the review of the KPI file in the
/// collector's data directory, read on every request (an edited file
/// applies at once). A missing or bad file is the collector's
/// configuration, not the client's mistake: 500, with the file's problems.
pub async fn review(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    auth::check(&req, &state.keys, Need::Read)?;
    let mut pairs: Vec<(String, String)> =
        web::Query::<Vec<(String, String)>>::from_query(req.query_string())
            .map_err(|e| ApiError::BadRequest(format!("malformed query string: {e}")))?
            .into_inner()
            .into_iter()
            .map(|(k, v)| {
                let v = restore_offset_plus(&k, v);
                (k, v)
            })
            .collect();
    if let Some((_, v)) = pairs.iter().find(|(k, v)| k == "format" && v != "json") {
        return Err(ApiError::BadRequest(format!(
            "--format: '{v}' is not available over HTTP (answers are JSON; give format=json or nothing)"
        )));
    }
    pairs.retain(|(k, _)| k != "format");
    let params = crate::review::params(pairs, tally_event::time::now_ms())
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let path = crate::review::default_path(&state.config.data);
    let store = state.store.clone();
    let (result, warnings) = web::block(move || {
        let kpis = crate::review::load(&path).map_err(|e| ApiError::Internal(e.to_string()))?;
        crate::review::run(&*store, &kpis, &params).map_err(|e| match e {
            tally_query::QueryError::BadParam { .. } => ApiError::BadRequest(e.to_string()),
            tally_query::QueryError::Source(m) => ApiError::Internal(m),
        })
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))??;
    let mut resp = HttpResponse::Ok();
    resp.content_type("application/json");
    if !warnings.is_empty() {
        resp.insert_header((WARNING_HEADER, ascii_json(&warnings)));
    }
    let mut body = serde_json::to_string_pretty(&result).expect("results serialize");
    body.push('\n');
    Ok(resp.body(body))
}

/// The header that carries an answer's warnings (an event name never seen)
/// as a JSON array of strings; `tally --server` prints them on stderr.
pub const WARNING_HEADER: &str = "Tally-Warning";

/// JSON with every non-ASCII character escaped, as a header value must be.
fn ascii_json(v: &[String]) -> String {
    let json = serde_json::to_string(v).expect("strings serialize");
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        if c.is_ascii() && !c.is_ascii_control() {
            out.push(c);
        } else {
            for unit in c.encode_utf16(&mut [0; 2]) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out
}

/// In a query string `+` decodes to a space, so an unencoded
/// `from=2026-01-31T00:00:00+02:00` arrives as `...00:00:00 02:00`. A time
/// never contains a space, so for the time parameters a space right before
/// a trailing `hh:mm` is read back as the `+` the user typed.
fn restore_offset_plus(name: &str, value: String) -> String {
    if !matches!(name, "from" | "to" | "as-of" | "as_of") {
        return value;
    }
    let b = value.as_bytes();
    let n = b.len();
    let offset = n >= 7
        && b[n - 6] == b' '
        && b[n - 5].is_ascii_digit()
        && b[n - 4].is_ascii_digit()
        && b[n - 3] == b':'
        && b[n - 2].is_ascii_digit()
        && b[n - 1].is_ascii_digit();
    if offset {
        format!("{}+{}", &value[..n - 6], &value[n - 5..])
    } else {
        value
    }
}

/// Bytes buffered before a chunk of the export goes out.
const EXPORT_CHUNK_BYTES: usize = 64 * 1024;
/// Chunks in flight between the scanning thread and the connection: a slow
/// client slows the scan instead of filling memory.
const EXPORT_CHUNKS_QUEUED: usize = 4;

/// `GET /v1/export?from=&to=`: exactly `tally export`'s NDJSON lines,
/// streamed as the store is scanned (never held whole in memory). A store
/// failure after the first bytes cuts the response short, which the client
/// sees as a broken transfer rather than a complete file.
pub async fn export(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    auth::check(&req, &state.keys, Need::Read)?;
    let pairs: Vec<(String, String)> =
        web::Query::<Vec<(String, String)>>::from_query(req.query_string())
            .map_err(|e| ApiError::BadRequest(format!("malformed query string: {e}")))?
            .into_inner()
            .into_iter()
            .map(|(k, v)| {
                let v = restore_offset_plus(&k, v);
                (k, v)
            })
            .collect();
    let mut raw = tally_query::RawParams::new(pairs);
    let (from, to) = raw
        .range_or_all(tally_event::time::now_ms())
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    raw.finish()
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;

    let (tx, rx) =
        tokio::sync::mpsc::channel::<Result<web::Bytes, std::io::Error>>(EXPORT_CHUNKS_QUEUED);
    let store = state.store.clone();
    std::thread::Builder::new()
        .name("tally-export".into())
        .spawn(move || {
            let mut buf: Vec<u8> = Vec::with_capacity(EXPORT_CHUNK_BYTES);
            let result = store.scan_events(from, to, &mut |e| {
                if !(from..to).contains(&e.timestamp) {
                    return Ok(());
                }
                buf.extend_from_slice(e.to_json_line().as_bytes());
                buf.push(b'\n');
                if buf.len() >= EXPORT_CHUNK_BYTES {
                    let chunk = web::Bytes::from(std::mem::take(&mut buf));
                    // The client went away: stop scanning.
                    tx.blocking_send(Ok(chunk)).map_err(|_| {
                        crate::store::Error::io(
                            "sending the export",
                            std::io::Error::from(std::io::ErrorKind::BrokenPipe),
                        )
                    })?;
                }
                Ok(())
            });
            let last = match result {
                Ok(()) => Ok(web::Bytes::from(buf)),
                Err(e) => {
                    tracing::error!(error = %e, "export failed part way; the response is cut short");
                    Err(std::io::Error::other(e.to_string()))
                }
            };
            let _ = tx.blocking_send(last);
        })
        .map_err(|e| ApiError::Internal(format!("starting the export: {e}")))?;
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    Ok(HttpResponse::Ok()
        .content_type("application/x-ndjson")
        .streaming(body))
}
