//! Every byte Tally writes to disk is encoded and decoded here, and nowhere
//! else: the index keys in sled, the chunk files that hold the events, and
//! the write-ahead log. Values, chunk files and log records start with
//! [`FORMAT_VERSION`] so that a format change is always deliberate (the
//! fixture test in `tests/it/store_fixture.rs` fails when this layout
//! changes).
//!
//! Index key space (one sled tree; it holds no event data, only what finds
//! it):
//!
//! | key                          | value                                           |
//! |------------------------------|-------------------------------------------------|
//! | `m` + meta name              | little-endian counter                           |
//! | `n` + event name             | name id, u32 big-endian                         |
//! | `k` + chunk number (u32 BE)  | [`ChunkHeader`]: where each section of the chunk file is |
//! | `i` + first 4 bytes of an id | [`IdSpans`]: the chunks holding ids with that prefix, with their ranges |
//!
//! A chunk file (`chunks/NNNNNNNN.chunk`) is immutable once written:
//! `[magic][version]`, then its sections — the chunk's ids sorted (so
//! membership is a binary search; stored byte plane by byte plane, zstd),
//! each event's rank among them, the full events in acceptance order
//! without their ids (zstd, in sub-blocks), one [`ColumnBlock`] per event
//! name for the analyses, the person keys first seen since the previous
//! chunk (the person dictionary is the concatenation of these) — and last
//! a copy of its header.

use bincode::{Decode, Encode};
use tally_event::{Event, Stage};
use uuid::Uuid;

use crate::Error;

/// Version of everything below. Bump it, and add a migration or a clear
/// refusal, whenever any encoding changes. Version 1 kept everything in
/// sled (events in sled values); it is refused with a message. Version 3
/// added the property files (`NNNNNNNN.props`, see [`PropsTrailer`]);
/// every value version 2 wrote is encoded the same way, so version 2 bytes
/// are read as they are and a version 2 store is upgraded by writing the
/// property files of its chunks.
pub const FORMAT_VERSION: u8 = 3;

/// The oldest version whose values are read (by `check_version`).
pub const OLDEST_READABLE: u8 = 2;

/// First bytes of every property file.
pub const PROPS_MAGIC: &[u8; 8] = b"TALLYPRP";

/// First bytes of every chunk file.
pub const CHUNK_MAGIC: &[u8; 8] = b"TALLYCHK";

/// zstd level of the events section. The columnar layout, not the level,
/// is what makes it small.
const ZSTD_LEVEL: i32 = 3;

fn config() -> impl bincode::config::Config {
    bincode::config::standard()
}

/// Decoding reads damaged bytes too (a sled value, a chunk's header copy,
/// a fuzzer's input): a length prefix may claim anything, and bincode
/// allocates what is claimed. The limit turns an absurd claim into an
/// error rather than an abort; no real value comes near it.
const DECODE_LIMIT: usize = 1 << 30;

fn decode_config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<DECODE_LIMIT>()
}

/// Index key prefixes.
pub mod prefix {
    /// Counters and format marker.
    pub const META: u8 = b'm';
    /// Event name → name id.
    pub const NAME: u8 = b'n';
    /// Chunk number → chunk header.
    pub const CHUNK: u8 = b'k';
    /// Id prefix → chunks holding such ids.
    pub const ID: u8 = b'i';
}

/// Names of meta counters.
pub mod meta {
    /// The on-disk format version (one byte).
    pub const FORMAT: &[u8] = b"format";
    /// Next person id.
    pub const NEXT_PERSON: &[u8] = b"next_person";
    /// Next name id.
    pub const NEXT_NAME: &[u8] = b"next_name";
    /// Number of published chunks (chunk numbers are dense from 0).
    pub const CHUNKS: &[u8] = b"chunks";
    /// Number of the write-ahead log file that holds the open chunk.
    pub const WAL: &[u8] = b"wal";
}

/// `prefix` + `suffix`.
pub fn key(prefix: u8, suffix: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + suffix.len());
    k.push(prefix);
    k.extend_from_slice(suffix);
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

/// Key of a chunk's header.
pub fn chunk_key(chunk: u32) -> [u8; 5] {
    let mut k = [prefix::CHUNK; 5];
    k[1..].copy_from_slice(&chunk.to_be_bytes());
    k
}

/// Bytes of an id that select its entry in the id index. For UUIDv7 (what
/// the SDK and the collector assign) these are the top 32 bits of the
/// millisecond timestamp, a 65-second window: the entry lists the few
/// chunks written around then, whatever the event rate. Random ids get an
/// entry each.
pub const ID_PREFIX: usize = 4;

/// Key of an id's index entry.
pub fn id_key(id: &Uuid) -> [u8; 1 + ID_PREFIX] {
    let mut k = [prefix::ID; 1 + ID_PREFIX];
    k[1..].copy_from_slice(&id.as_bytes()[..ID_PREFIX]);
    k
}

/// The next 4 bytes of an id after its [`ID_PREFIX`]: for a UUIDv7, the
/// low bits of its millisecond and the start of its random part.
pub fn id_probe(id: &[u8; 16]) -> u32 {
    u32::from_be_bytes(id[ID_PREFIX..ID_PREFIX + 4].try_into().expect("4 bytes"))
}

/// Where the ids of one prefix are: per chunk holding any, the range of
/// their [`id_probe`]s. An id outside a chunk's range is not in it, with no
/// read of the chunk: that is what keeps dedup cheap when many chunks share
/// a prefix (a minute of busy traffic; several clients minting ids at once,
/// or with skewed clocks). Chunks ascending.
#[derive(Debug, Clone, Default, PartialEq, Encode, Decode)]
pub struct IdSpans(pub Vec<IdSpan>);

