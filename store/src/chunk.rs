//! Chunk files: sealed, immutable runs of events. A chunk is written to a
//! temporary name, fsync'd and renamed, so a chunk file under its final
//! name is always complete; the index refers to it only after that.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use rayon::prelude::*;
use tally_event::Event;

use super::codec::{self, ChunkHeader, ColumnBlock, EventsSection, NameSection, Section};
use super::hooks;
use crate::Error;

/// Events per sub-block of the events section: compressed in parallel,
/// and decoded one at a time by export.
const EVENTS_PER_SECTION: usize = 8192;

/// The path of chunk `n` in `dir`.
pub fn path(dir: &Path, n: u32) -> PathBuf {
    dir.join(format!("{n:08}.chunk"))
}

/// fsyncs a directory, so that files created or renamed in it survive a
/// crash.
pub fn sync_dir(dir: &Path) -> Result<(), Error> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(format!("fsync {}", dir.display()), e))?;
    hooks::dir_synced(dir);
    Ok(())
}

/// Numbers of the files `NNNNNNNN.ext` in `dir`, ascending.
pub fn numbered_files(dir: &Path, ext: &str) -> Result<Vec<u64>, Error> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(Error::io(format!("listing {}", dir.display()), e)),
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if let Some(n) = name
            .strip_suffix(ext)
            .and_then(|s| s.strip_suffix('.'))
            .and_then(|s| s.parse().ok())
        {
            out.push(n);
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// What a sealed chunk is built from: events in acceptance order, each with
/// its interned person and name.
pub struct Sealing<'a> {
    /// The events.
    pub events: &'a [&'a Event],
    /// `(person id, name id)` of each event.
    pub interned: &'a [(u32, u32)],
    /// Persons given ids since the previous chunk, consecutive from the
    /// first one's id.
    pub new_persons: &'a [(String, u32)],
    /// The next person id when `new_persons` is empty.
    pub next_person: u32,
}

