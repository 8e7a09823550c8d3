//! The blocking client, used from plain threads with no runtime.

use std::time::{Duration, Instant};

use tally_sdk::{Stage, TrackError, blocking};

use crate::assert_conserved;
use crate::fake::{FakeCollector, KEY, Reply};

/// The fake collector on a runtime of its own, as a separate process would be.
fn server() -> (tokio::runtime::Runtime, FakeCollector) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let fake = rt.block_on(FakeCollector::start());
    (rt, fake)
}

fn builder(url: &str) -> blocking::ClientBuilder {
    blocking::Client::builder(url, KEY)
        .flush_interval(Duration::from_millis(50))
        .request_timeout(Duration::from_millis(500))
        .backoff(Duration::from_millis(5), Duration::from_millis(50))
        .shutdown_timeout(Duration::from_secs(5))
}

#[test]
fn blocking_client_delivers_flushes_and_shuts_down() {
    let (_rt, fake) = server();
    fake.script([Reply::Status(500)]);
    let client = builder(&fake.url()).batch_size(20).build().unwrap();
    let mut tracked = Vec::new();
    for i in 0..50 {
        let id = client
            .track(format!("u{}", i % 5), "report_exported")
            .stage(Stage::Engagement)
            .property("i", i)
            .send()
            .unwrap();
        tracked.push(id.to_string());
    }
    let report = client.flush();
    assert!(report.all_delivered(), "{report:?}");
    assert_eq!(report.delivered, 50);
    assert_eq!(fake.stored_ids(), tracked);

    client.track("u1", "last").send().unwrap();
    let report = client.shutdown();
    assert!(report.all_delivered());
    assert_eq!(report.delivered, 1);
    assert_eq!(client.track("u1", "after").send(), Err(TrackError::Closed));
    let s = client.stats();
    assert_eq!((s.accepted, s.retries, s.dropped), (51, 1, 1));
    assert_conserved(&s);
}

#[test]
fn blocking_flush_respects_its_deadline() {
    let (_rt, fake) = server();
    fake.set_default(Reply::Stall);
    let client = builder(&fake.url())
        .request_timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    client.track("u1", "x").send().unwrap();
    let start = Instant::now();
    let report = client.flush_within(Duration::from_millis(300));
    assert!(start.elapsed() < Duration::from_millis(1500));
    assert!(report.timed_out);
    assert_eq!(report.pending.len(), 1);
    let start = Instant::now();
    let report = client.shutdown_within(Duration::from_millis(300));
    assert!(start.elapsed() < Duration::from_millis(1500));
    assert_eq!(report.undelivered().count(), 1);
}

#[test]
fn dropping_a_blocking_client_does_not_block() {
    let (_rt, fake) = server();
    fake.set_default(Reply::Stall);
    let client = builder(&fake.url())
        .request_timeout(Duration::from_secs(30))
        .shutdown_timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    for i in 0..10 {
        client.track("u1", format!("e{i}")).send().unwrap();
    }
    std::thread::sleep(Duration::from_millis(200));
    let start = Instant::now();
    drop(client);
    assert!(start.elapsed() < Duration::from_millis(100));
}

#[test]
fn blocking_client_delivers_after_drop_when_the_process_lives_on() {
    let (_rt, fake) = server();
    let client = builder(&fake.url())
        .flush_interval(Duration::from_secs(60))
        .build()
        .unwrap();
    client.track("u1", "x").send().unwrap();
    drop(client);
    let end = Instant::now() + Duration::from_secs(3);
    while fake.stored().is_empty() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(fake.stored().len(), 1);
}

#[tokio::test]
async fn blocking_client_can_be_built_inside_a_runtime() {
    let fake = FakeCollector::start().await;
    let client = builder(&fake.url()).build().unwrap();
    client.track("u1", "x").send().unwrap();
    // Its blocking calls belong on a blocking thread.
    let report = tokio::task::spawn_blocking(move || client.shutdown())
        .await
        .unwrap();
    assert!(report.all_delivered());
    assert_eq!(fake.stored().len(), 1);
}
