//! Every byte Tally writes to disk is encoded and decoded here, and nowhere
//! else: the key layout, the column blocks analyses read, and the raw
//! blocks export reads. Values start with [`FORMAT_VERSION`] so that a
//! format change is always deliberate (the fixture test in
//! `tests/it/store_fixture.rs` fails when this layout changes).
//!
//! Key space (one sled tree, so a commit is one atomic `apply_batch`):
//!
//! | key                                | value                                   |
//! |------------------------------------|-----------------------------------------|
//! | `m` + meta name                    | little-endian counter                   |
//! | `n` + event name                   | name id, u32 big-endian                 |
//! | `p` + person key                   | person id, u32 big-endian               |
//! | `i` + first 5 bytes of an id + part (u16 BE) | [`IdBucket`]: the other 10 bytes of stored ids with that prefix, sorted |
//! | `c` + name id (BE) + block seq (BE)| [`ColumnBlock`]                         |
//! | `r` + block seq (BE)               | raw block: full events, zstd-compressed |
//!
//! Big-endian ids and sequence numbers keep each name's column blocks
//! contiguous and in write order, so a scan of one event name is one range
//! read that never touches other names or the raw events.

use bincode::{Decode, Encode};
use tally_event::{Event, Stage};
use uuid::Uuid;

use crate::error::Error;

/// Version of everything below. Bump it, and add a migration or a clear
/// refusal, whenever any encoding changes.
pub const FORMAT_VERSION: u8 = 1;

/// zstd level for raw blocks. Level 3 cost a third of batched HTTP
/// throughput for a 4% smaller store; block size (1024 events) matters more
/// than level for the ratio.
const ZSTD_LEVEL: i32 = 1;

const CODEC_ZSTD: u8 = 1;

fn config() -> impl bincode::config::Config {
    bincode::config::standard()
}

/// Key prefixes.
pub mod prefix {
    /// Counters and format marker.
    pub const META: u8 = b'm';
    /// Event name → name id.
    pub const NAME: u8 = b'n';
    /// Person key → person id.
    pub const PERSON: u8 = b'p';
    /// Event id, for deduplication.
    pub const ID: u8 = b'i';
    /// Column blocks.
    pub const COLUMNS: u8 = b'c';
    /// Raw (full) event blocks.
    pub const RAW: u8 = b'r';
}

/// Names of meta counters.
pub mod meta {
    /// The on-disk format version (one byte).
    pub const FORMAT: &[u8] = b"format";
    /// Next person id.
    pub const NEXT_PERSON: &[u8] = b"next_person";
    /// Next name id.
    pub const NEXT_NAME: &[u8] = b"next_name";
    /// Next block sequence number.
    pub const NEXT_SEQ: &[u8] = b"next_seq";
}

/// `prefix` + `suffix`.
pub fn key(prefix: u8, suffix: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + suffix.len());
    k.push(prefix);
    k.extend_from_slice(suffix);
    k
}

/// Bytes of an id that select its dedup bucket. For UUIDv7 (what the SDK
/// and the collector assign) these are the top 40 bits of the millisecond
/// timestamp: a 256 ms window, so the ids of one commit share a bucket or
/// two. One sled key per event was 85% of append time; 1 ms buckets still
/// left a key per id for apps minting a few ids per millisecond (~2x slower
/// HTTP ingest of realistic data than 256 ms buckets). Random ids still
/// work, one bucket each.
pub const ID_BUCKET_PREFIX: usize = 5;

/// The part of an id stored inside its bucket.
pub type IdSuffix = [u8; 16 - ID_BUCKET_PREFIX];

/// Most ids in one bucket part. Ids that share a prefix for reasons other
/// than time (`00000000-0000-...-000000000001`, `...02`, ...) would otherwise
/// pile into one value rewritten on every commit; a full part is sealed
/// and never rewritten, and new ids start the next part.
pub const ID_BUCKET_PART_MAX: usize = 1024;

/// Key prefix shared by all parts of an id's dedup bucket.
pub type IdBucketPrefix = [u8; 1 + ID_BUCKET_PREFIX];

/// The dedup bucket prefix of an event id.
pub fn id_bucket_prefix(id: &Uuid) -> IdBucketPrefix {
    let mut k = [0u8; 1 + ID_BUCKET_PREFIX];
    k[0] = prefix::ID;
    k[1..].copy_from_slice(&id.as_bytes()[..ID_BUCKET_PREFIX]);
    k
}

/// Key of one part of a dedup bucket.
pub fn id_bucket_key(prefix: &IdBucketPrefix, part: u16) -> [u8; 3 + ID_BUCKET_PREFIX] {
    let mut k = [0u8; 3 + ID_BUCKET_PREFIX];
    k[..1 + ID_BUCKET_PREFIX].copy_from_slice(prefix);
    k[1 + ID_BUCKET_PREFIX..].copy_from_slice(&part.to_be_bytes());
    k
}