/// One chunk's ids of one prefix.
#[derive(Debug, Clone, Copy, PartialEq, Encode, Decode)]
pub struct IdSpan {
    /// Chunk number.
    pub chunk: u32,
    /// Smallest [`id_probe`] of those ids.
    pub lo: u32,
    /// Largest [`id_probe`] of those ids.
    pub hi: u32,
}

impl IdSpans {
    /// `[version][bincode]`.
    pub fn encode(&self) -> Vec<u8> {
        versioned(self)
    }

    /// Inverse of [`IdSpans::encode`].
    pub fn decode(bytes: &[u8]) -> Result<Self, Error> {
        unversioned(bytes, "id index entry")
    }

    /// The chunks that may hold `id`.
    pub fn candidates(&self, id: &[u8; 16]) -> impl Iterator<Item = u32> + '_ {
        let probe = id_probe(id);
        self.0
            .iter()
            .filter(move |s| (s.lo..=s.hi).contains(&probe))
            .map(|s| s.chunk)
    }
}

/// Where a byte range of a chunk file is, and its checksum.
#[derive(Debug, Clone, Copy, Default, PartialEq, Encode, Decode)]
pub struct Section {
    /// Offset from the start of the file.
    pub offset: u64,
    /// Length in bytes.
    pub len: u32,
    /// crc32 of those bytes.
    pub crc: u32,
}

/// One sub-block of the events section.
#[derive(Debug, Clone, Copy, PartialEq, Encode, Decode)]
pub struct EventsSection {
    /// The bytes.
    pub section: Section,
    /// Events in it (they follow the previous sub-blocks' in id order).
    pub events: u32,
}

/// One event name's column block in a chunk.
#[derive(Debug, Clone, Copy, PartialEq, Encode, Decode)]
pub struct NameSection {
    /// Name id.
    pub name: u32,
    /// Rows in the block.
    pub rows: u32,
    /// Earliest timestamp of those rows.
    pub min_ts: i64,
    /// Latest timestamp of those rows.
    pub max_ts: i64,
    /// The bytes ([`ColumnBlock::encode`]).
    pub section: Section,
}

/// What is in a chunk file and where: kept in the index, so opening the
/// store and planning a query read no chunk file, and repeated at the end
/// of the file itself.
#[derive(Debug, Clone, PartialEq, Encode, Decode)]
pub struct ChunkHeader {
    /// Number of events.
    pub events: u32,
    /// Earliest event timestamp.
    pub min_ts: i64,
    /// Latest event timestamp.
    pub max_ts: i64,
    /// Smallest id.
    pub min_id: [u8; 16],
    /// Largest id.
    pub max_id: [u8; 16],
    /// The sorted ids ([`encode_ids`]).
    pub ids: Section,
    /// For each event, in acceptance order, the position of its id in
    /// `ids` ([`encode_ranks`]).
    pub ranks: Section,
    /// The events in acceptance order, without ids.
    pub events_sections: Vec<EventsSection>,
    /// One column block per event name, by name id.
    pub names: Vec<NameSection>,
    /// Id of the first person in `persons`.
    pub first_person: u32,
    /// Person keys given ids `first_person..` since the previous chunk
    /// ([`encode_persons`]; empty section when none).
    pub persons: Section,
}

impl ChunkHeader {
    /// `[version][bincode]`.
    pub fn encode(&self) -> Vec<u8> {
        versioned(self)
    }

    /// Inverse of [`ChunkHeader::encode`].
    pub fn decode(bytes: &[u8]) -> Result<Self, Error> {
        unversioned(bytes, "chunk header")
    }

    /// True if `id` lies within the chunk's id range.
    pub fn may_hold(&self, id: &Uuid) -> bool {
        (self.min_id..=self.max_id).contains(id.as_bytes())
    }
}

/// The bytes of a chunk file before its sections: magic and version.
pub fn chunk_file_preamble() -> Vec<u8> {
    let mut out = CHUNK_MAGIC.to_vec();
    out.push(FORMAT_VERSION);
    out
}

/// Checks a chunk file's preamble.
pub fn check_chunk_preamble(bytes: &[u8]) -> Result<(), Error> {
    match bytes.split_at_checked(CHUNK_MAGIC.len()) {
        Some((magic, [v, ..])) if magic == CHUNK_MAGIC => check_version(&[*v]),
        _ => Err(Error::corrupt("not a Tally chunk file")),
    }
}

/// crc32 of a section's bytes.
pub fn crc(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
}

/// Verifies bytes read for `section`.
pub fn check_section(bytes: &[u8], section: &Section, what: &str) -> Result<(), Error> {
    if bytes.len() != section.len as usize || crc(bytes) != section.crc {
        return Err(Error::corrupt(format!("{what} section: checksum mismatch")));
    }
    Ok(())
}

/// Ids as the ids section stores them: sorted, then byte by byte (every
/// id's first byte, then every id's second byte, ...) and zstd-compressed,
/// `[version][zstd]`. Sorted UUIDv7 ids share their timestamp bytes, which
/// this layout turns into long runs: ~10 bytes per id instead of 16.
pub fn encode_ids(ids: &[[u8; 16]]) -> Vec<u8> {
    let mut planes = Vec::with_capacity(ids.len() * 16);
    for b in 0..16 {
        planes.extend(ids.iter().map(|id| id[b]));
    }
    let mut out = vec![FORMAT_VERSION];
    out.extend(zstd::bulk::compress(&planes, 1).expect("zstd compresses any input"));
    out
}

