//! `POST /v1/track`'s answer when its one event is rejected (SPEC §2): a
//! `400 {"error": "...", "rejected": [{"index": 0, "error": "..."}]}`, so
//! `curl -f` and scripts notice, where a batch answers 200 with its
//! rejections listed. A duplicate is still a 200: the event is stored.
//!
//! An adapter over [`ingest::track`], which shares its validation and
//! storing with `/v1/batch`: it turns the ingest answer with a rejection
//! into the 400.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};

use super::AppState;
use super::error::ApiError;
use super::ingest::{self, IngestAnswer};

/// `POST /v1/track`.
pub async fn track(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let resp = ingest::track(req, payload, state).await?;
    if resp.status() != StatusCode::OK {
        return Ok(resp);
    }
    let (head, body) = resp.into_parts();
    let bytes = actix_web::body::to_bytes(body)
        .await
        .map_err(|e| ApiError::Internal(format!("reading the ingest answer: {e}")))?;
    let answer: IngestAnswer = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::Internal(format!("reading the ingest answer: {e}")))?;
    match answer.rejected.first() {
        Some(r) => Ok(HttpResponse::BadRequest().json(serde_json::json!({
            "error": format!("the event was rejected: {}", r.error),
            "rejected": answer.rejected,
        }))),
        None => Ok(head.set_body(bytes).map_into_boxed_body()),
    }
}
