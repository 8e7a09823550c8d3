//! Property files (`chunks/NNNNNNNN.props`, format 3): what filters,
//! breakdowns and identity links read from a chunk, so a query never
//! decodes an event or parses JSON per row.
//!
//! For every event name of the chunk, in the row order of the chunk's
//! column block: a bitmap of the rows whose event has no `user_id` (the
//! rows identity links can move to a user), and dictionary-encoded columns
//! of the [`MAX_PATHS`] most used property paths (nested objects' paths
//! included, [`tally_query::filter::flatten`]). A path without a column in
//! a name marked `truncated` is read from the events themselves (the slow
//! path); in one that is not, it is missing from every row. Last, the
//! identity links known when the chunk was sealed.
//!
//! Everything here is derived from the chunk's events: a missing or damaged
//! property file is rebuilt from them (and a format 2 store, which had
//! none, is upgraded by writing them).

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use serde_json::Value;
use tally_event::Event;
use tally_query::filter::{GroupValue, Prop, Where};

use super::codec::{
    self, LinkRecord, NameProps, PathColumn, PropValue, PropsNameIndex, PropsTrailer, Section,
};
use crate::Error;

/// Most property paths with a column per event name and chunk. Events with
/// more distinct paths than this are rare in product analytics (PostHog
/// warns at a few hundred per project); the rest take the slow path.
pub const MAX_PATHS: usize = 64;

/// The path of chunk `n`'s property file.
pub fn path(dir: &Path, n: u32) -> PathBuf {
    dir.join(format!("{n:08}.props"))
}

/// For every name, the positions in `names` of its events in the order
/// of the chunk's column block: acceptance order, then a stable sort by
/// time (what `chunk::write` does).
pub fn name_rows(events: &[&Event], names: &[u32]) -> BTreeMap<u32, Vec<usize>> {
    let mut out: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
    for (i, &name) in names.iter().enumerate() {
        out.entry(name).or_default().push(i);
    }
    for rows in out.values_mut() {
        rows.sort_by_key(|&i| events[i].timestamp);
    }
    out
}

/// One name's property data, built.
pub struct BuiltName {
    /// Name id.
    pub name: u32,
    /// Rows.
    pub rows: u32,
    /// Anonymous rows.
    pub anonymous: Vec<u8>,
    /// Columns.
    pub props: NameProps,
}

/// One path's column while a name is being built.
struct Building {
    path: String,
    used: usize,
    codes: Vec<u32>,
    values: Vec<PropValue>,
    strings: HashMap<String, u32>,
    numbers: HashMap<u64, u32>,
    bools: [u32; 2],
    other: u32,
}

impl Building {
    fn code(&mut self, v: &Value) -> u32 {
        let add = |values: &mut Vec<PropValue>, value: PropValue| {
            values.push(value);
            values.len() as u32
        };
        match v {
            Value::Null => 0,
            Value::Bool(b) => {
                let slot = &mut self.bools[usize::from(*b)];
                if *slot == 0 {
                    *slot = add(&mut self.values, PropValue::Bool(*b));
                }
                *slot
            }
            Value::Number(n) => match n.as_f64() {
                Some(x) => match self.numbers.get(&x.to_bits()) {
                    Some(&c) => c,
                    None => {
                        let c = add(&mut self.values, PropValue::Num(x));
                        self.numbers.insert(x.to_bits(), c);
                        c
                    }
                },
                None => self.other_code(),
            },
            Value::String(s) => match self.strings.get(s.as_str()) {
                Some(&c) => c,
                None => {
                    let c = add(&mut self.values, PropValue::Str(s.clone()));
                    self.strings.insert(s.clone(), c);
                    c
                }
            },
            Value::Array(_) | Value::Object(_) => self.other_code(),
        }
    }

    fn other_code(&mut self) -> u32 {
        if self.other == 0 {
            self.values.push(PropValue::Other);
            self.other = self.values.len() as u32;
        }
        self.other
    }
}

