//! SPEC §1 validation: raw JSON text in, a normalised [`Event`] or a list of
//! field errors out.
//!
//! Fields are read as borrowed [`RawValue`]s and checked one by one, rather
//! than deserialized into a typed struct, so that every failure names its
//! field and rule, unknown fields are reported by name, and `properties`
//! is never turned into a tree of `Value`s just to be written out again.

use std::fmt;

use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::stage::Stage;
use crate::time::{MAX_FUTURE_MS, MIN_EVENT_MS, format_rfc3339, parse_rfc3339};
use crate::wire::Event;

/// Longest event name, in bytes.
pub const MAX_EVENT_NAME_BYTES: usize = 200;
/// Longest `user_id` / `anonymous_id`, in bytes.
pub const MAX_PERSON_KEY_BYTES: usize = 255;
/// Largest `properties` object, as compact JSON.
pub const MAX_PROPERTIES_BYTES: usize = 32 * 1024;

/// Why an event was rejected: one entry per failed rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ValidationError {
    /// Each failure as `field: rule`.
    pub failures: Vec<String>,
}

impl ValidationError {
    fn one(msg: impl Into<String>) -> Self {
        ValidationError {
            failures: vec![msg.into()],
        }
    }
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.failures.join("; "))
    }
}

/// Validates one event given as JSON text. `received_at` (Unix ms) is the
/// default timestamp and the reference for skew correction and the
/// "not more than 1 hour in the future" rule.
pub fn validate_event_json(text: &str, received_at: i64) -> Result<Event, ValidationError> {
    let mut de = serde_json::Deserializer::from_str(text);
    let fields = match de
        .deserialize_map(FieldsVisitor)
        .and_then(|f| de.end().map(|()| f))
    {
        Ok(f) => f,
        Err(e) if e.is_data() => {
            return Err(ValidationError::one(format!(
                "event must be a JSON object ({e})"
            )));
        }
        Err(e) => return Err(ValidationError::one(format!("malformed JSON: {e}"))),
    };
    fields.validate(received_at)
}

/// Validates one event already split out of a batch.
pub fn validate_event(raw: &RawValue, received_at: i64) -> Result<Event, ValidationError> {
    validate_event_json(raw.get(), received_at)
}

/// The top-level fields of one event, as raw JSON text. `null` is absent.
#[derive(Default)]
struct Fields<'a> {
    id: Option<&'a RawValue>,
    event: Option<&'a RawValue>,
    user_id: Option<&'a RawValue>,
    anonymous_id: Option<&'a RawValue>,
    timestamp: Option<&'a RawValue>,
    sent_at: Option<&'a RawValue>,
    stage: Option<&'a RawValue>,
    revenue: Option<&'a RawValue>,
    properties: Option<&'a RawValue>,
    failures: Vec<String>,
}

struct FieldsVisitor;

impl<'de> Visitor<'de> for FieldsVisitor {
    type Value = Fields<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an event object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields<'de>, A::Error> {
        let mut f = Fields::default();
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            let slot = match key.as_ref() {
                "id" => &mut f.id,
                "event" => &mut f.event,
                "user_id" => &mut f.user_id,
                "anonymous_id" => &mut f.anonymous_id,
                "timestamp" => &mut f.timestamp,
                "sent_at" => &mut f.sent_at,
                "stage" => &mut f.stage,
                "revenue" => &mut f.revenue,
                "properties" => &mut f.properties,
                other => {
                    map.next_value::<IgnoredAny>()?;
                    f.failures.push(format!(
                        "{other}: unknown field (allowed: id, event, user_id, anonymous_id, \
                         timestamp, sent_at, stage, revenue, properties)"
                    ));
                    continue;
                }
            };
            let value: &'de RawValue = map.next_value()?;
            if slot.is_some() {
                f.failures.push(format!("{key}: field appears twice"));
            }
            *slot = (value.get() != "null").then_some(value);
        }
        Ok(f)
    }
}

impl Fields<'_> {
    fn validate(mut self, received_at: i64) -> Result<Event, ValidationError> {
        let fail = &mut self.failures;

        let id = match self.id {
            None => Some(Uuid::now_v7()),
            Some(raw) => check(fail, "id", parse_id(raw)),
        };

        let event = match self.event {
            None => {
                fail.push("event: required".into());
                None
            }
            Some(raw) => check(fail, "event", parse_name(raw)),
        };

        let user_id = self
            .user_id
            .and_then(|raw| check(fail, "user_id", parse_person_key(raw)));
        let anonymous_id = self
            .anonymous_id
            .and_then(|raw| check(fail, "anonymous_id", parse_person_key(raw)));
        if self.user_id.is_none() && self.anonymous_id.is_none() {
            fail.push("user_id: required unless anonymous_id is given".into());
        }

        let sent_at = self
            .sent_at
            .and_then(|raw| check(fail, "sent_at", parse_time(raw)));
        let timestamp = match self.timestamp {
            None => Some(received_at),
            Some(raw) => check(fail, "timestamp", parse_time(raw)).and_then(|ts| {
                // Segment's rule: the client's clock is off by (sent_at - received_at).
                let corrected = match sent_at {
                    Some(sent) => ts.checked_add(received_at - sent),
                    None => Some(ts),
                };
                check(fail, "timestamp", check_bounds(corrected, received_at))
            }),
        };

        let stage = self
            .stage
            .and_then(|raw| check(fail, "stage", parse_stage(raw)));
        let revenue = self
            .revenue
            .and_then(|raw| check(fail, "revenue", parse_revenue(raw)));
        let properties = self
            .properties
            .and_then(|raw| check(fail, "properties", parse_properties(raw)));

        if !self.failures.is_empty() {
            return Err(ValidationError {
                failures: self.failures,
            });
        }
        let (Some(id), Some(event), Some(timestamp)) = (id, event, timestamp) else {
            unreachable!("a missing required value always records a failure");
        };
        Ok(Event {
            id,
            event,
            user_id,
            anonymous_id,
            timestamp,
            stage: self.stage.and(stage),
            revenue,
            properties,
        })
    }
}

