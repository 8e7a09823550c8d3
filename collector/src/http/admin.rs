//! Admin endpoints (the admin key only): `POST /v1/admin/backup`.

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
