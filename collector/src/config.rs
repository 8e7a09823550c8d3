//! Configuration of `tally serve`: one documented struct with defaults,
//! loaded from `tally.toml`, then `TALLY_*` environment variables, then
//! command-line flags (each overriding the one before), validated once.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::Error;

/// Everything `tally serve` can be told.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Data directory (`--data`, `TALLY_DATA`). Default `./tally-data`.
    pub data: PathBuf,
    /// Listen address (`--listen`, `TALLY_LISTEN`). Default `127.0.0.1:8080`.
    pub listen: String,
    /// Write (ingest) key (`--write-key`, `TALLY_WRITE_KEY`).
    pub write_key: Option<String>,
    /// Read (query) key (`--read-key`, `TALLY_READ_KEY`).
    pub read_key: Option<String>,
    /// Admin (deletion and backup) key (`--admin-key`, `TALLY_ADMIN_KEY`).
    pub admin_key: Option<String>,
    /// Page cache of the store's sled index in MiB (`--cache-mb`,
    /// `TALLY_CACHE_MB`). Default 256.
    pub cache_mb: u64,
    /// Largest request body, compressed or inflated, in bytes. Default 5 MiB.
    pub max_body_bytes: usize,
    /// Most events in one `/v1/batch`. Default 1000.
    pub max_batch_events: usize,
    /// Seconds a client has to deliver a request body once its headers have
    /// arrived (`--body-timeout-secs`, `TALLY_BODY_TIMEOUT_SECS`); later is
    /// a 408. Default 30.
    pub body_timeout_secs: u64,
    /// MiB of request bodies held in memory at once across all connections
    /// (`--max-inflight-body-mb`, `TALLY_MAX_INFLIGHT_BODY_MB`); a body that
    /// does not fit gets a 503 with `Retry-After`. At least
    /// `max_body_bytes`. Default 256.
    pub max_inflight_body_mb: usize,
    /// HTTP worker threads. Default: one per core.
    pub workers: Option<usize>,
    /// Events per sealed chunk file (`TALLY_CHUNK_EVENTS`). Default 65,536;
    /// smaller means more, smaller chunk files and a shorter write-ahead log.
    pub chunk_events: usize,
    /// Browser origins allowed to send events (`--cors-origin`, repeatable;
    /// `TALLY_CORS_ORIGINS`, comma-separated): each an exact origin such as
    /// `https://app.example.com` (scheme, host, optional port; no path), or
    /// `*` for any. Listed origins get CORS answers on `/v1/track` and
    /// `/v1/batch`; others get none. Default: none.
    pub cors_origins: Vec<String>,
    /// Ingest requests a second allowed from one client address
    /// (`--ingest-rate-per-ip`, `TALLY_INGEST_RATE_PER_IP`), with a burst of
    /// twice that; more get a 429 with `Retry-After`. Loopback addresses (a
    /// reverse proxy on the same host, local tools) are not limited; 0 turns
    /// the limit off. Default 50.
    pub ingest_rate_per_ip: u32,
    /// How long events are kept (`--keep`, `TALLY_KEEP`, `keep` in
    /// tally.toml; a duration such as `400d`): older events are left out
    /// of every read and removed by compaction. Default: keep everything.
    pub keep: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data: PathBuf::from("./tally-data"),
            listen: "127.0.0.1:8080".into(),
            write_key: None,
            read_key: None,
            admin_key: None,
            cache_mb: 256,
            max_body_bytes: 5 * 1024 * 1024,
            max_batch_events: 1000,
            body_timeout_secs: 30,
            max_inflight_body_mb: 256,
            workers: None,
            chunk_events: 65_536,
            cors_origins: Vec::new(),
            ingest_rate_per_ip: 50,
            keep: None,
        }
    }
}

impl Config {
    /// [`Config::keep`] in milliseconds.
    pub fn keep_ms(&self) -> Result<Option<i64>, Error> {
        self.keep
            .as_deref()
            .map(|k| {
                tally_query::params::parse_duration(k)
                    .map_err(|m| Error::Config(format!("keep: {m}")))
                    .and_then(|ms| {
                        if ms >= 86_400_000 {
                            Ok(ms)
                        } else {
                            Err(Error::Config(format!(
                                "keep: '{k}' is less than a day (a duration such as 400d)"
                            )))
                        }
                    })
            })
            .transpose()
    }

