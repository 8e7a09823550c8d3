//! CORS for browser pages (SPEC §2): origins listed in `cors_origins` get
//! a preflight answer and `Access-Control-Allow-Origin` on the ingest
//! endpoints; any other origin gets no CORS header at all (so the browser
//! blocks the page from reading the answer) and its preflight is refused.
//!
//! The origin is echoed rather than answered with `*`, even when `*` is
//! configured, with `Vary: Origin` so a cache never serves one origin's
//! answer to another.

use actix_web::http::header::{self, HeaderMap, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};

use super::AppState;
use super::error::ApiError;

/// Seconds a browser may cache a preflight answer.
pub const MAX_AGE_SECS: u32 = 86_400;

/// Paths that answer CORS requests.
pub fn is_ingest(path: &str) -> bool {
    matches!(path, "/v1/track" | "/v1/batch")
}

/// The request's `Origin` if `cors_origins` lists it.
pub fn allowed_origin(req_headers: &HeaderMap, state: &AppState) -> Option<HeaderValue> {
    let origin = req_headers.get(header::ORIGIN)?;
    state
        .config
        .allows_origin(origin.to_str().ok()?)
        .then(|| origin.clone())
}

/// Adds the headers of an answer to an allowed origin's request.
pub fn add_headers(headers: &mut HeaderMap, origin: HeaderValue) {
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    headers.append(header::VARY, HeaderValue::from_static("Origin"));
}

/// `OPTIONS /v1/track`, `/v1/batch`: the preflight.
pub async fn preflight(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    if allowed_origin(req.headers(), &state).is_none() {
        let who = req
            .headers()
            .get(header::ORIGIN)
            .and_then(|o| o.to_str().ok())
            .map(|o| format!("origin {o} is"))
            .unwrap_or_else(|| "a request without an Origin header is".into());
        return Err(ApiError::Forbidden(format!(
            "{who} not allowed to send events from a browser \
             (list it with --cors-origin or cors_origins in tally.toml)"
        )));
    }
    let mut resp = HttpResponse::NoContent().finish();
    let headers = resp.headers_mut();
    // The wrapper in mod.rs adds Allow-Origin and Vary to every answer on
    // these paths; the rest only a preflight needs.
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("POST, OPTIONS"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("Authorization, Content-Type, Content-Encoding"),
    );
    headers.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from(MAX_AGE_SECS),
    );
    Ok(resp)
}
