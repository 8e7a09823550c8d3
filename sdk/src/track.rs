//! The `track` builder.

use std::time::{SystemTime, UNIX_EPOCH};

use rand::Rng;
use serde_json::{Map, Value};
use tally_event::time::{MAX_FUTURE_MS, MIN_EVENT_MS, now_ms};
use tally_event::validate::{MAX_EVENT_NAME_BYTES, MAX_PERSON_KEY_BYTES};
use tally_event::{Stage, WireEvent};
use uuid::Uuid;

use crate::person::Person;
use crate::queue::Queue;
use crate::types::TrackError;

/// An event being built, from [`Client::track`](crate::Client::track).
/// Queue it with [`send`](Track::send); dropping it discards it.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::{Duration, SystemTime};
/// use tally_sdk::{Client, Stage, serde_json::json};
///
/// let client = Client::builder("http://127.0.0.1:9", "WRITE_KEY").build()?;
/// let id = client
///     .track("user-42", "plan_upgraded")
///     .stage(Stage::Revenue)
///     .revenue(49.0)
///     .property("plan", "pro")
///     .property("seats", 5)
///     .property("features", json!(["api", "sso"]))
///     .timestamp(SystemTime::now() - Duration::from_secs(60))
///     .send()?;
/// assert_eq!(id.get_version_num(), 7);
/// # Ok(())
/// # }
/// ```
#[must_use = "the event is only queued by `.send()`"]
#[derive(Debug)]
pub struct Track<'a> {
    queue: &'a Queue,
    /// The client's default properties, merged in by `send`.
    defaults: &'a Map<String, Value>,
    /// False for a disabled client: `send` queues nothing.
    enabled: bool,
    event: WireEvent,
    /// Whether the timestamp was given (else it is the creation time, which
    /// needs no "not in the future" check).
    custom_time: bool,
}

impl<'a> Track<'a> {
    pub(crate) fn new(
        queue: &'a Queue,
        defaults: &'a Map<String, Value>,
        enabled: bool,
        person: Person,
        name: String,
    ) -> Self {
        let (user_id, anonymous_id) = match person {
            Person::User(id) => (Some(id), None),
            Person::Anonymous(id) => (None, Some(id)),
        };
        let now = now_ms();
        Track {
            queue,
            defaults,
            enabled,
            event: WireEvent {
                id: Some(new_event_id(now)),
                event: name,
                user_id,
                anonymous_id,
                timestamp: Some(now),
                ..WireEvent::default()
            },
            custom_time: false,
        }
    }

    /// Tags the event with a lifecycle stage.
    pub fn stage(mut self, stage: Stage) -> Self {
        self.event.stage = Some(stage);
        self
    }

    /// Attaches money to the event (an order, a renewal; negative for a
    /// refund). Must be finite.
    pub fn revenue(mut self, amount: f64) -> Self {
        self.event.revenue = Some(amount);
        self
    }

    /// Sets one property; anything that converts into a JSON value (strings,
    /// numbers, booleans, `serde_json::json!(...)`).
    pub fn property(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.event
            .properties
            .get_or_insert_with(Map::new)
            .insert(key.into(), value.into());
        self
    }

    /// Sets several properties at once, from a `serde_json::Map`, a
    /// `HashMap`, an array of pairs, ...
    pub fn properties<K, V>(mut self, properties: impl IntoIterator<Item = (K, V)>) -> Self
    where
        K: Into<String>,
        V: Into<Value>,
    {
        let map = self.event.properties.get_or_insert_with(Map::new);
        for (k, v) in properties {
            map.insert(k.into(), v.into());
        }
        self
    }

    /// When the event happened (default: when `track` was called).
    pub fn timestamp(mut self, at: SystemTime) -> Self {
        self.event.timestamp = Some(system_time_ms(at));
        self.custom_time = true;
        self
    }

