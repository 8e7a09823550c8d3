//! Issue 9: a collector that refuses the key or the events is worth a
//! `warn` (not `debug`) log line, once per distinct cause, so a wrong key
//! is not a silent failure.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tally_sdk::Client;

use crate::fake::{FakeCollector, KEY, Reply};

/// Log lines written while the returned guard lives (this thread only: the
/// test runtime is single-threaded, so the SDK's task logs here too).
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn install(&self) -> tracing::subscriber::DefaultGuard {
        let me = self.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(move || me.clone())
            .finish();
        tracing::subscriber::set_default(subscriber)
    }

    fn warnings(&self) -> Vec<String> {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .lines()
            .filter(|l| l.contains(" WARN "))
            .map(String::from)
            .collect()
    }
}

async fn send_twice(fake: &FakeCollector, key: &str) {
    let client = Client::builder(fake.url(), key)
        .request_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    for i in 0..2 {
        client.track("u", format!("e{i}")).send().unwrap();
        client.flush().await;
    }
    client.shutdown().await;
}

#[tokio::test]
async fn a_refused_key_is_warned_once() {
    let logs = Captured::default();
    let _guard = logs.install();
    let fake = FakeCollector::start().await;
    fake.set_default(Reply::Ok);
    send_twice(&fake, "wrong-key").await;
    assert_eq!(fake.requests().len(), 2);
    let warnings = logs.warnings();
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert!(
        warnings[0].contains("refused the write key"),
        "{warnings:#?}"
    );
    assert!(warnings[0].contains("401"), "{warnings:#?}");
}

#[tokio::test]
async fn refused_events_are_warned_once_per_status() {
    let logs = Captured::default();
    let _guard = logs.install();
    for status in [400, 413, 403] {
        let fake = FakeCollector::start().await;
        fake.set_default(Reply::Status(status));
        send_twice(&fake, KEY).await;
    }
    let warnings = logs.warnings();
    // One per client and cause: 400, 413, 403 each once (not twice).
    assert_eq!(warnings.len(), 3, "{warnings:#?}");
    assert!(warnings[0].contains("malformed") && warnings[0].contains("400"));
    assert!(warnings[1].contains("too large") && warnings[1].contains("413"));
    assert!(warnings[2].contains("write key") && warnings[2].contains("403"));
}

#[tokio::test]
async fn retryable_failures_are_not_warnings() {
    let logs = Captured::default();
    let _guard = logs.install();
    let fake = FakeCollector::start().await;
    fake.script([Reply::Status(503)]);
    fake.set_default(Reply::Ok);
    let client = crate::fast(&fake.url()).build().unwrap();
    client.track("u", "e").send().unwrap();
    let report = client.flush().await;
    assert!(report.all_delivered(), "{report:?}");
    assert!(logs.warnings().is_empty(), "{:#?}", logs.warnings());
}