/// Builds one name's bitmap and columns from its events, in row order: one
/// parse per event and one walk of its object, a column per path met
/// (paths as `tally_query::filter::flatten` gives them: objects are values too, keys with a
/// dot and `null`s are left out), then the most used [`MAX_PATHS`] kept.
pub fn build_name(name: u32, events: &[&Event]) -> BuiltName {
    fn walk(
        row: usize,
        rows: usize,
        path: &mut String,
        v: &Value,
        columns: &mut Vec<Building>,
        index: &mut HashMap<String, usize>,
    ) {
        let Value::Object(map) = v else { return };
        for (key, value) in map {
            if key.contains('.') || key.is_empty() || value.is_null() {
                continue;
            }
            let len = path.len();
            if len > 0 {
                path.push('.');
            }
            path.push_str(key);
            let c = match index.get(path.as_str()) {
                Some(&c) => c,
                None => {
                    index.insert(path.clone(), columns.len());
                    columns.push(Building {
                        path: path.clone(),
                        used: 0,
                        codes: vec![0; rows],
                        values: Vec::new(),
                        strings: HashMap::new(),
                        numbers: HashMap::new(),
                        bools: [0; 2],
                        other: 0,
                    });
                    columns.len() - 1
                }
            };
            let col = &mut columns[c];
            col.used += 1;
            col.codes[row] = col.code(value);
            if value.is_object() {
                walk(row, rows, path, value, columns, index);
            }
            path.truncate(len);
        }
    }
    let rows = events.len();
    let mut anonymous = vec![0u8; rows.div_ceil(8)];
    let mut columns: Vec<Building> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut path = String::new();
    // Events of one name often carry the very same properties (a page's
    // path and campaign): each distinct text is parsed once, and its
    // repeats copy the first row's codes.
    let mut first_of: HashMap<&str, usize> = HashMap::new();
    let mut repeats: Vec<(usize, usize)> = Vec::new();
    for (i, e) in events.iter().enumerate() {
        if e.user_id.is_none() {
            anonymous[i / 8] |= 1 << (i % 8);
        }
        let Some(text) = e.properties.as_deref() else {
            continue;
        };
        if let Some(&first) = first_of.get(text) {
            repeats.push((i, first));
            continue;
        }
        first_of.insert(text, i);
        if let Ok(v) = serde_json::from_str::<Value>(text) {
            walk(i, rows, &mut path, &v, &mut columns, &mut index);
        }
    }
    for col in &mut columns {
        for &(row, first) in &repeats {
            let code = col.codes[first];
            if code != 0 {
                col.codes[row] = code;
                col.used += 1;
            }
        }
    }
    let truncated = columns.len() > MAX_PATHS;
    columns.sort_by(|a, b| b.used.cmp(&a.used).then(a.path.cmp(&b.path)));
    columns.truncate(MAX_PATHS);
    columns.sort_by(|a, b| a.path.cmp(&b.path));
    BuiltName {
        name,
        rows: rows as u32,
        anonymous,
        props: NameProps {
            paths: columns
                .into_iter()
                .map(|c| PathColumn {
                    path: c.path,
                    values: c.values,
                    codes: c.codes,
                })
                .collect(),
            truncated,
        },
    }
}

/// Builds every name's property data of a chunk's events (`names[i]` is
/// event `i`'s name id).
pub fn build(events: &[&Event], names: &[u32]) -> Vec<BuiltName> {
    use rayon::prelude::*;
    let rows = name_rows(events, names);
    rows.into_par_iter()
        .map(|(name, rows)| {
            let evs: Vec<&Event> = rows.iter().map(|&i| events[i]).collect();
            build_name(name, &evs)
        })
        .collect()
}

