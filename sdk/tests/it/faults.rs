//! Delivery through the fault-injecting proxy: every event ends up stored
//! exactly once whatever the proxy does to requests and answers.

use std::collections::HashSet;
use std::time::Duration;

use crate::fake::FakeCollector;
use crate::proxy::{Fault, FaultProxy};
use crate::{assert_conserved, fast};

const SEC: Duration = Duration::from_secs(1);

#[tokio::test]
async fn proxy_modes_pass_fail_and_recover() {
    let fake = FakeCollector::start().await;
    let proxy = FaultProxy::start(fake.addr()).await.unwrap();
    let client = fast(&proxy.url()).max_retries(1000).build().unwrap();

    for fault in [
        Fault::Fail500,
        Fault::TooMany {
            retry_after_secs: 0,
        },
        Fault::Reset,
    ] {
        proxy.set(fault);
        client.track("u1", "x").send().unwrap();
        let report = client.flush_within(Duration::from_millis(200)).await;
        assert!(report.timed_out, "{fault:?}: {report:?}");
        assert!(
            fake.stored().is_empty(),
            "{fault:?} must not reach the collector"
        );
    }
    let c = proxy.counts();
    assert!(c.fail500 >= 1 && c.too_many >= 1 && c.reset >= 1, "{c:?}");
    assert_eq!(c.passed, 0);

    proxy.set(Fault::PassThrough);
    let report = client.flush_within(5 * SEC).await;
    assert!(report.all_delivered(), "{report:?}");
    assert_eq!(fake.stored().len(), 3);
    assert!(proxy.counts().passed >= 1);
    assert_conserved(&client.stats());
}

#[tokio::test]
async fn stalled_connections_time_out_and_are_retried() {
    let fake = FakeCollector::start().await;
    let proxy = FaultProxy::start(fake.addr()).await.unwrap();
    proxy.script([Fault::Stall]);
    let client = fast(&proxy.url())
        .request_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    client.track("u1", "x").send().unwrap();
    let report = client.flush_within(5 * SEC).await;
    assert!(report.all_delivered(), "{report:?}");
    assert_eq!(proxy.counts().stalled, 1);
    assert_eq!(client.stats().retries, 1);
    assert_eq!(fake.stored().len(), 1);
}

#[tokio::test]
async fn lost_answers_are_retried_and_deduplicated() {
    let fake = FakeCollector::start().await;
    let proxy = FaultProxy::start(fake.addr()).await.unwrap();
    proxy.script([Fault::LoseResponse, Fault::LoseResponse]);
    let client = fast(&proxy.url()).build().unwrap();
    let tracked: Vec<String> = (0..10)
        .map(|i| {
            client
                .track("u1", format!("e{i}"))
                .send()
                .unwrap()
                .to_string()
        })
        .collect();
    let report = client.flush_within(5 * SEC).await;
    assert!(report.all_delivered(), "{report:?}");
    // The collector stored them on the first try; the two retries were
    // duplicates, and that is all the SDK heard about.
    assert_eq!(fake.stored_ids(), tracked);
    assert_eq!(fake.duplicates(), 20);
    let s = client.stats();
    assert_eq!((s.accepted, s.duplicates, s.retries), (0, 10, 2));
    assert_eq!(proxy.counts().lost, 2);
    assert_conserved(&s);
}

#[tokio::test]
async fn an_unreachable_upstream_is_a_retryable_502() {
    let fake = FakeCollector::start().await;
    // Find a port with nothing behind it.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let proxy = FaultProxy::start(dead).await.unwrap();
    let client = fast(&proxy.url()).max_retries(1000).build().unwrap();
    client.track("u1", "x").send().unwrap();
    let report = client.flush_within(Duration::from_millis(300)).await;
    assert_eq!(report.last_error.and_then(|e| e.status()), Some(502));
    assert!(proxy.counts().upstream_down >= 1);
    // The collector "restarts" elsewhere.
    proxy.set_upstream(fake.addr());
    assert!(client.flush_within(5 * SEC).await.all_delivered());
    assert_eq!(fake.stored().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_every_event_exactly_once() {
    let fake = FakeCollector::start().await;
    let proxy = FaultProxy::start(fake.addr()).await.unwrap();
    proxy.chaos(
        &[
            (Fault::PassThrough, 6),
            (Fault::Fail500, 2),
            (
                Fault::TooMany {
                    retry_after_secs: 0,
                },
                2,
            ),
            (Fault::Stall, 1),
            (Fault::Reset, 1),
            (Fault::LoseResponse, 2),
        ],
        0x7A11,
    );
    let client = fast(&proxy.url())
        .batch_size(20)
        .request_timeout(Duration::from_millis(300))
        .max_retries(1000)
        .build()
        .unwrap();
    let mut tracked = HashSet::new();
    for burst in 0..6 {
        for i in 0..50 {
            let id = client
                .track(format!("u{}", i % 9), format!("b{burst}e{i}"))
                .send()
                .unwrap();
            tracked.insert(id.to_string());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let report = client.flush_within(30 * SEC).await;
    assert!(report.all_delivered(), "{report:?}");
    let stored = fake.stored_ids();
    assert_eq!(stored.len(), 300, "no event stored twice");
    assert_eq!(
        stored.into_iter().collect::<HashSet<_>>(),
        tracked,
        "no event lost"
    );
    let s = client.stats();
    assert_eq!(s.accepted + s.duplicates, 300);
    assert_eq!((s.failed, s.dropped, s.rejected), (0, 0, 0));
    assert_conserved(&s);
    let c = proxy.counts();
    assert!(
        c.fail500 + c.too_many + c.stalled + c.reset + c.lost > 0,
        "{c:?}"
    );
}
