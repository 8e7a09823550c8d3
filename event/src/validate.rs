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
use crate::time::{MAX_FUTURE_MS, MAX_RFC3339_MS, MIN_EVENT_MS, format_rfc3339, parse_rfc3339};
use crate::wire::Event;

/// Longest event name, in bytes.
pub const MAX_EVENT_NAME_BYTES: usize = 200;
/// Longest `user_id` / `anonymous_id`, in bytes.
pub const MAX_PERSON_KEY_BYTES: usize = 255;
/// Largest `properties` object, as compact JSON.
pub const MAX_PROPERTIES_BYTES: usize = 32 * 1024;
/// Deepest nesting of `properties`, the object itself being level 1: a whole
/// event line then stays within the 128 levels that serde_json (and so the
/// SDK's [`crate::WireEvent`] or a `Value`) reads back.
pub const MAX_PROPERTIES_DEPTH: usize = 126;

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
    validate_event_json_defaults(text, received_at).map(|(e, _)| e)
}

/// Which optional fields of a valid event were filled in by the collector
/// rather than sent (`tally import` warns about them: an id it made up
/// makes a re-import store the line again).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Defaulted {
    /// No `id` was given: one was generated.
    pub id: bool,
    /// No `timestamp` was given: the time received was used.
    pub timestamp: bool,
}

/// Like [`validate_event_json`], also telling which fields were defaulted.
pub fn validate_event_json_defaults(
    text: &str,
    received_at: i64,
) -> Result<(Event, Defaulted), ValidationError> {
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
    let defaulted = Defaulted {
        id: fields.id.is_none(),
        timestamp: fields.timestamp.is_none(),
    };
    fields.validate(received_at).map(|e| (e, defaulted))
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
        // One bit per known field, set when the key is seen (even with a
        // `null` value), so that `{"event": null, "event": "x"}` is a duplicate.
        let mut seen = 0u16;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            let (bit, slot) = match key.as_ref() {
                "id" => (0, &mut f.id),
                "event" => (1, &mut f.event),
                "user_id" => (2, &mut f.user_id),
                "anonymous_id" => (3, &mut f.anonymous_id),
                "timestamp" => (4, &mut f.timestamp),
                "sent_at" => (5, &mut f.sent_at),
                "stage" => (6, &mut f.stage),
                "revenue" => (7, &mut f.revenue),
                "properties" => (8, &mut f.properties),
                other => {
                    map.next_value::<IgnoredAny>()?;
                    f.failures.push(format!(
                        "{}: unknown field (allowed: id, event, user_id, anonymous_id, \
                         timestamp, sent_at, stage, revenue, properties)",
                        truncate(other)
                    ));
                    continue;
                }
            };
            let value: &'de RawValue = map.next_value()?;
            if seen & (1 << bit) != 0 {
                f.failures.push(format!(
                    "{key}: duplicate field (each field may appear only once)"
                ));
            }
            seen |= 1 << bit;
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
                fail.push(format!(
                    "event: required (a string of 1..={MAX_EVENT_NAME_BYTES} bytes)"
                ));
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
            fail.push(format!(
                "user_id: required unless anonymous_id is given \
                 (a string of 1..={MAX_PERSON_KEY_BYTES} bytes)"
            ));
        }

        let sent_at = self
            .sent_at
            .and_then(|raw| check(fail, "sent_at", parse_time(raw)));
        // Without a valid sent_at the skew cannot be corrected, so the bounds
        // of timestamp are not checked (sent_at's failure is already reported).
        let sent_at_failed = self.sent_at.is_some() && sent_at.is_none();
        let timestamp = match self.timestamp {
            // Also when only sent_at is given: the time received needs no correction.
            None => Some(received_at),
            Some(raw) => check(fail, "timestamp", parse_time(raw)).and_then(|ts| {
                if sent_at_failed {
                    return None;
                }
                // Segment's rule: the client's clock is off by (sent_at - received_at).
                let corrected = match sent_at {
                    Some(sent) => received_at
                        .checked_sub(sent)
                        .and_then(|skew| ts.checked_add(skew)),
                    None => Some(ts),
                };
                let bounded = check_bounds(corrected, received_at).map_err(|e| {
                    // A small integer is almost always Unix seconds.
                    if sent_at.is_none() && looks_like_seconds(raw) {
                        format!(
                            "{} is before 2000-01-01: {} looks like Unix seconds, but \
                             integers are Unix milliseconds (expected milliseconds, \
                             {} for that many seconds, or an RFC 3339 string)",
                            format_rfc3339(ts),
                            raw.get(),
                            ts.saturating_mul(1000)
                        )
                    } else {
                        e
                    }
                });
                check(fail, "timestamp", bounded)
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
            stage,
            revenue,
            properties,
        })
    }
}

