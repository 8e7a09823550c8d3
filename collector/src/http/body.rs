//! Reading request bodies: a size cap, a deadline, a shared budget of bytes
//! in flight, and (off the async workers) gzip under the same cap.

use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use actix_web::HttpRequest;
use actix_web::http::header;
use actix_web::web::{self, BytesMut};
use futures_util::StreamExt;
use prometheus_client::metrics::gauge::Gauge;

use super::error::ApiError;

/// How much more than the limit is read and thrown away before a 413, so
/// that a client still sending an oversized body gets to read the answer
/// rather than a broken pipe (HTTP/1.1 clients write the whole body before
/// they read). Beyond this the connection is simply closed.
const DRAIN_FACTOR: usize = 4;

/// Most gzip members one body may hold. A client compresses a body once
/// (one member); each member costs a header parse and a decoder reset, so
/// a body of hundreds of thousands of empty members burns CPU for nothing.
pub const MAX_GZIP_MEMBERS: usize = 64;

/// The bytes of request bodies held in memory at once, across every
/// connection. A body reserves its `Content-Length` before it is read (or
/// grows its reservation chunk by chunk when the length is not sent); the
/// reservation is returned when the request is done with it.
pub struct Budget {
    cap: usize,
    used: AtomicUsize,
    gauge: Gauge,
}

impl Budget {
    /// A budget of `cap` bytes, reported through `gauge`.
    pub fn new(cap: usize, gauge: Gauge) -> Arc<Budget> {
        Arc::new(Budget {
            cap,
            used: AtomicUsize::new(0),
            gauge,
        })
    }

    /// Takes `bytes` from the budget, or nothing if they do not fit.
    fn take(&self, bytes: usize) -> bool {
        let taken = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|&total| total <= self.cap)
            })
            .is_ok();
        if taken {
            self.gauge.inc_by(bytes as i64);
        }
        taken
    }

    fn give_back(&self, bytes: usize) {
        self.used.fetch_sub(bytes, Ordering::AcqRel);
        self.gauge.dec_by(bytes as i64);
    }
}

/// Bytes taken from a [`Budget`], given back on drop.
pub struct Reservation {
    budget: Arc<Budget>,
    bytes: usize,
}

impl Reservation {
    fn new(budget: &Arc<Budget>, bytes: usize) -> Result<Reservation, ApiError> {
        if !budget.take(bytes) {
            return Err(busy(budget));
        }
        Ok(Reservation {
            budget: budget.clone(),
            bytes,
        })
    }

    /// Adds `bytes` to the reservation; a 503 if the budget has no room.
    pub fn grow(&mut self, bytes: usize) -> Result<(), ApiError> {
        if !self.budget.take(bytes) {
            return Err(busy(&self.budget));
        }
        self.bytes += bytes;
        Ok(())
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.give_back(self.bytes);
    }
}

fn busy(budget: &Budget) -> ApiError {
    ApiError::Busy(format!(
        "the collector is holding {} MiB of request bodies, its limit (max_inflight_body_mb); \
         retry shortly",
        budget.cap / (1024 * 1024)
    ))
}

/// The caps a body is read under.
#[derive(Clone)]
pub struct BodyLimits {
    /// Largest body on the wire and once inflated.
    pub max_bytes: usize,
    /// Time a client has to deliver the whole body once its headers are in.
    pub timeout: Duration,
    /// Bytes of bodies in flight across all connections.
    pub budget: Arc<Budget>,
}

/// A body as it came off the wire, with its share of the budget.
pub struct WireBody {
    bytes: Vec<u8>,
    encoding: Encoding,
    /// Held until the request is done with the body and what it became.
    pub reservation: Reservation,
}

#[derive(Clone, Copy)]
enum Encoding {
    Identity,
    Gzip,
}