    /// Defaults, overridden by `file` (if given, or `./tally.toml` if it
    /// exists), then by `TALLY_*` variables from `env`.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, Error> {
        let default_file = Path::new("tally.toml");
        let file = file.or_else(|| default_file.exists().then_some(default_file));
        let mut config = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
                toml::from_str(&text)
                    .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?
            }
            None => Config::default(),
        };
        for (k, v) in env {
            match k.as_str() {
                "TALLY_DATA" => config.data = v.into(),
                "TALLY_LISTEN" => config.listen = v,
                "TALLY_WRITE_KEY" => config.write_key = Some(v),
                "TALLY_READ_KEY" => config.read_key = Some(v),
                "TALLY_ADMIN_KEY" => config.admin_key = Some(v),
                "TALLY_CACHE_MB" => {
                    config.cache_mb = v.parse().map_err(|_| {
                        Error::Config(format!("TALLY_CACHE_MB: '{v}' is not a number of MiB"))
                    })?;
                }
                "TALLY_CHUNK_EVENTS" => {
                    config.chunk_events = v.parse().map_err(|_| {
                        Error::Config(format!("TALLY_CHUNK_EVENTS: '{v}' is not a number"))
                    })?;
                }
                "TALLY_BODY_TIMEOUT_SECS" => {
                    config.body_timeout_secs = v.parse().map_err(|_| {
                        Error::Config(format!(
                            "TALLY_BODY_TIMEOUT_SECS: '{v}' is not a number of seconds"
                        ))
                    })?;
                }
                "TALLY_CORS_ORIGINS" => {
                    config.cors_origins = v
                        .split(',')
                        .map(str::trim)
                        .filter(|o| !o.is_empty())
                        .map(String::from)
                        .collect();
                }
                "TALLY_INGEST_RATE_PER_IP" => {
                    config.ingest_rate_per_ip = v.parse().map_err(|_| {
                        Error::Config(format!(
                            "TALLY_INGEST_RATE_PER_IP: '{v}' is not a number of requests a second"
                        ))
                    })?;
                }
                "TALLY_KEEP" => config.keep = Some(v),
                "TALLY_MAX_INFLIGHT_BODY_MB" => {
                    config.max_inflight_body_mb = v.parse().map_err(|_| {
                        Error::Config(format!(
                            "TALLY_MAX_INFLIGHT_BODY_MB: '{v}' is not a number of MiB"
                        ))
                    })?;
                }
                _ => {}
            }
        }
        Ok(config)
    }

    /// Checks values that cannot be expressed by types.
    pub fn validate(&self) -> Result<(), Error> {
        for (name, key) in [
            ("write key", &self.write_key),
            ("read key", &self.read_key),
            ("admin key", &self.admin_key),
        ] {
            // SPEC §2 sets no length for keys: any non-empty token that can
            // travel in `Authorization: Bearer KEY` is accepted (`tally serve`
            // warns about a short one).
            if let Some(k) = key
                && (k.is_empty() || !k.bytes().all(|b| b.is_ascii_graphic()))
            {
                return Err(Error::Config(format!(
                    "the {name} must be non-empty printable ASCII without spaces"
                )));
            }
        }
        let keys = [&self.write_key, &self.read_key, &self.admin_key];
        for (i, a) in keys.iter().enumerate() {
            for b in &keys[i + 1..] {
                if a.is_some() && a == b {
                    return Err(Error::Config(
                        "the write key, the read key and the admin key must differ".into(),
                    ));
                }
            }
        }
        self.keep_ms()?;
        if self.cache_mb == 0 {
            return Err(Error::Config("cache_mb must be at least 1".into()));
        }
        if !(1..=1 << 24).contains(&self.chunk_events) {
            return Err(Error::Config(format!(
                "chunk_events must be 1 to {}, not {}",
                1 << 24,
                self.chunk_events
            )));
        }
        if !(1..=3600).contains(&self.body_timeout_secs) {
            return Err(Error::Config(format!(
                "body_timeout_secs must be 1 to 3600, not {}",
                self.body_timeout_secs
            )));
        }
        if self.max_inflight_body_bytes() < self.max_body_bytes {
            return Err(Error::Config(format!(
                "max_inflight_body_mb ({} MiB) must hold at least one largest body ({} bytes)",
                self.max_inflight_body_mb, self.max_body_bytes
            )));
        }
        for origin in &self.cors_origins {
            check_origin(origin)?;
        }
        Ok(())
    }

    /// Whether a browser page of `origin` (its `Origin` header) may send
    /// events.
    pub fn allows_origin(&self, origin: &str) -> bool {
        self.cors_origins
            .iter()
            .any(|o| o == "*" || o.eq_ignore_ascii_case(origin))
    }

    /// `max_inflight_body_mb` in bytes.
    pub fn max_inflight_body_bytes(&self) -> usize {
        self.max_inflight_body_mb.saturating_mul(1024 * 1024)
    }

    /// Where sled keeps its files inside the data directory.
    pub fn store_dir(data: &Path) -> PathBuf {
        data.join("store")
    }
}