/// The part number of a dedup bucket key.
pub fn id_bucket_part(key: &[u8]) -> Result<u16, Error> {
    key.get(1 + ID_BUCKET_PREFIX..)
        .and_then(|b| b.try_into().ok())
        .map(u16::from_be_bytes)
        .ok_or_else(|| Error::corrupt("id bucket key has no part number"))
}

/// The suffix of `id` kept in its bucket.
pub fn id_suffix(id: &Uuid) -> IdSuffix {
    id.as_bytes()[ID_BUCKET_PREFIX..]
        .try_into()
        .expect("fixed size")
}

/// The stored ids sharing one [`id_bucket_key`]: `[version][suffix; n]`,
/// suffixes sorted so membership is a binary search.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IdBucket {
    /// Sorted, distinct.
    pub suffixes: Vec<IdSuffix>,
}

impl IdBucket {
    /// True if `suffix` is stored.
    pub fn contains(&self, suffix: &IdSuffix) -> bool {
        self.suffixes.binary_search(suffix).is_ok()
    }

    /// Adds suffixes not already present, keeping the order.
    pub fn extend(&mut self, new: &[IdSuffix]) {
        self.suffixes.extend_from_slice(new);
        self.suffixes.sort_unstable();
        self.suffixes.dedup();
    }

    /// Encodes as `[version][suffixes...]`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 + self.suffixes.len() * size_of::<IdSuffix>());
        out.push(FORMAT_VERSION);
        for s in &self.suffixes {
            out.extend_from_slice(s);
        }
        out
    }

    /// Decodes a bucket written by [`IdBucket::encode`].
    pub fn decode(bytes: &[u8]) -> Result<Self, Error> {
        check_version(bytes)?;
        let body = &bytes[1..];
        if body.len() % size_of::<IdSuffix>() != 0 {
            return Err(Error::corrupt("id bucket has a partial id"));
        }
        Ok(IdBucket {
            suffixes: body
                .chunks_exact(size_of::<IdSuffix>())
                .map(|c| c.try_into().expect("exact chunk"))
                .collect(),
        })
    }
}

/// Key of a column block.
pub fn column_key(name: u32, seq: u64) -> [u8; 13] {
    let mut k = [0u8; 13];
    k[0] = prefix::COLUMNS;
    k[1..5].copy_from_slice(&name.to_be_bytes());
    k[5..].copy_from_slice(&seq.to_be_bytes());
    k
}

/// Prefix of all column blocks of one name.
pub fn column_prefix(name: u32) -> [u8; 5] {
    let mut k = [0u8; 5];
    k[0] = prefix::COLUMNS;
    k[1..].copy_from_slice(&name.to_be_bytes());
    k
}

/// Key of a raw block.
pub fn raw_key(seq: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = prefix::RAW;
    k[1..].copy_from_slice(&seq.to_be_bytes());
    k
}

/// An interned id (name or person) as stored.
pub fn encode_id(id: u32) -> [u8; 4] {
    id.to_be_bytes()
}

/// Inverse of [`encode_id`].
pub fn decode_id(bytes: &[u8]) -> Result<u32, Error> {
    Ok(u32::from_be_bytes(bytes.try_into().map_err(|_| {
        Error::corrupt("interned id is not 4 bytes")
    })?))
}

/// A counter as stored in meta.
pub fn encode_counter(v: u64) -> [u8; 8] {
    v.to_le_bytes()
}

/// Inverse of [`encode_counter`].
pub fn decode_counter(bytes: &[u8]) -> Result<u64, Error> {
    Ok(u64::from_le_bytes(bytes.try_into().map_err(|_| {
        Error::corrupt("meta counter is not 8 bytes")
    })?))
}

/// The analysis columns of up to a few thousand events of one name: just
/// what every analysis needs, without properties.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ColumnBlock {
    /// Person ids.
    pub person: Vec<u32>,
    /// Timestamps, Unix ms.
    pub ts: Vec<i64>,
    /// [`Stage::code`], 0 for none.
    pub stage: Vec<u8>,
    /// Revenue, NaN for none.
    pub revenue: Vec<f64>,
}

/// On-disk body of a column block (after the version byte and the time
/// bounds): timestamps are deltas from the block's minimum so they varint-encode
/// small; revenue is sparse because most events carry none.
#[derive(Decode)]
struct ColumnBody {
    person: Vec<u32>,
    ts_delta: Vec<u64>,
    stage: Vec<u8>,
    revenue: Vec<(u32, f64)>,
}

/// The encoding side of [`ColumnBody`], borrowing the columns so that
/// re-encoding a growing tail block does not copy it first. Field order and
/// types must match `ColumnBody` exactly.
#[derive(Encode)]
struct ColumnBodyRef<'a> {
    person: &'a [u32],
    ts_delta: Vec<u64>,
    stage: &'a [u8],
    revenue: Vec<(u32, f64)>,
}

