//! Where a store's bytes go: live keys and value bytes per key prefix, next
//! to the size of the files on disk (the difference is sled's overhead and
//! not-yet-collected garbage).
//!
//! `target/release/store_stats DATA_DIR/store`

fn main() -> anyhow::Result<()> {
    let dir = std::env::args()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("usage: store_stats DIR"))?;
    let db = sled::Config::new().path(&dir).open()?;
    let mut by_prefix: std::collections::BTreeMap<u8, (u64, u64, u64)> = Default::default();
    for kv in db.iter() {
        let (k, v) = kv?;
        let e = by_prefix.entry(k[0]).or_default();
        e.0 += 1;
        e.1 += k.len() as u64;
        e.2 += v.len() as u64;
    }
    let mut live = 0;
    for (p, (n, kb, vb)) in &by_prefix {
        println!(
            "{:>2}  {:>10} keys  {:>12} key bytes  {:>12} value bytes",
            *p as char, n, kb, vb
        );
        live += kb + vb;
    }
    let disk: u64 = walk(std::path::Path::new(&dir));
    println!(
        "live {live} bytes; on disk {disk} bytes ({:.2}x)",
        disk as f64 / live as f64
    );
    Ok(())
}

fn walk(p: &std::path::Path) -> u64 {
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
