//! HTTP error answers: every non-200 response carries `{"error": "..."}`.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};

/// Seconds a client is asked to wait after a 503 for bodies in flight.
pub const RETRY_AFTER_SECS: u32 = 1;

/// An HTTP failure with its status and a message for the client.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: malformed body or parameters.
    #[error("{0}")]
    BadRequest(String),
    /// 401: missing or wrong key.
    #[error("{0}")]
    Unauthorized(String),
    /// 403: a browser origin not in `cors_origins` (its preflight).
    #[error("{0}")]
    Forbidden(String),
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
    /// 400: the client closed its side before the whole body arrived; the
    /// connection is closed after the answer.
    #[error("{0}")]
    Incomplete(String),
    /// 411: a body without `Content-Length` (chunked); the connection is
    /// closed after the answer.
    #[error("{0}")]
    LengthRequired(String),
    /// 408: the body did not arrive in time; the connection is closed.
    #[error("{0}")]
    Timeout(String),
    /// 503: the store cannot accept writes.
    #[error("{0}")]
    Unavailable(String),
    /// 503 with `Retry-After`: too many bytes of request bodies in flight.
    #[error("{0}")]
    Busy(String),
    /// 429 with `Retry-After`: over `ingest_rate_per_ip`.
    #[error("{0}")]
    RateLimited(String),
    /// 500: a bug or an unexpected store failure.
    #[error("{0}")]
    Internal(String),
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) | ApiError::Incomplete(_) => StatusCode::BAD_REQUEST,
            ApiError::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::LengthRequired(_) => StatusCode::LENGTH_REQUIRED,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedEncoding(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unavailable(_) | ApiError::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        if let ApiError::Busy(_) = self {
            // Load shedding, not a failure of the collector.
            tracing::warn!(%status, error = %self, "request refused");
        } else if status.is_server_error() {
            tracing::error!(%status, error = %self, "request failed");
        } else {
            tracing::debug!(%status, error = %self, "request rejected");
        }
        let mut resp = HttpResponse::build(status);
        match self {
            ApiError::Unauthorized(_) => {
                resp.insert_header(("WWW-Authenticate", "Bearer"));
            }
            // The body is not read: the connection cannot carry another
            // request either.
            ApiError::Busy(_) | ApiError::RateLimited(_) => {
                resp.insert_header(("Retry-After", RETRY_AFTER_SECS.to_string()));
                resp.force_close();
            }
            // What is left of the body (if anything) is not read: the
            // connection cannot carry another request.
            ApiError::Incomplete(_) | ApiError::Timeout(_) | ApiError::LengthRequired(_) => {
                resp.force_close();
            }
            _ => {}
        }
        resp.json(serde_json::json!({ "error": self.to_string() }))
    }
}