/// Inverse of [`encode_ids`].
pub fn decode_ids(bytes: &[u8]) -> Result<Vec<[u8; 16]>, Error> {
    check_version(bytes)?;
    let planes = zstd::stream::decode_all(&bytes[1..])
        .map_err(|e| Error::corrupt(format!("ids section: {e}")))?;
    if planes.len() % 16 != 0 {
        return Err(Error::corrupt("ids section has a partial id"));
    }
    let n = planes.len() / 16;
    let mut ids = vec![[0u8; 16]; n];
    for (b, plane) in planes.chunks_exact(n.max(1)).enumerate() {
        for (id, &byte) in ids.iter_mut().zip(plane) {
            id[b] = byte;
        }
    }
    Ok(ids)
}

/// Each event's position among the sorted ids, in acceptance order, as a
/// ranks section stores them: `[version][zstd(bincode(deltas))]`. UUIDv7
/// ids arrive nearly sorted, so the deltas are mostly 1 and cost almost
/// nothing.
pub fn encode_ranks(ranks: &[u32]) -> Vec<u8> {
    let mut prev = 0i64;
    let deltas: Vec<i64> = ranks
        .iter()
        .map(|&r| {
            let d = i64::from(r) - prev;
            prev = i64::from(r);
            d
        })
        .collect();
    compressed(&deltas)
}

/// Inverse of [`encode_ranks`].
pub fn decode_ranks(bytes: &[u8]) -> Result<Vec<u32>, Error> {
    let deltas: Vec<i64> = decompressed(bytes, "ranks section")?;
    let mut r = 0i64;
    deltas
        .into_iter()
        .map(|d| {
            r = r.wrapping_add(d);
            u32::try_from(r).map_err(|_| Error::corrupt("ranks section: rank out of range"))
        })
        .collect()
}

/// Person keys in id order as a persons section stores them:
/// `[version][zstd(bincode(keys))]`.
pub fn encode_persons(keys: &[&str]) -> Vec<u8> {
    compressed(&keys)
}

/// Inverse of [`encode_persons`].
pub fn decode_persons(bytes: &[u8]) -> Result<Vec<String>, Error> {
    decompressed(bytes, "persons section")
}

/// A property value as a property file's dictionary holds it; a row's
/// code is its value's position plus one, 0 being missing or `null`.
#[derive(Debug, Clone, PartialEq, Encode, Decode)]
pub enum PropValue {
    /// `true` / `false`.
    Bool(bool),
    /// A number.
    Num(f64),
    /// A string.
    Str(String),
    /// An object or an array.
    Other,
}

/// One property path's column for one event name's rows.
#[derive(Debug, Clone, PartialEq, Encode, Decode)]
pub struct PathColumn {
    /// The dotted path.
    pub path: String,
    /// Distinct values, each once.
    pub values: Vec<PropValue>,
    /// Per row: 0 missing, else 1 + position in `values`.
    pub codes: Vec<u32>,
}

/// The property columns of one event name in one chunk, rows in the order
/// of the chunk's column block for that name.
#[derive(Debug, Clone, Default, PartialEq, Encode, Decode)]
pub struct NameProps {
    /// The most used paths, at most a fixed number.
    pub paths: Vec<PathColumn>,
    /// True when some rows have paths without a column (readers then take
    /// a path they do not find from the events themselves).
    pub truncated: bool,
}

/// Who an identity link's anonymous id is: its person id, or (when it had
/// no id yet when the link was written) its key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Encode, Decode)]
pub enum LinkAnon {
    /// A person id.
    Person(u32),
    /// A person key not interned yet.
    Key(String),
}

/// An identity link (SPEC §1) as a property file records it: the best
/// link of an anonymous id known when the chunk was sealed.
#[derive(Debug, Clone, PartialEq, Encode, Decode)]
pub struct LinkRecord {
    /// The anonymous id.
    pub anon: LinkAnon,
    /// The linking event's timestamp.
    pub ts: i64,
    /// The user's person id.
    pub user: u32,
    /// The user's key (ties between links of equal time go to the smallest).
    pub user_key: String,
}

/// Where one name's sections are in a property file.
#[derive(Debug, Clone, PartialEq, Encode, Decode)]
pub struct PropsNameIndex {
    /// Name id.
    pub name: u32,
    /// Rows (equal to the chunk's name section).
    pub rows: u32,
    /// Bitmap of the rows whose event has no `user_id` (bit `i % 8` of byte `i / 8`).
    pub anonymous: Section,
    /// [`NameProps`].
    pub paths: Section,
}

/// The end of a property file (`chunks/NNNNNNNN.props`): where its
/// sections are. A property file holds what filters, breakdowns and
/// identity links read from a chunk (derived from the chunk's events,
/// so a missing or damaged one is rebuilt from them).
#[derive(Debug, Clone, Default, PartialEq, Encode, Decode)]
pub struct PropsTrailer {
    /// Per event name, in the chunk header's order.
    pub names: Vec<PropsNameIndex>,
    /// The links ([`LinkRecord`]s).
    pub links: Section,
}

/// A property file's first bytes.
pub fn props_file_preamble() -> Vec<u8> {
    let mut out = PROPS_MAGIC.to_vec();
    out.push(FORMAT_VERSION);
    out
}