/// A `cors_origins` entry is `*` or what a browser sends as `Origin`:
/// `scheme://host[:port]`, no path, no trailing slash (a common slip that
/// would never match).
fn check_origin(origin: &str) -> Result<(), Error> {
    if origin == "*" {
        return Ok(());
    }
    let bad = |why: &str| {
        Err(Error::Config(format!(
            "cors_origins: '{origin}' {why} (expected an origin such as \
             https://app.example.com or http://127.0.0.1:8000, or *)"
        )))
    };
    let Some((scheme, rest)) = origin.split_once("://") else {
        return bad("has no scheme");
    };
    if !matches!(scheme, "http" | "https") {
        return bad("is not http or https");
    }
    if rest.is_empty() || rest.contains(['/', '?', '#', ' ', '*', ',']) {
        return bad("is not scheme://host[:port] alone");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_then_env_override_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tally.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:9999\"\ncache_mb = 64\nchunk_events = 10\n",
        )
        .unwrap();
        let env = [
            ("TALLY_CACHE_MB".to_string(), "32".to_string()),
            ("TALLY_CHUNK_EVENTS".to_string(), "500".to_string()),
        ];
        let c = Config::load(Some(&file), env).unwrap();
        assert_eq!(c.listen, "127.0.0.1:9999");
        assert_eq!(c.cache_mb, 32);
        assert_eq!(c.chunk_events, 500);
        assert_eq!(c.data, PathBuf::from("./tally-data"));
        let bad = [("TALLY_CHUNK_EVENTS".to_string(), "many".to_string())];
        assert!(Config::load(None, bad).is_err());
        let env = [
            ("TALLY_BODY_TIMEOUT_SECS".to_string(), "7".to_string()),
            ("TALLY_MAX_INFLIGHT_BODY_MB".to_string(), "64".to_string()),
        ];
        let c = Config::load(None, env).unwrap();
        assert_eq!((c.body_timeout_secs, c.max_inflight_body_mb), (7, 64));
        let bad = [("TALLY_BODY_TIMEOUT_SECS".to_string(), "1m".to_string())];
        assert!(Config::load(None, bad).is_err());
        for (c, field) in [
            (
                Config {
                    body_timeout_secs: 0,
                    ..Config::default()
                },
                "body_timeout_secs",
            ),
            (
                Config {
                    max_inflight_body_mb: 4,
                    ..Config::default()
                },
                "max_inflight_body_mb",
            ),
        ] {
            let err = c.validate().unwrap_err().to_string();
            assert!(err.contains(field), "{err}");
        }
        let zero = Config {
            chunk_events: 0,
            ..Config::default()
        };
        assert!(
            zero.validate()
                .unwrap_err()
                .to_string()
                .contains("chunk_events")
        );
    }

    #[test]
    fn unknown_keys_in_the_file_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tally.toml");
        std::fs::write(&file, "lisen = \"x\"\n").unwrap();
        let err = Config::load(Some(&file), []).unwrap_err().to_string();
        assert!(err.contains("lisen"), "{err}");
    }

    #[test]
    fn any_non_empty_printable_key_is_accepted() {
        // SPEC §2 sets no minimum length.
        let c = Config {
            write_key: Some("w".into()),
            read_key: Some("rk".into()),
            ..Config::default()
        };
        c.validate().unwrap();
        for bad in ["", "has space", "tab\t", "clé-1234567"] {
            let c = Config {
                write_key: Some(bad.into()),
                ..Config::default()
            };
            assert!(c.validate().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn cors_origins_from_file_env_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tally.toml");
        std::fs::write(&file, "cors_origins = [\"https://a.example\"]\n").unwrap();
        let c = Config::load(Some(&file), []).unwrap();
        assert_eq!(c.cors_origins, ["https://a.example"]);
        assert!(c.allows_origin("https://a.example"));
        assert!(!c.allows_origin("https://b.example"));
        let env = [(
            "TALLY_CORS_ORIGINS".to_string(),
            "http://127.0.0.1:8000, https://b.example".to_string(),
        )];
        let c = Config::load(Some(&file), env).unwrap();
        assert_eq!(
            c.cors_origins,
            ["http://127.0.0.1:8000", "https://b.example"]
        );
        c.validate().unwrap();
        let any = Config {
            cors_origins: vec!["*".into()],
            ..Config::default()
        };
        any.validate().unwrap();
        assert!(any.allows_origin("http://x.test"));
        assert!(!Config::default().allows_origin("http://x.test"));
        for bad in [
            "example.com",
            "https://a.example/",
            "ftp://a",
            "https://a/b",
        ] {
            let c = Config {
                cors_origins: vec![bad.into()],
                ..Config::default()
            };
            let err = c.validate().unwrap_err().to_string();
            assert!(err.contains("cors_origins"), "{bad}: {err}");
        }
    }

    #[test]
    fn keys_must_differ() {
        let c = Config {
            write_key: Some("same-key-1".into()),
            read_key: Some("same-key-1".into()),
            ..Config::default()
        };
        assert!(c.validate().is_err());
    }
}