fn check<T>(failures: &mut Vec<String>, field: &str, r: Result<T, String>) -> Option<T> {
    r.map_err(|why| failures.push(format!("{field}: {why}")))
        .ok()
}

/// A JSON string's value; `expected` describes the field for the error.
fn as_string(raw: &RawValue, expected: &str) -> Result<String, String> {
    if !raw.get().starts_with('"') {
        return Err(format!(
            "must be a string, got {} (expected {expected})",
            kind(raw)
        ));
    }
    serde_json::from_str(raw.get())
        .map_err(|e| format!("invalid string ({e}) (expected {expected})"))
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

const UUID_FORM: &str = "a hyphenated UUID like 0190a6e4-7c3b-7d2e-9f1a-2b3c4d5e6f70";

fn parse_id(raw: &RawValue) -> Result<Uuid, String> {
    let s = as_string(raw, UUID_FORM)?;
    let b = s.as_bytes();
    let hyphenated = b.len() == 36
        && b.iter().enumerate().all(|(i, c)| {
            if matches!(i, 8 | 13 | 18 | 23) {
                *c == b'-'
            } else {
                c.is_ascii_hexdigit()
            }
        });
    if !hyphenated {
        return Err(format!(
            "'{}' is not a hyphenated UUID (expected {UUID_FORM})",
            truncate(&s)
        ));
    }
    Uuid::parse_str(&s).map_err(|e| format!("invalid UUID ({e}) (expected {UUID_FORM})"))
}

fn parse_name(raw: &RawValue) -> Result<String, String> {
    let s = as_string(raw, "a string of 1..=200 bytes without control characters")?;
    if s.is_empty() || s.len() > MAX_EVENT_NAME_BYTES {
        return Err(format!(
            "is {} bytes long (expected 1..={MAX_EVENT_NAME_BYTES} bytes)",
            s.len()
        ));
    }
    // `char::is_control` is exactly the Unicode general category Cc.
    if let Some(c) = s.chars().find(|c| c.is_control()) {
        return Err(format!(
            "contains the control character U+{:04X} (expected no control characters, Unicode Cc)",
            u32::from(c)
        ));
    }
    Ok(s)
}

fn parse_person_key(raw: &RawValue) -> Result<String, String> {
    let s = as_string(raw, "a string of 1..=255 bytes")?;
    if s.is_empty() || s.len() > MAX_PERSON_KEY_BYTES {
        return Err(format!(
            "is {} bytes long (expected 1..={MAX_PERSON_KEY_BYTES} bytes)",
            s.len()
        ));
    }
    Ok(s)
}

const TIME_FORM: &str =
    "an RFC 3339 string like 2026-01-31T12:00:00.000Z or integer Unix milliseconds";

fn parse_time(raw: &RawValue) -> Result<i64, String> {
    let text = raw.get();
    let first = text.as_bytes()[0];
    if first == b'"' {
        let s = as_string(raw, TIME_FORM)?;
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!(
                "'{}' is a string of digits, not RFC 3339 \
                 (expected {TIME_FORM}; milliseconds must be a JSON number)",
                truncate(&s)
            ));
        }
        return parse_rfc3339(&s).map_err(|why| {
            format!(
                "'{}' is not RFC 3339: {why} (expected {TIME_FORM})",
                truncate(&s)
            )
        });
    }
    if first == b'-' || first.is_ascii_digit() {
        if text.contains(['.', 'e', 'E']) {
            return Err(format!(
                "{} is not an integer (expected {TIME_FORM})",
                truncate(text)
            ));
        }
        return text.parse::<i64>().map_err(|_| {
            format!(
                "{} is out of range for Unix milliseconds (expected {TIME_FORM})",
                truncate(text)
            )
        });
    }
    Err(format!("must not be {} (expected {TIME_FORM})", kind(raw)))
}