/// Checks a property file's preamble.
pub fn check_props_preamble(bytes: &[u8]) -> Result<(), Error> {
    if bytes.len() < PROPS_MAGIC.len() + 1 || &bytes[..PROPS_MAGIC.len()] != PROPS_MAGIC {
        return Err(Error::corrupt("not a property file (bad magic)"));
    }
    check_version(&bytes[PROPS_MAGIC.len()..])
}

/// Encodes a property file's trailer.
pub fn encode_props_trailer(t: &PropsTrailer) -> Vec<u8> {
    versioned(t)
}

/// Inverse of [`encode_props_trailer`].
pub fn decode_props_trailer(bytes: &[u8]) -> Result<PropsTrailer, Error> {
    unversioned(bytes, "property file trailer")
}

/// Encodes a name's property columns (compressed).
pub fn encode_name_props(p: &NameProps) -> Vec<u8> {
    compressed(p)
}

/// Inverse of [`encode_name_props`].
pub fn decode_name_props(bytes: &[u8]) -> Result<NameProps, Error> {
    decompressed(bytes, "property columns")
}

/// Encodes an anonymous-rows bitmap (compressed).
pub fn encode_bitmap(bits: &[u8]) -> Vec<u8> {
    compressed(&bits)
}

/// Inverse of [`encode_bitmap`].
pub fn decode_bitmap(bytes: &[u8]) -> Result<Vec<u8>, Error> {
    decompressed(bytes, "anonymous rows")
}

/// Encodes link records (compressed).
pub fn encode_links(links: &[LinkRecord]) -> Vec<u8> {
    compressed(&links)
}

/// Inverse of [`encode_links`].
pub fn decode_links(bytes: &[u8]) -> Result<Vec<LinkRecord>, Error> {
    decompressed(bytes, "links")
}

/// A person's deletion (`tally delete-person`), as the deletions file
/// records it: the events counted for `user` in chunks numbered below
/// `chunks` are deleted (the open chunk is sealed first, so that is every
/// event stored before the deletion). Persons by id (for the column rows)
/// and by key (for whole events).
#[derive(Debug, Clone, PartialEq, Encode, Decode)]
pub struct Deletion {
    /// Chunks before this number hold the deleted events.
    pub chunks: u32,
    /// The person's id.
    pub person: u32,
    /// The person's key.
    pub key: String,
    /// True when the key's own anonymous events count for it (the key,
    /// as an anonymous id, was linked to no other user).
    pub own_anonymous: bool,
    /// The anonymous ids linked to the person then, by id…
    pub anonymous: Vec<u32>,
    /// …and by key.
    pub anonymous_keys: Vec<String>,
}

/// One record of the deletions file: `[len][crc][version][bincode]`.
pub fn encode_deletion(d: &Deletion) -> Vec<u8> {
    let payload = versioned(d);
    let mut out = Vec::with_capacity(8 + payload.len());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    out
}

/// Every intact record of a deletions file, and the length they span (a
/// record torn by a crash can only be the last: it was never
/// acknowledged). A bad record followed by more bytes is damage.
pub fn decode_deletions(bytes: &[u8]) -> Result<(Vec<Deletion>, usize), Error> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let Some(head) = bytes.get(at..at + 8) else {
            break;
        };
        let len = u32::from_le_bytes(head[..4].try_into().expect("4 bytes")) as usize;
        let sum = u32::from_le_bytes(head[4..].try_into().expect("4 bytes"));
        let Some(payload) = bytes.get(at + 8..at + 8 + len) else {
            break;
        };
        if crc(payload) != sum {
            if at + 8 + len >= bytes.len() {
                break;
            }
            return Err(Error::corrupt(format!(
                "deletion record at byte {at}: checksum mismatch"
            )));
        }
        out.push(unversioned(payload, "deletion record")?);
        at += 8 + len;
    }
    Ok((out, at))
}

/// Format 1 (events in sled values), read only to upgrade such a store:
/// its key prefix of raw blocks and their encoding.
pub mod format1 {
    use tally_event::Event;

    use super::{LoggedEvent, decode_config};
    use crate::error::Error;

    /// Key prefix of raw blocks (`r` + sequence number): every event once.
    pub const RAW: u8 = b'r';
    /// Key of the format marker.
    pub const FORMAT_KEY: &[u8] = b"mformat";

    /// A raw block: `[1][1 = zstd][zstd(bincode(events))]`.
    pub fn decode_raw_block(bytes: &[u8]) -> Result<Vec<Event>, Error> {
        if bytes.first() != Some(&1) || bytes.get(1) != Some(&1) {
            return Err(Error::corrupt(
                "format 1 raw block: unknown version or codec",
            ));
        }
        let plain = zstd::stream::decode_all(&bytes[2..])
            .map_err(|e| Error::corrupt(format!("format 1 raw block: {e}")))?;
        // Format 1's raw event has the log record's fields, in its order.
        let (raw, _): (Vec<LoggedEvent>, usize) =
            bincode::decode_from_slice(&plain, decode_config())
                .map_err(|e| Error::corrupt(format!("format 1 raw block: {e}")))?;
        Ok(raw.into_iter().map(Event::from).collect())
    }
}

/// Events as an events sub-block stores them: column by column (names
/// together, person keys together, ...), which zstd compresses far better
/// than event after event. Timestamps are deltas from the previous event.
#[derive(Encode, Decode, Default)]
struct EventColumns {
    event: Vec<String>,
    user_id: Vec<Option<String>>,
    anonymous_id: Vec<Option<String>>,
    ts_delta: Vec<i64>,
    stage: Vec<u8>,
    revenue: Vec<Option<f64>>,
    properties: Vec<Option<String>>,
}

