//! `Authorization: Bearer KEY` checks.

use actix_web::HttpRequest;
use actix_web::http::header;

use super::error::ApiError;
use crate::keys::{Keys, Kind, matches};

/// Which key an endpoint needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Ingest endpoints.
    Write,
    /// Query endpoints.
    Read,
    /// Deletion and backup.
    Admin,
}

impl Need {
    fn kind(self) -> Kind {
        match self {
            Need::Write => Kind::Write,
            Need::Read => Kind::Read,
            Need::Admin => Kind::Admin,
        }
    }
}

/// Fails with 401 unless the request presents the key `need` requires.
pub fn check(req: &HttpRequest, keys: &Keys, need: Need) -> Result<(), ApiError> {
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .ok_or_else(|| {
            ApiError::Unauthorized("missing Authorization header (expected 'Bearer KEY')".into())
        })?
        .to_str()
        .ok()
        .and_then(|v| {
            // The auth scheme is case-insensitive (RFC 9110 §11.1).
            let (scheme, key) = v.trim_start().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then_some(key)
        })
        .map(str::trim)
        .ok_or_else(|| {
            ApiError::Unauthorized("malformed Authorization header (expected 'Bearer KEY')".into())
        })?;
    check_key(presented, keys, need)
}

/// Fails with 401 unless `presented` is the key `need` requires (a key
/// from the header, or from a `sendBeacon` body's `"key"`).
pub fn check_key(presented: &str, keys: &Keys, need: Need) -> Result<(), ApiError> {
    let wanted = need.kind();
    if matches(presented, keys.get(wanted)) {
        return Ok(());
    }
    if let Some(given) = Kind::ALL
        .into_iter()
        .find(|&k| k != wanted && matches(presented, keys.get(k)))
    {
        return Err(ApiError::Unauthorized(format!(
            "this endpoint needs the {}; the key given is the {}",
            wanted.label(),
            given.label()
        )));
    }
    Err(ApiError::Unauthorized("invalid key".into()))
}
