//! `tally backup` and `POST /v1/admin/backup`: a copy of a data directory
//! that `tally serve --data DEST` opens — the store (see
//! [`crate::store::Admin::backup`]) and the files beside it (keys,
//! KPI definitions), so the restored collector answers to the same keys.

use std::path::Path;

use crate::error::Error;
use crate::store::EventStore;

/// Files of a data directory copied beside the store.
const BESIDE: [&str; 2] = ["keys.toml", "kpis.toml"];

/// Backs up the data directory `data` (whose store is `store`) into
/// `dest`, a new or empty directory; returns the events copied.
pub fn backup(store: &dyn EventStore, data: &Path, dest: &Path) -> Result<u64, Error> {
    if dest.as_os_str().is_empty() {
        return Err(Error::Config("the backup destination is empty".into()));
    }
    if let (Ok(a), Ok(b)) = (std::fs::canonicalize(data), std::fs::canonicalize(dest)) {
        if b.starts_with(&a) {
            return Err(Error::Config(format!(
                "{} is inside the data directory {}: back up to another place",
                dest.display(),
                data.display()
            )));
        }
    }
    std::fs::create_dir_all(dest)
        .map_err(|e| Error::io(format!("creating {}", dest.display()), e))?;
    let events = store.backup(dest)?;
    for name in BESIDE {
        let from = data.join(name);
        if from.exists() {
            let to = dest.join(name);
            std::fs::copy(&from, &to)
                .and_then(|_| std::fs::File::open(&to)?.sync_all())
                .map_err(|e| Error::io(format!("copying {}", from.display()), e))?;
        }
    }
    crate::store::chunk::sync_dir(dest)?;
    Ok(events)
}