/// Encodes events (their ids go to the ids section) as
/// `[version][zstd(bincode(columns))]`.
pub fn encode_events(events: &[&Event]) -> Vec<u8> {
    let mut c = EventColumns::default();
    let mut prev = 0i64;
    for e in events {
        c.event.push(e.event.clone());
        c.user_id.push(e.user_id.clone());
        c.anonymous_id.push(e.anonymous_id.clone());
        c.ts_delta.push(e.timestamp.wrapping_sub(prev));
        prev = e.timestamp;
        c.stage.push(e.stage.map_or(0, Stage::code));
        c.revenue.push(e.revenue);
        c.properties.push(e.properties.clone());
    }
    compressed(&c)
}

/// Decodes an events sub-block, giving the events the ids `ids` (in order).
pub fn decode_events(bytes: &[u8], ids: &[[u8; 16]]) -> Result<Vec<Event>, Error> {
    let c: EventColumns = decompressed(bytes, "events section")?;
    let n = c.event.len();
    if [
        ids.len(),
        c.user_id.len(),
        c.anonymous_id.len(),
        c.ts_delta.len(),
        c.stage.len(),
        c.revenue.len(),
        c.properties.len(),
    ]
    .iter()
    .any(|&len| len != n)
    {
        return Err(Error::corrupt("events section: columns differ in length"));
    }
    let mut ts = 0i64;
    let mut out = Vec::with_capacity(n);
    let cols = c
        .event
        .into_iter()
        .zip(c.user_id)
        .zip(c.anonymous_id)
        .zip(c.ts_delta)
        .zip(c.stage)
        .zip(c.revenue)
        .zip(c.properties)
        .zip(ids);
    for (((((((event, user_id), anonymous_id), d), stage), revenue), properties), id) in cols {
        ts = ts.wrapping_add(d);
        out.push(Event {
            id: Uuid::from_bytes(*id),
            event,
            user_id,
            anonymous_id,
            timestamp: ts,
            stage: Stage::from_code(stage),
            revenue,
            properties,
        });
    }
    Ok(out)
}

/// The analysis columns of one event name: just what every analysis needs,
/// without properties.
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

/// On-disk body of a column block (after the version byte): timestamps are
/// deltas from the previous row, which chunks write in time order, so they
/// varint-encode in a byte or two; revenue is sparse because most events
/// carry none.
#[derive(Decode)]
struct ColumnBody {
    person: Vec<u32>,
    ts_delta: Vec<i64>,
    stage: Vec<u8>,
    revenue: Vec<(u32, f64)>,
}

/// The encoding side of [`ColumnBody`], borrowing what it can. Field order
/// and types must match `ColumnBody` exactly.
#[derive(Encode)]
struct ColumnBodyRef<'a> {
    person: &'a [u32],
    ts_delta: Vec<i64>,
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

    /// Appends every row of `other`.
    pub fn extend(&mut self, other: &ColumnBlock) {
        self.person.extend_from_slice(&other.person);
        self.ts.extend_from_slice(&other.ts);
        self.stage.extend_from_slice(&other.stage);
        self.revenue.extend_from_slice(&other.revenue);
    }

    /// The same rows in timestamp order (stable).
    pub fn sorted_by_time(&self) -> ColumnBlock {
        let mut order: Vec<usize> = (0..self.len()).collect();
        order.sort_by_key(|&i| self.ts[i]);
        ColumnBlock {
            person: order.iter().map(|&i| self.person[i]).collect(),
            ts: order.iter().map(|&i| self.ts[i]).collect(),
            stage: order.iter().map(|&i| self.stage[i]).collect(),
            revenue: order.iter().map(|&i| self.revenue[i]).collect(),
        }
    }

    /// Encodes as `[version][bincode body]`.
    pub fn encode(&self) -> Vec<u8> {
        let mut prev = 0i64;
        let body = ColumnBodyRef {
            person: &self.person,
            ts_delta: self
                .ts
                .iter()
                .map(|&t| {
                    let d = t.wrapping_sub(prev);
                    prev = t;
                    d
                })
                .collect(),
            stage: &self.stage,
            revenue: self
                .revenue
                .iter()
                .enumerate()
                .filter(|(_, r)| !r.is_nan())
                .map(|(i, &r)| (i as u32, r))
                .collect(),
        };
        let mut out = Vec::with_capacity(1 + self.len() * 6);
        out.push(FORMAT_VERSION);
        bincode::encode_into_std_write(&body, &mut out, config()).expect("writing to a Vec");
        out
    }

    /// Decodes a block written by [`ColumnBlock::encode`].
    pub fn decode(bytes: &[u8]) -> Result<Self, Error> {
        check_version(bytes)?;
        let (body, _): (ColumnBody, usize) =
            bincode::decode_from_slice(&bytes[1..], decode_config())
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
        let mut t = 0i64;
        Ok(ColumnBlock {
            person: body.person,
            ts: body
                .ts_delta
                .into_iter()
                .map(|d| {
                    t = t.wrapping_add(d);
                    t
                })
                .collect(),
            stage: body.stage,
            revenue,
        })
    }
}

/// A full event as a write-ahead log record holds it.
#[derive(Encode, Decode, Debug, Clone, PartialEq)]
struct LoggedEvent {
    id: [u8; 16],
    event: String,
    user_id: Option<String>,
    anonymous_id: Option<String>,
    timestamp: i64,
    stage: u8,
    revenue: Option<f64>,
    properties: Option<String>,
}

