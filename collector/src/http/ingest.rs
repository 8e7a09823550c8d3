//! `POST /v1/track` and `POST /v1/batch`.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tally_event::{Event, time::now_ms, validate_event};

use super::AppState;
use super::auth::{self, Need};
use super::body::read_limited;
use super::error::ApiError;
use crate::store::Outcome;

/// The 200 answer of both ingest endpoints.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct IngestAnswer {
    /// Events stored by this request.
    pub accepted: usize,
    /// Events whose id was already stored.
    pub duplicates: usize,
    /// Events that failed validation, with their index in the request.
    pub rejected: Vec<Rejection>,
}

/// One rejected event.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct Rejection {
    /// Position in the batch (0 for `/v1/track`).
    pub index: usize,
    /// What is wrong, naming the field.
    pub error: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchBody<'a> {
    #[serde(borrow)]
    batch: Vec<&'a RawValue>,
}

/// `POST /v1/batch`: `{"batch": [event, ...]}`.
pub async fn batch(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let body = authorized_body(&req, payload, &state).await?;
    let text = utf8(&body)?;
    if text.trim_start().starts_with('[') {
        return Err(ApiError::BadRequest(
            "body must be a JSON object {\"batch\": [event, ...]}, not a bare array: \
             wrap the events as {\"batch\": [...]}"
                .into(),
        ));
    }
    let parsed: BatchBody<'_> = serde_json::from_str(text).map_err(|e| {
        ApiError::BadRequest(format!(
            "body must be a JSON object {{\"batch\": [event, ...]}}: {e}"
        ))
    })?;
    if parsed.batch.len() > state.config.max_batch_events {
        return Err(ApiError::TooLarge(format!(
            "batch has {} events; at most {} are allowed per request",
            parsed.batch.len(),
            state.config.max_batch_events
        )));
    }
    let answer = ingest(&state, &parsed.batch).await?;
    Ok(HttpResponse::Ok().json(answer))
}

/// `POST /v1/track`: one event object.
pub async fn track(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let body = authorized_body(&req, payload, &state).await?;
    let text = utf8(&body)?;
    let raw: &RawValue = serde_json::from_str(text)
        .map_err(|e| ApiError::BadRequest(format!("body is not valid JSON: {e}")))?;
    if !raw.get().starts_with('{') {
        return Err(ApiError::BadRequest(
            "body must be one event object; send arrays to /v1/batch as {\"batch\": [...]}".into(),
        ));
    }
    let answer = ingest(&state, &[raw]).await?;
    // SPEC §2: the one event rejected is a 400 (so `curl -f` and scripts
    // notice), with the rejection in the same shape as a batch's. A
    // duplicate is still a 200: the event is stored.
    if let Some(r) = answer.rejected.first() {
        return Ok(HttpResponse::BadRequest().json(serde_json::json!({
            "error": format!("the event was rejected: {}", r.error),
            "rejected": answer.rejected,
        })));
    }
    Ok(HttpResponse::Ok().json(answer))
}

/// Checks the write key before reading anything, then reads the body
/// under the size caps.
async fn authorized_body(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
) -> Result<Vec<u8>, ApiError> {
    auth::check(req, &state.keys, Need::Write)?;
    read_limited(req, payload, state.config.max_body_bytes).await
}

fn utf8(body: &[u8]) -> Result<&str, ApiError> {
    std::str::from_utf8(body).map_err(|e| {
        ApiError::BadRequest(format!("body is not UTF-8 (at byte {})", e.valid_up_to()))
    })
}

/// Validates every event, stores the valid ones, and answers for all.
async fn ingest(state: &AppState, raw: &[&RawValue]) -> Result<IngestAnswer, ApiError> {
    let received_at = now_ms();
    let mut events: Vec<Event> = Vec::with_capacity(raw.len());
    let mut rejected = Vec::new();
    for (index, r) in raw.iter().enumerate() {
        match validate_event(r, received_at) {
            Ok(e) => events.push(e),
            Err(e) => rejected.push(Rejection {
                index,
                error: e.to_string(),
            }),
        }
    }
    let outcomes = state
        .writer
        .submit(events)
        .await
        .map_err(|e| ApiError::Unavailable(format!("events were not stored: {e}")))?;
    let duplicates = outcomes
        .iter()
        .filter(|o| **o == Outcome::Duplicate)
        .count();
    let answer = IngestAnswer {
        accepted: outcomes.len() - duplicates,
        duplicates,
        rejected,
    };
    state.metrics.accepted.inc_by(answer.accepted as u64);
    state.metrics.duplicates.inc_by(answer.duplicates as u64);
    state.metrics.rejected.inc_by(answer.rejected.len() as u64);
    Ok(answer)
}
