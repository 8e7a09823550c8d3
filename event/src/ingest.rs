//! What `POST /v1/batch` and `POST /v1/track` accept and answer (SPEC §2):
//! the request limits and the 200 answer, for clients of the collector (the
//! Rust SDK uses them) so that they need not copy the collector's.

use serde::{Deserialize, Serialize};

/// Most events in one `/v1/batch` request.
pub const MAX_BATCH_EVENTS: usize = 1000;

/// Most bytes of one request body, after gzip inflation (5 MiB).
pub const MAX_BODY_BYTES: usize = 5 * 1024 * 1024;

/// The 200 answer of both ingest endpoints. A rejected event is data in
/// the answer, not an error of the request.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct IngestAnswer {
    /// Events stored by this request.
    pub accepted: usize,
    /// Events whose id was already stored.
    #[serde(default)]
    pub duplicates: usize,
    /// Events that failed validation, with their index in the request.
    #[serde(default)]
    pub rejected: Vec<IngestRejection>,
}

/// One rejected event of an [`IngestAnswer`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct IngestRejection {
    /// Position in the batch (0 for `/v1/track`).
    pub index: usize,
    /// What is wrong, naming the field.
    pub error: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answer_round_trips_and_defaults_optional_fields() {
        let a = IngestAnswer {
            accepted: 2,
            duplicates: 1,
            rejected: vec![IngestRejection {
                index: 0,
                error: "event: required".into(),
            }],
        };
        let text = serde_json::to_string(&a).unwrap();
        assert_eq!(
            text,
            r#"{"accepted":2,"duplicates":1,"rejected":[{"index":0,"error":"event: required"}]}"#
        );
        assert_eq!(serde_json::from_str::<IngestAnswer>(&text).unwrap(), a);
        let short: IngestAnswer = serde_json::from_str(r#"{"accepted":3}"#).unwrap();
        assert_eq!((short.accepted, short.duplicates), (3, 0));
        assert!(short.rejected.is_empty());
    }
}
