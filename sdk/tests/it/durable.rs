//! The durable queue (feature `durable`): events survive a client restart
//! while the collector is down.

use std::time::Duration;

use crate::fake::{FakeCollector, Reply};
use crate::{assert_conserved, fast};

#[tokio::test]
async fn events_survive_a_restart_while_the_collector_is_down() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeCollector::start().await;
    // Down: every connection is closed without an answer.
    fake.set_default(Reply::Close);

    let first = fast(&fake.url()).durable(dir.path()).build().unwrap();
    let tracked: Vec<String> = (0..20)
        .map(|i| {
            first
                .track("u1", format!("e{i}"))
                .send()
                .unwrap()
                .to_string()
        })
        .collect();
    let report = first.shutdown_within(Duration::from_millis(300)).await;
    assert_eq!(report.undelivered().count(), 20, "{report:?}");
    drop(first);
    assert!(fake.stored().is_empty());

    // The collector comes back; the app restarts on the same directory.
    fake.set_default(Reply::Ok);
    let second = fast(&fake.url()).durable(dir.path()).build().unwrap();
    assert_eq!(second.stats().recovered, 20);
    second.track("u1", "after_restart").send().unwrap();
    let report = second.flush().await;
    assert!(report.all_delivered(), "{report:?}");
    let stored = fake.stored_ids();
    assert_eq!(
        stored[..20],
        tracked[..],
        "recovered events first, in order, same ids"
    );
    assert_eq!(stored.len(), 21);
    let s = second.stats();
    assert_eq!((s.queued, s.accepted), (21, 21));
    assert_conserved(&s);
    second.shutdown().await;
    drop(second);

    // Delivered events are not sent again by a third start.
    let third = fast(&fake.url()).durable(dir.path()).build().unwrap();
    assert_eq!(third.stats().recovered, 0);
    third.shutdown().await;
}

#[test]
fn events_survive_a_crash_without_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let server_rt = tokio::runtime::Runtime::new().unwrap();
    let fake = server_rt.block_on(FakeCollector::start());
    fake.set_default(Reply::Status(503));

    let tracked: Vec<String> = {
        // The app's runtime dies with its client, mid-retry.
        let rt = tokio::runtime::Runtime::new().unwrap();
        let ids = rt.block_on(async {
            let client = fast(&fake.url()).durable(dir.path()).build().unwrap();
            let ids: Vec<String> = (0..10)
                .map(|i| {
                    client
                        .track("u1", format!("e{i}"))
                        .send()
                        .unwrap()
                        .to_string()
                })
                .collect();
            tokio::time::sleep(Duration::from_millis(200)).await;
            std::mem::forget(client);
            ids
        });
        drop(rt);
        ids
    };

    fake.set_default(Reply::Ok);
    server_rt.block_on(async {
        let client = fast(&fake.url()).durable(dir.path()).build().unwrap();
        assert_eq!(client.stats().recovered, 10);
        assert!(client.shutdown().await.all_delivered());
    });
    assert_eq!(fake.stored_ids(), tracked);
}

#[tokio::test]
async fn durable_queues_retry_without_limit() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeCollector::start().await;
    fake.script([Reply::Status(500); 6]);
    let client = fast(&fake.url())
        .max_retries(1)
        .durable(dir.path())
        .build()
        .unwrap();
    client.track("u1", "x").send().unwrap();
    let report = client.flush_within(Duration::from_secs(5)).await;
    assert!(report.all_delivered(), "{report:?}");
    assert_eq!(client.stats().retries, 6);
    assert_eq!(fake.stored().len(), 1);
}