/// Reads the whole body, at most `limits.max_bytes` on the wire, within
/// `limits.timeout`, after reserving its bytes from the shared budget.
/// A body cut short (the client closed its half of the connection before
/// `Content-Length` bytes arrived) is an error, never a shorter body; a
/// body without `Content-Length` (chunked) is refused with a 411.
pub async fn read_limited(
    req: &HttpRequest,
    mut payload: web::Payload,
    limits: &BodyLimits,
) -> Result<WireBody, ApiError> {
    let limit = limits.max_bytes;
    let too_large = || ApiError::TooLarge(format!("request body is larger than {limit} bytes"));
    let drain_budget = limit.saturating_mul(DRAIN_FACTOR);
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(len) = declared
        && len > limit as u64
    {
        if len <= drain_budget as u64 {
            drain(&mut payload, drain_budget, limits.timeout).await;
        }
        return Err(too_large());
    }
    let declared = declared.map(|len| len as usize);
    // actix ends a request's payload normally when the client closes its
    // half of the connection, so only a declared length tells a whole body
    // from one cut short: a chunked body cannot be checked, and is refused.
    if declared.is_none() && req.headers().contains_key(header::TRANSFER_ENCODING) {
        drain(&mut payload, drain_budget, limits.timeout).await;
        return Err(ApiError::LengthRequired(
            "send the body with a Content-Length (a chunked body cannot be told from one \
             cut short)"
                .into(),
        ));
    }
    let mut reservation = match Reservation::new(&limits.budget, declared.unwrap_or(0)) {
        Ok(r) => r,
        Err(e) => {
            // Read and discard (nothing is kept) so the client reads the 503.
            drain(&mut payload, declared.unwrap_or(0), limits.timeout).await;
            return Err(e);
        }
    };
    let mut buf = BytesMut::with_capacity(declared.unwrap_or(0));
    let read = async {
        while let Some(chunk) = payload.next().await {
            let chunk =
                chunk.map_err(|e| ApiError::BadRequest(format!("reading the body: {e}")))?;
            if buf.len() + chunk.len() > limit {
                drain(
                    &mut payload,
                    drain_budget.saturating_sub(buf.len() + chunk.len()),
                    limits.timeout,
                )
                .await;
                return Err(too_large());
            }
            if declared.is_none() {
                reservation.grow(chunk.len())?;
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(())
    };
    match actix_web::rt::time::timeout(limits.timeout, read).await {
        Ok(result) => result?,
        Err(_) => {
            return Err(ApiError::Timeout(format!(
                "the request body did not arrive within {} s ({} of {} bytes received)",
                limits.timeout.as_secs(),
                buf.len(),
                declared.map_or("unknown".into(), |n| n.to_string())
            )));
        }
    }
    if let Some(len) = declared
        && buf.len() < len
    {
        return Err(ApiError::Incomplete(format!(
            "the request body ended after {} of its {len} bytes (Content-Length)",
            buf.len()
        )));
    }
    let encoding = match req
        .headers()
        .get(header::CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("").trim().to_ascii_lowercase())
        .as_deref()
    {
        None | Some("" | "identity") => Encoding::Identity,
        Some("gzip" | "x-gzip") => Encoding::Gzip,
        Some(other) => {
            return Err(ApiError::UnsupportedEncoding(format!(
                "Content-Encoding '{other}' is not supported (send identity or gzip)"
            )));
        }
    };
    Ok(WireBody {
        bytes: buf.to_vec(),
        encoding,
        reservation,
    })
}

impl WireBody {
    /// An identity-encoded body holding no reservation, for tests.
    #[cfg(test)]
    pub fn for_test(bytes: Vec<u8>) -> WireBody {
        let budget = Budget::new(0, Gauge::default());
        WireBody {
            bytes,
            encoding: Encoding::Identity,
            reservation: Reservation::new(&budget, 0).expect("0 bytes always fit"),
        }
    }

    /// The body's bytes, inflated if it was gzip'd: at most `limit` bytes
    /// once inflated (a gzip bomb costs at most `limit` bytes and gets a
    /// 413) and at most [`MAX_GZIP_MEMBERS`] members. CPU-bound: call it
    /// off the async workers. The inflated bytes are added to the
    /// reservation.
    /// True for a plain (not compressed) body of at most `bytes`: checking
    /// it costs microseconds, less than a hop to the blocking pool.
    pub fn is_small_plain(&self, bytes: usize) -> bool {
        matches!(self.encoding, Encoding::Identity) && self.bytes.len() <= bytes
    }

    pub fn decode(&mut self, limit: usize) -> Result<Vec<u8>, ApiError> {
        match self.encoding {
            Encoding::Identity => Ok(std::mem::take(&mut self.bytes)),
            Encoding::Gzip => {
                let out = inflate(&self.bytes, limit)?;
                self.bytes = Vec::new();
                self.reservation.grow(out.len())?;
                Ok(out)
            }
        }
    }
}

/// Inflates every gzip member of `wire` (concatenated members are one
/// stream, RFC 1952), at most `limit` bytes and [`MAX_GZIP_MEMBERS`]
/// members.
fn inflate(wire: &[u8], limit: usize) -> Result<Vec<u8>, ApiError> {
    let invalid = |e: std::io::Error| ApiError::BadRequest(format!("body is not valid gzip: {e}"));
    let mut out = Vec::with_capacity((wire.len() * 4).min(limit));
    let mut rest = wire;
    let mut members = 0;
    while !rest.is_empty() || members == 0 {
        if members == MAX_GZIP_MEMBERS {
            return Err(ApiError::BadRequest(format!(
                "gzip body has more than {MAX_GZIP_MEMBERS} members (compress the body once)"
            )));
        }
        let mut member = flate2::bufread::GzDecoder::new(rest);
        let room = (limit + 1 - out.len()) as u64;
        (&mut member)
            .take(room)
            .read_to_end(&mut out)
            .map_err(invalid)?;
        if out.len() > limit {
            return Err(ApiError::TooLarge(format!(
                "gzip body inflates to more than {limit} bytes"
            )));
        }
        rest = member.into_inner();
        members += 1;
    }
    Ok(out)
}

/// Reads and discards the rest of the body, at most `budget` bytes and for
/// at most `timeout`.
async fn drain(payload: &mut web::Payload, mut budget: usize, timeout: Duration) {
    let discard = async {
        while let Some(Ok(chunk)) = payload.next().await {
            if chunk.len() > budget {
                return;
            }
            budget -= chunk.len();
        }
    };
    let _ = actix_web::rt::time::timeout(timeout, discard).await;
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(bytes).unwrap();
        enc.finish().unwrap()
    }

    #[test]
    fn inflate_reads_every_member_up_to_the_cap() {
        let mut two = gzip(b"{\"a\":");
        two.extend(gzip(b"1}"));
        assert_eq!(inflate(&two, 100).unwrap(), b"{\"a\":1}");
        let many: Vec<u8> = (0..MAX_GZIP_MEMBERS).flat_map(|_| gzip(b"x")).collect();
        assert_eq!(inflate(&many, 1000).unwrap().len(), MAX_GZIP_MEMBERS);
        let too_many: Vec<u8> = (0..=MAX_GZIP_MEMBERS).flat_map(|_| gzip(b"")).collect();
        let err = inflate(&too_many, 1000).unwrap_err().to_string();
        assert!(err.contains("members"), "{err}");
        assert!(matches!(
            inflate(&gzip(&[b' '; 101]), 100),
            Err(ApiError::TooLarge(_))
        ));
        assert_eq!(inflate(&gzip(&[b' '; 100]), 100).unwrap().len(), 100);
        assert!(matches!(inflate(b"", 100), Err(ApiError::BadRequest(_))));
        let mut trailing = gzip(b"x");
        trailing.extend(b"junk");
        assert!(matches!(
            inflate(&trailing, 100),
            Err(ApiError::BadRequest(_))
        ));
    }

    #[test]
    fn reservations_are_given_back_on_drop() {
        let budget = Budget::new(100, Gauge::default());
        let a = Reservation::new(&budget, 60).unwrap();
        assert!(matches!(
            Reservation::new(&budget, 41),
            Err(ApiError::Busy(_))
        ));
        let mut b = Reservation::new(&budget, 40).unwrap();
        assert!(b.grow(1).is_err());
        drop(a);
        b.grow(60).unwrap();
        assert_eq!(budget.used.load(Ordering::Relaxed), 100);
        drop(b);
        assert_eq!(budget.used.load(Ordering::Relaxed), 0);
        assert_eq!(budget.gauge.get(), 0);
    }
}
