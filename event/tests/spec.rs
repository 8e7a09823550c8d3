//! SPEC §1 (Events), rule by rule: for each rule, acceptance at the boundary,
//! rejection just past it, and an error message that names the field and
//! the rule. Property tests at the end.

use proptest::prelude::*;
use serde_json::{Map, Value, json};
use tally_event::time::{MAX_FUTURE_MS, MIN_EVENT_MS, format_rfc3339, parse_rfc3339};
use tally_event::{Event, Stage, ValidationError, WireEvent, validate_event, validate_event_json};
use uuid::Uuid;

/// The time the collector received the event: 2025-06-15T12:00:00Z.
const R: i64 = 1_749_988_800_000;
const HOUR: i64 = 3_600_000;

const STAGE_NAMES: [&str; 7] = [
    "discovery",
    "acquisition",
    "activation",
    "engagement",
    "retention",
    "revenue",
    "referral",
];

// ---------------------------------------------------------------- helpers

fn validate(text: &str) -> Result<Event, ValidationError> {
    validate_event_json(text, R)
}

fn accept(text: &str) -> Event {
    validate(text).unwrap_or_else(|e| panic!("expected acceptance of {text}\n  got: {e}"))
}

fn reject(text: &str) -> Vec<String> {
    match validate(text) {
        Ok(ev) => panic!("expected rejection of {text}\n  got: {ev:?}"),
        Err(e) => {
            assert!(!e.failures.is_empty());
            e.failures
        }
    }
}

/// Asserts that `text` is rejected with exactly one failure, that it is
/// `field: what is wrong (what is expected)` and mentions every word.
fn reject_field(text: &str, field: &str, words: &[&str]) -> String {
    let failures = reject(text);
    assert_eq!(
        failures.len(),
        1,
        "expected exactly one failure for {text}, got {failures:?}"
    );
    let msg = failures.into_iter().next().unwrap();
    assert_message(&msg, field, words);
    msg
}

fn assert_message(msg: &str, field: &str, words: &[&str]) {
    assert!(
        msg.starts_with(&format!("{field}: ")),
        "message should name the field {field}: {msg}"
    );
    assert!(
        msg.contains('(') && msg.ends_with(')'),
        "message should say what is expected, in parentheses: {msg}"
    );
    for w in words {
        assert!(msg.contains(w), "message should mention {w:?}: {msg}");
    }
}

/// A JSON string literal.
fn s(x: &str) -> String {
    serde_json::to_string(x).unwrap()
}

