//! Starting a `tally serve` child process for load tests.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};

/// A `tally serve` on a temporary data directory; stopped (SIGTERM) on drop.
pub struct Spawned {
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

/// Starts `bin serve` on 127.0.0.1 with a free port; returns the guard, the
/// URL and the write key.
pub fn spawn(bin: &str) -> anyhow::Result<(Spawned, String, String)> {
    let dir = tempfile::tempdir()?;
    let key = "loadgen-write-key".to_string();
    let mut child = Command::new(bin)
        .args(["serve", "--listen", "127.0.0.1:0", "--write-key", &key])
        .args(["--read-key", "loadgen-read-key", "--data"])
        .arg(dir.path().join("data"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {bin}"))?;
    let mut out = BufReader::new(child.stdout.take().context("stdout")?);
    let mut line = String::new();
    loop {
        line.clear();
        if out.read_line(&mut line)? == 0 {
            bail!("tally serve exited before listening");
        }
        if let Some(rest) = line.trim().strip_prefix("tally listening on ") {
            let url = rest.split_whitespace().next().context("url")?.to_string();
            return Ok((Spawned { child, _dir: dir }, url, key));
        }
    }
}