    /// When the event happened, in Unix milliseconds.
    pub fn timestamp_ms(mut self, unix_ms: i64) -> Self {
        self.event.timestamp = Some(unix_ms);
        self.custom_time = true;
        self
    }

    /// Adds an anonymous id to the event: on a user's event, this links the
    /// visitor's earlier anonymous activity to the user (typically at
    /// sign-up). For an anonymous person, it replaces the key.
    pub fn anonymous_id(mut self, id: impl Into<String>) -> Self {
        self.event.anonymous_id = Some(id.into());
        self
    }

    /// Replaces the generated UUIDv7 with your own idempotency key, e.g. one
    /// derived from an order id, so that the collector stores the event once
    /// even if your app tracks it twice.
    pub fn id(mut self, id: Uuid) -> Self {
        self.event.id = Some(id);
        self
    }

    /// The event's id, as it will be sent.
    pub fn event_id(&self) -> Uuid {
        self.event.id.unwrap_or_default()
    }

    /// Checks the event and queues it for delivery; returns its id.
    ///
    /// Never blocks on the network and never panics. Fails when the event
    /// breaks a rule the collector would reject it for (name 1 to 200 bytes
    /// without control characters, person keys 1 to 255 bytes, finite
    /// revenue, timestamp from 2000-01-01 to an hour ahead), when the queue
    /// is full under [`DropPolicy::Newest`](crate::DropPolicy::Newest), or
    /// after shutdown.
    ///
    /// The client's [default properties](crate::ClientBuilder::property)
    /// are added here, under the event's own. A
    /// [disabled](crate::Client::disabled) client checks the event and
    /// returns its id, but queues nothing.
    pub fn send(mut self) -> Result<Uuid, TrackError> {
        if !self.defaults.is_empty() {
            let own = self.event.properties.take().unwrap_or_default();
            let mut merged = self.defaults.clone();
            merged.extend(own);
            self.event.properties = Some(merged);
        }
        if !self.enabled {
            check(&self.event, now_ms()).map_err(TrackError::Invalid)?;
            return Ok(self.event_id());
        }
        let counters = &self.queue.counters;
        let now = match (self.custom_time, self.event.timestamp) {
            (false, Some(created)) => created,
            _ => now_ms(),
        };
        if let Err(why) = check(&self.event, now) {
            counters.add_invalid();
            return Err(TrackError::Invalid(why));
        }
        let id = self.event_id();
        self.queue.push(self.event)?;
        Ok(id)
    }
}

/// The collector's rules that are cheap to check on the app thread (SPEC
/// §1), `now_ms` being the current time. `properties` size and depth are
/// checked by the background sender.
pub(crate) fn check(e: &WireEvent, now_ms: i64) -> Result<(), String> {
    if e.event.is_empty() || e.event.len() > MAX_EVENT_NAME_BYTES {
        return Err(format!(
            "event: the name must be 1 to {MAX_EVENT_NAME_BYTES} bytes, got {}",
            e.event.len()
        ));
    }
    if e.event.chars().any(char::is_control) {
        return Err("event: the name contains a control character".into());
    }
    for (field, key) in [("user_id", &e.user_id), ("anonymous_id", &e.anonymous_id)] {
        match key {
            Some(k) if k.is_empty() || k.len() > MAX_PERSON_KEY_BYTES => {
                return Err(format!(
                    "{field}: must be 1 to {MAX_PERSON_KEY_BYTES} bytes, got {}",
                    k.len()
                ));
            }
            _ => {}
        }
    }
    if e.user_id.is_none() && e.anonymous_id.is_none() {
        return Err("user_id: required unless anonymous_id is given".into());
    }
    if e.revenue.is_some_and(|r| !r.is_finite()) {
        return Err("revenue: must be a finite number".into());
    }
    if let Some(ts) = e.timestamp {
        if ts < MIN_EVENT_MS {
            return Err("timestamp: before 2000-01-01".into());
        }
        if ts > now_ms.saturating_add(MAX_FUTURE_MS) {
            return Err("timestamp: more than 1 hour in the future".into());
        }
    }
    Ok(())
}

