//! HTTP error answers: every non-200 response carries `{"error": "..."}`.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};

/// An HTTP failure with its status and a message for the client.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: malformed body or parameters.
    #[error("{0}")]
    BadRequest(String),
    /// 401: missing or wrong key.
    #[error("{0}")]
    Unauthorized(String),
    /// 404: no such endpoint.
    #[error("{0}")]
    NotFound(String),
    /// 405: wrong method for an endpoint.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// 413: body or batch too large.
    #[error("{0}")]
    TooLarge(String),
    /// 415: a content encoding other than gzip.
    #[error("{0}")]
    UnsupportedEncoding(String),
    /// 503: the store cannot accept writes.
    #[error("{0}")]
    Unavailable(String),
    /// 500: a bug or an unexpected store failure.
    #[error("{0}")]
    Internal(String),
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedEncoding(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        if status.is_server_error() {
            tracing::error!(%status, error = %self, "request failed");
        } else {
            tracing::debug!(%status, error = %self, "request rejected");
        }
        let mut resp = HttpResponse::build(status);
        if status == StatusCode::UNAUTHORIZED {
            resp.insert_header(("WWW-Authenticate", "Bearer"));
        }
        resp.json(serde_json::json!({ "error": self.to_string() }))
    }
}
