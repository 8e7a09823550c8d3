//! `tally review` and `GET /v1/review`: loads the KPI file and runs the
//! review (`tally_query::review`) on a store, one path for the command
//! line and HTTP so both give the same JSON.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use tally_query::review::{self, Kpi, ReviewParams, ReviewResult};
use tally_query::{QueryError, RawParams};

use crate::catalog;
use crate::store::EventStore;

/// The KPI file's name in the data directory (SPEC §6).
pub const FILE_NAME: &str = "kpis.toml";

/// The KPI file of a data directory.
pub fn default_path(data: &Path) -> PathBuf {
    data.join(FILE_NAME)
}

/// Why the KPI file cannot be used.
#[derive(Debug)]
pub enum FileError {
    /// Not there (or unreadable); the message says how to make one.
    Missing(String),
    /// There, with every problem listed.
    Bad(String),
}

impl std::fmt::Display for FileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FileError::Missing(m) | FileError::Bad(m) => f.write_str(m),
        }
    }
}

/// Reads and checks the KPI file at `path`.
pub fn load(path: &Path) -> Result<Vec<Kpi>, FileError> {
    let shown = path.display().to_string();
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(FileError::Missing(format!(
                "no KPI file at {shown}; `tally review --init` writes a starter one \
                 (or give --kpis FILE)"
            )));
        }
        Err(e) => return Err(FileError::Missing(format!("reading {shown}: {e}"))),
    };
    review::parse_kpis(&shown, &text).map_err(|e| FileError::Bad(e.to_string()))
}

/// `period`, `as-of` and `tz` from flags or a query string; anything else
/// is an unknown parameter.
pub fn params(pairs: Vec<(String, String)>, now_ms: i64) -> Result<ReviewParams, QueryError> {
    let mut raw = RawParams::new(pairs);
    let p = ReviewParams::from_raw(&mut raw, now_ms)?;
    raw.finish()?;
    Ok(p)
}

/// Runs the review; the warnings name KPI events the store never saw.
pub fn run(
    store: &dyn EventStore,
    kpis: &[Kpi],
    p: &ReviewParams,
) -> Result<(ReviewResult, Vec<String>), QueryError> {
    let result = review::run(store, kpis, p)?;
    let mut names: Vec<&str> = kpis.iter().flat_map(Kpi::event_names).collect();
    names.sort_unstable();
    names.dedup();
    let warnings = catalog::unknown_name_warnings(store, &names)?;
    Ok((result, warnings))
}

/// Writes the starter file to `path`, never over an existing file.
pub fn init(path: &Path) -> Result<(), String> {
    let shown = path.display();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => {
                format!(
                    "{shown} already exists; it was left as it is (remove it first to start over)"
                )
            }
            _ => format!("creating {shown}: {e}"),
        })?;
    file.write_all(STARTER.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| format!("writing {shown}: {e}"))
}

/// `tally review --init`: a baseline KPI per lifecycle stage, a goal
/// (target) on a few, and a counter-metric paired with each goal.
pub const STARTER: &str = include_str!("review_starter.toml");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_starter_file_is_valid_and_covers_every_stage_with_paired_goals() {
        let kpis = review::parse_kpis("starter", STARTER).unwrap_or_else(|e| panic!("{e}"));
        for stage in tally_event::Stage::ALL {
            assert!(
                kpis.iter().any(|k| k.stage == Some(stage)),
                "no KPI for {stage}"
            );
        }
        for goal in kpis.iter().filter(|k| k.target.is_some()) {
            assert!(!goal.pair.is_empty(), "goal {} has no pair", goal.name);
        }
        assert!(kpis.iter().filter(|k| k.target.is_some()).count() >= 3);
    }

    #[test]
    fn the_example_apps_file_is_valid() {
        let text = include_str!("../../examples/kpis.toml");
        let kpis = review::parse_kpis("examples/kpis.toml", text).unwrap_or_else(|e| panic!("{e}"));
        assert!(kpis.len() >= 7);
    }

    #[test]
    fn init_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kpis.toml");
        init(&path).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), STARTER);
        std::fs::write(&path, "mine").unwrap();
        let err = init(&path).unwrap_err();
        assert!(err.contains("already exists"), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "mine");
    }

    #[test]
    fn a_missing_file_says_how_to_make_one() {
        let dir = tempfile::tempdir().unwrap();
        let err = load(&dir.path().join("kpis.toml")).unwrap_err();
        assert!(matches!(err, FileError::Missing(_)));
        assert!(err.to_string().contains("tally review --init"), "{err}");
    }
}
