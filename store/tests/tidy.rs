//! The invariants ARCHITECTURE.md states as absences, checked by reading
//! the source (as rust-analyzer's `tidy.rs` does): a change that breaks
//! one fails here, with the file and line, instead of drifting silently.

use std::path::{Path, PathBuf};

/// The workspace root (this crate is `store/`).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("store/ has a parent")
        .to_path_buf()
}

/// Every `.rs` file under `dir`, recursively.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                todo.push(path);
            } else if path.extension().is_some_and(|x| x == "rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// The lines of code (comments and doc comments left out) of the `.rs`
/// files under `dirs` (relative to the root) that contain any of
/// `needles`, as `path:line: text`, except in `allowed` files.
fn offending(dirs: &[&str], needles: &[&str], allowed: &[&str]) -> Vec<String> {
    let root = root();
    let mut found = Vec::new();
    for dir in dirs {
        for file in rust_files(&root.join(dir)) {
            let rel = file
                .strip_prefix(&root)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            if allowed.contains(&rel.as_str()) {
                continue;
            }
            let text = std::fs::read_to_string(&file).unwrap();
            for (i, line) in text.lines().enumerate() {
                let code = line.trim_start();
                if code.starts_with("//") {
                    continue;
                }
                if needles.iter().any(|n| code.contains(n)) {
                    found.push(format!("{rel}:{}: {}", i + 1, line.trim()));
                }
            }
        }
    }
    found
}

/// The names in the `[dependencies]` table of a crate's Cargo.toml.
fn dependencies(krate: &str) -> Vec<String> {
    let text = std::fs::read_to_string(root().join(krate).join("Cargo.toml")).unwrap();
    let mut deps = Vec::new();
    let mut inside = false;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            inside = line == "[dependencies]";
            continue;
        }
        if inside && !line.is_empty() && !line.starts_with('#') {
            let name = line.split(['=', '.', ' ']).next().unwrap_or("");
            deps.push(name.to_string());
        }
    }
    deps
}

/// The crates of the product (benches' tools and examples may read the
/// index directly: `benches/src/bin/store_stats.rs` measures it).
const SOURCES: &[&str] = &[
    "event/src",
    "store/src",
    "collector/src",
    "query/src",
    "sdk/src",
    "tests/it",
];

#[test]
fn only_the_index_module_names_sled() {
    let found = offending(
        SOURCES,
        &["sled::", "use sled", "extern crate sled"],
        &["store/src/index.rs"],
    );
    assert!(
        found.is_empty(),
        "sled outside store/src/index.rs:\n{}",
        found.join("\n")
    );
    for krate in ["event", "collector", "query", "sdk"] {
        assert!(
            !dependencies(krate).iter().any(|d| d == "sled"),
            "{krate} depends on sled"
        );
    }
}

#[test]
fn only_the_codec_knows_bytes() {
    let found = offending(
        SOURCES,
        &["bincode::", "use bincode", "zstd::", "use zstd"],
        &["store/src/codec.rs"],
    );
    assert!(
        found.is_empty(),
        "encoding outside store/src/codec.rs:\n{}",
        found.join("\n")
    );
}

#[test]
fn query_does_no_io() {
    let found = offending(
        &["query/src"],
        &[
            "std::fs",
            "std::net",
            "File::",
            "File;",
            "tokio",
            "reqwest",
            "std::process",
        ],
        &[],
    );
    assert!(found.is_empty(), "I/O in query/:\n{}", found.join("\n"));
    let deps = dependencies("query");
    for forbidden in [
        "tokio",
        "reqwest",
        "sled",
        "actix-web",
        "tally-store",
        "tally-collector",
    ] {
        assert!(
            !deps.iter().any(|d| d == forbidden),
            "query depends on {forbidden}"
        );
    }
}

#[test]
fn the_sdk_depends_on_neither_the_collector_actix_nor_sled() {
    let deps = dependencies("sdk");
    for forbidden in [
        "tally-collector",
        "tally-store",
        "actix-web",
        "actix-http",
        "actix-service",
        "sled",
    ] {
        assert!(
            !deps.iter().any(|d| d == forbidden),
            "the SDK depends on {forbidden}"
        );
    }
}

#[test]
fn the_event_model_and_the_store_depend_on_no_web_framework() {
    for krate in ["event", "store"] {
        let deps = dependencies(krate);
        for forbidden in [
            "tally-collector",
            "actix-web",
            "actix-http",
            "actix-service",
        ] {
            assert!(
                !deps.iter().any(|d| d == forbidden),
                "{krate} depends on {forbidden}"
            );
        }
    }
    assert!(
        !dependencies("event").iter().any(|d| d == "sled"),
        "event depends on sled"
    );
}

#[test]
fn the_dependency_reader_sees_the_tables() {
    // Guards the checks above against a Cargo.toml layout they misread.
    assert!(dependencies("store").iter().any(|d| d == "sled"));
    assert!(dependencies("sdk").iter().any(|d| d == "tally-event"));
    assert!(!offending(&["store/src"], &["sled::"], &[]).is_empty());
}

#[test]
fn one_place_chooses_the_backend() {
    let found = offending(
        &["collector/src"],
        &[
            "DiskStore::open(",
            "DiskStore::check(",
            "DiskStore::repair(",
        ],
        &["collector/src/backend.rs"],
    );
    assert!(
        found.is_empty(),
        "a store opened outside collector/src/backend.rs:\n{}",
        found.join("\n")
    );
}