/// Writes chunk `n` durably; returns its header and its sorted ids (which
/// the id index is built from).
pub fn write(
    dir: &Path,
    n: u32,
    chunk: &Sealing<'_>,
) -> Result<(ChunkHeader, Vec<[u8; 16]>), Error> {
    assert!(!chunk.events.is_empty(), "a chunk holds at least one event");
    // The ids section is sorted (dedup is a binary search); the events stay
    // in acceptance order (export gives them back as they came), and the
    // ranks section says where each event's id is in the sorted ids.
    let mut order: Vec<usize> = (0..chunk.events.len()).collect();
    order.sort_unstable_by_key(|&i| chunk.events[i].id);
    let ids: Vec<[u8; 16]> = order
        .iter()
        .map(|&i| *chunk.events[i].id.as_bytes())
        .collect();
    let mut ranks = vec![0u32; order.len()];
    for (rank, &i) in order.iter().enumerate() {
        ranks[i] = rank as u32;
    }

    let mut columns: std::collections::BTreeMap<u32, ColumnBlock> = Default::default();
    for (e, &(person, name)) in chunk.events.iter().zip(chunk.interned) {
        columns
            .entry(name)
            .or_default()
            .push(person, e.timestamp, e.stage, e.revenue);
    }
    // The costly part of a seal (compression) runs on every core.
    let (events_bytes, column_bytes) = rayon::join(
        || {
            chunk
                .events
                .par_chunks(EVENTS_PER_SECTION)
                .map(|evs| (evs.len(), codec::encode_events(evs)))
                .collect::<Vec<_>>()
        },
        || {
            columns
                .into_par_iter()
                .map(|(name, block)| {
                    let block = block.sorted_by_time();
                    let bytes = block.encode();
                    (name, block, bytes)
                })
                .collect::<Vec<_>>()
        },
    );

    let mut file_bytes = codec::chunk_file_preamble();
    let mut place = |bytes: &[u8]| {
        let s = Section {
            offset: file_bytes.len() as u64,
            len: bytes.len() as u32,
            crc: codec::crc(bytes),
        };
        file_bytes.extend_from_slice(bytes);
        s
    };
    let ids_section = place(&codec::encode_ids(&ids));
    let ranks_section = place(&codec::encode_ranks(&ranks));
    let events_sections = events_bytes
        .iter()
        .map(|(n, bytes)| EventsSection {
            section: place(bytes),
            events: *n as u32,
        })
        .collect();
    let names = column_bytes
        .iter()
        .map(|(name, block, bytes)| NameSection {
            name: *name,
            rows: block.len() as u32,
            min_ts: block.ts[0],
            max_ts: *block.ts.last().expect("non-empty"),
            section: place(bytes),
        })
        .collect();
    let first_person = chunk.new_persons.first().map_or(chunk.next_person, |p| p.1);
    let persons = if chunk.new_persons.is_empty() {
        Section::default()
    } else {
        let keys: Vec<&str> = chunk.new_persons.iter().map(|(k, _)| k.as_str()).collect();
        place(&codec::encode_persons(&keys))
    };
    let header = ChunkHeader {
        events: chunk.events.len() as u32,
        min_ts: chunk
            .events
            .iter()
            .map(|e| e.timestamp)
            .min()
            .expect("non-empty"),
        max_ts: chunk
            .events
            .iter()
            .map(|e| e.timestamp)
            .max()
            .expect("non-empty"),
        min_id: ids[0],
        max_id: *ids.last().expect("non-empty"),
        ids: ids_section,
        ranks: ranks_section,
        events_sections,
        names,
        first_person,
        persons,
    };
    // The header again at the end, so a chunk file describes itself.
    let head = header.encode();
    file_bytes.extend_from_slice(&head);
    file_bytes.extend_from_slice(&(head.len() as u32).to_le_bytes());

    let final_path = path(dir, n);
    let tmp = final_path.with_extension("chunk.tmp");
    let io = |e| Error::io(format!("writing {}", tmp.display()), e);
    let mut f = File::create(&tmp).map_err(io)?;
    hooks::created(&tmp);
    f.write_all(&file_bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    hooks::synced(&tmp, hooks::Sync::Chunk);
    std::fs::rename(&tmp, &final_path)
        .map_err(|e| Error::io(format!("renaming {}", tmp.display()), e))?;
    hooks::renamed(&tmp, &final_path);
    Ok((header, ids))
}

/// Reads the copy of its header a chunk file ends with (and checks the
/// file's preamble): how a chunk the index does not list is adopted, and
/// how the index's copy is checked.
pub fn read_trailer(path: &Path) -> Result<ChunkHeader, Error> {
    let corrupt = |what: &str| Error::corrupt(format!("{}: {what}", path.display()));
    let inner = |e: Error| match e {
        Error::Corrupt(msg) => msg,
        other => other.to_string(),
    };
    let bytes =
        std::fs::read(path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    codec::check_chunk_preamble(&bytes).map_err(|e| corrupt(&inner(e)))?;
    let len_at = bytes
        .len()
        .checked_sub(4)
        .ok_or_else(|| corrupt("too short for a chunk file"))?;
    let len = u32::from_le_bytes(bytes[len_at..].try_into().expect("4 bytes")) as usize;
    let head = len_at
        .checked_sub(len)
        .filter(|&at| at > codec::CHUNK_MAGIC.len())
        .ok_or_else(|| corrupt("its header copy is cut short"))?;
    ChunkHeader::decode(&bytes[head..len_at])
        .map_err(|e| corrupt(&format!("header copy: {}", inner(e))))
}

/// A published chunk: its header and, once first read, its open file.
pub struct Chunk {
    /// Chunk number.
    pub number: u32,
    /// Where everything is.
    pub header: ChunkHeader,
    path: PathBuf,
    file: OnceLock<File>,
}

impl Chunk {
    /// A chunk of the index, file not opened yet.
    pub fn new(dir: &Path, number: u32, header: ChunkHeader) -> Self {
        Chunk {
            number,
            header,
            path: path(dir, number),
            file: OnceLock::new(),
        }
    }

    /// A chunk the index does not list (yet): its header from its own
    /// file, every section verified, since nothing else vouches for it.
    pub fn adopt(dir: &Path, number: u32) -> Result<Self, Error> {
        let chunk = Chunk::new(dir, number, read_trailer(&path(dir, number))?);
        chunk.verify()?;
        Ok(chunk)
    }

    /// The chunk's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads every section and checks its checksum and that it decodes.
    pub fn verify(&self) -> Result<(), Error> {
        let h = &self.header;
        self.ids()?;
        self.read(&h.ranks, "ranks")?;
        self.events(&mut |_| Ok(()))?;
        for s in &h.names {
            self.columns(s)?;
        }
        self.persons()?;
        Ok(())
    }

    /// Opens the chunk's file now, so that later reads use this handle
    /// even if the name comes to mean another file (a compaction's swap).
    pub fn open_file(&self) -> Result<(), Error> {
        self.read(&Section::default(), "open").map(|_| ())
    }

    /// Reads and verifies one section.
    pub fn read(&self, section: &Section, what: &str) -> Result<Vec<u8>, Error> {
        let file = match self.file.get() {
            Some(f) => f,
            None => {
                let f = File::open(&self.path)
                    .map_err(|e| Error::io(format!("opening {}", self.path.display()), e))?;
                let mut preamble = [0u8; 9];
                f.read_exact_at(&mut preamble, 0)
                    .map_err(|e| Error::io(format!("reading {}", self.path.display()), e))?;
                codec::check_chunk_preamble(&preamble).map_err(|e| self.named(e))?;
                self.file.get_or_init(|| f)
            }
        };
        let mut buf = vec![0u8; section.len as usize];
        file.read_exact_at(&mut buf, section.offset)
            .map_err(|e| Error::io(format!("reading {}", self.path.display()), e))?;
        codec::check_section(&buf, section, what).map_err(|e| self.named(e))?;
        Ok(buf)
    }

    /// The sorted ids of the chunk.
    pub fn ids(&self) -> Result<Vec<[u8; 16]>, Error> {
        codec::decode_ids(&self.read(&self.header.ids, "ids")?).map_err(|e| self.named(e))
    }

    /// `e` with this chunk's file named, unless it already is.
    fn named(&self, e: Error) -> Error {
        match e {
            Error::Corrupt(msg) if !msg.contains(&*self.path.to_string_lossy()) => {
                Error::corrupt(format!("{}: {msg}", self.path.display()))
            }
            other => other,
        }
    }

    /// Every event of the chunk, in the order they were accepted.
    pub fn events(&self, each: &mut dyn FnMut(Event) -> Result<(), Error>) -> Result<(), Error> {
        let sorted = self.ids()?;
        let ranks = codec::decode_ranks(&self.read(&self.header.ranks, "ranks")?)
            .map_err(|e| self.named(e))?;
        let ids = ranks
            .iter()
            .map(|&r| sorted.get(r as usize).copied())
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| self.named(Error::corrupt("a rank points past the ids")))?;
        let mut at = 0;
        for s in &self.header.events_sections {
            let n = s.events as usize;
            let range = ids.get(at..at + n).ok_or_else(|| {
                self.named(Error::corrupt("events sections hold more events than ids"))
            })?;
            let events = codec::decode_events(&self.read(&s.section, "events")?, range)
                .map_err(|e| self.named(e))?;
            for e in events {
                each(e)?;
            }
            at += n;
        }
        Ok(())
    }

    /// The person keys this chunk introduced, in id order from
    /// `header.first_person`.
    pub fn persons(&self) -> Result<Vec<String>, Error> {
        if self.header.persons.len == 0 {
            return Ok(Vec::new());
        }
        codec::decode_persons(&self.read(&self.header.persons, "persons")?)
            .map_err(|e| self.named(e))
    }

    /// The column block of one name section.
    pub fn columns(&self, s: &NameSection) -> Result<ColumnBlock, Error> {
        ColumnBlock::decode(&self.read(&s.section, "columns")?).map_err(|e| self.named(e))
    }
}