impl From<LoggedEvent> for Event {
    fn from(r: LoggedEvent) -> Self {
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

/// Bytes before a log record's payload: length (u32 LE), crc32 of the
/// payload (u32 LE).
pub const WAL_RECORD_HEADER: usize = 8;

/// One write-ahead log record: `[len][crc][version][bincode(events)]`. The
/// log is short-lived (it holds only the open chunk), so it is not
/// compressed: appending must be cheap.
pub fn encode_wal_record(events: &[Event]) -> Vec<u8> {
    let logged: Vec<LoggedEvent> = events
        .iter()
        .map(|e| LoggedEvent {
            id: *e.id.as_bytes(),
            event: e.event.clone(),
            user_id: e.user_id.clone(),
            anonymous_id: e.anonymous_id.clone(),
            timestamp: e.timestamp,
            stage: e.stage.map_or(0, Stage::code),
            revenue: e.revenue,
            properties: e.properties.clone(),
        })
        .collect();
    let mut payload = vec![FORMAT_VERSION];
    bincode::encode_into_std_write(&logged, &mut payload, config()).expect("writing to a Vec");
    let mut out = Vec::with_capacity(WAL_RECORD_HEADER + payload.len());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc(&payload).to_le_bytes());
    out.extend(payload);
    out
}

/// Reads the records of a log from its start. Returns the events of every
/// intact record and the length of that valid prefix.
///
/// Only the *tail* of a log can be torn by a crash: acknowledgement waits
/// for the fsync of every record, and records are only ever appended. So a
/// bad record is a torn write (never acknowledged; dropped with the rest)
/// only when nothing but zeros follows it or it runs past the end of the
/// file. A bad record with intact bytes after it is damage to data that may
/// have been acknowledged: that is an error naming the offset, never a
/// silent truncation.
pub fn decode_wal(bytes: &[u8]) -> Result<(Vec<Event>, usize), Error> {
    let mut events = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let torn = |reason: &str| -> Result<(), Error> {
            if bytes[at..].iter().all(|&b| b == 0) {
                Ok(())
            } else {
                Err(Error::corrupt(format!(
                    "write-ahead log record at byte {at} is damaged ({reason}) and more data follows it"
                )))
            }
        };
        let Some(head) = bytes.get(at..at + WAL_RECORD_HEADER) else {
            // A header cut short: only ever the last bytes of the file.
            break;
        };
        let len = u32::from_le_bytes(head[..4].try_into().expect("4 bytes")) as usize;
        let sum = u32::from_le_bytes(head[4..].try_into().expect("4 bytes"));
        let start = at + WAL_RECORD_HEADER;
        let Some(payload) = bytes.get(start..start + len) else {
            // Runs past the end of the file: the last record, torn.
            break;
        };
        if len == 0 || crc(payload) != sum {
            if start + len == bytes.len() {
                break; // the last record, torn in place
            }
            torn("checksum mismatch")?;
            break;
        }
        check_version(payload)?;
        let (logged, _): (Vec<LoggedEvent>, usize) =
            bincode::decode_from_slice(&payload[1..], decode_config())
                .map_err(|e| Error::corrupt(format!("write-ahead log record at byte {at}: {e}")))?;
        events.extend(logged.into_iter().map(Event::from));
        at = start + len;
    }
    Ok((events, at))
}

/// The length of a log's prefix of intact records, whatever follows it
/// (what `tally check --repair` keeps of a damaged log).
pub fn wal_intact_prefix(bytes: &[u8]) -> usize {
    let mut at = 0;
    while let Some(head) = bytes.get(at..at + WAL_RECORD_HEADER) {
        let len = u32::from_le_bytes(head[..4].try_into().expect("4 bytes")) as usize;
        let sum = u32::from_le_bytes(head[4..].try_into().expect("4 bytes"));
        let start = at + WAL_RECORD_HEADER;
        match bytes.get(start..start + len) {
            Some(payload)
                if len > 0
                    && crc(payload) == sum
                    && decode_wal(&bytes[at..start + len]).is_ok() =>
            {
                at = start + len;
            }
            _ => break,
        }
    }
    at
}

/// `[version][zstd(bincode(value))]`, the form of every compressed section.
fn compressed(value: &impl Encode) -> Vec<u8> {
    let plain = bincode::encode_to_vec(value, config()).expect("writing to a Vec");
    let mut out = vec![FORMAT_VERSION];
    out.extend(zstd::bulk::compress(&plain, ZSTD_LEVEL).expect("zstd compresses any input"));
    out
}

/// Inverse of [`compressed`]; `what` names the section in errors.
fn decompressed<T: Decode<()>>(bytes: &[u8], what: &str) -> Result<T, Error> {
    check_version(bytes)?;
    let plain = zstd::stream::decode_all(&bytes[1..])
        .map_err(|e| Error::corrupt(format!("{what}: {e}")))?;
    bincode::decode_from_slice(&plain, decode_config())
        .map(|(v, _)| v)
        .map_err(|e| Error::corrupt(format!("{what}: {e}")))
}

fn versioned(value: &impl Encode) -> Vec<u8> {
    let mut out = vec![FORMAT_VERSION];
    bincode::encode_into_std_write(value, &mut out, config()).expect("writing to a Vec");
    out
}