/// Writes chunk `n`'s property file durably (temporary name, fsync,
/// rename; the caller fsyncs the directory).
pub fn write(dir: &Path, n: u32, names: &[BuiltName], links: &[LinkRecord]) -> Result<(), Error> {
    let mut bytes = codec::props_file_preamble();
    let mut place = |b: &[u8]| {
        let s = Section {
            offset: bytes.len() as u64,
            len: b.len() as u32,
            crc: codec::crc(b),
        };
        bytes.extend_from_slice(b);
        s
    };
    let mut trailer = PropsTrailer::default();
    for b in names {
        let anonymous = place(&codec::encode_bitmap(&b.anonymous));
        let paths = place(&codec::encode_name_props(&b.props));
        trailer.names.push(PropsNameIndex {
            name: b.name,
            rows: b.rows,
            anonymous,
            paths,
        });
    }
    trailer.links = place(&codec::encode_links(links));
    let t = codec::encode_props_trailer(&trailer);
    bytes.extend_from_slice(&t);
    bytes.extend_from_slice(&(t.len() as u32).to_le_bytes());

    let final_path = path(dir, n);
    let tmp = final_path.with_extension("props.tmp");
    let io = |e| Error::io(format!("writing {}", tmp.display()), e);
    // Not traced by the power-cut model (`hooks`): nothing acknowledged
    // depends on a property file, which a writer rebuilds when missing,
    // and it is written by its own thread.
    let mut f = File::create(&tmp).map_err(io)?;
    f.write_all(&bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, &final_path)
        .map_err(|e| Error::io(format!("renaming {}", tmp.display()), e))?;
    Ok(())
}

/// A property file opened for reading.
pub struct PropsFile {
    path: PathBuf,
    file: File,
    trailer: PropsTrailer,
}

impl PropsFile {
    /// Opens chunk `n`'s property file and reads its trailer; `Ok(None)`
    /// when there is none.
    pub fn open(dir: &Path, n: u32) -> Result<Option<PropsFile>, Error> {
        let path = path(dir, n);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(format!("opening {}", path.display()), e)),
        };
        let io = |e| Error::io(format!("reading {}", path.display()), e);
        let corrupt = |what: String| Error::corrupt(format!("{}: {what}", path.display()));
        let size = file.metadata().map_err(io)?.len();
        let head = codec::PROPS_MAGIC.len() as u64 + 1;
        if size < head + 4 {
            return Err(corrupt("too short for a property file".into()));
        }
        let mut preamble = vec![0u8; head as usize];
        file.read_exact_at(&mut preamble, 0).map_err(io)?;
        codec::check_props_preamble(&preamble).map_err(|e| corrupt(e.to_string()))?;
        let mut len = [0u8; 4];
        file.read_exact_at(&mut len, size - 4).map_err(io)?;
        let len = u64::from(u32::from_le_bytes(len));
        let at = (size - 4)
            .checked_sub(len)
            .filter(|&at| at >= head)
            .ok_or_else(|| corrupt("its trailer is cut short".into()))?;
        let mut bytes = vec![0u8; len as usize];
        file.read_exact_at(&mut bytes, at).map_err(io)?;
        let trailer = codec::decode_props_trailer(&bytes).map_err(|e| corrupt(e.to_string()))?;
        Ok(Some(PropsFile {
            path,
            file,
            trailer,
        }))
    }

    fn read(&self, s: &Section, what: &str) -> Result<Vec<u8>, Error> {
        let mut buf = vec![0u8; s.len as usize];
        self.file
            .read_exact_at(&mut buf, s.offset)
            .map_err(|e| Error::io(format!("reading {}", self.path.display()), e))?;
        codec::check_section(&buf, s, what)
            .map_err(|e| Error::corrupt(format!("{}: {e}", self.path.display())))?;
        Ok(buf)
    }

    /// Number of names the file describes.
    pub fn names(&self) -> usize {
        self.trailer.names.len()
    }

    fn index(&self, name: u32) -> Option<&PropsNameIndex> {
        self.trailer.names.iter().find(|n| n.name == name)
    }

    /// Whether the file has `name` with `rows` rows (a file that does not
    /// match its chunk is not used).
    pub fn matches(&self, name: u32, rows: u32) -> bool {
        self.index(name).is_some_and(|n| n.rows == rows)
    }

    /// The anonymous-rows bitmap of `name`.
    pub fn anonymous(&self, name: u32) -> Result<Vec<u8>, Error> {
        let n = self.index(name).ok_or_else(|| self.missing(name))?;
        codec::decode_bitmap(&self.read(&n.anonymous, "anonymous rows")?)
            .map_err(|e| Error::corrupt(format!("{}: {e}", self.path.display())))
    }

    /// The property columns of `name`.
    pub fn columns(&self, name: u32) -> Result<NameProps, Error> {
        let n = self.index(name).ok_or_else(|| self.missing(name))?;
        codec::decode_name_props(&self.read(&n.paths, "property columns")?)
            .map_err(|e| Error::corrupt(format!("{}: {e}", self.path.display())))
    }

    /// The links recorded with the chunk.
    pub fn links(&self) -> Result<Vec<LinkRecord>, Error> {
        codec::decode_links(&self.read(&self.trailer.links, "links")?)
            .map_err(|e| Error::corrupt(format!("{}: {e}", self.path.display())))
    }

    /// Reads every section (for `tally check`).
    pub fn verify(&self) -> Result<(), Error> {
        for n in &self.trailer.names {
            self.anonymous(n.name)?;
            self.columns(n.name)?;
        }
        self.links()?;
        Ok(())
    }

    fn missing(&self, name: u32) -> Error {
        Error::corrupt(format!(
            "{}: no columns for name {name}",
            self.path.display()
        ))
    }
}