/// A valid minimal event plus one more field given as raw JSON text.
fn with(field: &str, raw: &str) -> String {
    format!(r#"{{"event":"signup","user_id":"u1","{field}":{raw}}}"#)
}

/// A valid minimal event plus several fields given as raw JSON text.
fn with_all(fields: &[(&str, &str)]) -> String {
    let mut out = String::from(r#"{"event":"signup","user_id":"u1""#);
    for (k, v) in fields {
        out.push_str(&format!(",{}:{v}", s(k)));
    }
    out.push('}');
    out
}

/// An event with the given name.
fn named(name: &str) -> String {
    format!(r#"{{"event":{},"user_id":"u1"}}"#, s(name))
}

fn ms(rfc3339: &str) -> i64 {
    parse_rfc3339(rfc3339).unwrap()
}

#[test]
fn received_time_constant_is_what_it_claims() {
    assert_eq!(ms("2025-06-15T12:00:00Z"), R);
    assert_eq!(ms("2000-01-01T00:00:00Z"), MIN_EVENT_MS);
    assert_eq!(MAX_FUTURE_MS, HOUR);
}

// ---------------------------------------------------------------- a valid event

#[test]
fn minimal_event_is_accepted_with_defaults() {
    let ev = accept(r#"{"event":"signup","user_id":"u1"}"#);
    assert_eq!(ev.event, "signup");
    assert_eq!(ev.user_id.as_deref(), Some("u1"));
    assert_eq!(ev.anonymous_id, None);
    assert_eq!(ev.timestamp, R, "timestamp defaults to the time received");
    assert_eq!(ev.stage, None);
    assert_eq!(ev.revenue, None);
    assert_eq!(ev.properties, None);
    assert_eq!(ev.id.get_version_num(), 7);
}

#[test]
fn full_event_is_accepted_with_every_value() {
    let ev = accept(
        r#"{
            "id": "0190a6e4-7c3b-7d2e-9f1a-2b3c4d5e6f70",
            "event": "order_completed",
            "user_id": "user-42",
            "anonymous_id": "anon-7",
            "timestamp": "2025-06-15T11:30:00.250Z",
            "sent_at": "2025-06-15T12:00:00Z",
            "stage": "revenue",
            "revenue": 49.9,
            "properties": {"plan": "pro", "items": [1, 2, {"sku": "a"}]}
        }"#,
    );
    assert_eq!(
        ev.id,
        Uuid::parse_str("0190a6e4-7c3b-7d2e-9f1a-2b3c4d5e6f70").unwrap()
    );
    assert_eq!(ev.event, "order_completed");
    assert_eq!(ev.user_id.as_deref(), Some("user-42"));
    assert_eq!(ev.anonymous_id.as_deref(), Some("anon-7"));
    assert_eq!(ev.timestamp, R - 30 * 60_000 + 250);
    assert_eq!(ev.stage, Some(Stage::Revenue));
    assert_eq!(ev.revenue, Some(49.9));
    assert_eq!(
        ev.properties.as_deref(),
        Some(r#"{"plan":"pro","items":[1,2,{"sku":"a"}]}"#)
    );
    assert_eq!(ev.person(), "user-42");
}

#[test]
fn validate_event_takes_a_raw_value_from_a_batch() {
    #[derive(serde::Deserialize)]
    struct Batch<'a> {
        #[serde(borrow)]
        batch: Vec<&'a serde_json::value::RawValue>,
    }
    let text = r#"{"batch":[{"event":"a","user_id":"u"}, {"event":"","user_id":"u"}, 5]}"#;
    let b: Batch<'_> = serde_json::from_str(text).unwrap();
    assert_eq!(validate_event(b.batch[0], R).unwrap().event, "a");
    assert!(validate_event(b.batch[1], R).unwrap_err().failures[0].starts_with("event: "));
    assert!(validate_event(b.batch[2], R).is_err());
}

// ---------------------------------------------------------------- event

#[test]
fn event_is_required() {
    let msg = reject_field(r#"{"user_id":"u1"}"#, "event", &["required"]);
    assert!(msg.contains("200"), "{msg}");
}

#[test]
fn event_null_is_absent_so_required() {
    reject_field(r#"{"event":null,"user_id":"u1"}"#, "event", &["required"]);
}

#[test]
fn event_must_be_a_string() {
    for (raw, kind) in [
        ("42", "number"),
        ("-1.5", "number"),
        ("true", "boolean"),
        ("false", "boolean"),
        ("[]", "array"),
        (r#"["signup"]"#, "array"),
        ("{}", "object"),
    ] {
        let text = format!(r#"{{"event":{raw},"user_id":"u1"}}"#);
        reject_field(&text, "event", &["must be a string", kind]);
    }
}

#[test]
fn event_length_is_1_to_200_bytes() {
    reject_field(&named(""), "event", &["0 bytes", "1..=200 bytes"]);
    assert_eq!(accept(&named("a")).event, "a");
    let max = "a".repeat(200);
    assert_eq!(accept(&named(&max)).event, max);
    reject_field(&named(&"a".repeat(201)), "event", &["201 bytes", "1..=200"]);
    reject_field(&named(&"a".repeat(10_000)), "event", &["10000 bytes"]);
}

#[test]
fn event_length_counts_utf8_bytes_not_characters() {
    // 2-byte characters: 100 of them are exactly 200 bytes.
    let two = "é".repeat(100);
    assert_eq!(two.len(), 200);
    assert_eq!(accept(&named(&two)).event, two);
    reject_field(&named(&format!("{two}a")), "event", &["201 bytes"]);
    // 101 characters, 202 bytes: rejected although far below 200 chars... no: above.
    reject_field(&named(&"é".repeat(101)), "event", &["202 bytes"]);
    // 3-byte characters: 66 × 3 + 2 = 200.
    let three = format!("{}ab", "€".repeat(66));
    assert_eq!(three.len(), 200);
    accept(&named(&three));
    let three_over = "€".repeat(67); // 201 bytes, 67 characters
    reject_field(&named(&three_over), "event", &["201 bytes"]);
    // 4-byte characters: 50 × 4 = 200; one more byte is too many.
    let four = "😀".repeat(50);
    assert_eq!(four.len(), 200);
    accept(&named(&four));
    reject_field(&named(&format!("{four}a")), "event", &["201 bytes"]);
    // 150 characters but 300 bytes: rejected although under 200 characters.
    reject_field(&named(&"é".repeat(150)), "event", &["300 bytes"]);
}

#[test]
fn event_length_is_measured_after_unescaping() {
    // "\u00e9" is 6 bytes of JSON text but 2 bytes of name.
    let text = format!(r#"{{"event":"{}","user_id":"u1"}}"#, r"\u00e9".repeat(100));
    assert_eq!(accept(&text).event, "é".repeat(100));
    let text = format!(r#"{{"event":"{}","user_id":"u1"}}"#, r"\u0041".repeat(201));
    reject_field(&text, "event", &["201 bytes"]);
    // A surrogate pair is one 4-byte character.
    let ev = accept(r#"{"event":"\ud83d\ude00","user_id":"u1"}"#);
    assert_eq!(ev.event, "😀");
}

#[test]
fn event_rejects_every_unicode_control_character() {
    for c in [
        '\u{0}', '\u{1}', '\t', '\n', '\r', '\u{1b}', '\u{1f}', '\u{7f}', '\u{80}', '\u{85}',
        '\u{9f}',
    ] {
        let name = format!("sign{c}up");
        let msg = reject_field(&named(&name), "event", &["control character"]);
        assert!(
            msg.contains(&format!("U+{:04X}", u32::from(c))),
            "message should show the character: {msg}"
        );
        // Alone and at either end too.
        reject_field(&named(&c.to_string()), "event", &["control"]);
        reject_field(&named(&format!("{c}x")), "event", &["control"]);
        reject_field(&named(&format!("x{c}")), "event", &["control"]);
    }
    // Escaped forms decode to the same characters.
    for esc in [
        r"\u0000", r"\n", r"\t", r"\r", r"\b", r"\f", r"\u007f", r"\u0085",
    ] {
        let text = format!(r#"{{"event":"a{esc}b","user_id":"u1"}}"#);
        reject_field(&text, "event", &["control"]);
    }
}

#[test]
fn event_accepts_characters_that_are_not_cc() {
    // Space, format characters (Cf), separators (Zl/Zp/Zs), private use,
    // non-characters, and the characters right next to the Cc ranges.
    for name in [
        "sign up",
        "a\u{20}b",
        "\u{7e}",
        "\u{a0}",
        "\u{ad}",
        "\u{200b}",
        "\u{200d}",
        "\u{2028}",
        "\u{2029}",
        "\u{feff}",
        "\u{e000}",
        "\u{fffe}",
        "\u{10ffff}",
        "注册",
        "👩‍💻 signed up",
        "Order Completed",
        "a\"b\\c/d",
    ] {
        assert_eq!(accept(&named(name)).event, name);
    }
}

// ---------------------------------------------------------------- user_id / anonymous_id

#[test]
fn a_person_key_is_required() {
    let msg = reject_field(
        r#"{"event":"signup"}"#,
        "user_id",
        &["required", "anonymous_id"],
    );
    assert!(msg.contains("255"), "{msg}");
    reject_field(
        r#"{"event":"signup","user_id":null,"anonymous_id":null}"#,
        "user_id",
        &["required"],
    );
    reject_field(
        r#"{"event":"signup","user_id":null}"#,
        "user_id",
        &["required"],
    );
}

#[test]
fn the_person_key_is_user_id_else_anonymous_id() {
    let ev = accept(r#"{"event":"e","anonymous_id":"a1"}"#);
    assert_eq!(ev.user_id, None);
    assert_eq!(ev.anonymous_id.as_deref(), Some("a1"));
    assert_eq!(ev.person(), "a1");

    let ev = accept(r#"{"event":"e","user_id":"u1","anonymous_id":"a1"}"#);
    assert_eq!(ev.user_id.as_deref(), Some("u1"));
    assert_eq!(ev.anonymous_id.as_deref(), Some("a1"));
    assert_eq!(ev.person(), "u1");

    let ev = accept(r#"{"event":"e","user_id":null,"anonymous_id":"a1"}"#);
    assert_eq!(ev.user_id, None);
    assert_eq!(ev.person(), "a1");

    let ev = accept(r#"{"event":"e","user_id":"u1","anonymous_id":null}"#);
    assert_eq!(ev.anonymous_id, None);
    assert_eq!(ev.person(), "u1");

    let ev = accept(r#"{"event":"e","user_id":"u1"}"#);
    assert_eq!(ev.person(), "u1");
}

fn person_event(field: &str, value: &str) -> String {
    let other = if field == "user_id" {
        "anonymous_id"
    } else {
        "user_id"
    };
    // The other key is valid, so only `field` can fail.
    format!(r#"{{"event":"e","{other}":"ok","{field}":{}}}"#, s(value))
}

#[test]
fn person_keys_are_1_to_255_bytes() {
    for field in ["user_id", "anonymous_id"] {
        reject_field(
            &person_event(field, ""),
            field,
            &["0 bytes", "1..=255 bytes"],
        );
        accept(&person_event(field, "x"));
        let max = "x".repeat(255);
        let ev = accept(&person_event(field, &max));
        let got = if field == "user_id" {
            ev.user_id
        } else {
            ev.anonymous_id
        };
        assert_eq!(got.as_deref(), Some(max.as_str()));
        reject_field(
            &person_event(field, &"x".repeat(256)),
            field,
            &["256 bytes", "1..=255"],
        );
        // Multi-byte characters at the byte boundary.
        let two = format!("{}x", "é".repeat(127));
        assert_eq!(two.len(), 255);
        accept(&person_event(field, &two));
        reject_field(
            &person_event(field, &"é".repeat(128)),
            field,
            &["256 bytes"],
        );
        let four = format!("{}xyz", "😀".repeat(63));
        assert_eq!(four.len(), 255);
        accept(&person_event(field, &four));
        reject_field(
            &person_event(field, &"😀".repeat(64)),
            field,
            &["256 bytes"],
        );
    }
}

#[test]
fn person_keys_alone_follow_the_same_rules() {
    reject_field(
        r#"{"event":"e","anonymous_id":""}"#,
        "anonymous_id",
        &["0 bytes"],
    );
    reject_field(r#"{"event":"e","user_id":""}"#, "user_id", &["0 bytes"]);
    let long = format!(r#"{{"event":"e","anonymous_id":{}}}"#, s(&"a".repeat(256)));
    reject_field(&long, "anonymous_id", &["256 bytes"]);
}

#[test]
fn an_invalid_user_id_is_not_replaced_by_anonymous_id() {
    // A present but invalid user_id rejects the event even though
    // anonymous_id alone would have been enough.
    reject_field(
        r#"{"event":"e","user_id":"","anonymous_id":"a1"}"#,
        "user_id",
        &["0 bytes"],
    );
    reject_field(
        r#"{"event":"e","user_id":7,"anonymous_id":"a1"}"#,
        "user_id",
        &["must be a string"],
    );
}

#[test]
fn person_keys_must_be_strings() {
    for field in ["user_id", "anonymous_id"] {
        for (raw, kind) in [
            ("42", "number"),
            ("true", "boolean"),
            ("[\"a\"]", "array"),
            ("{}", "object"),
        ] {
            let text = format!(r#"{{"event":"e","{field}":{raw}}}"#);
            let failures = reject(&text);
            let msg = failures
                .iter()
                .find(|m| m.starts_with(&format!("{field}: ")))
                .unwrap_or_else(|| panic!("no {field} failure in {failures:?}"));
            assert_message(msg, field, &["must be a string", kind]);
        }
    }
}

#[test]
fn person_keys_may_hold_any_unicode() {
    // SPEC only limits their length.
    for key in ["üser", "用户-1", "a b", "😀", "tab\there", "x@example.com"] {
        assert_eq!(
            accept(&person_event("user_id", key)).user_id.as_deref(),
            Some(key)
        );
    }
}

// ---------------------------------------------------------------- timestamp: formats

fn ts_string(t: &str) -> String {
    with("timestamp", &s(t))
}

fn ts_raw(raw: &str) -> String {
    with("timestamp", raw)
}

#[test]
fn timestamp_defaults_to_the_time_received() {
    assert_eq!(accept(r#"{"event":"e","user_id":"u"}"#).timestamp, R);
    assert_eq!(accept(&ts_raw("null")).timestamp, R);
}

#[test]
fn timestamp_accepts_rfc3339_forms() {
    let base = ms("2025-06-15T11:00:00Z");
    for (t, want) in [
        ("2025-06-15T11:00:00Z", base),
        ("2025-06-15t11:00:00Z", base),
        ("2025-06-15T11:00:00z", base),
        ("2025-06-15t11:00:00z", base),
        ("2025-06-15T11:00:00+00:00", base),
        ("2025-06-15T11:00:00-00:00", base),
        ("2025-06-15T13:00:00+02:00", base),
        ("2025-06-15t13:00:00+02:00", base),
        ("2025-06-15T05:30:00-05:30", base),
        ("2025-06-16T01:00:00+14:00", base),
        ("2025-06-14T23:00:00-12:00", base),
        ("2025-06-15T10:59:00-00:01", base),
        ("2025-06-16T10:59:00+23:59", base),
        ("2025-06-15T11:00:00.5Z", base + 500),
        ("2025-06-15T11:00:00.05Z", base + 50),
        ("2025-06-15T11:00:00.123Z", base + 123),
        ("2025-06-15T11:00:00.000Z", base),
        ("2025-06-15T11:00:00.999Z", base + 999),
        ("2025-06-15T13:00:00.250+02:00", base + 250),
        ("2025-06-15T11:00:00.123456Z", base + 123),
        ("2025-06-15T11:00:00.123456789z", base + 123),
        ("2025-06-15T11:00:00.000000001Z", base),
        (
            "2025-06-15T11:00:00.12399999999999999999999999999999Z",
            base + 123,
        ),
    ] {
        assert_eq!(accept(&ts_string(t)).timestamp, want, "{t}");
    }
}

#[test]
fn timestamp_truncates_digits_below_the_millisecond() {
    let base = ms("2025-06-15T11:00:00Z");
    for (t, want) in [
        ("2025-06-15T11:00:00.0009Z", base),
        ("2025-06-15T11:00:00.0019Z", base + 1),
        ("2025-06-15T11:00:00.9999Z", base + 999),
        ("2025-06-15T11:00:00.999999999Z", base + 999),
        ("2025-06-15T11:00:00.1235Z", base + 123),
        ("2025-06-15T11:00:00.9995+00:00", base + 999),
    ] {
        assert_eq!(accept(&ts_string(t)).timestamp, want, "{t} must truncate");
    }
}

#[test]
fn timestamp_accepts_calendar_edge_dates() {
    assert_eq!(
        accept(&ts_string("2024-02-29T00:00:00Z")).timestamp,
        1_709_164_800_000
    );
    assert_eq!(
        accept(&ts_string("2000-02-29T12:00:00Z")).timestamp,
        ms("2000-02-29T12:00:00Z")
    );
    accept(&ts_string("2024-12-31T23:59:59.999Z"));
    accept(&ts_string("2025-01-01T00:00:00Z"));
}

#[test]
fn timestamp_rejects_what_is_not_strict_rfc3339() {
    for t in [
        "2025-06-15 11:00:00Z",       // space separator
        "2025-06-15 11:00:00+02:00",  // space separator with offset
        "2025-06-15T11:59:60Z",       // leap second
        "2016-12-31T23:59:60Z",       // a real leap second
        "2025-06-15T11:59:60.5Z",     // leap second with fraction
        "2025-06-15T11:00:00",        // no offset
        "2025-06-15T11:00:00.123",    // no offset
        "2025-06-15T11:00:00+0200",   // offset without colon
        "2025-06-15T11:00:00+02",     // hour-only offset
        "2025-06-15T11:00:00+2:00",   // unpadded offset
        "2025-06-15T11:00:00+24:00",  // offset hour out of range
        "2025-06-15T11:00:00+02:60",  // offset minute out of range
        "2025-06-15T11:00:00UTC",     // zone name
        "2025-06-15T11:00:00 Z",      // space before zone
        "2025-06-15T11:00Z",          // no seconds
        "2025-06-15T11Z",             // no minutes
        "2025-06-15",                 // date only
        "2025-6-15T11:00:00Z",        // unpadded month
        "2025-06-5T11:00:00Z",        // unpadded day
        "2025-06-15T1:00:00Z",        // unpadded hour
        "25-06-15T11:00:00Z",         // two-digit year
        "+2025-06-15T11:00:00Z",      // signed year
        "2025/06/15T11:00:00Z",       // wrong date separator
        "2025-06-15T11.00.00Z",       // wrong time separator
        "2025-06-15_11:00:00Z",       // wrong separator
        "2025-06-15T11:00:00.Z",      // empty fraction
        "2025-06-15T11:00:00,123Z",   // comma fraction
        "2025-06-15T11:00:00.12aZ",   // junk in fraction
        "2025-06-15T11:00:00Zjunk",   // trailing junk
        "2025-06-15T11:00:00Z ",      // trailing space
        " 2025-06-15T11:00:00Z",      // leading space
        "2025-06-15T11:00:00ZZ",      // doubled zone
        "2025-06-15T11:00:00+02:00Z", // offset and zone
        "2025-13-01T00:00:00Z",       // month 13
        "2025-00-10T00:00:00Z",       // month 0
        "2025-06-00T00:00:00Z",       // day 0
        "2025-06-31T00:00:00Z",       // June has 30 days
        "2025-02-29T00:00:00Z",       // not a leap year
        "1900-02-29T00:00:00Z",       // not a leap year either
        "2025-06-15T24:00:00Z",       // hour 24
        "2025-06-15T11:60:00Z",       // minute 60
        "2025-06-15T11:00:61Z",       // second 61
        "2025-06-15T11:00:99Z",       // second 99
        "2025-06-15Tab:00:00Z",       // letters
        "２０２５-06-15T11:00:00Z",   // non-ASCII digits
        "Sun, 15 Jun 2025 11:00:00 GMT",
        "now",
        "",
        "T",
    ] {
        let msg = reject_field(&ts_string(t), "timestamp", &["RFC 3339"]);
        assert!(msg.contains("Unix milliseconds"), "{msg}");
    }
}

#[test]
fn timestamp_rejects_digit_strings() {
    // Unix milliseconds must be a JSON integer, not a string of digits.
    for t in ["1749985200000", "1749985200", "0", "20250615"] {
        reject_field(&ts_string(t), "timestamp", &["RFC 3339", "JSON number"]);
    }
    reject_field(&ts_string("1749985200000.0"), "timestamp", &["RFC 3339"]);
    reject_field(&ts_string("-1749985200000"), "timestamp", &["RFC 3339"]);
}

#[test]
fn timestamp_accepts_integer_milliseconds() {
    for t in [
        MIN_EVENT_MS,
        MIN_EVENT_MS + 1,
        1_700_000_000_000,
        R - 1,
        R,
        R + 1,
        R + HOUR,
    ] {
        assert_eq!(accept(&ts_raw(&t.to_string())).timestamp, t);
    }
}

#[test]
fn timestamp_rejects_floats() {
    for raw in [
        "1.7e12",
        "1.7E12",
        "1.7e+12",
        "17e11",
        "1700000000000.0",
        "1700000000000.5",
        "1700000000000e0",
        "1749988800000.000",
        "-1.5",
        "1e400",
    ] {
        reject_field(&ts_raw(raw), "timestamp", &[raw, "not an integer"]);
    }
}

#[test]
fn timestamp_rejects_out_of_range_integers() {
    for raw in [
        "9223372036854775808",
        "-9223372036854775809",
        "100000000000000000000000000000",
    ] {
        reject_field(&ts_raw(raw), "timestamp", &["out of range"]);
    }
    // In range for i64 but far outside the bounds.
    for raw in ["9223372036854775807", "-9223372036854775808"] {
        reject_field(&ts_raw(raw), "timestamp", &[]);
    }
}

#[test]
fn timestamp_rejects_negative_and_small_integers() {
    for raw in ["-1", "-0", "0", "1", "946684799999", "-1749988800000"] {
        reject_field(&ts_raw(raw), "timestamp", &["before 2000-01-01"]);
    }
}

#[test]
fn timestamp_in_unix_seconds_says_so() {
    // Issue 9: an integer below 1e11 is most likely seconds.
    let msg = reject_field(
        &ts_raw("1749988800"),
        "timestamp",
        &["looks like Unix seconds", "milliseconds", "1749988800000"],
    );
    assert!(msg.contains("before 2000-01-01"), "{msg}");
    for raw in ["1", "99999999999"] {
        reject_field(&ts_raw(raw), "timestamp", &["looks like Unix seconds"]);
    }
    // Larger integers and negative ones are not mistaken for seconds.
    for raw in ["946684799999", "-1", "0"] {
        let msg = reject_field(&ts_raw(raw), "timestamp", &["before 2000-01-01"]);
        assert!(!msg.contains("seconds"), "{raw}: {msg}");
    }
}

#[test]
fn a_time_without_zone_says_the_zone_is_missing() {
    for raw in [r#""2026-01-31T12:00:00""#, r#""2026-01-31T12:00:00.5""#] {
        let msg = reject_field(&ts_raw(raw), "timestamp", &["time zone is missing"]);
        assert!(!msg.contains("too short"), "{msg}");
    }
}

#[test]
fn timestamp_rejects_other_json_types() {
    for (raw, kind) in [
        ("true", "boolean"),
        ("false", "boolean"),
        ("[]", "array"),
        ("[1749988800000]", "array"),
        ("{}", "object"),
        (r#"{"ms":1749988800000}"#, "object"),
    ] {
        reject_field(&ts_raw(raw), "timestamp", &[kind, "RFC 3339"]);
    }
}

// ---------------------------------------------------------------- timestamp: bounds

#[test]
fn timestamp_upper_bound_is_received_plus_one_hour_inclusive() {
    // Integer form.
    assert_eq!(accept(&ts_raw(&(R + HOUR).to_string())).timestamp, R + HOUR);
    let msg = reject_field(
        &ts_raw(&(R + HOUR + 1).to_string()),
        "timestamp",
        &["future", "1 hour", "2025-06-15T13:00:00Z"],
    );
    assert!(msg.contains("2025-06-15T13:00:00.001Z"), "{msg}");
    reject_field(
        &ts_raw(&(R + 2 * HOUR).to_string()),
        "timestamp",
        &["future"],
    );
    // String form, also through an offset and a truncated fraction.
    accept(&ts_string("2025-06-15T13:00:00Z"));
    accept(&ts_string("2025-06-15T13:00:00.000999Z"));
    accept(&ts_string("2025-06-15T15:00:00+02:00"));
    accept(&ts_string("2025-06-15T12:59:59.999Z"));
    reject_field(
        &ts_string("2025-06-15T13:00:00.001Z"),
        "timestamp",
        &["future"],
    );
    reject_field(
        &ts_string("2025-06-15T15:00:00.001+02:00"),
        "timestamp",
        &["future"],
    );
    reject_field(&ts_string("2025-06-15T13:00:01Z"), "timestamp", &["future"]);
    reject_field(&ts_string("2099-01-01T00:00:00Z"), "timestamp", &["future"]);
    reject_field(
        &ts_string("9999-12-31T23:59:59.999Z"),
        "timestamp",
        &["future"],
    );
}

#[test]
fn timestamp_lower_bound_is_2000_01_01_inclusive() {
    assert_eq!(
        accept(&ts_raw(&MIN_EVENT_MS.to_string())).timestamp,
        MIN_EVENT_MS
    );
    let msg = reject_field(
        &ts_raw(&(MIN_EVENT_MS - 1).to_string()),
        "timestamp",
        &["before 2000-01-01", "2000-01-01T00:00:00Z"],
    );
    assert!(msg.contains("1999-12-31T23:59:59.999Z"), "{msg}");
    assert_eq!(
        accept(&ts_string("2000-01-01T00:00:00Z")).timestamp,
        MIN_EVENT_MS
    );
    assert_eq!(
        accept(&ts_string("2000-01-01T01:00:00+01:00")).timestamp,
        MIN_EVENT_MS
    );
    assert_eq!(
        accept(&ts_string("1999-12-31T23:00:00-01:00")).timestamp,
        MIN_EVENT_MS
    );
    reject_field(
        &ts_string("1999-12-31T23:59:59.999Z"),
        "timestamp",
        &["before 2000-01-01"],
    );
    reject_field(
        &ts_string("2000-01-01T00:59:59.999+01:00"),
        "timestamp",
        &["before 2000-01-01"],
    );
    // Truncation, not rounding: 23:59:59.9999 is 1 ms before 2000.
    reject_field(
        &ts_string("1999-12-31T23:59:59.9999Z"),
        "timestamp",
        &["before 2000-01-01"],
    );
    reject_field(&ts_string("1970-01-01T00:00:00Z"), "timestamp", &["before"]);
    reject_field(&ts_string("0000-01-01T00:00:00Z"), "timestamp", &["before"]);
}

#[test]
fn bounds_follow_the_time_received() {
    let early = MIN_EVENT_MS + HOUR;
    // Received at 2000-01-01T01:00Z: 02:00Z is the latest accepted.
    let text = ts_raw(&(early + HOUR).to_string());
    assert_eq!(
        validate_event_json(&text, early).unwrap().timestamp,
        early + HOUR
    );
    let text = ts_raw(&(early + HOUR + 1).to_string());
    assert!(validate_event_json(&text, early).is_err());
}

// ---------------------------------------------------------------- sent_at

#[test]
fn sent_at_corrects_a_client_clock_that_is_two_hours_ahead() {
    // The client's clock reads 14:00 when the collector's reads 12:00; the
    // event happened 5 minutes before sending, by the client's clock.
    let text = with_all(&[
        ("timestamp", &s("2025-06-15T13:55:00Z")),
        ("sent_at", &s("2025-06-15T14:00:00Z")),
    ]);
    assert_eq!(accept(&text).timestamp, R - 5 * 60_000);
    // Without sent_at the same timestamp is more than 1 hour in the future.
    reject_field(&ts_string("2025-06-15T13:55:00Z"), "timestamp", &["future"]);
    // Integer forms and mixed forms behave the same.
    let text = with_all(&[
        ("timestamp", &(R + 2 * HOUR - 300_000).to_string()),
        ("sent_at", &(R + 2 * HOUR).to_string()),
    ]);
    assert_eq!(accept(&text).timestamp, R - 300_000);
    let text = with_all(&[
        ("timestamp", &(R + 2 * HOUR - 300_000).to_string()),
        ("sent_at", &s("2025-06-15T16:00:00+02:00")),
    ]);
    assert_eq!(accept(&text).timestamp, R - 300_000);
}

#[test]
fn sent_at_corrects_a_client_clock_that_is_behind() {
    // Client clock 3 days behind: timestamp + (received - sent).
    let text = with_all(&[
        ("timestamp", &(R - 3 * 24 * HOUR - 1000).to_string()),
        ("sent_at", &(R - 3 * 24 * HOUR).to_string()),
    ]);
    assert_eq!(accept(&text).timestamp, R - 1000);
}

#[test]
fn sent_at_equal_to_received_changes_nothing() {
    let text = with_all(&[("timestamp", "1700000000000"), ("sent_at", &R.to_string())]);
    assert_eq!(accept(&text).timestamp, 1_700_000_000_000);
}

#[test]
fn the_upper_bound_is_checked_after_skew_correction() {
    // Client 1 hour behind: a timestamp 30 min ahead of the collector's
    // clock is 1.5 h ahead once corrected, and rejected.
    let text = with_all(&[
        ("timestamp", &(R + 30 * 60_000).to_string()),
        ("sent_at", &(R - HOUR).to_string()),
    ]);
    reject_field(&text, "timestamp", &["future", "clock-skew correction"]);
    // Corrected to exactly received + 1 h: accepted; 1 ms more: rejected.
    let text = with_all(&[
        ("timestamp", &(R + 2 * HOUR).to_string()),
        ("sent_at", &(R + HOUR).to_string()),
    ]);
    assert_eq!(accept(&text).timestamp, R + HOUR);
    let text = with_all(&[
        ("timestamp", &(R + 2 * HOUR + 1).to_string()),
        ("sent_at", &(R + HOUR).to_string()),
    ]);
    reject_field(&text, "timestamp", &["future"]);
    // A timestamp in the client's future (sent_at < timestamp) is fine as
    // long as the corrected time is within the hour.
    let text = with_all(&[
        ("timestamp", &(R + 10 * HOUR + HOUR).to_string()),
        ("sent_at", &(R + 10 * HOUR).to_string()),
    ]);
    assert_eq!(accept(&text).timestamp, R + HOUR);
}

#[test]
fn the_lower_bound_is_checked_after_skew_correction() {
    // Raw timestamp before 2000, corrected to exactly 2000-01-01: accepted.
    let text = with_all(&[
        ("timestamp", &s("1999-12-31T23:00:00Z")),
        ("sent_at", &(R - HOUR).to_string()),
    ]);
    assert_eq!(accept(&text).timestamp, MIN_EVENT_MS);
    // Corrected to 1 ms before: rejected.
    let text = with_all(&[
        ("timestamp", &(MIN_EVENT_MS - HOUR - 1).to_string()),
        ("sent_at", &(R - HOUR).to_string()),
    ]);
    reject_field(&text, "timestamp", &["before 2000-01-01"]);
    // Raw timestamp after 2000, corrected to before it: rejected.
    let text = with_all(&[
        ("timestamp", &MIN_EVENT_MS.to_string()),
        ("sent_at", &(R + 1).to_string()),
    ]);
    reject_field(&text, "timestamp", &["before 2000-01-01"]);
}

#[test]
fn sent_at_without_timestamp_means_the_time_received() {
    for sent in [
        (R + 5 * HOUR).to_string(),
        (R - 5 * HOUR).to_string(),
        s("2025-06-15T09:00:00Z"),
        s("2000-01-01T00:00:00Z"),
    ] {
        assert_eq!(accept(&with("sent_at", &sent)).timestamp, R);
        let text = with_all(&[("sent_at", &sent), ("timestamp", "null")]);
        assert_eq!(accept(&text).timestamp, R);
    }
}

#[test]
fn sent_at_null_means_no_correction() {
    let text = with_all(&[("timestamp", "1700000000000"), ("sent_at", "null")]);
    assert_eq!(accept(&text).timestamp, 1_700_000_000_000);
}

#[test]
fn sent_at_accepts_the_same_formats_as_timestamp() {
    for sent in [
        "\"2025-06-15T12:00:00Z\"",
        "\"2025-06-15t12:00:00z\"",
        "\"2025-06-15T14:00:00+02:00\"",
        "\"2025-06-15T12:00:00.000999Z\"",
        "1749988800000",
    ] {
        let text = with_all(&[("timestamp", "1700000000000"), ("sent_at", sent)]);
        assert_eq!(accept(&text).timestamp, 1_700_000_000_000, "{sent}");
    }
}

#[test]
fn sent_at_rejects_what_timestamp_rejects() {
    for (raw, words) in [
        (s("2025-06-15 12:00:00Z"), &["RFC 3339"][..]),
        (s("2025-06-15T11:59:60Z"), &["RFC 3339"]),
        (s("2025-06-15T12:00:00"), &["RFC 3339"]),
        (s("1749988800000"), &["RFC 3339"]),
        ("1.7e12".to_string(), &["not an integer"]),
        ("1749988800000.0".to_string(), &["not an integer"]),
        ("9223372036854775808".to_string(), &["out of range"]),
        ("true".to_string(), &["boolean"]),
        ("{}".to_string(), &["object"]),
    ] {
        // Alone, and with a timestamp that is fine uncorrected but would be
        // out of bounds after any guess: only sent_at is blamed.
        reject_field(&with("sent_at", &raw), "sent_at", words);
        let text = with_all(&[("timestamp", &R.to_string()), ("sent_at", &raw)]);
        reject_field(&text, "sent_at", words);
        let text = with_all(&[
            ("timestamp", &(R + 5 * HOUR).to_string()),
            ("sent_at", &raw),
        ]);
        reject_field(&text, "sent_at", words);
    }
}

#[test]
fn extreme_skew_is_rejected_without_overflow() {
    for (ts, sent) in [
        (R, i64::MIN),
        (R, i64::MAX),
        (i64::MAX, i64::MIN),
        (i64::MIN, i64::MAX),
        (i64::MAX, -1),
        (i64::MIN, 1),
        (MIN_EVENT_MS, -9_000_000_000_000_000_000),
    ] {
        let text = with_all(&[
            ("timestamp", &ts.to_string()),
            ("sent_at", &sent.to_string()),
        ]);
        reject_field(&text, "timestamp", &[]);
    }
    // Extreme received times do not overflow either.
    for received in [i64::MIN, -1, 0, i64::MAX] {
        let text = with_all(&[
            ("timestamp", &i64::MAX.to_string()),
            ("sent_at", &i64::MIN.to_string()),
        ]);
        assert!(validate_event_json(&text, received).is_err());
        let text = ts_raw(&i64::MAX.to_string());
        let _ = validate_event_json(&text, received);
        let _ = validate_event_json(r#"{"event":"e","user_id":"u"}"#, received);
    }
}

// ---------------------------------------------------------------- stage

#[test]
fn stage_accepts_exactly_the_seven_names() {
    for (name, stage) in STAGE_NAMES.iter().zip(Stage::ALL) {
        assert_eq!(accept(&with("stage", &s(name))).stage, Some(stage));
        assert_eq!(stage.as_str(), *name);
    }
    assert_eq!(accept(&with("stage", "null")).stage, None);
}

#[test]
fn stage_rejects_anything_else_with_the_list() {
    let mut bad: Vec<String> = [
        "Discovery",
        "DISCOVERY",
        "Revenue",
        " discovery",
        "discovery ",
        "discover",
        "revenues",
        "awareness",
        "churn",
        "",
        "null",
        "1",
        "discovery\u{0}",
    ]
    .iter()
    .map(|x| s(x))
    .collect();
    bad.extend(["1", "0", "true", "[\"discovery\"]", "{}"].map(String::from));
    for raw in bad {
        reject_field(&with("stage", &raw), "stage", &STAGE_NAMES);
    }
}

// ---------------------------------------------------------------- revenue

#[test]
fn revenue_accepts_finite_numbers() {
    for (raw, want) in [
        ("0", 0.0),
        ("-0", 0.0),
        ("0.0", 0.0),
        ("49.9", 49.9),
        ("19.99", 19.99),
        ("42", 42.0),
        ("-12.5", -12.5),
        ("-100", -100.0),
        ("1e3", 1000.0),
        ("1E-2", 0.01),
        ("2.5e+2", 250.0),
        ("1.7976931348623157e308", f64::MAX),
        ("-1.7976931348623157e308", f64::MIN),
        ("5e-324", 5e-324),
        ("1e-400", 0.0),
        ("12345678901234567890", 12_345_678_901_234_567_890.0),
    ] {
        assert_eq!(accept(&with("revenue", raw)).revenue, Some(want), "{raw}");
    }
    assert_eq!(accept(&with("revenue", "null")).revenue, None);
}

#[test]
fn revenue_rejects_non_numbers() {
    for (raw, kind) in [
        ("\"19.99\"", "string"),
        ("\"1e400\"", "string"),
        ("\"NaN\"", "string"),
        ("true", "boolean"),
        ("false", "boolean"),
        ("[19.99]", "array"),
        (r#"{"amount":19.99}"#, "object"),
    ] {
        reject_field(
            &with("revenue", raw),
            "revenue",
            &["must be a number", kind],
        );
    }
}

#[test]
fn revenue_rejects_numbers_that_are_not_finite() {
    for raw in ["1e400", "-1e400", "1.8e308", "1e99999", "-1E400"] {
        let msg = reject_field(&with("revenue", raw), "revenue", &[raw, "finite"]);
        assert!(msg.contains("not a finite number"), "{msg}");
    }
}

#[test]
fn a_huge_revenue_does_not_fail_the_other_fields() {
    // The other fields are still checked and reported...
    let text = r#"{"event":"","revenue":1e400,"stage":"x","properties":[]}"#;
    let failures = reject(text);
    for field in ["event", "user_id", "revenue", "stage", "properties"] {
        assert!(
            failures
                .iter()
                .any(|m| m.starts_with(&format!("{field}: "))),
            "{field} missing from {failures:?}"
        );
    }
    assert_eq!(failures.len(), 5, "{failures:?}");
    // ... and valid ones are not blamed.
    let text =
        r#"{"event":"buy","user_id":"u","stage":"revenue","revenue":1e400,"properties":{"a":1}}"#;
    reject_field(text, "revenue", &["finite"]);
}

// ---------------------------------------------------------------- properties

fn props(raw: &str) -> String {
    with("properties", raw)
}

/// A `properties` object whose compact form is exactly `n` bytes.
fn props_of_len(n: usize) -> String {
    // {"k":"…"} is 8 bytes plus the padding.
    let p = format!(r#"{{"k":"{}"}}"#, "x".repeat(n - 8));
    assert_eq!(p.len(), n);
    p
}

#[test]
fn properties_accepts_objects_and_stores_them_compact() {
    assert_eq!(accept(&props("{}")).properties.as_deref(), Some("{}"));
    assert_eq!(accept(&props("{ }")).properties.as_deref(), Some("{}"));
    assert_eq!(accept(&props("null")).properties, None);
    let nested = r#"{"a":{"b":{"c":[1,2.5,-3,true,false,null,"s",{"d":[]}]}},"e":""}"#;
    assert_eq!(accept(&props(nested)).properties.as_deref(), Some(nested));
    let pretty =
        "{\n  \"plan\" : \"pro\",\r\n\t\"seats\": [ 1, 2 ],\n  \"note\": \"a  b\\t\\\" }\"\n}";
    assert_eq!(
        accept(&props(pretty)).properties.as_deref(),
        Some(r#"{"plan":"pro","seats":[1,2],"note":"a  b\t\" }"}"#)
    );
}

#[test]
fn properties_keep_key_order_and_content() {
    let p = r#"{"z":1,"a":"é😀","m":"\u00e9","n":1.50,"big":12345678901234567890123}"#;
    assert_eq!(accept(&props(p)).properties.as_deref(), Some(p));
}

#[test]
fn properties_compact_form_matches_serde_json() {
    let value = json!({
        "plan": "pro",
        "nested": {"list": [1, 2, {"x": "y z"}], "empty": {}},
        "unicode": "注册 😀",
        "escaped": "line\nbreak \"quoted\" back\\slash",
        "num": -1.25,
    });
    let pretty = serde_json::to_string_pretty(&value).unwrap();
    let ev = accept(&props(&pretty));
    assert_eq!(
        ev.properties.as_deref(),
        Some(serde_json::to_string(&value).unwrap().as_str())
    );
    let back: Value = serde_json::from_str(ev.properties.as_deref().unwrap()).unwrap();
    assert_eq!(back, value);
}

#[test]
fn properties_must_be_an_object() {
    for (raw, kind) in [
        ("[]", "array"),
        (r#"[{"a":1}]"#, "array"),
        (r#""{\"a\":1}""#, "string"),
        ("\"\"", "string"),
        ("42", "number"),
        ("-1", "number"),
        ("true", "boolean"),
    ] {
        reject_field(&props(raw), "properties", &["must be a JSON object", kind]);
    }
}

#[test]
fn properties_limit_is_32_kib_of_compact_json() {
    let ok = accept(&props(&props_of_len(32_768)));
    assert_eq!(ok.properties.as_ref().map(String::len), Some(32_768));
    let msg = reject_field(
        &props(&props_of_len(32_769)),
        "properties",
        &["32769 bytes", "32768", "compact JSON"],
    );
    assert!(msg.contains("at most"), "{msg}");
    reject_field(
        &props(&props_of_len(100_000)),
        "properties",
        &["100000 bytes"],
    );
}

#[test]
fn properties_limit_ignores_insignificant_whitespace() {
    // Pretty-printed: far over 32 KiB as sent, exactly 32 KiB compact.
    let mut m = Map::new();
    let mut compact_len = 2; // {}
    let mut i = 0;
    while compact_len < 32_768 - 40 {
        let k = format!("key{i:05}");
        let v = "v".repeat(20);
        compact_len += k.len() + v.len() + 5 + usize::from(i > 0); // "k":"v" and a comma
        m.insert(k, Value::String(v));
        i += 1;
    }
    // Pad the last value so the compact form is exactly 32768 bytes.
    let compact = serde_json::to_string(&m).unwrap();
    assert_eq!(compact.len(), compact_len);
    m.insert("pad".into(), Value::String(String::new()));
    let pad = 32_768 - serde_json::to_string(&m).unwrap().len();
    m.insert("pad".into(), Value::String("p".repeat(pad)));
    let compact = serde_json::to_string(&m).unwrap();
    assert_eq!(compact.len(), 32_768);
    let pretty = serde_json::to_string_pretty(&m).unwrap();
    assert!(pretty.len() > 34_000, "{}", pretty.len());
    let ev = accept(&props(&pretty));
    assert_eq!(ev.properties.as_deref(), Some(compact.as_str()));
    // One byte more is rejected, however it is printed.
    m.insert("pad".into(), Value::String("p".repeat(pad + 1)));
    let pretty = serde_json::to_string_pretty(&m).unwrap();
    reject_field(&props(&pretty), "properties", &["32769 bytes"]);
}

#[test]
fn properties_limit_counts_bytes_of_multibyte_text() {
    // 8 bytes of framing + 16380 × 2 bytes = 32768.
    let p = format!(r#"{{"k":"{}"}}"#, "é".repeat(16_380));
    assert_eq!(p.len(), 32_768);
    accept(&props(&p));
    let p = format!(r#"{{"k":"{}x"}}"#, "é".repeat(16_380));
    reject_field(&props(&p), "properties", &["32769 bytes"]);
}

#[test]
fn properties_allow_reasonable_nesting() {
    let depth = 100;
    let p = format!(r#"{{"a":{}1{}}}"#, "[".repeat(depth), "]".repeat(depth));
    assert_eq!(accept(&props(&p)).properties.as_deref(), Some(p.as_str()));
    let p = format!("{}{{}}{}", r#"{"a":"#.repeat(100), "}".repeat(100));
    assert_eq!(accept(&props(&p)).properties.as_deref(), Some(p.as_str()));
}

#[test]
fn properties_that_no_json_reader_could_load_are_rejected() {
    // Numbers beyond a double, lone surrogates, absurd nesting: valid by the
    // JSON grammar but not readable back as a serde_json Value.
    for p in [
        r#"{"x":1e400}"#.to_string(),
        r#"{"x":[1,-1e400]}"#.to_string(),
        r#"{"x":"\ud800"}"#.to_string(),
        r#"{"\udc00":1}"#.to_string(),
    ] {
        reject_field(&props(&p), "properties", &["cannot be read back"]);
    }
    let p = format!(r#"{{"x":{}{}}}"#, "[".repeat(500), "]".repeat(500));
    reject_field(&props(&p), "properties", &["501 levels", "at most 126"]);
    // The largest double is fine.
    let ev = accept(&props(r#"{"max":1.7976931348623157e308,"min":-5e-324}"#));
    let v: Value = serde_json::from_str(ev.properties.as_deref().unwrap()).unwrap();
    assert_eq!(v["max"].as_f64(), Some(f64::MAX));
    // A valid surrogate pair is one character.
    accept(&props(r#"{"x":"\ud83d\ude00"}"#));
}

/// `properties` nested `depth` levels deep, the object itself being 1.
fn props_of_depth(depth: usize) -> String {
    format!(
        r#"{{"a":{}"leaf"{}}}"#,
        r#"{"b":["#.repeat((depth - 1) / 2) + &"[".repeat((depth - 1) % 2),
        "]".repeat((depth - 1) % 2) + &"]}".repeat((depth - 1) / 2)
    )
}

#[test]
fn properties_nesting_limit_keeps_exports_readable() {
    for depth in [1, 2, 3, 125, 126] {
        let p = props_of_depth(depth);
        let ev = accept(&props(&p));
        assert_eq!(ev.properties.as_deref(), Some(p.as_str()));
        // The whole exported line, one level deeper, is still readable.
        let line = ev.to_json_line();
        serde_json::from_str::<Value>(&line).unwrap();
        serde_json::from_str::<WireEvent>(&line).unwrap();
    }
    for depth in [127, 128, 1000] {
        let msg = reject_field(
            &props(&props_of_depth(depth)),
            "properties",
            &["at most 126 levels"],
        );
        assert!(msg.contains(&format!("{depth} levels deep")), "{msg}");
    }
    // Brackets inside strings do not count.
    let p = format!(r#"{{"a":"{}"}}"#, "[{".repeat(500));
    accept(&props(&p));
}

#[test]
fn properties_do_not_affect_other_fields() {
    let ev = accept(&with_all(&[
        ("properties", r#"{"event":"x","user_id":"y","timestamp":0}"#),
        ("stage", "\"activation\""),
    ]));
    assert_eq!(ev.event, "signup");
    assert_eq!(ev.user_id.as_deref(), Some("u1"));
    assert_eq!(ev.timestamp, R);
}

// ---------------------------------------------------------------- id

fn with_id(id: &str) -> String {
    with("id", &s(id))
}

const ID: &str = "0190a6e4-7c3b-7d2e-9f1a-2b3c4d5e6f70";

#[test]
fn id_is_assigned_as_v7_when_absent() {
    let a = accept(r#"{"event":"e","user_id":"u"}"#);
    let b = accept(r#"{"event":"e","user_id":"u","id":null}"#);
    assert_eq!(a.id.get_version_num(), 7);
    assert_eq!(b.id.get_version_num(), 7);
    assert_ne!(a.id, b.id, "each event gets its own id");
}

#[test]
fn id_accepts_hyphenated_uuids_case_insensitively() {
    let want = Uuid::parse_str(ID).unwrap();
    assert_eq!(accept(&with_id(ID)).id, want);
    assert_eq!(accept(&with_id(&ID.to_uppercase())).id, want);
    assert_eq!(
        accept(&with_id("0190A6e4-7C3b-7d2E-9f1A-2b3C4d5E6f70")).id,
        want
    );
    // Any version (v4 from other SDKs, the nil UUID) is a hyphenated UUID.
    let v4 = "f47ac10b-58cc-4372-a567-0e02b2c3d479";
    assert_eq!(accept(&with_id(v4)).id.get_version_num(), 4);
    assert_eq!(
        accept(&with_id("00000000-0000-0000-0000-000000000000")).id,
        Uuid::nil()
    );
    assert_eq!(
        accept(&with_id("FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF")).id,
        Uuid::max()
    );
}

#[test]
fn upper_case_id_is_exported_lower_case() {
    let ev = accept(&with_id(&ID.to_uppercase()));
    let line: Value = serde_json::from_str(&ev.to_json_line()).unwrap();
    assert_eq!(line["id"], ID);
}

#[test]
fn id_rejects_other_uuid_forms() {
    let simple = ID.replace('-', "");
    for bad in [
        simple.clone(),
        format!("{{{ID}}}"),
        format!("urn:uuid:{ID}"),
        format!("URN:UUID:{ID}"),
        format!(" {ID}"),
        format!("{ID} "),
        format!("{ID}0"),
        ID[..35].to_string(),
        ID.replacen('0', "g", 1),
        ID.replacen('-', "_", 1),
        "0190a6e47-c3b-7d2e-9f1a-2b3c4d5e6f70".to_string(),
        "0190a6e4-7c3b7-d2e-9f1a-2b3c4d5e6f70".to_string(),
        "0190a6e4-7c3b-7d2e-9f1a2-b3c4d5e6f70".to_string(),
        "0190a6e4--7c3b-7d2e-9f1a-2b3c4d5e6f7".to_string(),
        "+190a6e4-7c3b-7d2e-9f1a-2b3c4d5e6f70".to_string(),
        "0190a6é-7c3b-7d2e-9f1a-2b3c4d5e6f70".to_string(),
        "not-a-uuid".to_string(),
        String::new(),
    ] {
        reject_field(&with_id(&bad), "id", &["hyphenated UUID"]);
    }
    for raw in [
        "42",
        "true",
        "[]",
        "{}",
        "340282366920938463463374607431768211455",
    ] {
        reject_field(
            &with("id", raw),
            "id",
            &["must be a string", "hyphenated UUID"],
        );
    }
}

// ---------------------------------------------------------------- object shape

#[test]
fn unknown_fields_are_rejected_by_name() {
    for field in [
        "foo",
        "Event",
        "userId",
        "user",
        "type",
        "context",
        "received_at",
        "messageId",
        "ID",
        " event",
        "events",
        "",
    ] {
        let text = with(field, "1");
        let msg = reject_field(&text, field, &["unknown field", "allowed"]);
        for allowed in [
            "id",
            "event",
            "user_id",
            "anonymous_id",
            "timestamp",
            "sent_at",
            "stage",
            "revenue",
            "properties",
        ] {
            assert!(msg.contains(allowed), "{msg}");
        }
    }
    // Even with a null value, and whatever the value's shape.
    reject_field(&with("foo", "null"), "foo", &["unknown field"]);
    reject_field(&with("foo", r#"{"a":[1e400]}"#), "foo", &["unknown field"]);
    // Two unknown fields: both named.
    let failures = reject(&with_all(&[("foo", "1"), ("bar", "2")]));
    assert_eq!(failures.len(), 2, "{failures:?}");
    assert!(failures[0].starts_with("foo: ") && failures[1].starts_with("bar: "));
}

#[test]
fn escaped_field_names_are_decoded() {
    let ev = accept(r#"{"\u0065vent":"e","user_\u0069d":"u"}"#);
    assert_eq!(ev.event, "e");
    assert_eq!(ev.user_id.as_deref(), Some("u"));
}

#[test]
fn an_unknown_field_name_is_shown_safely() {
    let long = "x".repeat(1000);
    let msg = reject_field(&with(&long, "1"), &"x".repeat(64), &["unknown field"]);
    assert!(msg.len() < 400, "{msg}");
}

#[test]
fn null_in_every_optional_field_means_absent() {
    let ev = accept(
        r#"{"id":null,"event":"e","user_id":"u","anonymous_id":null,"timestamp":null,
            "sent_at":null,"stage":null,"revenue":null,"properties":null}"#,
    );
    assert_eq!(ev.anonymous_id, None);
    assert_eq!(ev.timestamp, R);
    assert_eq!(ev.stage, None);
    assert_eq!(ev.revenue, None);
    assert_eq!(ev.properties, None);
    assert_eq!(ev.id.get_version_num(), 7);
    let ev = accept(r#"{"event":"e","user_id":null,"anonymous_id":"a"}"#);
    assert_eq!(ev.user_id, None);
    // With whitespace around the null.
    let ev = accept("{\"event\":\"e\",\"user_id\":\"u\",\"stage\" :  null \n}");
    assert_eq!(ev.stage, None);
}

#[test]
fn duplicate_fields_are_rejected() {
    for (text, field) in [
        (r#"{"event":"a","event":"b","user_id":"u"}"#, "event"),
        (r#"{"event":"a","event":"a","user_id":"u"}"#, "event"),
        (r#"{"event":null,"event":"b","user_id":"u"}"#, "event"),
        (r#"{"event":"a","user_id":"u","user_id":"v"}"#, "user_id"),
        (r#"{"event":"a","user_id":"u","user_id":null}"#, "user_id"),
        (
            r#"{"event":"a","user_id":"u","stage":null,"stage":null}"#,
            "stage",
        ),
        (
            r#"{"event":"a","user_id":"u","timestamp":1749988800000,"timestamp":1749988800001}"#,
            "timestamp",
        ),
        (r#"{"event":"a","user_id":"u","id":null,"id":null}"#, "id"),
        (r#"{"event":"a","\u0065vent":"a","user_id":"u"}"#, "event"),
        (
            r#"{"event":"a","user_id":"u","properties":{},"properties":{}}"#,
            "properties",
        ),
    ] {
        // The duplicate is always named; a duplicate `null` may also leave
        // the field missing, which is reported too.
        let failures = reject(text);
        let msg = failures
            .iter()
            .find(|m| m.contains("duplicate"))
            .unwrap_or_else(|| panic!("no duplicate failure for {text}: {failures:?}"));
        assert_message(msg, field, &["duplicate"]);
    }
    // Duplicate keys inside properties are the object's business.
    accept(&props(r#"{"a":1,"a":2}"#));
}

#[test]
fn a_non_object_event_is_rejected() {
    for text in [
        "[]",
        r#"[{"event":"e","user_id":"u"}]"#,
        r#""{\"event\":\"e\"}""#,
        "42",
        "true",
        "null",
    ] {
        let failures = reject(text);
        assert_eq!(failures.len(), 1, "{failures:?}");
        assert!(
            failures[0].contains("must be a JSON object"),
            "{failures:?}"
        );
    }
}

#[test]
fn malformed_json_is_rejected() {
    for text in [
        "",
        " ",
        "{",
        "}",
        r#"{"event":"e","user_id":"u""#,
        r#"{"event":"e","user_id":"u",}"#,
        r#"{"event":,"user_id":"u"}"#,
        r#"{"event":"e" "user_id":"u"}"#,
        r#"{event:"e"}"#,
        r#"{'event':'e'}"#,
        r#"{"event":"e","user_id":"u"} {}"#,
        r#"{"event":"e","user_id":"u"}x"#,
        r#"{"event":"e","user_id":"u","revenue":NaN}"#,
        r#"{"event":"e","user_id":"u","revenue":+1}"#,
        r#"{"event":"e","user_id":"u","revenue":01}"#,
        r#"{"event":"e","user_id":"u","revenue":.5}"#,
        r#"{"event":"e","user_id":"u","properties":{"a":}}"#,
        "{\"event\":\"a\u{1}b\",\"user_id\":\"u\"}",
        r#"{"event":"\x","user_id":"u"}"#,
        r#"{"event":"\u12","user_id":"u"}"#,
    ] {
        let failures = reject(text);
        assert_eq!(failures.len(), 1, "{text}: {failures:?}");
        assert!(!failures[0].is_empty());
    }
}

#[test]
fn surrounding_whitespace_is_fine() {
    assert_eq!(
        accept(" \n\t{\"event\":\"e\",\"user_id\":\"u\"}\r\n ").event,
        "e"
    );
}

#[test]
fn an_invalid_escape_in_a_field_is_reported_on_that_field() {
    reject_field(
        r#"{"event":"\ud800","user_id":"u"}"#,
        "event",
        &["invalid string"],
    );
    reject_field(
        r#"{"event":"e","user_id":"\udfff"}"#,
        "user_id",
        &["invalid string"],
    );
}

#[test]
fn every_failure_in_one_event_is_reported() {
    let text = r#"{
        "id": "not-a-uuid",
        "event": "",
        "user_id": "",
        "anonymous_id": 5,
        "timestamp": 1.7e12,
        "sent_at": "yesterday",
        "stage": "Awareness",
        "revenue": "9.99",
        "properties": [1],
        "color": "red"
    }"#;
    let failures = reject(text);
    let fields = [
        "color",
        "id",
        "event",
        "user_id",
        "anonymous_id",
        "sent_at",
        "timestamp",
        "stage",
        "revenue",
        "properties",
    ];
    assert_eq!(failures.len(), fields.len(), "{failures:#?}");
    for field in fields {
        let msg = failures
            .iter()
            .find(|m| m.starts_with(&format!("{field}: ")))
            .unwrap_or_else(|| panic!("no {field} failure in {failures:#?}"));
        assert_message(msg, field, &[]);
    }
    // Display joins them all.
    let err = validate(text).unwrap_err();
    assert_eq!(err.to_string(), failures.join("; "));

    // Missing event and missing person are both reported.
    let failures = reject(r#"{"stage":"nope"}"#);
    assert_eq!(failures.len(), 3, "{failures:?}");
}

#[test]
fn every_message_names_a_field_and_what_is_expected() {
    // A sample of single-rule failures across all fields.
    for (text, field) in [
        (r#"{"user_id":"u"}"#.to_string(), "event"),
        (named(""), "event"),
        (named("a\nb"), "event"),
        (r#"{"event":"e"}"#.to_string(), "user_id"),
        (person_event("anonymous_id", ""), "anonymous_id"),
        (ts_string("2025-06-15 12:00:00Z"), "timestamp"),
        (ts_raw("1.7e12"), "timestamp"),
        (ts_raw("946684799999"), "timestamp"),
        (ts_raw(&(R + HOUR + 1).to_string()), "timestamp"),
        (with("sent_at", "false"), "sent_at"),
        (with("stage", "\"x\""), "stage"),
        (with("revenue", "1e400"), "revenue"),
        (with("revenue", "\"1\""), "revenue"),
        (props("[]"), "properties"),
        (props(&props_of_len(32_769)), "properties"),
        (with_id("x"), "id"),
        (with("nope", "1"), "nope"),
        (
            r#"{"event":"a","event":"a","user_id":"u"}"#.to_string(),
            "event",
        ),
    ] {
        reject_field(&text, field, &[]);
    }
}

// ---------------------------------------------------------------- export round trip

#[test]
fn export_line_reads_back_to_the_same_event() {
    let ev = accept(
        r#"{
            "id": "0190A6E4-7C3B-7D2E-9F1A-2B3C4D5E6F70",
            "event": "order \"completed\" 😀",
            "user_id": "user-42",
            "anonymous_id": "anon-7",
            "timestamp": "2025-06-15t15:55:00.123456+02:00",
            "sent_at": "2025-06-15T16:00:00+02:00",
            "stage": "revenue",
            "revenue": -0.1,
            "properties": { "plan": "pro", "n": [1, 2.50, {"k": null}], "s": "a\u00e9\n" }
        }"#,
    );
    // The client's clock was 2 h ahead.
    assert_eq!(ev.timestamp, ms("2025-06-15T11:55:00.123Z"));
    let line = ev.to_json_line();
    assert!(!line.contains('\n'), "one line: {line}");
    let v: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["id"], ID);
    assert_eq!(v["timestamp"], "2025-06-15T11:55:00.123Z");
    assert!(
        v.get("sent_at").is_none(),
        "the corrected timestamp needs no sent_at"
    );
    assert_eq!(v["stage"], "revenue");
    assert_eq!(v["revenue"], -0.1);
    assert_eq!(v["user_id"], "user-42");
    assert_eq!(v["anonymous_id"], "anon-7");
    assert!(
        line.contains(r#""properties":{"plan":"pro","n":[1,2.50,{"k":null}],"s":"a\u00e9\n"}"#)
    );
    // Read back, at any later time, it is the same event.
    for received in [R, R + 1, R + 365 * 24 * HOUR] {
        assert_eq!(validate_event_json(&line, received).unwrap(), ev);
    }
}

#[test]
fn export_line_of_a_minimal_event_has_only_its_fields() {
    let ev = accept(r#"{"event":"e","anonymous_id":"a"}"#);
    let line = ev.to_json_line();
    let v: Map<String, Value> = serde_json::from_str(&line).unwrap();
    let mut keys: Vec<&str> = v.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["anonymous_id", "event", "id", "timestamp"]);
    assert_eq!(v["timestamp"], "2025-06-15T12:00:00Z");
    assert_eq!(v["id"], ev.id.hyphenated().to_string());
    assert_eq!(validate(&line).unwrap(), ev);
}

#[test]
fn export_line_timestamps_are_rfc3339_utc() {
    for (t, want) in [
        (MIN_EVENT_MS, "2000-01-01T00:00:00Z"),
        (MIN_EVENT_MS + 1, "2000-01-01T00:00:00.001Z"),
        (R + 999, "2025-06-15T12:00:00.999Z"),
        (R + HOUR, "2025-06-15T13:00:00Z"),
    ] {
        let ev = Event {
            id: Uuid::now_v7(),
            event: "e".into(),
            user_id: Some("u".into()),
            anonymous_id: None,
            timestamp: t,
            stage: None,
            revenue: None,
            properties: None,
        };
        let v: Value = serde_json::from_str(&ev.to_json_line()).unwrap();
        assert_eq!(v["timestamp"], want);
        assert_eq!(validate(&ev.to_json_line()).unwrap(), ev);
    }
}

#[test]
fn export_round_trips_every_stage_and_edge_values() {
    for stage in Stage::ALL {
        for revenue in [0.0, -0.0, 1e-300, 0.1 + 0.2, f64::MAX, f64::MIN, -5e-324] {
            let ev = Event {
                id: Uuid::now_v7(),
                event: "é".repeat(100),
                user_id: None,
                anonymous_id: Some("😀".repeat(63)),
                timestamp: R,
                stage: Some(stage),
                revenue: Some(revenue),
                properties: Some(props_of_len(32_768)),
            };
            let back = validate(&ev.to_json_line()).unwrap();
            assert_eq!(back, ev);
            assert_eq!(back.revenue.unwrap().to_bits(), revenue.to_bits());
        }
    }
}

// ---------------------------------------------------------------- WireEvent (SDK side)

#[test]
fn wire_event_round_trips_through_the_validator() {
    let id = Uuid::now_v7();
    let mut properties = Map::new();
    properties.insert("plan".into(), json!("pro"));
    properties.insert("nested".into(), json!({"a": [1, 2.5, null, "x"]}));
    let wire = WireEvent {
        id: Some(id),
        event: "invoice_sent".into(),
        user_id: Some("u-1".into()),
        anonymous_id: Some("a-1".into()),
        timestamp: Some(R - 1234),
        sent_at: Some(R),
        stage: Some(Stage::Activation),
        revenue: Some(12.34),
        properties: Some(properties.clone()),
    };
    let text = serde_json::to_string(&wire).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["timestamp"], "2025-06-15T11:59:58.766Z");
    assert_eq!(v["sent_at"], "2025-06-15T12:00:00Z");
    assert_eq!(v["id"], id.hyphenated().to_string());
    assert_eq!(v["stage"], "activation");

    let ev = validate(&text).unwrap();
    assert_eq!(ev.id, id);
    assert_eq!(ev.event, wire.event);
    assert_eq!(ev.user_id, wire.user_id);
    assert_eq!(ev.anonymous_id, wire.anonymous_id);
    assert_eq!(ev.timestamp, R - 1234);
    assert_eq!(ev.stage, wire.stage);
    assert_eq!(ev.revenue, wire.revenue);
    assert_eq!(
        ev.properties,
        Some(serde_json::to_string(&properties).unwrap())
    );

    // And the SDK type reads its own JSON back.
    let back: WireEvent = serde_json::from_str(&text).unwrap();
    assert_eq!(back, wire);
}

#[test]
fn wire_event_skew_is_corrected_by_the_validator() {
    // The SDK's clock is 2 h ahead of the collector's.
    let wire = WireEvent {
        event: "e".into(),
        anonymous_id: Some("a".into()),
        timestamp: Some(R + 2 * HOUR - 10),
        sent_at: Some(R + 2 * HOUR),
        ..WireEvent::default()
    };
    let ev = validate(&serde_json::to_string(&wire).unwrap()).unwrap();
    assert_eq!(ev.timestamp, R - 10);
}

#[test]
fn minimal_wire_event_omits_absent_fields() {
    let wire = WireEvent {
        event: "e".into(),
        user_id: Some("u".into()),
        ..WireEvent::default()
    };
    let text = serde_json::to_string(&wire).unwrap();
    assert_eq!(text, r#"{"event":"e","user_id":"u"}"#);
    let ev = validate(&text).unwrap();
    assert_eq!(ev.timestamp, R);
    assert_eq!(ev.id.get_version_num(), 7);
}

#[test]
fn wire_event_reads_both_time_forms_and_rejects_unknown_fields() {
    let w: WireEvent = serde_json::from_str(
        r#"{"event":"e","timestamp":1749988800000,"sent_at":"2025-06-15t14:00:00+02:00"}"#,
    )
    .unwrap();
    assert_eq!(w.timestamp, Some(R));
    assert_eq!(w.sent_at, Some(R));
    let w: WireEvent = serde_json::from_str(r#"{"event":"e","timestamp":null}"#).unwrap();
    assert_eq!(w.timestamp, None);
    assert!(serde_json::from_str::<WireEvent>(r#"{"event":"e","foo":1}"#).is_err());
    assert!(
        serde_json::from_str::<WireEvent>(r#"{"event":"e","timestamp":"2025-06-15 12:00:00Z"}"#)
            .is_err()
    );
    assert!(serde_json::from_str::<WireEvent>(r#"{"event":"e","timestamp":1.5}"#).is_err());
}

#[test]
fn export_line_reads_as_a_wire_event() {
    let ev = accept(
        r#"{"event":"e","user_id":"u","stage":"referral","revenue":3,"properties":{"a":[1]},
            "timestamp":"2025-06-15T11:00:00.5Z"}"#,
    );
    let w: WireEvent = serde_json::from_str(&ev.to_json_line()).unwrap();
    assert_eq!(w.id, Some(ev.id));
    assert_eq!(w.timestamp, Some(ev.timestamp));
    assert_eq!(w.stage, Some(Stage::Referral));
    assert_eq!(w.revenue, Some(3.0));
    assert_eq!(w.sent_at, None);
    assert_eq!(
        serde_json::to_string(&w.properties.unwrap()).unwrap(),
        ev.properties.unwrap()
    );
}

// ---------------------------------------------------------------- time functions

#[test]
fn format_rfc3339_is_utc_with_optional_millis() {
    assert_eq!(format_rfc3339(R), "2025-06-15T12:00:00Z");
    assert_eq!(format_rfc3339(R + 1), "2025-06-15T12:00:00.001Z");
    assert_eq!(format_rfc3339(R + 10), "2025-06-15T12:00:00.010Z");
    assert_eq!(format_rfc3339(R + 999), "2025-06-15T12:00:00.999Z");
    assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00Z");
    assert_eq!(format_rfc3339(-1), "1969-12-31T23:59:59.999Z");
    assert_eq!(
        format_rfc3339(ms("9999-12-31T23:59:59.999Z")),
        "9999-12-31T23:59:59.999Z"
    );
    // Out of chrono's range: still something, never a panic.
    assert!(!format_rfc3339(i64::MAX).is_empty());
    assert!(!format_rfc3339(i64::MIN).is_empty());
}

#[test]
fn parse_date_or_rfc3339_is_strict_about_dates() {
    use tally_event::time::parse_date_or_rfc3339;
    assert_eq!(parse_date_or_rfc3339("2000-01-01"), Ok(MIN_EVENT_MS));
    assert_eq!(parse_date_or_rfc3339("2025-06-15T12:00:00Z"), Ok(R));
    for bad in [
        "2025-6-015",
        "+025-06-15",
        "2025-06-1 ",
        " 2025-06-1",
        "2025-02-30",
        "2025/06/15",
        "20250615",
        "2025-06-15T12:00:00",
        "",
    ] {
        assert!(parse_date_or_rfc3339(bad).is_err(), "{bad}");
    }
}

// ---------------------------------------------------------------- properties (proptest)

/// Arbitrary JSON values with unicode strings and keys, bounded in size.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        any::<String>().prop_map(Value::String),
        "\\PC{0,8}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(any::<String>(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn json_object() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::btree_map(any::<String>(), json_value(), 0..8)
        .prop_map(|m| m.into_iter().collect())
}

/// Strings that are valid event names: 1..=200 bytes, no Cc.
fn event_name() -> impl Strategy<Value = String> {
    any::<String>().prop_filter_map("a valid event name", |s| {
        let mut name = String::new();
        for c in s.chars().filter(|c| !c.is_control()) {
            if name.len() + c.len_utf8() > 200 {
                break;
            }
            name.push(c);
        }
        (!name.is_empty()).then_some(name)
    })
}

/// Strings that are valid person keys: 1..=255 bytes, anything goes.
fn person_key() -> impl Strategy<Value = String> {
    prop::collection::vec(any::<char>(), 1..300).prop_map(|chars| {
        let mut key = String::new();
        for c in chars {
            if key.len() + c.len_utf8() > 255 {
                break;
            }
            key.push(c);
        }
        key
    })
}

fn stage() -> impl Strategy<Value = Option<Stage>> {
    prop::option::of(prop::sample::select(Stage::ALL.to_vec()))
}

fn generated_event() -> impl Strategy<Value = Event> {
    (
        any::<u128>(),
        event_name(),
        prop::option::of(person_key()),
        person_key(),
        any::<bool>(),
        MIN_EVENT_MS..=R + HOUR,
        stage(),
        prop::option::of(any::<f64>().prop_filter("finite", |f| f.is_finite())),
        prop::option::of(json_object()),
    )
        .prop_filter_map(
            "properties within 32 KiB",
            |(id, event, user_id, anon, keep_anon, timestamp, stage, revenue, props)| {
                let properties = props.map(|p| serde_json::to_string(&p).unwrap());
                if properties.as_ref().is_some_and(|p| p.len() > 32_768) {
                    return None;
                }
                let anonymous_id = (keep_anon || user_id.is_none()).then_some(anon);
                Some(Event {
                    id: Uuid::from_u128(id),
                    event,
                    user_id,
                    anonymous_id,
                    timestamp,
                    stage,
                    revenue,
                    properties,
                })
            },
        )
}

/// Field values that are often wrong: every JSON type, edge numbers and
/// strings near each rule's boundaries.
fn field_value() -> impl Strategy<Value = String> {
    prop_oneof![
        json_value().prop_map(|v| v.to_string()),
        prop::sample::select(vec![
            "null",
            "1e400",
            "-1e400",
            "1.7e12",
            "1749988800000",
            "-9223372036854775808",
            "9223372036854775807",
            "9223372036854775808",
            "-0",
            "0",
            "\"\"",
            "\"2025-06-15T12:00:00Z\"",
            "\"2025-06-15t12:00:00z\"",
            "\"2025-06-15T12:00:00.1234+14:00\"",
            "\"9999-12-31T23:59:59.999-23:59\"",
            "\"0000-01-01T00:00:00+23:59\"",
            "\"2025-06-15 12:00:00Z\"",
            "\"2025-06-15T23:59:60Z\"",
            "\"0190a6e4-7c3b-7d2e-9f1a-2b3c4d5e6f70\"",
            "\"\\ud800\"",
            "\"revenue\"",
            "{\"a\":1e400}",
            "[[[[[[[[[[]]]]]]]]]]",
        ])
        .prop_map(String::from),
        "\"[0-9T:.+zZ-]{0,40}\"",
        any::<String>().prop_map(|s| serde_json::to_string(&s).unwrap()),
    ]
}

fn field_name() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "id",
            "event",
            "user_id",
            "anonymous_id",
            "timestamp",
            "sent_at",
            "stage",
            "revenue",
            "properties",
        ])
        .prop_map(String::from),
        any::<String>(),
    ]
}

/// Checks what any accepted event must satisfy.
fn assert_event_invariants(ev: &Event, received: i64) {
    assert!((1..=200).contains(&ev.event.len()));
    assert!(!ev.event.chars().any(char::is_control));
    assert!(!ev.person().is_empty());
    for key in [&ev.user_id, &ev.anonymous_id].into_iter().flatten() {
        assert!((1..=255).contains(&key.len()));
    }
    assert!(ev.timestamp >= MIN_EVENT_MS);
    assert!(ev.timestamp <= received.saturating_add(HOUR));
    assert!(ev.revenue.is_none_or(f64::is_finite));
    if let Some(p) = &ev.properties {
        assert!(p.len() <= 32_768);
        let v: Value = serde_json::from_str(p).unwrap();
        assert!(v.is_object());
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn validator_never_panics_on_arbitrary_text(text in any::<String>(), received in any::<i64>()) {
        let _ = validate_event_json(&text, received);
    }

    #[test]
    fn validator_never_panics_on_json_ish_text(
        text in "[{}\\[\\]\":,0-9a-z.eE+\\- \\\\u]{0,80}",
        received in any::<i64>(),
    ) {
        let _ = validate_event_json(&text, received);
        let _ = validate_event_json(&format!("{{{text}}}"), received);
    }

    #[test]
    fn validator_never_panics_on_arbitrary_fields(
        fields in prop::collection::vec((field_name(), field_value()), 0..10),
        // A server clock beyond year 9999 cannot exist; the default timestamp is
        // the clock, so it must stay within what RFC 3339 can write.
        received in prop_oneof![Just(R), MIN_EVENT_MS..=tally_event::time::MAX_RFC3339_MS - 3_600_000],
    ) {
        let mut text = String::from("{");
        for (i, (k, v)) in fields.iter().enumerate() {
            if i > 0 {
                text.push(',');
            }
            text.push_str(&serde_json::to_string(k).unwrap());
            text.push(':');
            text.push_str(v);
        }
        text.push('}');
        match validate_event_json(&text, received) {
            Ok(ev) => {
                assert_event_invariants(&ev, received);
                // Whatever was accepted exports and reads back unchanged.
                let back = validate_event_json(&ev.to_json_line(), received).unwrap();
                prop_assert_eq!(back, ev);
            }
            Err(e) => {
                prop_assert!(!e.failures.is_empty());
                for f in &e.failures {
                    prop_assert!(f.contains(": ") || f.contains("JSON"), "{}", f);
                }
            }
        }
    }

    #[test]
    fn valid_events_with_one_arbitrary_field_never_panic(
        field in field_name(),
        value in field_value(),
    ) {
        let _ = validate_event_json(&with_all(&[(&field, &value)]), R);
    }

    #[test]
    fn event_name_rule_is_exactly_bytes_and_cc(
        name in prop_oneof![
            any::<String>(),
            "[a-zé😀\\x00-\\x1f\\x7f\\u{80}-\\u{9f}]{0,120}",
            prop::collection::vec(prop::sample::select(vec!['a', 'é', '€', '😀']), 40..=80)
                .prop_map(|v| v.into_iter().collect::<String>()),
        ],
    ) {
        let ok = (1..=200).contains(&name.len()) && !name.chars().any(char::is_control);
        let result = validate_event_json(&named(&name), R);
        prop_assert_eq!(result.is_ok(), ok, "{:?}: {:?}", name, result);
        if let Ok(ev) = result {
            prop_assert_eq!(ev.event, name);
        }
    }

    #[test]
    fn person_key_rule_is_exactly_bytes(
        key in prop::collection::vec(prop::sample::select(vec!['a', '\n', 'é', '€', '😀']), 0..=140)
            .prop_map(|v| v.into_iter().collect::<String>()),
        field in prop::sample::select(vec!["user_id", "anonymous_id"]),
    ) {
        let text = format!(r#"{{"event":"e","{field}":{}}}"#, s(&key));
        let ok = (1..=255).contains(&key.len());
        let result = validate_event_json(&text, R);
        prop_assert_eq!(result.is_ok(), ok, "{} bytes: {:?}", key.len(), result);
        if let Ok(ev) = result {
            prop_assert_eq!(ev.person(), key.as_str());
        }
    }

    #[test]
    fn rfc3339_round_trips_for_years_2000_to_9999(
        t in ms("2000-01-01T00:00:00Z")..=ms("9999-12-31T23:59:59.999Z"),
    ) {
        let text = format_rfc3339(t);
        prop_assert_eq!(parse_rfc3339(&text), Ok(t), "{}", text);
        prop_assert_eq!(parse_rfc3339(&text.to_lowercase()), Ok(t));
    }

    #[test]
    fn rfc3339_with_any_offset_and_extra_digits_parses_to_the_same_instant(
        t in ms("2000-01-02T00:00:00Z")..=ms("9999-12-30T23:59:59.999Z"),
        offset_min in -(23 * 60 + 59)..=(23 * 60 + 59),
        extra in "[0-9]{0,9}",
    ) {
        use chrono::{DateTime, FixedOffset};
        let tz = FixedOffset::east_opt(offset_min * 60).unwrap();
        let local = DateTime::from_timestamp_millis(t).unwrap().with_timezone(&tz);
        let text = format!(
            "{}{extra}{}",
            local.format("%Y-%m-%dT%H:%M:%S%.3f"),
            local.format("%:z")
        );
        prop_assert_eq!(parse_rfc3339(&text), Ok(t), "{}", text);
    }

    #[test]
    fn rfc3339_timestamps_within_bounds_are_accepted_exactly(
        t in MIN_EVENT_MS..=R + HOUR,
        as_string in any::<bool>(),
    ) {
        let raw = if as_string { s(&format_rfc3339(t)) } else { t.to_string() };
        prop_assert_eq!(validate_event_json(&ts_raw(&raw), R).map(|e| e.timestamp), Ok(t));
    }

    #[test]
    fn timestamps_out_of_bounds_are_rejected(
        t in prop_oneof![i64::MIN..MIN_EVENT_MS, R + HOUR + 1..=i64::MAX],
    ) {
        prop_assert!(validate_event_json(&ts_raw(&t.to_string()), R).is_err());
    }

    #[test]
    fn skew_correction_is_received_minus_sent(
        t in MIN_EVENT_MS..=R + HOUR,
        skew in -50 * 365 * 24 * HOUR..=50 * 365 * 24 * HOUR,
    ) {
        // The client's clock is `skew` ahead: it reports t + skew and sends
        // at R + skew; the corrected time is t.
        let text = with_all(&[
            ("timestamp", &(t + skew).to_string()),
            ("sent_at", &(R + skew).to_string()),
        ]);
        prop_assert_eq!(validate_event_json(&text, R).map(|e| e.timestamp), Ok(t));
    }

    #[test]
    fn generated_events_round_trip_through_export(ev in generated_event()) {
        let line = ev.to_json_line();
        let v: Value = serde_json::from_str(&line).unwrap();
        prop_assert_eq!(v["id"].as_str().unwrap(), ev.id.hyphenated().to_string());
        prop_assert_eq!(v["timestamp"].as_str().unwrap(), format_rfc3339(ev.timestamp));
        let back = validate_event_json(&line, R);
        prop_assert_eq!(back.as_ref(), Ok(&ev), "{}", line);
        prop_assert_eq!(back.unwrap().revenue.map(f64::to_bits), ev.revenue.map(f64::to_bits));
    }

    #[test]
    fn generated_wire_events_round_trip_through_the_validator(ev in generated_event(), skew in -HOUR * 48..HOUR * 48) {
        let wire = WireEvent {
            id: Some(ev.id),
            event: ev.event.clone(),
            user_id: ev.user_id.clone(),
            anonymous_id: ev.anonymous_id.clone(),
            timestamp: Some(ev.timestamp + skew),
            sent_at: Some(R + skew),
            stage: ev.stage,
            revenue: ev.revenue,
            properties: ev.properties.as_deref().map(|p| serde_json::from_str(p).unwrap()),
        };
        let text = serde_json::to_string(&wire).unwrap();
        prop_assert_eq!(validate_event_json(&text, R), Ok(ev));
        prop_assert_eq!(serde_json::from_str::<WireEvent>(&text).unwrap(), wire);
    }

    #[test]
    fn properties_are_accepted_iff_compact_form_fits(obj in json_object(), pad in 0usize..40_000) {
        let mut obj = obj;
        obj.insert("pad".into(), Value::String("p".repeat(pad)));
        let compact = serde_json::to_string(&obj).unwrap();
        let pretty = serde_json::to_string_pretty(&obj).unwrap();
        let result = validate_event_json(&props(&pretty), R);
        if compact.len() <= 32_768 {
            prop_assert_eq!(result.unwrap().properties, Some(compact));
        } else {
            prop_assert!(result.is_err());
        }
    }
}

/// Regression (found by `validator_never_panics_on_arbitrary_fields` with a
/// server clock far in the future): a timestamp after year 9999 was
/// accepted but exported as `+10000-...`, which is not RFC 3339 and cannot
/// be imported back. Such a timestamp is now rejected.
#[test]
fn timestamps_after_year_9999_are_rejected_even_if_the_clock_allows_them() {
    let received = 300_000_000_000_000; // year ~11476
    let at_limit = r#"{"event":"e","user_id":"u","timestamp":253402300799999}"#;
    let ev = tally_event::validate_event_json(at_limit, received).unwrap();
    let back = tally_event::validate_event_json(&ev.to_json_line(), received).unwrap();
    assert_eq!(back, ev);
    let past_limit = r#"{"event":"e","user_id":"u","timestamp":253402300800000}"#;
    let err = tally_event::validate_event_json(past_limit, received)
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("timestamp: ") && err.contains("9999-12-31"),
        "{err}"
    );
}

// ---------------------------------------------------------------- U+2028 / U+2029 in exports

/// JavaScript line splitters (and pre-ES2019 `eval`) treat U+2028 and U+2029
/// as line ends, so an NDJSON line must never hold them raw (issue 16, 7).
#[test]
fn export_lines_escape_line_and_paragraph_separators() {
    let accepted = accept(
        "{\"event\":\"a\u{2028}b\",\"user_id\":\"u\u{2029}\",\
         \"properties\":{\"k\u{2028}\":\"v\u{2029}w\",\"n\":[\"\u{2028}\"]}}",
    );
    let line = accepted.to_json_line();
    assert!(
        !line.contains('\u{2028}') && !line.contains('\u{2029}'),
        "raw separator in {line}"
    );
    assert!(
        line.contains(r"a\u2028b") && line.contains(r"u\u2029"),
        "{line}"
    );
    // What was accepted reads back unchanged, and exports the same line.
    let back = validate(&line).unwrap();
    assert_eq!(back, accepted);
    assert_eq!(back.to_json_line(), line);
    let v: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["event"], "a\u{2028}b");
    assert_eq!(v["properties"]["k\u{2028}"], "v\u{2029}w");
    // An event built in memory with raw separators exports escaped too.
    let ev = Event {
        properties: Some("{\"p\":\"\u{2028}\"}".into()),
        ..accepted
    };
    let line = ev.to_json_line();
    assert!(!line.contains('\u{2028}'), "{line}");
    assert_eq!(
        serde_json::from_str::<Value>(&line).unwrap()["properties"]["p"],
        "\u{2028}"
    );
}