fn unversioned<T: Decode<()>>(bytes: &[u8], what: &str) -> Result<T, Error> {
    check_version(bytes)?;
    bincode::decode_from_slice(&bytes[1..], decode_config())
        .map(|(v, _)| v)
        .map_err(|e| Error::corrupt(format!("{what}: {e}")))
}

fn check_version(bytes: &[u8]) -> Result<(), Error> {
    match bytes.first() {
        Some(OLDEST_READABLE..=FORMAT_VERSION) => Ok(()),
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
            946_684_800_000i64..253_402_300_799_999,
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
        fn events_sections_round_trip(events in proptest::collection::vec(arb_event(), 0..40)) {
            let refs: Vec<&Event> = events.iter().collect();
            let ids: Vec<[u8; 16]> = events.iter().map(|e| *e.id.as_bytes()).collect();
            let bytes = encode_events(&refs);
            prop_assert_eq!(decode_events(&bytes, &ids).unwrap(), events);
            prop_assert!(decode_events(&bytes, &ids[..ids.len().saturating_sub(1)]).is_err() || ids.is_empty());
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
            for b in [block.clone(), block.sorted_by_time()] {
                let back = ColumnBlock::decode(&b.encode()).unwrap();
                prop_assert_eq!(&back.person, &b.person);
                prop_assert_eq!(&back.ts, &b.ts);
                prop_assert_eq!(&back.stage, &b.stage);
                let same_revenue = back.revenue.iter().zip(&b.revenue)
                    .all(|(x, y)| x == y || (x.is_nan() && y.is_nan()));
                prop_assert!(same_revenue);
            }
            let sorted = block.sorted_by_time();
            prop_assert!(sorted.ts.windows(2).all(|w| w[0] <= w[1]));
        }

        /// Whatever prefix of a log survives a crash, replay returns exactly
        /// the records that are complete in it, and says where they end.
        #[test]
        fn a_log_cut_anywhere_replays_its_complete_records(
            records in proptest::collection::vec(proptest::collection::vec(arb_event(), 1..5), 1..6),
            cut in any::<prop::sample::Index>(),
        ) {
            let encoded: Vec<Vec<u8>> = records.iter().map(|r| encode_wal_record(r)).collect();
            let log: Vec<u8> = encoded.concat();
            let at = cut.index(log.len() + 1);
            let (events, valid) = decode_wal(&log[..at]).unwrap();
            let mut end = 0;
            let mut complete = Vec::new();
            for (r, bytes) in records.iter().zip(&encoded) {
                if end + bytes.len() > at {
                    break;
                }
                end += bytes.len();
                complete.extend(r.iter().cloned());
            }
            prop_assert_eq!(valid, end);
            prop_assert_eq!(events, complete);
        }
    }

    proptest! {
        #[test]
        fn ranks_round_trip(ranks in proptest::collection::vec(any::<u32>(), 0..300)) {
            prop_assert_eq!(decode_ranks(&encode_ranks(&ranks)).unwrap(), ranks);
        }

        #[test]
        fn ids_sections_round_trip(mut ids in proptest::collection::vec(any::<[u8; 16]>(), 0..300)) {
            ids.sort_unstable();
            prop_assert_eq!(decode_ids(&encode_ids(&ids)).unwrap(), ids);
        }
    }

    /// Every decoder of stored bytes, on `bytes`: errors are fine, a panic
    /// (or an abort on an absurd allocation) is not. The same bodies serve
    /// the cargo-fuzz targets in `fuzz/`.
    fn decode_everything(bytes: &[u8]) {
        let _ = decode_wal(bytes);
        let _ = wal_intact_prefix(bytes);
        let _ = ChunkHeader::decode(bytes);
        let _ = IdSpans::decode(bytes);
        let _ = decode_ids(bytes);
        let _ = decode_ranks(bytes);
        let _ = decode_persons(bytes);
        let _ = decode_events(bytes, &[[7u8; 16]; 3]);
        let _ = ColumnBlock::decode(bytes);
        let _ = decode_counter(bytes);
        let _ = decode_id(bytes);
        let _ = check_chunk_preamble(bytes);
    }

    /// Valid encodings of every kind, to damage.
    fn valid_encodings(events: &[Event]) -> Vec<Vec<u8>> {
        let refs: Vec<&Event> = events.iter().collect();
        let mut ids: Vec<[u8; 16]> = events.iter().map(|e| *e.id.as_bytes()).collect();
        ids.sort_unstable();
        let mut block = ColumnBlock::default();
        for (i, e) in events.iter().enumerate() {
            block.push(i as u32, e.timestamp, e.stage, e.revenue);
        }
        let header = ChunkHeader {
            events: events.len() as u32,
            min_ts: 1,
            max_ts: 2,
            min_id: [0; 16],
            max_id: [9; 16],
            ids: Section::default(),
            ranks: Section::default(),
            events_sections: vec![
                EventsSection {
                    section: Section::default(),
                    events: 4,
                };
                2
            ],
            names: Vec::new(),
            first_person: 3,
            persons: Section::default(),
        };
        vec![
            encode_wal_record(events),
            [encode_wal_record(events), encode_wal_record(events)].concat(),
            encode_events(&refs),
            encode_ids(&ids),
            encode_ranks(&(0..events.len() as u32).collect::<Vec<_>>()),
            encode_persons(&["a", "bb"]),
            block.sorted_by_time().encode(),
            header.encode(),
            IdSpans(vec![IdSpan {
                chunk: 1,
                lo: 2,
                hi: 3,
            }])
            .encode(),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Fuzzing as a property: random bytes never panic a decoder.
        #[test]
        fn decoders_never_panic_on_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            decode_everything(&bytes);
            let mut versioned = vec![FORMAT_VERSION];
            versioned.extend(&bytes);
            decode_everything(&versioned);
        }

        /// Valid encodings with bytes flipped, cut or extended never panic
        /// a decoder.
        #[test]
        fn decoders_never_panic_on_damaged_encodings(
            events in proptest::collection::vec(arb_event(), 1..6),
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
            cut in any::<prop::sample::Index>(),
        ) {
            for mut bytes in valid_encodings(&events) {
                decode_everything(&bytes);
                for (at, x) in &flips {
                    let i = at.index(bytes.len());
                    bytes[i] ^= x | 1;
                }
                decode_everything(&bytes);
                let end = cut.index(bytes.len() + 1);
                decode_everything(&bytes[..end]);
            }
        }
    }

    #[test]
    fn an_absurd_length_claim_is_an_error_not_an_abort() {
        // A Vec claiming 2^40 elements (varint: 0xfd, then a u64).
        let mut bytes = vec![FORMAT_VERSION, 0xfd];
        bytes.extend((1u64 << 40).to_le_bytes());
        assert!(IdSpans::decode(&bytes).is_err());
        assert!(ChunkHeader::decode(&bytes).is_err());
        assert!(ColumnBlock::decode(&bytes).is_err());
    }

    #[test]
    fn a_garbled_last_record_is_a_torn_tail() {
        let a = encode_wal_record(&[arb_like(1)]);
        let b = encode_wal_record(&[arb_like(2)]);
        let mut log = [a.clone(), b].concat();
        let last = log.len() - 1;
        log[last] ^= 1;
        let (events, valid) = decode_wal(&log).unwrap();
        assert_eq!(events, vec![arb_like(1)]);
        assert_eq!(valid, a.len());
        // A tail of zeros (a file extended, its data never written) too.
        let mut zeros = a.clone();
        zeros.extend([0u8; 100]);
        let (events, valid) = decode_wal(&zeros).unwrap();
        assert_eq!((events.len(), valid), (1, a.len()));
    }

    #[test]
    fn a_garbled_record_in_the_middle_is_damage_with_its_offset() {
        let a = encode_wal_record(&[arb_like(1)]);
        let b = encode_wal_record(&[arb_like(2)]);
        let c = encode_wal_record(&[arb_like(3)]);
        let mut log = [a.clone(), b, c].concat();
        log[a.len() + WAL_RECORD_HEADER + 3] ^= 1;
        let err = decode_wal(&log).unwrap_err().to_string();
        assert!(err.contains(&format!("byte {}", a.len())), "{err}");
        assert!(err.contains("more data follows"), "{err}");
    }

    fn arb_like(n: u128) -> Event {
        Event {
            id: Uuid::from_u128(n),
            event: "e".into(),
            user_id: Some("u".into()),
            anonymous_id: None,
            timestamp: 1_800_000_000_000,
            stage: None,
            revenue: None,
            properties: None,
        }
    }

    #[test]
    fn headers_and_chunk_lists_round_trip() {
        let h = ChunkHeader {
            events: 3,
            min_ts: -5,
            max_ts: 9,
            min_id: [1; 16],
            max_id: [2; 16],
            ids: Section {
                offset: 9,
                len: 48,
                crc: 7,
            },
            ranks: Section::default(),
            events_sections: vec![EventsSection {
                section: Section::default(),
                events: 3,
            }],
            names: vec![NameSection {
                name: 4,
                rows: 3,
                min_ts: -5,
                max_ts: 9,
                section: Section::default(),
            }],
            first_person: 12,
            persons: Section::default(),
        };
        assert_eq!(ChunkHeader::decode(&h.encode()).unwrap(), h);
        let keys = ["anon-1", "alice", "Zoë"];
        assert_eq!(decode_persons(&encode_persons(&keys)).unwrap(), keys);
        let l = IdSpans(vec![
            IdSpan {
                chunk: 0,
                lo: 5,
                hi: 9,
            },
            IdSpan {
                chunk: 300_000,
                lo: 0,
                hi: u32::MAX,
            },
        ]);
        assert_eq!(IdSpans::decode(&l.encode()).unwrap(), l);
        let id = |probe: u32| {
            let mut b = [0u8; 16];
            b[ID_PREFIX..ID_PREFIX + 4].copy_from_slice(&probe.to_be_bytes());
            b
        };
        assert_eq!(l.candidates(&id(5)).collect::<Vec<_>>(), vec![0, 300_000]);
        assert_eq!(l.candidates(&id(10)).collect::<Vec<_>>(), vec![300_000]);
        assert!(h.may_hold(&Uuid::from_bytes([1; 16])) && !h.may_hold(&Uuid::from_bytes([3; 16])));
    }

    #[test]
    fn a_future_format_is_refused_not_misread() {
        let mut bytes = ColumnBlock::default().encode();
        bytes[0] = FORMAT_VERSION + 1;
        assert!(matches!(
            ColumnBlock::decode(&bytes),
            Err(Error::UnsupportedFormat { .. })
        ));
        let mut preamble = chunk_file_preamble();
        assert!(check_chunk_preamble(&preamble).is_ok());
        *preamble.last_mut().unwrap() = FORMAT_VERSION + 1;
        assert!(matches!(
            check_chunk_preamble(&preamble),
            Err(Error::UnsupportedFormat { .. })
        ));
        assert!(check_chunk_preamble(b"NOTCHUNK\x02").is_err());
    }
}
