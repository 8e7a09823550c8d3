//! `POST /v1/track` and `POST /v1/batch`.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tally_event::{Event, time::now_ms, validate_event};

use super::AppState;
use super::auth::{self, Need};
use super::body::{Reservation, WireBody, read_limited};
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
/// `key` is the write key sent in the body by `navigator.sendBeacon`,
/// which cannot set an `Authorization` header (SPEC §2).
struct BatchBody<'a> {
    key: Option<String>,
    batch: Vec<&'a RawValue>,
}

impl<'de: 'a, 'a> Deserialize<'de> for BatchBody<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Fields<'a> {
            #[serde(default)]
            key: Option<String>,
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
                    key: fields.key,
                    batch: fields.batch,
                })
            }
        }
        d.deserialize_map(Object)
    }
}

/// `POST /v1/batch`: `{"batch": [event, ...]}`, or from a browser's
/// `sendBeacon` (no `Authorization` header) `{"key": "...", "batch": [...]}`.
///
/// With a header, the key is checked before the body is read; without one
/// the body is read under the same caps, deadline and budget as any other,
/// and the key in it checked before anything is validated or stored. The
/// body's content type is not looked at: `sendBeacon` sends `text/plain`
/// (a type that needs no CORS preflight).
pub async fn batch(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let max_events = state.config.max_batch_events;
    rate_limit(&req, &state)?;
    let header_key = req.headers().contains_key(header::AUTHORIZATION);
    let body = if header_key {
        authorized_body(&req, payload, &state).await?
    } else {
        read_limited(&req, payload, &state.body_limits).await?
    };
    let keys = state.keys.clone();
    let checked = off_worker(body, state.config.max_body_bytes, move |text| {
        let parsed: BatchBody<'_> = serde_json::from_str(text).map_err(|e| {
            // Without a header, a body that does not parse cannot prove a key.
            if header_key {
                ApiError::BadRequest(format!(
                    "body must be a JSON object {{\"batch\": [event, ...]}}: {e}"
                ))
            } else {
                ApiError::Unauthorized(format!(
                    "missing Authorization header (expected 'Bearer KEY'), and the body is not \
                     {{\"key\": KEY, \"batch\": [...]}}: {e}"
                ))
            }
        })?;
        match &parsed.key {
            // A key in the body is checked even next to a header.
            Some(key) => auth::check_key(key, &keys, Need::Write)?,
            None if !header_key => {
                return Err(ApiError::Unauthorized(
                    "missing Authorization header (expected 'Bearer KEY') or \"key\" in the body"
                        .into(),
                ));
            }
            None => {}
        }
        if parsed.batch.len() > max_events {
            return Err(ApiError::TooLarge(format!(
                "batch has {} events; at most {max_events} are allowed per request",
                parsed.batch.len(),
            )));
        }
        Ok(validate_all(&parsed.batch))
    })
    .await?;
    store(&state, checked).await
}

/// `POST /v1/track`: one event object.
pub async fn track(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let body = authorized_body(&req, payload, &state).await?;
    let checked = off_worker(body, state.config.max_body_bytes, |text| {
        let raw: &RawValue = serde_json::from_str(text)
            .map_err(|e| ApiError::BadRequest(format!("body is not valid JSON: {e}")))?;
        if !raw.get().starts_with('{') {
            return Err(ApiError::BadRequest(
                "body must be one event object; send arrays to /v1/batch as {\"batch\": [...]}"
                    .into(),
            ));
        }
        Ok(validate_all(&[raw]))
    })
    .await?;
    store(&state, checked).await
}

/// Checks the write key before reading anything, then reads the body
/// under the size caps, the deadline and the budget of bytes in flight.
async fn authorized_body(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
) -> Result<WireBody, ApiError> {
    rate_limit(req, state)?;
    auth::check(req, &state.keys, Need::Write)?;
    read_limited(req, payload, &state.body_limits).await
}

