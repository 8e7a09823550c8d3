//! Deterministic synthetic events for benchmarks (a cheap stand-in for the
//! realistic dataset generator: fast enough not to be the bottleneck of a
//! load test).

use tally_event::Event;
use uuid::Uuid;

const NAMES: [(&str, &str); 6] = [
    ("page_view", "discovery"),
    ("signup", "acquisition"),
    ("invoice_sent", "activation"),
    ("invoice_viewed", "engagement"),
    ("plan_purchased", "revenue"),
    ("invite_sent", "referral"),
];

/// A UUIDv7 unique per `seq`. Like the SDK's, its timestamp is when the id
/// was minted, not the event's time: here 128 ids per millisecond, as a
/// busy app would mint them, starting at `mint_base_ms`.
pub fn id_for(seq: u64, mint_base_ms: i64) -> Uuid {
    let ms = mint_base_ms as u64 + seq / 128;
    let mut b = [0u8; 16];
    b[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
    b[6] = 0x70;
    b[8] = 0x80;
    b[9..16].copy_from_slice(&seq.to_be_bytes()[1..]);
    Uuid::from_bytes(b)
}

/// When synthetic ids are minted from (2026-06-01).
pub const MINT_BASE_MS: i64 = 1_780_272_000_000;

/// A fixed base time (2026-01-01) plus one event per 10 ms of `seq`.
pub fn ts_for(seq: u64) -> i64 {
    1_767_225_600_000 + (seq % 500_000_000) as i64 * 10
}

/// One wire-form event as JSON text (about 230 bytes).
pub fn event_json(seq: u64, persons: u64) -> String {
    let (name, stage) = NAMES[(seq % 97 % 6) as usize];
    let ts = ts_for(seq);
    format!(
        r#"{{"id":"{}","event":"{name}","user_id":"user-{}","timestamp":{ts},"stage":"{stage}","properties":{{"plan":"pro","path":"/app/invoices","n":{}}}}}"#,
        id_for(seq, MINT_BASE_MS),
        seq.wrapping_mul(0x9E37_79B9_7F4A_7C15) % persons,
        seq % 1000
    )
}

/// The same event, already validated.
pub fn event(seq: u64, persons: u64) -> Event {
    tally_event::validate_event_json(&event_json(seq, persons), 1_900_000_000_000)
        .expect("generated events are valid")
}

/// Deterministic lifecycle data: each person arrives on a random day of a
/// 90-day span, views the landing page (discovery), may sign up
/// (acquisition), send invoices (activation, then heavy-tailed
/// engagement), come back in later weeks (retention), buy a plan (revenue)
/// and invite others (referral). Drop-off at every stage.
pub struct Lifecycle {
    rng: rand::rngs::StdRng,
    next_person: u64,
    persons: u64,
    buffer: Vec<Event>,
    seq: u64,
}

/// Start of the generated span: 2026-01-05 (a Monday).
pub const SPAN_START_MS: i64 = 1_767_571_200_000;
/// Length of the generated span.
pub const SPAN_DAYS: i64 = 90;

impl Lifecycle {
    /// About `events / persons` events per person on average.
    pub fn new(persons: u64, seed: u64) -> Self {
        use rand::SeedableRng;
        Lifecycle {
            rng: rand::rngs::StdRng::seed_from_u64(seed),
            next_person: 0,
            persons,
            buffer: Vec::new(),
            seq: 0,
        }
    }

    fn person(&mut self) {
        use rand::Rng;
        use tally_event::Stage;
        let p = self.next_person;
        self.next_person += 1;
        let r = &mut self.rng;
        let day = 86_400_000i64;
        let mut t = SPAN_START_MS + r.random_range(0..SPAN_DAYS * day);
        let key = format!("user-{p}");
        let mut out = Vec::new();
        let push =
            |out: &mut Vec<Event>, name: &str, t: i64, stage: Stage, revenue: Option<f64>| {
                out.push(Event {
                    id: Uuid::nil(),
                    event: name.to_string(),
                    user_id: Some(key.clone()),
                    anonymous_id: None,
                    timestamp: t,
                    stage: Some(stage),
                    revenue,
                    properties: Some(r#"{"plan":"free","path":"/"}"#.to_string()),
                });
            };
        for _ in 0..r.random_range(1..=5) {
            push(&mut out, "page_view", t, Stage::Discovery, None);
            t += r.random_range(1_000..600_000);
        }
        if r.random_bool(0.6) {
            push(&mut out, "signup", t, Stage::Acquisition, None);
            // Heavy-tailed engagement: most send a few invoices, some hundreds.
            let invoices =
                ((r.random_range(0.0f64..1.0).powf(-0.85) - 1.0) * 7.0).min(400.0) as i64;
            for i in 0..invoices {
                t += r.random_range(60_000..4 * day);
                let stage = if i == 0 {
                    Stage::Activation
                } else {
                    Stage::Engagement
                };
                push(&mut out, "invoice_sent", t, stage, None);
                if r.random_bool(0.3) {
                    push(
                        &mut out,
                        "invoice_viewed",
                        t + 60_000,
                        Stage::Retention,
                        None,
                    );
                }
            }
            if invoices >= 2 && r.random_bool(0.35) {
                t += r.random_range(0..7 * day);
                let amount = [9.0, 29.0, 99.0][r.random_range(0..3)];
                push(&mut out, "plan_purchased", t, Stage::Revenue, Some(amount));
                if r.random_bool(0.3) {
                    push(&mut out, "invite_sent", t + day, Stage::Referral, None);
                }
            }
        }
        for mut e in out {
            e.id = id_for(self.seq, MINT_BASE_MS);
            self.seq += 1;
            self.buffer.push(e);
        }
    }
}

impl Iterator for Lifecycle {
    type Item = Event;

    fn next(&mut self) -> Option<Event> {
        while self.buffer.is_empty() {
            if self.next_person >= self.persons {
                return None;
            }
            self.person();
            self.buffer.reverse();
        }
        self.buffer.pop()
    }
}
