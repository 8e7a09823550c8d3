//! How the sender talks HTTP: one `POST /v1/batch` attempt, and what its
//! answer means for the batch ([`Outcome`]).

use std::future::Future;
use std::time::Duration;

use reqwest::Url;
use reqwest::header::{AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use serde::Deserialize;
use tally_event::IngestAnswer;

use crate::backoff::{parse_retry_after, retryable_status};
use crate::report::DeliveryError;
use crate::sender::Outcome;

/// Biggest answer body read; the collector's are tiny.
const MAX_ANSWER_BYTES: usize = 1 << 20;

/// The collector's address and key.
pub(crate) struct Sender {
    pub(crate) http: reqwest::Client,
    pub(crate) url: Url,
    pub(crate) auth: HeaderValue,
    pub(crate) gzip: bool,
}

impl Sender {
    /// One attempt. The future owns everything it needs, so that it can be
    /// kept while the worker handles other wake-ups.
    pub(crate) fn send(
        &self,
        body: Vec<u8>,
        gzipped: bool,
    ) -> impl Future<Output = Outcome> + Send + 'static {
        let mut req = self
            .http
            .post(self.url.clone())
            .header(AUTHORIZATION, self.auth.clone())
            .header(CONTENT_TYPE, "application/json");
        if gzipped {
            req = req.header(CONTENT_ENCODING, "gzip");
        }
        let req = req.body(body);
        async move {
            let resp = match req.send().await {
                Ok(r) => r,
                Err(e) => return retry(transport_error(&e), None),
            };
            let status = resp.status().as_u16();
            let retry_after = resp
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_retry_after);
            let body = match read_capped(resp).await {
                Ok(b) => b,
                // The collector may have stored the events; resending is
                // safe, the ids make it idempotent.
                Err(e) => return retry(transport_error(&e), None),
            };
            classify(status, retry_after, &body)
        }
    }
}

fn retry(error: DeliveryError, after: Option<Duration>) -> Outcome {
    Outcome::Retry { error, after }
}

/// Maps an HTTP answer to what the worker does next.
pub(crate) fn classify(status: u16, retry_after: Option<Duration>, body: &[u8]) -> Outcome {
    if status == 200 {
        return match serde_json::from_slice::<IngestAnswer>(body) {
            Ok(a) => Outcome::Answer(a),
            Err(e) => Outcome::Fail(DeliveryError::InvalidResponse(format!(
                "{e} in {:?}",
                snippet(body)
            ))),
        };
    }
    #[derive(Deserialize)]
    struct ErrorBody {
        error: String,
    }
    let message = serde_json::from_slice::<ErrorBody>(body)
        .map(|b| b.error)
        .unwrap_or_else(|_| snippet(body));
    let error = DeliveryError::Status { status, message };
    if retryable_status(status) {
        retry(error, retry_after)
    } else {
        Outcome::Fail(error)
    }
}

fn snippet(body: &[u8]) -> String {
    let s = String::from_utf8_lossy(&body[..body.len().min(200)]);
    s.trim().to_owned()
}

async fn read_capped(mut resp: reqwest::Response) -> Result<Vec<u8>, reqwest::Error> {
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        let room = MAX_ANSWER_BYTES - out.len();
        out.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if out.len() == MAX_ANSWER_BYTES {
            break;
        }
    }
    Ok(out)
}

fn transport_error(e: &reqwest::Error) -> DeliveryError {
    if e.is_timeout() {
        return DeliveryError::Timeout;
    }
    // reqwest's own message is terse; the causes say what happened.
    let mut msg = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    DeliveryError::Transport(msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_of_answers() {
        let ok = br#"{"accepted":2,"duplicates":1,"rejected":[{"index":0,"error":"bad"}]}"#;
        match classify(200, None, ok) {
            Outcome::Answer(a) => {
                assert_eq!((a.accepted, a.duplicates, a.rejected.len()), (2, 1, 1));
                assert_eq!(a.rejected[0].error, "bad");
            }
            other => panic!("{other:?}"),
        }
        // Missing optional fields are fine; garbage is not.
        assert!(matches!(
            classify(200, None, br#"{"accepted":3}"#),
            Outcome::Answer(_)
        ));
        assert!(matches!(
            classify(200, None, b"<html>ok</html>"),
            Outcome::Fail(DeliveryError::InvalidResponse(_))
        ));
        for status in [500, 502, 503, 504, 429] {
            match classify(status, Some(Duration::from_secs(2)), br#"{"error":"busy"}"#) {
                Outcome::Retry { error, after } => {
                    assert_eq!(error.status(), Some(status));
                    assert_eq!(after, Some(Duration::from_secs(2)));
                    assert!(error.to_string().contains("busy"));
                    assert!(error.is_retryable());
                }
                other => panic!("{status}: {other:?}"),
            }
        }
        for status in [400, 401, 403, 404, 413, 422] {
            match classify(status, None, br#"{"error":"no"}"#) {
                Outcome::Fail(DeliveryError::Status { status: s, message }) => {
                    assert_eq!((s, message.as_str()), (status, "no"));
                }
                other => panic!("{status}: {other:?}"),
            }
        }
        // A non-JSON error body is quoted.
        match classify(502, None, b"Bad Gateway") {
            Outcome::Retry { error, .. } => assert!(error.to_string().contains("Bad Gateway")),
            other => panic!("{other:?}"),
        }
        assert!(DeliveryError::Timeout.is_retryable());
        assert!(DeliveryError::Transport("x".into()).is_retryable());
        assert!(!DeliveryError::Abandoned.is_retryable());
    }
}
