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

/// `{"batch": [...]}`. Deserialized by hand only to refuse a bare array up
/// front: a derived struct also accepts a JSON array (its fields in order),
/// so `[{...}]` used to fail inside it with serde's inverted "invalid type:
/// map, expected a sequence".
struct BatchBody<'a> {
    batch: Vec<&'a RawValue>,
}

impl<'de: 'a, 'a> Deserialize<'de> for BatchBody<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Fields<'a> {
            #[serde(borrow)]
            batch: Vec<&'a RawValue>,
        }
        struct Object;
        impl<'de> serde::de::Visitor<'de> for Object {
            type Value = BatchBody<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object {\"batch\": [...]} (not a bare array)")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<Self::Value, A::Error> {
                let fields =
                    Fields::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(BatchBody {
                    batch: fields.batch,
                })
            }
        }
        d.deserialize_map(Object)
    }
}

/// `POST /v1/batch`: `{"batch": [event, ...]}`.
pub async fn batch(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let body = authorized_body(&req, payload, &state).await?;
    let text = utf8(&body)?;
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
    ingest(&state, &parsed.batch).await
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
    ingest(&state, &[raw]).await
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
async fn ingest(state: &AppState, raw: &[&RawValue]) -> Result<HttpResponse, ApiError> {
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
    Ok(HttpResponse::Ok().json(answer))
}
