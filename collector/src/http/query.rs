//! `GET /v1/{funnel,retention,activation,lifecycle,active}`.

use actix_web::{HttpRequest, HttpResponse, web};

use super::AppState;
use super::auth::{self, Need};
use super::error::ApiError;

/// Runs one analysis with the query string as its parameters.
pub async fn analysis(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let name = path.into_inner();
    if !crate::analysis::NAMES.contains(&name.as_str()) {
        return Err(ApiError::NotFound(format!("no endpoint /v1/{name}")));
    }
    auth::check(&req, &state.keys, Need::Read)?;
    let pairs: Vec<(String, String)> =
        web::Query::<Vec<(String, String)>>::from_query(req.query_string())
            .map_err(|e| ApiError::BadRequest(format!("malformed query string: {e}")))?
            .into_inner();
    let store = state.store.clone();
    let json = web::block(move || crate::analysis::run_json(&name, pairs, &*store))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(|e| match e {
            tally_query::QueryError::BadParam { .. } => ApiError::BadRequest(e.to_string()),
            tally_query::QueryError::Source(m) => ApiError::Internal(m),
        })?;
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(json))
}
