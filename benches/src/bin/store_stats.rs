//! Where a store's bytes go: the chunk files by section (ids, events,
//! analysis columns), the write-ahead log, and the sled index (live keys
//! and values per key prefix next to its files; the difference is sled's
//! overhead and not-yet-collected garbage).
//!
//! `target/release/store_stats DATA_DIR/store`

use std::path::Path;

use tally_collector::store::codec::{ChunkHeader, prefix};

fn main() -> anyhow::Result<()> {
    let dir = std::env::args()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("usage: store_stats DATA_DIR/store"))?;
    let dir = Path::new(&dir);
    let db = sled::Config::new().path(dir.join("index")).open()?;
    let mut by_prefix: std::collections::BTreeMap<u8, (u64, u64, u64)> = Default::default();
    let (
        mut chunks,
        mut events,
        mut ids,
        mut ranks,
        mut event_bytes,
        mut column_bytes,
        mut persons,
    ) = (0, 0, 0, 0, 0, 0, 0);
    for kv in db.iter() {
        let (k, v) = kv?;
        let e = by_prefix.entry(k[0]).or_default();
        e.0 += 1;
        e.1 += k.len() as u64;
        e.2 += v.len() as u64;
        if k[0] == prefix::CHUNK {
            let h = ChunkHeader::decode(&v)?;
            chunks += 1;
            events += u64::from(h.events);
            ids += u64::from(h.ids.len);
            ranks += u64::from(h.ranks.len);
            persons += u64::from(h.persons.len);
            event_bytes += h
                .events_sections
                .iter()
                .map(|s| u64::from(s.section.len))
                .sum::<u64>();
            column_bytes += h
                .names
                .iter()
                .map(|s| u64::from(s.section.len))
                .sum::<u64>();
        }
    }
    let chunk_files = walk(&dir.join("chunks"));
    let wal = walk(&dir.join("wal"));
    let index_files = walk(&dir.join("index"));
    let per = |b: u64| b as f64 / events.max(1) as f64;
    println!(
        "chunks: {chunks}, {events} events, files {chunk_files} bytes ({:.1} per event)",
        per(chunk_files)
    );
    println!("  ids      {ids:>12} bytes ({:.1} per event)", per(ids));
    println!("  ranks    {ranks:>12} bytes ({:.1} per event)", per(ranks));
    println!(
        "  events   {event_bytes:>12} bytes ({:.1} per event)",
        per(event_bytes)
    );
    println!(
        "  columns  {column_bytes:>12} bytes ({:.1} per event)",
        per(column_bytes)
    );
    println!(
        "  persons  {persons:>12} bytes ({:.1} per event)",
        per(persons)
    );
    println!("write-ahead log: {wal} bytes");
    let mut live = 0;
    for (p, (n, kb, vb)) in &by_prefix {
        println!(
            "index {:>2}  {:>10} keys  {:>12} key bytes  {:>12} value bytes",
            *p as char, n, kb, vb
        );
        live += kb + vb;
    }
    println!(
        "index: live {live} bytes; files {index_files} bytes ({:.2}x)",
        index_files as f64 / live.max(1) as f64
    );
    println!(
        "total on disk: {} bytes ({:.1} per event)",
        chunk_files + wal + index_files,
        per(chunk_files + wal + index_files)
    );
    Ok(())
}

fn walk(p: &Path) -> u64 {
    std::fs::read_dir(p).map_or(0, |rd| {
        rd.flatten()
            .map(|e| match e.metadata() {
                Ok(m) if m.is_dir() => walk(&e.path()),
                Ok(m) => m.len(),
                Err(_) => 0,
            })
            .sum()
    })
}
