//! API keys: from configuration, or generated on first start and kept in
//! the data directory.

use std::io::Write;
use std::path::Path;

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::error::Error;

const KEYS_FILE: &str = "keys.toml";

/// The two keys of a collector.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Keys {
    /// Ingest only.
    pub write_key: String,
    /// Queries only.
    pub read_key: String,
}

/// Keys and whether they were generated just now (to print them once).
pub struct Resolved {
    /// The keys in force.
    pub keys: Keys,
    /// Keys created by this call (printed once, then only kept on disk).
    pub generated: bool,
}

/// Configured keys win; missing ones come from `DATA/keys.toml`, which is
/// created (mode 0600) with fresh random keys the first time.
pub fn resolve(
    data: &Path,
    write_key: Option<String>,
    read_key: Option<String>,
) -> Result<Resolved, Error> {
    if let (Some(w), Some(r)) = (&write_key, &read_key) {
        return Ok(Resolved {
            keys: Keys {
                write_key: w.clone(),
                read_key: r.clone(),
            },
            generated: false,
        });
    }
    let path = data.join(KEYS_FILE);
    let (stored, generated) = match std::fs::read_to_string(&path) {
        Ok(text) => (
            toml::from_str::<Keys>(&text)
                .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?,
            false,
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let keys = Keys {
                write_key: generate("tw"),
                read_key: generate("tr"),
            };
            save(&path, &keys)?;
            (keys, true)
        }
        Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
    };
    Ok(Resolved {
        keys: Keys {
            write_key: write_key.unwrap_or(stored.write_key),
            read_key: read_key.unwrap_or(stored.read_key),
        },
        generated,
    })
}

fn generate(prefix: &str) -> String {
    let bytes: [u8; 20] = rand::rng().random();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{prefix}_{hex}")
}

fn save(path: &Path, keys: &Keys) -> Result<(), Error> {
    let io = |e| Error::io(format!("writing {}", path.display()), e);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut f = options.open(path).map_err(io)?;
    f.write_all(toml::to_string(keys).expect("keys serialize").as_bytes())
        .map_err(io)?;
    f.sync_all().map_err(io)
}

/// Compares a presented key with the expected one in constant time.
pub fn matches(presented: &str, expected: &str) -> bool {
    presented.len() == expected.len()
        && presented
            .bytes()
            .zip(expected.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_once_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let first = resolve(dir.path(), None, None).unwrap();
        assert!(first.generated);
        assert_ne!(first.keys.write_key, first.keys.read_key);
        let again = resolve(dir.path(), None, None).unwrap();
        assert!(!again.generated);
        assert_eq!(again.keys, first.keys);
        let overridden = resolve(dir.path(), Some("explicit-w".into()), None).unwrap();
        assert_eq!(overridden.keys.write_key, "explicit-w");
        assert_eq!(overridden.keys.read_key, first.keys.read_key);
    }

    #[test]
    fn key_comparison() {
        assert!(matches("abc", "abc"));
        assert!(!matches("abd", "abc"));
        assert!(!matches("ab", "abc"));
    }
}