impl ColumnBlock {
    /// Number of rows.
    pub fn len(&self) -> usize {
        self.ts.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.ts.is_empty()
    }

    /// Appends one row.
    pub fn push(&mut self, person: u32, ts: i64, stage: Option<Stage>, revenue: Option<f64>) {
        self.person.push(person);
        self.ts.push(ts);
        self.stage.push(stage.map_or(0, Stage::code));
        self.revenue.push(revenue.unwrap_or(f64::NAN));
    }

    /// The rows from `start` on, as a block of their own.
    pub fn slice_from(&self, start: usize) -> ColumnBlock {
        ColumnBlock {
            person: self.person[start..].to_vec(),
            ts: self.ts[start..].to_vec(),
            stage: self.stage[start..].to_vec(),
            revenue: self.revenue[start..].to_vec(),
        }
    }

    /// Encodes as `[version][min_ts][max_ts][bincode body]`.
    pub fn encode(&self) -> Vec<u8> {
        let min = self.ts.iter().copied().min().unwrap_or(0);
        let max = self.ts.iter().copied().max().unwrap_or(0);
        let body = ColumnBodyRef {
            person: &self.person,
            ts_delta: self.ts.iter().map(|&t| (t - min) as u64).collect(),
            stage: &self.stage,
            revenue: self
                .revenue
                .iter()
                .enumerate()
                .filter(|(_, r)| !r.is_nan())
                .map(|(i, &r)| (i as u32, r))
                .collect(),
        };
        let mut out = Vec::with_capacity(17 + self.len() * 8);
        out.push(FORMAT_VERSION);
        out.extend_from_slice(&min.to_le_bytes());
        out.extend_from_slice(&max.to_le_bytes());
        bincode::encode_into_std_write(&body, &mut out, config()).expect("writing to a Vec");
        out
    }

    /// The `[min, max]` timestamps of an encoded block, without decoding it.
    pub fn time_bounds(bytes: &[u8]) -> Result<(i64, i64), Error> {
        check_version(bytes)?;
        let b = bytes
            .get(1..17)
            .ok_or_else(|| Error::corrupt("column block too short"))?;
        let min = i64::from_le_bytes(b[..8].try_into().expect("8 bytes"));
        let max = i64::from_le_bytes(b[8..].try_into().expect("8 bytes"));
        Ok((min, max))
    }

    /// Decodes a block written by [`ColumnBlock::encode`].
    pub fn decode(bytes: &[u8]) -> Result<Self, Error> {
        let (min, _) = Self::time_bounds(bytes)?;
        let (body, _): (ColumnBody, usize) = bincode::decode_from_slice(&bytes[17..], config())
            .map_err(|e| Error::corrupt(format!("column block: {e}")))?;
        let n = body.ts_delta.len();
        if body.person.len() != n || body.stage.len() != n {
            return Err(Error::corrupt("column block: columns differ in length"));
        }
        let mut revenue = vec![f64::NAN; n];
        for (i, r) in body.revenue {
            *revenue
                .get_mut(i as usize)
                .ok_or_else(|| Error::corrupt("column block: revenue index out of range"))? = r;
        }
        Ok(ColumnBlock {
            person: body.person,
            ts: body.ts_delta.into_iter().map(|d| min + d as i64).collect(),
            stage: body.stage,
            revenue,
        })
    }
}

/// A full event as kept in raw blocks, for export.
#[derive(Encode, Decode, Debug, Clone, PartialEq)]
struct RawEvent {
    id: [u8; 16],
    event: String,
    user_id: Option<String>,
    anonymous_id: Option<String>,
    timestamp: i64,
    stage: u8,
    revenue: Option<f64>,
    properties: Option<String>,
}

impl From<&Event> for RawEvent {
    fn from(e: &Event) -> Self {
        RawEvent {
            id: *e.id.as_bytes(),
            event: e.event.clone(),
            user_id: e.user_id.clone(),
            anonymous_id: e.anonymous_id.clone(),
            timestamp: e.timestamp,
            stage: e.stage.map_or(0, Stage::code),
            revenue: e.revenue,
            properties: e.properties.clone(),
        }
    }
}

impl From<RawEvent> for Event {
    fn from(r: RawEvent) -> Self {
        Event {
            id: Uuid::from_bytes(r.id),
            event: r.event,
            user_id: r.user_id,
            anonymous_id: r.anonymous_id,
            timestamp: r.timestamp,
            stage: Stage::from_code(r.stage),
            revenue: r.revenue,
            properties: r.properties,
        }
    }
}