/// A JSON integer below 10^11: as milliseconds that is before 1973, as
/// seconds anything up to the year 5138.
fn looks_like_seconds(raw: &RawValue) -> bool {
    raw.get()
        .parse::<i64>()
        .is_ok_and(|n| (1..100_000_000_000).contains(&n))
}

fn check_bounds(ts: Option<i64>, received_at: i64) -> Result<i64, String> {
    let ts = ts.ok_or(
        "out of range after clock-skew correction (expected a time between \
         2000-01-01T00:00:00Z and 1 hour after the time received)",
    )?;
    if ts < MIN_EVENT_MS {
        return Err(format!(
            "{} is before 2000-01-01 (expected 2000-01-01T00:00:00Z or later, \
             after clock-skew correction)",
            format_rfc3339(ts)
        ));
    }
    if ts > MAX_RFC3339_MS {
        return Err(format!(
            "{ts} ms is after 9999-12-31T23:59:59.999Z (expected a time RFC 3339 can \
             express, at most 1 hour after the time received)"
        ));
    }
    let latest = received_at.saturating_add(MAX_FUTURE_MS);
    if ts > latest {
        return Err(format!(
            "{} is more than 1 hour in the future (expected at most {}, 1 hour after \
             the time received, after clock-skew correction)",
            format_rfc3339(ts),
            format_rfc3339(latest)
        ));
    }
    Ok(ts)
}

const STAGES: &str =
    "one of discovery, acquisition, activation, engagement, retention, revenue, referral";

fn parse_stage(raw: &RawValue) -> Result<Stage, String> {
    let s = as_string(raw, STAGES)?;
    s.parse()
        .map_err(|()| format!("'{}' is not a stage (expected {STAGES})", truncate(&s)))
}

fn parse_revenue(raw: &RawValue) -> Result<f64, String> {
    let text = raw.get();
    let first = text.as_bytes()[0];
    if first != b'-' && !first.is_ascii_digit() {
        return Err(format!(
            "must be a number, got {} (expected a finite number)",
            kind(raw)
        ));
    }
    match text.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(format!(
            "{} is not a finite number (expected a finite number)",
            truncate(text)
        )),
    }
}

fn parse_properties(raw: &RawValue) -> Result<String, String> {
    if !raw.get().starts_with('{') {
        return Err(format!(
            "must be a JSON object, got {} (expected a JSON object)",
            kind(raw)
        ));
    }
    let (compact, depth) = minify(raw.get());
    if compact.len() > MAX_PROPERTIES_BYTES {
        return Err(format!(
            "is {} bytes as compact JSON (expected at most {MAX_PROPERTIES_BYTES} bytes, 32 KiB)",
            compact.len()
        ));
    }
    if depth > MAX_PROPERTIES_DEPTH {
        return Err(format!(
            "is nested {depth} levels deep (expected at most {MAX_PROPERTIES_DEPTH} levels, \
             counting the properties object itself)"
        ));
    }
    // The grammar was checked when the event was split into fields; this
    // second pass decodes every string and number, so that what is stored
    // can be read back by any JSON reader (as a serde_json `Value`).
    serde_json::from_str::<AnyValue>(&compact).map_err(|e| {
        format!(
            "holds a value that cannot be read back ({e}) (expected valid Unicode strings \
             and numbers within the range of a double)"
        )
    })?;
    Ok(compact)
}

/// Accepts any JSON value, decoding (and so checking) every string and
/// number without building a tree.
struct AnyValue;

