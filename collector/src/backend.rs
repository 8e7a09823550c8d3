//! The one place that chooses the store backend. `tally serve`
//! ([`crate::http::start`]) and every `--data` command of the CLI open
//! their store here; nothing else names a backend's constructor. Today the
//! backend is the embedded [`DiskStore`] of `tally-store`; a second one
//! (ClickHouse, planned) is chosen here from the configuration.

use std::path::Path;

use crate::config::Config;
pub use crate::store::disk::Check;
use crate::store::{DiskStore, Error, StoreOptions};

/// The backend this build runs.
pub type Backend = DiskStore;

/// Opens the store of the data directory `data` (its `store/` folder).
pub fn open(data: &Path, options: &StoreOptions) -> Result<Backend, Error> {
    DiskStore::open(&Config::store_dir(data), options)
}

/// `tally check`: every checksum and reference of the store in `data`.
pub fn check(data: &Path) -> Result<Check, Error> {
    DiskStore::check(&Config::store_dir(data))
}

/// `tally check --repair`: what can be repaired without guessing; returns
/// what was done.
pub fn repair(data: &Path) -> Result<Vec<String>, Error> {
    DiskStore::repair(&Config::store_dir(data))
}