/// A UUIDv7 for an event tracked at `unix_ms`: the millisecond timestamp
/// followed by 74 random bits from the thread-local generator (cheaper than
/// `Uuid::now_v7`, which takes a global lock and a `getrandom` call, and
/// panics on a clock set before 1970).
pub(crate) fn new_event_id(unix_ms: i64) -> Uuid {
    let random: [u8; 10] = rand::rng().random();
    uuid::Builder::from_unix_timestamp_millis(u64::try_from(unix_ms).unwrap_or(0), &random)
        .into_uuid()
}

fn system_time_ms(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_millis())
            .map(|ms| -ms)
            .unwrap_or(i64::MIN),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(name: &str) -> WireEvent {
        WireEvent {
            id: Some(Uuid::now_v7()),
            event: name.into(),
            user_id: Some("u1".into()),
            timestamp: Some(now_ms()),
            ..WireEvent::default()
        }
    }

    #[test]
    fn local_checks_mirror_the_collector() {
        assert!(check(&ev("signup"), now_ms()).is_ok());
        assert!(check(&ev(""), now_ms()).is_err());
        assert!(check(&ev(&"x".repeat(200)), now_ms()).is_ok());
        assert!(check(&ev(&"x".repeat(201)), now_ms()).is_err());
        assert!(check(&ev("a\u{7}b"), now_ms()).is_err());
        assert!(check(&ev("a\u{85}b"), now_ms()).is_err()); // C1 controls are Cc too
        assert!(check(&ev("ünïcödé ✓"), now_ms()).is_ok());

        let mut e = ev("x");
        e.user_id = None;
        assert!(check(&e, now_ms()).is_err());
        e.anonymous_id = Some("a".into());
        assert!(check(&e, now_ms()).is_ok());
        e.anonymous_id = Some(String::new());
        assert!(check(&e, now_ms()).is_err());
        e.anonymous_id = Some("a".repeat(256));
        assert!(check(&e, now_ms()).is_err());

        let mut e = ev("x");
        e.revenue = Some(f64::NAN);
        assert!(check(&e, now_ms()).is_err());
        e.revenue = Some(-12.5);
        assert!(check(&e, now_ms()).is_ok());

        let mut e = ev("x");
        e.timestamp = Some(MIN_EVENT_MS);
        assert!(check(&e, now_ms()).is_ok());
        e.timestamp = Some(MIN_EVENT_MS - 1);
        assert!(check(&e, now_ms()).is_err());
        e.timestamp = Some(now_ms() + MAX_FUTURE_MS - 60_000);
        assert!(check(&e, now_ms()).is_ok());
        e.timestamp = Some(now_ms() + MAX_FUTURE_MS + 60_000);
        assert!(check(&e, now_ms()).is_err());
    }

    #[test]
    fn event_ids_are_v7_with_the_timestamp() {
        let ms = 1_767_225_600_123;
        let a = new_event_id(ms);
        let b = new_event_id(ms);
        assert_ne!(a, b);
        assert_eq!(a.get_version_num(), 7);
        assert_eq!(a.get_variant(), uuid::Variant::RFC4122);
        let (secs, nanos) = a.get_timestamp().unwrap().to_unix();
        assert_eq!(secs * 1000 + u64::from(nanos / 1_000_000), ms as u64);
        assert_eq!(new_event_id(-5).get_version_num(), 7);
    }

    #[test]
    fn system_time_conversion() {
        assert_eq!(system_time_ms(UNIX_EPOCH), 0);
        assert_eq!(
            system_time_ms(UNIX_EPOCH + std::time::Duration::from_millis(1_700_000_000_123)),
            1_700_000_000_123
        );
        assert_eq!(
            system_time_ms(UNIX_EPOCH - std::time::Duration::from_millis(5)),
            -5
        );
    }
}
