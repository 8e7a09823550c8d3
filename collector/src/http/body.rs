//! Reading request bodies under a size cap, before and after gzip.

use std::io::Read;

use actix_web::HttpRequest;
use actix_web::http::header;
use actix_web::web::{self, BytesMut};
use futures_util::StreamExt;

use super::error::ApiError;

/// How much more than the limit is read and thrown away before a 413, so
/// that a client still sending an oversized body gets to read the answer
/// rather than a broken pipe (HTTP/1.1 clients write the whole body before
/// they read). Beyond this the connection is simply closed.
const DRAIN_FACTOR: usize = 4;

/// Reads the whole body, at most `limit` bytes on the wire and, for
/// `Content-Encoding: gzip`, at most `limit` bytes once inflated, so that a
/// gzip bomb costs at most `limit` bytes of memory and gets a 413.
pub async fn read_limited(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<Vec<u8>, ApiError> {
    let too_large = || ApiError::TooLarge(format!("request body is larger than {limit} bytes"));
    let drain_budget = limit.saturating_mul(DRAIN_FACTOR);
    if let Some(len) = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        && len > limit as u64
    {
        if len <= drain_budget as u64 {
            drain(&mut payload, drain_budget).await;
        }
        return Err(too_large());
    }
    let mut buf = BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| ApiError::BadRequest(format!("reading the body: {e}")))?;
        if buf.len() + chunk.len() > limit {
            drain(
                &mut payload,
                drain_budget.saturating_sub(buf.len() + chunk.len()),
            )
            .await;
            return Err(too_large());
        }
        buf.extend_from_slice(&chunk);
    }
    let encoding = req
        .headers()
        .get(header::CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("").trim().to_ascii_lowercase());
    match encoding.as_deref() {
        None | Some("" | "identity") => Ok(buf.to_vec()),
        Some("gzip" | "x-gzip") => {
            let mut out = Vec::with_capacity(buf.len() * 4);
            flate2::read::MultiGzDecoder::new(&buf[..])
                .take(limit as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|e| ApiError::BadRequest(format!("body is not valid gzip: {e}")))?;
            if out.len() > limit {
                return Err(ApiError::TooLarge(format!(
                    "gzip body inflates to more than {limit} bytes"
                )));
            }
            Ok(out)
        }
        Some(other) => Err(ApiError::UnsupportedEncoding(format!(
            "Content-Encoding '{other}' is not supported (send identity or gzip)"
        ))),
    }
}

/// Reads and discards the rest of the body, at most `budget` bytes.
async fn drain(payload: &mut web::Payload, mut budget: usize) {
    while let Some(Ok(chunk)) = payload.next().await {
        if chunk.len() > budget {
            return;
        }
        budget -= chunk.len();
    }
}