fn check<T>(failures: &mut Vec<String>, field: &str, r: Result<T, String>) -> Option<T> {
    r.map_err(|why| failures.push(format!("{field}: {why}")))
        .ok()
}

fn as_string(raw: &RawValue) -> Result<String, String> {
    if !raw.get().starts_with('"') {
        return Err(format!("must be a string, got {}", kind(raw)));
    }
    serde_json::from_str(raw.get()).map_err(|e| format!("invalid string ({e})"))
}

fn kind(raw: &RawValue) -> &'static str {
    match raw.get().as_bytes().first() {
        Some(b'"') => "a string",
        Some(b'{') => "an object",
        Some(b'[') => "an array",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        _ => "a number",
    }
}

fn parse_id(raw: &RawValue) -> Result<Uuid, String> {
    let s = as_string(raw)?;
    let b = s.as_bytes();
    let hyphenated = b.len() == 36
        && [8, 13, 18, 23].iter().all(|&i| b[i] == b'-')
        && b.iter()
            .enumerate()
            .all(|(i, c)| matches!(i, 8 | 13 | 18 | 23) || c.is_ascii_hexdigit());
    if !hyphenated {
        return Err(format!(
            "'{}' is not a hyphenated UUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)",
            truncate(&s)
        ));
    }
    Uuid::parse_str(&s).map_err(|e| format!("invalid UUID ({e})"))
}

fn parse_name(raw: &RawValue) -> Result<String, String> {
    let s = as_string(raw)?;
    if s.is_empty() || s.len() > MAX_EVENT_NAME_BYTES {
        return Err(format!(
            "must be 1..={MAX_EVENT_NAME_BYTES} bytes, got {}",
            s.len()
        ));
    }
    if let Some(c) = s.chars().find(|c| c.is_control()) {
        return Err(format!(
            "must not contain control characters (found U+{:04X})",
            u32::from(c)
        ));
    }
    Ok(s)
}

fn parse_person_key(raw: &RawValue) -> Result<String, String> {
    let s = as_string(raw)?;
    if s.is_empty() || s.len() > MAX_PERSON_KEY_BYTES {
        return Err(format!(
            "must be 1..={MAX_PERSON_KEY_BYTES} bytes, got {}",
            s.len()
        ));
    }
    Ok(s)
}

fn parse_time(raw: &RawValue) -> Result<i64, String> {
    let text = raw.get();
    let first = text.as_bytes()[0];
    if first == b'"' {
        let s = as_string(raw)?;
        return parse_rfc3339(&s)
            .map_err(|why| format!("'{}' is not RFC 3339: {why}", truncate(&s)));
    }
    if first == b'-' || first.is_ascii_digit() {
        if text.contains(['.', 'e', 'E']) {
            return Err(format!(
                "{text} is not an integer: Unix milliseconds must be a whole number"
            ));
        }
        return text
            .parse::<i64>()
            .map_err(|_| format!("{text} is out of range for Unix milliseconds"));
    }
    Err(format!(
        "must be an RFC 3339 string or integer Unix milliseconds, got {}",
        kind(raw)
    ))
}

fn check_bounds(ts: Option<i64>, received_at: i64) -> Result<i64, String> {
    let ts = ts.ok_or("out of range after clock-skew correction")?;
    if ts < MIN_EVENT_MS {
        return Err(format!(
            "{} is before 2000-01-01T00:00:00Z",
            format_rfc3339(ts)
        ));
    }
    if ts > received_at + MAX_FUTURE_MS {
        return Err(format!(
            "{} is more than 1 hour in the future (received at {}, after clock-skew correction)",
            format_rfc3339(ts),
            format_rfc3339(received_at)
        ));
    }
    Ok(ts)
}

fn parse_stage(raw: &RawValue) -> Result<Stage, String> {
    let s = as_string(raw)?;
    s.parse().map_err(|()| {
        format!(
            "'{}' is not a stage (expected one of discovery, acquisition, activation, \
             engagement, retention, revenue, referral)",
            truncate(&s)
        )
    })
}

fn parse_revenue(raw: &RawValue) -> Result<f64, String> {
    let text = raw.get();
    let first = text.as_bytes()[0];
    if first != b'-' && !first.is_ascii_digit() {
        return Err(format!("must be a number, got {}", kind(raw)));
    }
    match text.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(format!("{text} is not a finite number")),
    }
}

fn parse_properties(raw: &RawValue) -> Result<String, String> {
    if !raw.get().starts_with('{') {
        return Err(format!("must be a JSON object, got {}", kind(raw)));
    }
    let compact = minify(raw.get());
    if compact.len() > MAX_PROPERTIES_BYTES {
        return Err(format!(
            "must be at most {MAX_PROPERTIES_BYTES} bytes as compact JSON, got {}",
            compact.len()
        ));
    }
    Ok(compact)
}

/// Removes insignificant whitespace from valid JSON text.
fn minify(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    let mut in_string = false;
    let mut escaped = false;
    for c in json.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if !matches!(c, ' ' | '\t' | '\n' | '\r') {
            out.push(c);
        }
    }
    out
}

fn truncate(s: &str) -> &str {
    match s.char_indices().nth(64) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minify_keeps_string_contents() {
        assert_eq!(
            minify(r#"{ "a b" : [1, "x \" y"] }"#),
            r#"{"a b":[1,"x \" y"]}"#
        );
    }
}