impl<'de> serde::Deserialize<'de> for AnyValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<AnyValue, D::Error> {
        d.deserialize_any(AnyVisitor)
    }
}

struct AnyVisitor;

impl<'de> Visitor<'de> for AnyVisitor {
    type Value = AnyValue;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<AnyValue, E> {
        Ok(AnyValue)
    }

    fn visit_i64<E>(self, _: i64) -> Result<AnyValue, E> {
        Ok(AnyValue)
    }

    fn visit_u64<E>(self, _: u64) -> Result<AnyValue, E> {
        Ok(AnyValue)
    }

    fn visit_f64<E>(self, _: f64) -> Result<AnyValue, E> {
        Ok(AnyValue)
    }

    fn visit_str<E>(self, _: &str) -> Result<AnyValue, E> {
        Ok(AnyValue)
    }

    fn visit_unit<E>(self) -> Result<AnyValue, E> {
        Ok(AnyValue)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<AnyValue, A::Error> {
        while seq.next_element::<AnyValue>()?.is_some() {}
        Ok(AnyValue)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<AnyValue, A::Error> {
        while map.next_key::<AnyValue>()?.is_some() {
            map.next_value::<AnyValue>()?;
        }
        Ok(AnyValue)
    }
}

/// Removes insignificant whitespace from valid JSON text, and measures how
/// deeply its arrays and objects nest (a flat object is 1).
fn minify(json: &str) -> (String, usize) {
    let mut out = String::with_capacity(json.len());
    let mut in_string = false;
    let mut escaped = false;
    let (mut depth, mut max_depth) = (0usize, 0usize);
    let mut chars = json.char_indices();
    while let Some((i, c)) = chars.next() {
        if in_string {
            if escaped {
                escaped = false;
                // `\u2028` and `\u2029` are kept as the raw characters, so
                // what is stored (and its size) is the same whether they
                // arrived raw or escaped, as `tally export` writes them.
                let separator = match json.get(i..i + 5) {
                    Some("u2028") => Some('\u{2028}'),
                    Some("u2029") => Some('\u{2029}'),
                    _ => None,
                };
                if let Some(sep) = separator {
                    out.pop();
                    out.push(sep);
                    for _ in 0..4 {
                        chars.next();
                    }
                } else {
                    out.push(c);
                }
            } else {
                out.push(c);
                if c == '\\' {
                    escaped = true;
                } else if c == '"' {
                    in_string = false;
                }
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if !matches!(c, ' ' | '\t' | '\n' | '\r') {
            match c {
                '{' | '[' => {
                    depth += 1;
                    max_depth = max_depth.max(depth);
                }
                '}' | ']' => depth = depth.saturating_sub(1),
                _ => {}
            }
            out.push(c);
        }
    }
    (out, max_depth)
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
            (r#"{"a b":[1,"x \" y"]}"#.to_string(), 2)
        );
        assert_eq!(
            minify("{\"\\\\\" : \"{[ \\\"\",\n\t\"b\"\r:{}}"),
            (r#"{"\\":"{[ \"","b":{}}"#.to_string(), 2)
        );
        assert_eq!(minify("{}"), ("{}".to_string(), 1));
        assert_eq!(
            minify(r#"{"\u2028" : "a\u2029\\u2028\u0041"}"#),
            (
                "{\"\u{2028}\":\"a\u{2029}\\\\u2028\\u0041\"}".to_string(),
                1
            )
        );
    }

    #[test]
    fn any_value_checks_strings_numbers_and_depth() {
        let ok = |s: &str| serde_json::from_str::<AnyValue>(s).is_ok();
        assert!(ok(
            r#"{"a":[1,-2,3.5,1e308,true,null,"x",{"\ud83d\ude00":{}}]}"#
        ));
        assert!(!ok(r#"{"a":1e309}"#));
        assert!(!ok(r#"{"a":"\udc00"}"#));
        assert!(!ok(r#"{"\ud800x":1}"#));
    }
}