/// A 429 for a client over `ingest_rate_per_ip`, before anything is read.
fn rate_limit(req: &HttpRequest, state: &AppState) -> Result<(), ApiError> {
    let Some(peer) = req.peer_addr() else {
        return Ok(());
    };
    if state.rate_limit.allow(peer.ip(), std::time::Instant::now()) {
        return Ok(());
    }
    Err(ApiError::RateLimited(format!(
        "more than {} ingest requests a second from {} (ingest_rate_per_ip); retry shortly",
        state.config.ingest_rate_per_ip,
        peer.ip()
    )))
}

/// Events that passed validation and those that did not, with the body's
/// share of the budget (held until they are stored).
struct Checked {
    events: Vec<Event>,
    rejected: Vec<Rejection>,
    _reservation: Reservation,
}

/// Inflates, decodes, parses (with `parse`) and validates on actix's
/// blocking pool: all of it is CPU work proportional to the body, and a
/// worker busy with it could not answer anyone else (`/healthz` included).
///
/// A small plain body (a single event, a short batch) is checked in place:
/// its cost is bounded by [`INLINE_BODY_BYTES`] and far below the hop to
/// the pool, which cost single-event ingest about a quarter of its rate.
async fn off_worker<F>(mut body: WireBody, limit: usize, parse: F) -> Result<Checked, ApiError>
where
    F: FnOnce(&str) -> Result<(Vec<Event>, Vec<Rejection>), ApiError> + Send + 'static,
{
    let inline = body.is_small_plain(INLINE_BODY_BYTES);
    let check = move || {
        let bytes = body.decode(limit)?;
        let (events, rejected) = parse(utf8(&bytes)?)?;
        Ok(Checked {
            events,
            rejected,
            _reservation: body.reservation,
        })
    };
    if inline {
        return check();
    }
    web::block(check)
        .await
        .map_err(|e| ApiError::Internal(format!("checking the body: {e}")))?
}

/// Plain bodies up to this size are checked on the async worker (tens of
/// microseconds at most); larger or compressed ones on the blocking pool.
const INLINE_BODY_BYTES: usize = 16 * 1024;

fn utf8(body: &[u8]) -> Result<&str, ApiError> {
    std::str::from_utf8(body).map_err(|e| {
        ApiError::BadRequest(format!("body is not UTF-8 (at byte {})", e.valid_up_to()))
    })
}

/// Validates every event: the valid ones, and the others by index.
fn validate_all(raw: &[&RawValue]) -> (Vec<Event>, Vec<Rejection>) {
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
    (events, rejected)
}

/// Stores the valid events and answers for all.
async fn store(state: &AppState, checked: Checked) -> Result<HttpResponse, ApiError> {
    let Checked {
        events,
        rejected,
        _reservation,
    } = checked;
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

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// Issue 16, 7: inflating, parsing and validating a body ran on the
    /// async worker (262k empty gzip members took 0.8 s of one, and
    /// `/healthz` waited behind it). They run on the blocking pool.
    #[actix_web::test]
    async fn bodies_are_checked_off_the_async_worker_unless_small_and_plain() {
        let worker = std::thread::current().id();
        for (size, inline) in [(0usize, true), (INLINE_BODY_BYTES, false)] {
            let seen = Arc::new(Mutex::new(None));
            let seen_in = seen.clone();
            let padding = " ".repeat(size);
            let body = WireBody::for_test(
                format!(r#"{{"event":"x","user_id":"u"}}{padding}"#).into_bytes(),
            );
            let checked = off_worker(body, 1 << 20, move |text| {
                *seen_in.lock().unwrap() = Some(std::thread::current().id());
                let raw: &RawValue = serde_json::from_str(text).unwrap();
                Ok(validate_all(&[raw]))
            })
            .await
            .unwrap();
            assert_eq!((checked.events.len(), checked.rejected.len()), (1, 0));
            let thread = seen.lock().unwrap().expect("the check ran");
            assert_eq!(thread == worker, inline, "body of {size} padding bytes");
        }
    }
}
