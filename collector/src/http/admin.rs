//! Admin endpoints (the admin key only): `POST /v1/admin/backup` and
//! `POST /v1/admin/delete-person`.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

use super::AppState;
use super::auth::{self, Need};
use super::error::ApiError;
use crate::error::Error;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BackupBody {
    dest: String,
}

/// `POST /v1/admin/backup {"dest": DIR}` → `{"events": N}` once the copy
/// (a path on the collector's machine) is complete and verified.
pub async fn backup(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    auth::check(&req, &state.keys, Need::Admin)?;
    let BackupBody { dest } = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("expected {{\"dest\": \"DIR\"}}: {e}")))?;
    if dest.trim().is_empty() {
        return Err(ApiError::BadRequest("\"dest\" is empty".into()));
    }
    let store = state.store.clone();
    let data = state.config.data.clone();
    let events = web::block(move || crate::backup::backup(&*store, &data, dest.as_ref()))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(|e| match e {
            Error::Config(m) => ApiError::BadRequest(m),
            other => ApiError::Internal(format!("the backup failed: {other}")),
        })?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "events": events })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeleteBody {
    person: String,
}

/// `POST /v1/admin/delete-person {"person": KEY}` → `{"deleted": N}`
/// (SPEC §3 `tally delete-person`).
pub async fn delete_person(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    auth::check(&req, &state.keys, Need::Admin)?;
    let DeleteBody { person } = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("expected {{\"person\": \"KEY\"}}: {e}")))?;
    if person.is_empty() {
        return Err(ApiError::BadRequest("\"person\" is empty".into()));
    }
    let store = state.store.clone();
    let deleted = web::block(move || store.delete_person(&person))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(|e| match e {
            crate::store::Error::Unavailable(m) => ApiError::Unavailable(m),
            other => ApiError::Internal(format!("the deletion failed: {other}")),
        })?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "deleted": deleted })))
}