/// One path's values over a block's rows, as cheaply as the layout allows.
pub enum PathValues<'a> {
    /// Dictionary codes (0: missing).
    Coded {
        /// The dictionary.
        values: &'a [PropValue],
        /// Per row.
        codes: &'a [u32],
    },
    /// Decoded per row (the slow path, and the open chunk).
    Rows(Vec<Prop>),
    /// Missing from every row.
    Missing,
}

impl PathValues<'_> {
    /// Whether each row passes `filter`, ANDed into `mask`.
    pub fn apply(&self, filter: &Where, mask: &mut [bool]) {
        match self {
            PathValues::Coded { values, codes } => {
                let pass: Vec<bool> = std::iter::once(filter.holds(&Prop::Missing))
                    .chain(values.iter().map(|v| filter.holds(&prop(v))))
                    .collect();
                for (m, &c) in mask.iter_mut().zip(codes.iter()) {
                    *m &= pass[c as usize];
                }
            }
            PathValues::Rows(props) => {
                for (m, p) in mask.iter_mut().zip(props) {
                    *m &= filter.holds(p);
                }
            }
            PathValues::Missing => {
                if !filter.holds(&Prop::Missing) {
                    mask.fill(false);
                }
            }
        }
    }

    /// Per-row group codes and the values they index, for `rows` rows.
    pub fn groups(&self, rows: usize) -> (Vec<u32>, Vec<GroupValue>) {
        match self {
            PathValues::Coded { values, codes } => (
                codes.to_vec(),
                std::iter::once(GroupValue::Null)
                    .chain(values.iter().map(|v| GroupValue::of(&prop(v))))
                    .collect(),
            ),
            PathValues::Rows(props) => (
                (0..props.len() as u32).collect(),
                props.iter().map(GroupValue::of).collect(),
            ),
            PathValues::Missing => (vec![0; rows], vec![GroupValue::Null]),
        }
    }
}

/// A stored dictionary value as the analyses see it.
pub fn prop(v: &PropValue) -> Prop {
    match v {
        PropValue::Bool(b) => Prop::Bool(*b),
        PropValue::Num(x) => Prop::Num(*x),
        PropValue::Str(s) => Prop::Str(s.clone()),
        PropValue::Other => Prop::Other,
    }
}

/// `path`'s values in `props`: a column, or missing everywhere, or `None`
/// when the name's paths were truncated and this one has no column (the
/// caller reads the events).
pub fn lookup<'a>(props: &'a NameProps, path: &[String]) -> Option<PathValues<'a>> {
    let joined = path.join(".");
    match props.paths.iter().find(|c| c.path == joined) {
        Some(c) => Some(PathValues::Coded {
            values: &c.values,
            codes: &c.codes,
        }),
        None if props.truncated => None,
        None => Some(PathValues::Missing),
    }
}