/// Encodes full events as `[version][codec][zstd(bincode(events))]`.
pub fn encode_raw_block(events: &[Event]) -> Vec<u8> {
    let raw: Vec<RawEvent> = events.iter().map(RawEvent::from).collect();
    let plain = bincode::encode_to_vec(&raw, config()).expect("writing to a Vec");
    let mut out = vec![FORMAT_VERSION, CODEC_ZSTD];
    out.extend(zstd::bulk::compress(&plain, ZSTD_LEVEL).expect("zstd compresses any input"));
    out
}

/// Decodes a block written by [`encode_raw_block`].
pub fn decode_raw_block(bytes: &[u8]) -> Result<Vec<Event>, Error> {
    check_version(bytes)?;
    if bytes.get(1) != Some(&CODEC_ZSTD) {
        return Err(Error::corrupt("raw block: unknown codec"));
    }
    let plain = zstd::stream::decode_all(&bytes[2..])
        .map_err(|e| Error::corrupt(format!("raw block: {e}")))?;
    let (raw, _): (Vec<RawEvent>, usize) = bincode::decode_from_slice(&plain, config())
        .map_err(|e| Error::corrupt(format!("raw block: {e}")))?;
    Ok(raw.into_iter().map(Event::from).collect())
}

fn check_version(bytes: &[u8]) -> Result<(), Error> {
    match bytes.first() {
        Some(&FORMAT_VERSION) => Ok(()),
        Some(&v) => Err(Error::UnsupportedFormat {
            found: v,
            supported: FORMAT_VERSION,
        }),
        None => Err(Error::corrupt("empty value")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_event() -> impl Strategy<Value = Event> {
        (
            any::<u128>(),
            "[a-z_]{1,20}",
            proptest::option::of("\\PC{1,30}"),
            proptest::option::of("[a-z0-9-]{1,40}"),
            946_684_800_000i64..4_102_444_800_000,
            0u8..=7,
            proptest::option::of(-1e9f64..1e9),
            proptest::option::of("\\PC{0,40}"),
        )
            .prop_map(
                |(id, event, user_id, anonymous_id, timestamp, stage, revenue, prop)| Event {
                    id: Uuid::from_u128(id),
                    event,
                    anonymous_id: if user_id.is_none() && anonymous_id.is_none() {
                        Some("anon".into())
                    } else {
                        anonymous_id
                    },
                    user_id,
                    timestamp,
                    stage: Stage::from_code(stage),
                    revenue,
                    properties: prop.map(|p| serde_json::json!({ "p": p }).to_string()),
                },
            )
    }

    proptest! {
        #[test]
        fn raw_blocks_round_trip(events in proptest::collection::vec(arb_event(), 0..40)) {
            let bytes = encode_raw_block(&events);
            prop_assert_eq!(decode_raw_block(&bytes).unwrap(), events);
        }

        #[test]
        fn column_blocks_round_trip(rows in proptest::collection::vec(
            (any::<u32>(), -4_000_000_000_000i64..4_000_000_000_000, 0u8..=7, proptest::option::of(-1e12f64..1e12)),
            0..200,
        )) {
            let mut block = ColumnBlock::default();
            for &(p, t, s, r) in &rows {
                block.push(p, t, Stage::from_code(s), r);
            }
            let bytes = block.encode();
            let back = ColumnBlock::decode(&bytes).unwrap();
            prop_assert_eq!(&back.person, &block.person);
            prop_assert_eq!(&back.ts, &block.ts);
            prop_assert_eq!(&back.stage, &block.stage);
            let same_revenue = back.revenue.iter().zip(&block.revenue)
                .all(|(a, b)| a == b || (a.is_nan() && b.is_nan()));
            prop_assert!(same_revenue);
            if !rows.is_empty() {
                let (min, max) = ColumnBlock::time_bounds(&bytes).unwrap();
                prop_assert_eq!(min, *block.ts.iter().min().unwrap());
                prop_assert_eq!(max, *block.ts.iter().max().unwrap());
            }
        }
    }

    #[test]
    fn id_buckets_round_trip_and_stay_sorted() {
        let s = |v: u8| -> IdSuffix { [v; 16 - ID_BUCKET_PREFIX] };
        let mut b = IdBucket::default();
        b.extend(&[s(3), s(1), s(3)]);
        assert_eq!(b.suffixes, vec![s(1), s(3)]);
        assert!(b.contains(&s(3)) && !b.contains(&s(2)));
        assert_eq!(IdBucket::decode(&b.encode()).unwrap(), b);
        assert!(IdBucket::decode(&[FORMAT_VERSION, 1, 2]).is_err());
    }

    #[test]
    fn a_future_format_is_refused_not_misread() {
        let mut bytes = ColumnBlock::default().encode();
        bytes[0] = FORMAT_VERSION + 1;
        assert!(matches!(
            ColumnBlock::decode(&bytes),
            Err(Error::UnsupportedFormat { .. })
        ));
    }
}
