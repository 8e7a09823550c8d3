//! The module structure ARCHITECTURE.md describes: the SDK's modules (all
//! but `lib.rs`, which wires them together) import each other without a
//! cycle, and the sender core does no I/O.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

/// Each module of `src/` and the modules of `src/` it names as
/// `crate::module`, outside comments.
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut texts = BTreeMap::new();
    for entry in fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        if path.extension().is_some_and(|e| e == "rs") && name != "lib" {
            texts.insert(name, fs::read_to_string(&path).unwrap());
        }
    }
    let modules: BTreeSet<String> = texts.keys().cloned().collect();
    texts
        .into_iter()
        .map(|(name, text)| {
            let mut uses = BTreeSet::new();
            for line in text.lines().map(str::trim) {
                if line.starts_with("//") {
                    continue;
                }
                for (at, _) in line.match_indices("crate::") {
                    let rest = &line[at + "crate::".len()..];
                    let end = rest
                        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                        .unwrap_or(rest.len());
                    let target = &rest[..end];
                    if modules.contains(target) && target != name {
                        uses.insert(target.to_owned());
                    }
                }
            }
            (name, uses)
        })
        .collect()
}

#[test]
fn modules_import_each_other_without_a_cycle() {
    let graph = imports();
    assert!(graph.contains_key("sender") && graph.contains_key("worker"));
    // Kahn's algorithm: repeatedly remove the modules that import nothing
    // left; whatever remains lies on a cycle.
    let mut left = graph.clone();
    loop {
        let leaves: Vec<String> = left
            .iter()
            .filter(|(_, uses)| uses.iter().all(|u| !left.contains_key(u)))
            .map(|(m, _)| m.clone())
            .collect();
        if leaves.is_empty() {
            break;
        }
        for m in leaves {
            left.remove(&m);
        }
    }
    assert!(left.is_empty(), "modules importing each other: {left:?}");
}

#[test]
fn the_sender_core_does_no_io() {
    let graph = imports();
    let core = &graph["sender"];
    for io in ["queue", "worker", "http", "durable"] {
        assert!(!core.contains(io), "sender.rs uses {io}: {core:?}");
    }
    let text =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/sender.rs")).unwrap();
    for io in [
        "reqwest",
        "Instant::now",
        "sleep_until(",
        "std::fs",
        "rand::rng()",
    ] {
        let outside_tests = text.split("#[cfg(test)]").next().unwrap();
        assert!(!outside_tests.contains(io), "sender.rs uses {io}");
    }
}