/// Whether bit `i` of a bitmap is set.
pub fn bit(bits: &[u8], i: usize) -> bool {
    bits.get(i / 8).is_some_and(|b| b & (1 << (i % 8)) != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tally_query::filter::parse_path;
    use uuid::Uuid;

    fn ev(props: Option<&str>, user: Option<&str>, ts: i64) -> Event {
        Event {
            id: Uuid::now_v7(),
            event: "e".into(),
            user_id: user.map(Into::into),
            anonymous_id: Some("anon".into()),
            timestamp: ts,
            stage: None,
            revenue: None,
            properties: props.map(Into::into),
        }
    }

    #[test]
    fn columns_hold_every_rows_value_and_the_bitmap_marks_anonymous_rows() {
        let events = [
            ev(
                Some(r#"{"plan":"pro","n":1,"utm":{"source":"x"}}"#),
                Some("u"),
                1,
            ),
            ev(None, None, 2),
            ev(Some(r#"{"plan":"free","n":1.0,"flag":true}"#), None, 3),
        ];
        let refs: Vec<&Event> = events.iter().collect();
        let b = build_name(0, &refs);
        assert_eq!(b.rows, 3);
        assert!(!bit(&b.anonymous, 0) && bit(&b.anonymous, 1) && bit(&b.anonymous, 2));
        assert!(!b.props.truncated);
        let get = |p: &str, row: usize| -> Prop {
            match lookup(&b.props, &parse_path(p).unwrap()).unwrap() {
                PathValues::Coded { values, codes } => match codes[row] {
                    0 => Prop::Missing,
                    c => prop(&values[c as usize - 1]),
                },
                PathValues::Missing => Prop::Missing,
                PathValues::Rows(_) => unreachable!(),
            }
        };
        assert_eq!(get("plan", 0), Prop::Str("pro".into()));
        assert_eq!(get("plan", 1), Prop::Missing);
        assert_eq!(get("utm.source", 0), Prop::Str("x".into()));
        assert_eq!(get("utm", 0), Prop::Other);
        assert_eq!(get("n", 2), Prop::Num(1.0));
        assert_eq!(get("flag", 2), Prop::Bool(true));
        assert_eq!(get("nope", 0), Prop::Missing);
    }

    #[test]
    fn paths_past_the_cap_are_marked_for_the_slow_path() {
        let text: String = format!(
            "{{{}}}",
            (0..=MAX_PATHS)
                .map(|i| format!("\"k{i:03}\":{i}"))
                .collect::<Vec<_>>()
                .join(",")
        );
        let events = [ev(Some(&text), Some("u"), 1)];
        let refs: Vec<&Event> = events.iter().collect();
        let b = build_name(0, &refs);
        assert!(b.props.truncated);
        assert_eq!(b.props.paths.len(), MAX_PATHS);
        assert!(lookup(&b.props, &parse_path("k064").unwrap()).is_none());
        assert!(lookup(&b.props, &parse_path("k000").unwrap()).is_some());
    }

    #[test]
    fn a_written_file_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let events = [ev(Some(r#"{"plan":"pro"}"#), None, 5)];
        let refs: Vec<&Event> = events.iter().collect();
        let built = build(&refs, &[7]);
        let links = vec![LinkRecord {
            anon: codec::LinkAnon::Key("a".into()),
            ts: 1,
            user: 2,
            user_key: "u".into(),
        }];
        write(dir.path(), 3, &built, &links).unwrap();
        let f = PropsFile::open(dir.path(), 3).unwrap().unwrap();
        assert!(f.matches(7, 1));
        assert!(!f.matches(7, 2));
        assert_eq!(f.columns(7).unwrap(), built[0].props);
        assert_eq!(f.anonymous(7).unwrap(), built[0].anonymous);
        assert_eq!(f.links().unwrap(), links);
        assert!(PropsFile::open(dir.path(), 4).unwrap().is_none());
        // A flipped byte in a section is caught by its checksum.
        let p = path(dir.path(), 3);
        let mut bytes = std::fs::read(&p).unwrap();
        bytes[12] ^= 0xff;
        std::fs::write(&p, bytes).unwrap();
        let f = PropsFile::open(dir.path(), 3).unwrap().unwrap();
        assert!(f.verify().is_err());
    }
}
