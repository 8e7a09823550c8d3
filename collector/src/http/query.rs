//! `GET /v1/{funnel,retention,activation,lifecycle,active,events}`.

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
    let store = state.store.clone();
    let answer = web::block(move || crate::analysis::run_json(&name, pairs, &*store))
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
