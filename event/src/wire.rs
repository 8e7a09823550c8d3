//! The wire form of an event, as the SDK sends it and `tally export` writes it.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::stage::Stage;
use crate::time::format_rfc3339;

/// An event as sent over HTTP (SPEC §1). The collector does not deserialize
/// into this type: it validates field by field (see [`crate::validate`]) so
/// that each failure names its field. The SDK builds these.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct WireEvent {
    /// Idempotency key; the SDK always sets a UUIDv7.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Uuid>,
    /// Event name.
    pub event: String,
    /// The identified person.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// The person key when `user_id` is absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anonymous_id: Option<String>,
    /// When it happened, Unix milliseconds (sent as RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_rfc3339")]
    pub timestamp: Option<i64>,
    /// When the client sent it, for clock-skew correction.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_rfc3339")]
    pub sent_at: Option<i64>,
    /// Lifecycle stage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<Stage>,
    /// Money attached to the event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revenue: Option<f64>,
    /// Free-form properties (a JSON object).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub properties: Option<serde_json::Map<String, serde_json::Value>>,
}

mod opt_rfc3339 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(ms) => s.serialize_str(&crate::time::format_rfc3339(*ms)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum T {
            Ms(i64),
            Text(String),
        }
        match Option::<T>::deserialize(d)? {
            None => Ok(None),
            Some(T::Ms(ms)) => Ok(Some(ms)),
            Some(T::Text(t)) => crate::time::parse_rfc3339(&t)
                .map(Some)
                .map_err(serde::de::Error::custom),
        }
    }
}

/// A validated, normalised event: what the store keeps.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Idempotency key (assigned by the collector when the client sent none).
    pub id: Uuid,
    /// Event name, 1..=200 bytes.
    pub event: String,
    /// The identified person, if any.
    pub user_id: Option<String>,
    /// The anonymous person key, if any.
    pub anonymous_id: Option<String>,
    /// Skew-corrected time in Unix milliseconds.
    pub timestamp: i64,
    /// Lifecycle stage, if tagged.
    pub stage: Option<Stage>,
    /// Money attached, if any (finite).
    pub revenue: Option<f64>,
    /// Properties as compact JSON object text, if any.
    pub properties: Option<String>,
}

impl Event {
    /// The key every analysis uses: `user_id` if present, else `anonymous_id`.
    pub fn person(&self) -> &str {
        self.user_id
            .as_deref()
            .or(self.anonymous_id.as_deref())
            .unwrap_or_default()
    }

    /// One NDJSON line (without the newline) in wire form: what `tally export`
    /// writes and `tally import` reads back to the same event.
    pub fn to_json_line(&self) -> String {
        #[derive(Serialize)]
        struct Line<'a> {
            id: String,
            event: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            user_id: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            anonymous_id: Option<&'a str>,
            timestamp: String,
            #[serde(skip_serializing_if = "Option::is_none")]
            stage: Option<Stage>,
            #[serde(skip_serializing_if = "Option::is_none")]
            revenue: Option<f64>,
            #[serde(skip_serializing_if = "Option::is_none")]
            properties: Option<&'a RawValue>,
        }
        // Stored properties were validated as a JSON object on the way in.
        let properties = self
            .properties
            .as_deref()
            .and_then(|p| serde_json::from_str::<&RawValue>(p).ok());
        let line = Line {
            id: self.id.hyphenated().to_string(),
            event: &self.event,
            user_id: self.user_id.as_deref(),
            anonymous_id: self.anonymous_id.as_deref(),
            timestamp: format_rfc3339(self.timestamp),
            stage: self.stage,
            revenue: self.revenue,
            properties,
        };
        let json = serde_json::to_string(&line).expect("an event always serializes");
        escape_line_separators(json)
    }
}

/// JSON allows U+2028 and U+2029 raw inside strings, but JavaScript line
/// splitters (and pre-ES2019 `eval`) end a line there, so an NDJSON line
/// carries them escaped. Outside strings they cannot occur in JSON, so
/// replacing every one is exact.
fn escape_line_separators(json: String) -> String {
    if !json.contains(['\u{2028}', '\u{2029}']) {
        return json;
    }
    json.replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029")
}
