//! Batching, retries, reporting, flush and shutdown, against the fake collector.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::json;
use tally_event::time::parse_rfc3339;
use tally_sdk::{
    Client, DeliveryError, DeliveryReport, DropPolicy, Person, Stage, TrackError, Uuid,
};

use crate::fake::{FakeCollector, Reply};
use crate::{Reports, assert_conserved, fast};

const SEC: Duration = Duration::from_secs(1);

fn track_n(client: &Client, n: usize, prefix: &str) -> Vec<String> {
    (0..n)
        .map(|i| {
            client
                .track(format!("user-{}", i % 7), format!("{prefix}{i}"))
                .send()
                .expect("queued")
                .to_string()
        })
        .collect()
}

#[tokio::test]
async fn batches_by_size_with_gzip_ids_and_sent_at() {
    let fake = FakeCollector::start().await;
    let client = fast(&fake.url())
        .batch_size(10)
        .flush_interval(Duration::from_secs(60))
        .build()
        .unwrap();
    let tracked = track_n(&client, 25, "e");

    // Two full batches go out without waiting for the (long) interval.
    assert!(fake.wait_for(3 * SEC, |f| f.requests().len() >= 2).await);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        fake.requests().len(),
        2,
        "the partial batch waits for its interval"
    );

    let report = client.flush().await;
    assert!(report.all_delivered(), "{report:?}");
    assert_eq!(report.delivered, 5, "only the 5 still pending were flushed");

    let requests = fake.requests();
    assert_eq!(
        requests
            .iter()
            .map(|r| r.events().len())
            .collect::<Vec<_>>(),
        [10, 10, 5]
    );
    let sent: Vec<String> = requests.iter().flat_map(|r| r.ids()).collect();
    assert_eq!(sent, tracked, "order preserved, each event exactly once");
    for r in &requests {
        assert_eq!(r.headers["content-encoding"], "gzip");
        assert_eq!(r.headers["content-type"], "application/json");
        assert_eq!(r.headers["authorization"], "Bearer test-key");
        assert!(r.headers["user-agent"].starts_with("tally-sdk/"));
        for e in r.events() {
            let id: Uuid = e["id"].as_str().unwrap().parse().unwrap();
            assert_eq!(id.get_version_num(), 7);
            let ts = parse_rfc3339(e["timestamp"].as_str().unwrap()).unwrap();
            let sent_at = parse_rfc3339(e["sent_at"].as_str().unwrap()).unwrap();
            assert!(sent_at >= ts, "sent_at is stamped at send time");
            assert!(e["user_id"].as_str().unwrap().starts_with("user-"));
        }
    }
    let s = client.stats();
    assert_eq!(
        (s.queued, s.sent, s.accepted, s.requests, s.pending),
        (25, 25, 25, 3, 0)
    );
    assert_conserved(&s);
}

#[tokio::test]
async fn partial_batches_go_out_after_the_interval() {
    let fake = FakeCollector::start().await;
    let client = fast(&fake.url())
        .flush_interval(Duration::from_millis(100))
        .build()
        .unwrap();
    let start = Instant::now();
    track_n(&client, 3, "e");
    assert!(fake.wait_for(3 * SEC, |f| f.stored().len() == 3).await);
    assert!(start.elapsed() >= Duration::from_millis(50));
    assert_eq!(fake.requests().len(), 1);
}

#[tokio::test]
async fn wire_form_carries_every_field() {
    let fake = FakeCollector::start().await;
    let client = fast(&fake.url()).build().unwrap();
    client
        .track(Person::anonymous("anon-1"), "landing_viewed")
        .stage(Stage::Discovery)
        .property("utm", "ads")
        .send()
        .unwrap();
    client
        .track("u1", "plan_upgraded")
        .anonymous_id("anon-1")
        .stage(Stage::Revenue)
        .revenue(49.5)
        .properties([("plan", json!("pro")), ("seats", json!(3))])
        .property("nested", json!({"a": [1, 2]}))
        .timestamp_ms(1_767_225_600_000)
        .send()
        .unwrap();
    assert!(client.flush().await.all_delivered());
    let stored = fake.stored();
    assert_eq!(stored[0]["anonymous_id"], "anon-1");
    assert!(stored[0].get("user_id").is_none());
    assert_eq!(stored[0]["stage"], "discovery");
    assert_eq!(stored[1]["user_id"], "u1");
    assert_eq!(stored[1]["anonymous_id"], "anon-1");
    assert_eq!(stored[1]["stage"], "revenue");
    assert_eq!(stored[1]["revenue"], 49.5);
    assert_eq!(stored[1]["timestamp"], "2026-01-01T00:00:00Z");
    assert_eq!(
        stored[1]["properties"],
        json!({"plan": "pro", "seats": 3, "nested": {"a": [1, 2]}})
    );
}

#[tokio::test]
async fn retries_5xx_with_the_same_ids() {
    let fake = FakeCollector::start().await;
    fake.script([Reply::Status(500), Reply::Status(503)]);
    let reports = Reports::default();
    let client = reports.install(fast(&fake.url())).build().unwrap();
    let tracked = track_n(&client, 5, "e");
    let report = client.flush().await;
    assert!(report.all_delivered(), "{report:?}");
    let requests = fake.requests();
    let replies: Vec<Reply> = requests.iter().map(|r| r.reply).collect();
    assert_eq!(replies, [Reply::Status(500), Reply::Status(503), Reply::Ok]);
    for r in &requests {
        assert_eq!(r.ids(), tracked, "every attempt resends the same ids");
    }
    assert_eq!(fake.stored_ids(), tracked);
    let s = client.stats();
    assert_eq!((s.accepted, s.retries, s.requests, s.failed), (5, 2, 3, 0));
    assert_conserved(&s);
    assert!(
        reports
            .all()
            .iter()
            .all(|r| matches!(r, DeliveryReport::Delivered { accepted: 5, .. }))
    );
}

#[tokio::test]
async fn sent_at_is_stamped_on_each_attempt() {
    let fake = FakeCollector::start().await;
    fake.script([Reply::Stall]);
    let client = fast(&fake.url())
        .request_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    track_n(&client, 2, "e");
    let report = client.flush_within(5 * SEC).await;
    assert!(report.all_delivered(), "{report:?}");
    let requests = fake.requests();
    assert_eq!(requests.len(), 2, "a timed-out request is retried");
    let (a, b) = (&requests[0].events()[0], &requests[1].events()[0]);
    assert_eq!(a["id"], b["id"]);
    assert_eq!(a["timestamp"], b["timestamp"]);
    let sent_a = parse_rfc3339(a["sent_at"].as_str().unwrap()).unwrap();
    let sent_b = parse_rfc3339(b["sent_at"].as_str().unwrap()).unwrap();
    assert!(
        sent_b - sent_a >= 250,
        "second attempt stamped anew: {sent_a} {sent_b}"
    );
    assert_eq!(client.stats().retries, 1);
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let fake = FakeCollector::start().await;
    fake.script([Reply::TooMany { retry_after: 1 }]);
    let client = fast(&fake.url())
        .backoff(Duration::from_millis(1), Duration::from_millis(5))
        .build()
        .unwrap();
    track_n(&client, 1, "e");
    assert!(client.flush_within(5 * SEC).await.all_delivered());
    let r = fake.requests();
    assert_eq!(r.len(), 2);
    let gap = r[1].at - r[0].at;
    assert!(gap >= Duration::from_millis(950), "waited only {gap:?}");
    assert!(gap < Duration::from_secs(3), "waited {gap:?}");
}

#[tokio::test]
async fn retry_after_zero_still_backs_off() {
    let fake = FakeCollector::start().await;
    fake.script([Reply::TooMany { retry_after: 0 }; 4]);
    let client = fast(&fake.url())
        .backoff(Duration::from_millis(40), Duration::from_millis(40))
        .build()
        .unwrap();
    track_n(&client, 1, "e");
    assert!(client.flush_within(5 * SEC).await.all_delivered());
    let r = fake.requests();
    assert_eq!(r.len(), 5);
    for pair in r.windows(2) {
        let gap = pair[1].at - pair[0].at;
        assert!(gap >= Duration::from_millis(35), "retried after {gap:?}");
    }
}

#[tokio::test]
async fn other_4xx_fail_without_retry() {
    for (reply, key, status) in [
        (Reply::Status(400), crate::fake::KEY, 400),
        (Reply::Status(413), crate::fake::KEY, 413),
        (Reply::Ok, "wrong-key", 401),
    ] {
        let fake = FakeCollector::start().await;
        fake.set_default(reply);
        let reports = Reports::default();
        let client = reports
            .install(Client::builder(fake.url(), key).request_timeout(SEC))
            .build()
            .unwrap();
        // One event: a 413 on a lone event cannot be split further.
        let tracked = track_n(&client, 1, "e");
        let report = client.flush().await;
        assert_eq!(fake.requests().len(), 1, "{status}: no retry");
        let failed: Vec<String> = report
            .failed
            .iter()
            .map(|e| e.id.unwrap().to_string())
            .collect();
        assert_eq!(failed, tracked, "{status}");
        assert_eq!(
            report.last_error.as_ref().and_then(DeliveryError::status),
            Some(status)
        );
        let s = client.stats();
        assert_eq!((s.failed, s.retries, s.accepted), (1, 0, 0), "{status}");
        assert_conserved(&s);
        match &reports.all()[..] {
            [
                DeliveryReport::Failed {
                    events,
                    error,
                    attempts,
                },
            ] => {
                assert_eq!(events.len(), 1);
                assert_eq!(error.status(), Some(status));
                assert!(!error.is_retryable());
                assert_eq!(*attempts, 1);
            }
            other => panic!("{status}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_413_batch_is_split_in_halves() {
    let fake = FakeCollector::start().await;
    fake.script([Reply::Status(413)]);
    let client = fast(&fake.url()).build().unwrap();
    let tracked = track_n(&client, 6, "e");
    assert!(client.flush().await.all_delivered());
    let sizes: Vec<usize> = fake.requests().iter().map(|r| r.events().len()).collect();
    assert_eq!(sizes, [6, 3, 3]);
    assert_eq!(fake.stored_ids(), tracked);
}

#[tokio::test]
async fn per_event_rejections_are_reported_not_retried() {
    let fake = FakeCollector::start().await;
    let reports = Reports::default();
    let client = reports.install(fast(&fake.url())).build().unwrap();
    client.track("u1", "ok_one").send().unwrap();
    let bad = client.track("u1", "reject_me").send().unwrap();
    client.track("u1", "ok_two").send().unwrap();
    let report = client.flush().await;
    assert_eq!(report.delivered, 2);
    assert_eq!(report.rejected.len(), 1);
    assert_eq!(report.rejected[0].event.id, Some(bad));
    assert!(report.rejected[0].error.contains("rejected"));
    assert!(report.all_delivered());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(fake.requests().len(), 1, "rejections are not retried");
    let s = client.stats();
    assert_eq!((s.accepted, s.rejected, s.retries), (2, 1, 0));
    assert_conserved(&s);
    match &reports.all()[..] {
        [
            DeliveryReport::Delivered {
                accepted: 2,
                duplicates: 0,
                rejected,
            },
        ] => {
            assert_eq!(rejected[0].event.event, "reject_me");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn oversized_properties_are_rejected_without_sending() {
    let fake = FakeCollector::start().await;
    let client = fast(&fake.url()).build().unwrap();
    let big = client
        .track("u1", "huge")
        .property("blob", "x".repeat(40 * 1024))
        .send()
        .unwrap();
    client.track("u1", "small").send().unwrap();
    let report = client.flush().await;
    assert_eq!(report.delivered, 1);
    assert_eq!(report.rejected.len(), 1);
    assert_eq!(report.rejected[0].event.id, Some(big));
    assert!(!fake.stored_ids().contains(&big.to_string()));
    assert!(
        fake.requests()
            .iter()
            .all(|r| !r.ids().contains(&big.to_string()))
    );
    assert_conserved(&client.stats());
}

#[tokio::test]
async fn exhausted_retries_fail_the_batch() {
    let fake = FakeCollector::start().await;
    fake.set_default(Reply::Status(500));
    let client = fast(&fake.url()).max_retries(2).build().unwrap();
    track_n(&client, 4, "e");
    let report = client.flush().await;
    assert_eq!(fake.requests().len(), 3, "1 attempt + 2 retries");
    assert_eq!(report.failed.len(), 4);
    assert_eq!(
        report.last_error.as_ref().and_then(DeliveryError::status),
        Some(500)
    );
    let s = client.stats();
    assert_eq!((s.failed, s.retries, s.requests), (4, 2, 3));
    assert_conserved(&s);
}

#[tokio::test]
async fn flush_deadline_reports_what_is_still_pending() {
    let fake = FakeCollector::start().await;
    fake.set_default(Reply::Stall);
    let client = fast(&fake.url()).request_timeout(SEC).build().unwrap();
    let tracked = track_n(&client, 4, "e");
    let start = Instant::now();
    let report = client.flush_within(Duration::from_millis(300)).await;
    assert!(
        start.elapsed() < Duration::from_millis(1200),
        "{:?}",
        start.elapsed()
    );
    assert!(report.timed_out);
    let pending: Vec<String> = report
        .pending
        .iter()
        .map(|e| e.id.unwrap().to_string())
        .collect();
    assert_eq!(pending, tracked);
    assert_eq!(
        client.stats().pending,
        4,
        "still queued after a flush timeout"
    );

    // The collector recovers: the same events go through on a later flush.
    fake.set_default(Reply::Ok);
    let report = client.flush_within(5 * SEC).await;
    assert!(report.all_delivered(), "{report:?}");
    assert_eq!(fake.stored_ids(), tracked);
    assert_conserved(&client.stats());
}

#[tokio::test]
async fn shutdown_flushes_and_closes() {
    let fake = FakeCollector::start().await;
    let client = fast(&fake.url())
        .flush_interval(Duration::from_secs(60))
        .build()
        .unwrap();
    let other_handle = client.clone();
    let tracked = track_n(&client, 30, "e");
    let report = client.shutdown().await;
    assert!(report.all_delivered(), "{report:?}");
    assert_eq!(report.delivered, 30);
    assert_eq!(fake.stored_ids(), tracked);

    assert_eq!(
        other_handle.track("u1", "late").send(),
        Err(TrackError::Closed)
    );
    let again = client.shutdown_within(5 * SEC).await;
    assert_eq!(again, Default::default());
    assert_eq!(client.flush().await, Default::default());
    let s = client.stats();
    assert_eq!((s.queued, s.accepted, s.dropped), (31, 30, 1));
    assert_conserved(&s);
}

#[tokio::test]
async fn concurrent_shutdowns_both_wait_for_delivery() {
    let fake = FakeCollector::start().await;
    fake.script([Reply::Status(500)]);
    let client = fast(&fake.url())
        .backoff(Duration::from_millis(100), Duration::from_millis(100))
        .build()
        .unwrap();
    let other = client.clone();
    track_n(&client, 5, "e");
    let (a, b) = tokio::join!(client.shutdown(), other.shutdown());
    assert!(a.all_delivered() && b.all_delivered(), "{a:?} {b:?}");
    assert_eq!((a.delivered, b.delivered), (5, 5));
    assert_eq!(fake.stored().len(), 5);
}

#[tokio::test]
async fn shutdown_deadline_returns_the_undelivered() {
    let fake = FakeCollector::start().await;
    fake.set_default(Reply::Status(503));
    let reports = Reports::default();
    let client = reports
        .install(
            fast(&fake.url())
                .backoff(Duration::from_millis(50), Duration::from_millis(200))
                .max_retries(1000),
        )
        .build()
        .unwrap();
    let tracked = track_n(&client, 7, "e");
    let start = Instant::now();
    let report = client.shutdown_within(Duration::from_millis(400)).await;
    assert!(
        start.elapsed() < Duration::from_millis(1500),
        "{:?}",
        start.elapsed()
    );
    assert!(report.timed_out);
    let undelivered: Vec<String> = report
        .undelivered()
        .map(|e| e.id.unwrap().to_string())
        .collect();
    assert_eq!(undelivered, tracked);
    assert_eq!(
        report.last_error.as_ref().and_then(DeliveryError::status),
        Some(503)
    );
    let s = client.stats();
    assert_eq!((s.failed, s.pending), (7, 0));
    assert_conserved(&s);
    assert!(reports.all().iter().any(|r| matches!(
        r,
        DeliveryReport::Failed { error: DeliveryError::Abandoned, events, .. } if events.len() == 7
    )));
}

#[tokio::test]
async fn dropping_the_client_still_delivers_in_the_background() {
    let fake = FakeCollector::start().await;
    let client = fast(&fake.url())
        .flush_interval(Duration::from_secs(60))
        .build()
        .unwrap();
    let tracked = track_n(&client, 5, "e");
    drop(client);
    assert!(fake.wait_for(3 * SEC, |f| f.stored().len() == 5).await);
    assert_eq!(fake.stored_ids(), tracked);
}

#[test]
fn dropping_the_client_and_runtime_does_not_hang() {
    // The collector stalls every request; while a request hangs, the app
    // drops its client without shutdown and then its runtime: both must
    // return promptly.
    let server_rt = tokio::runtime::Runtime::new().unwrap();
    let fake = server_rt.block_on(FakeCollector::start());
    fake.set_default(Reply::Stall);
    let url = fake.url();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();

    let app = std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let client = Client::builder(url, crate::fake::KEY)
                .flush_interval(Duration::from_millis(20))
                .request_timeout(Duration::from_secs(30))
                .shutdown_timeout(Duration::from_secs(30))
                .build()
                .unwrap();
            for i in 0..50 {
                let _ = client.track("u1", format!("e{i}")).send();
            }
            // Keep the runtime running until the request hangs.
            tokio::task::spawn_blocking(move || go_rx.recv_timeout(Duration::from_secs(10)))
                .await
                .unwrap()
                .unwrap();
            drop(client);
        });
        drop(rt);
    });
    let hung = Instant::now() + Duration::from_secs(5);
    while fake.requests().is_empty() && Instant::now() < hung {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(!fake.requests().is_empty(), "the sender never sent");
    let start = Instant::now();
    go_tx.send(()).unwrap();
    let end = start + Duration::from_secs(5);
    while !app.is_finished() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(app.is_finished(), "the app hung after dropping the client");
    app.join().unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn queue_full_drop_newest_refuses_new_events() {
    let fake = FakeCollector::start().await;
    let reports = Reports::default();
    let client = reports
        .install(
            fast(&fake.url())
                .queue_capacity(10)
                .flush_interval(Duration::from_secs(60))
                .drop_policy(DropPolicy::Newest),
        )
        .build()
        .unwrap();
    let mut kept = Vec::new();
    for i in 0..25 {
        match client.track("u1", format!("e{i}")).send() {
            Ok(id) => kept.push(id.to_string()),
            Err(e) => assert_eq!(e, TrackError::QueueFull, "event {i}"),
        }
    }
    assert_eq!(kept.len(), 10);
    let s = client.stats();
    assert_eq!((s.queued, s.dropped, s.pending), (25, 15, 10));
    assert!(client.shutdown().await.all_delivered());
    assert_eq!(fake.stored_ids(), kept, "the first ten were kept");
    let dropped: u64 = reports
        .all()
        .iter()
        .map(|r| match r {
            DeliveryReport::Dropped { count } => *count,
            _ => 0,
        })
        .sum();
    assert_eq!(dropped, 15);
    assert_conserved(&client.stats());
}

#[tokio::test]
async fn queue_full_drop_oldest_keeps_the_latest() {
    let fake = FakeCollector::start().await;
    let client = fast(&fake.url())
        .queue_capacity(10)
        .flush_interval(Duration::from_secs(60))
        .drop_policy(DropPolicy::Oldest)
        .build()
        .unwrap();
    let ids: Vec<String> = (0..25)
        .map(|i| {
            client
                .track("u1", format!("e{i}"))
                .send()
                .unwrap()
                .to_string()
        })
        .collect();
    let s = client.stats();
    assert_eq!((s.queued, s.dropped, s.pending), (25, 15, 10));
    assert!(client.shutdown().await.all_delivered());
    assert_eq!(fake.stored_ids(), ids[15..], "the last ten were kept");
    assert_conserved(&client.stats());
}

#[tokio::test]
async fn invalid_events_are_refused_at_track() {
    let fake = FakeCollector::start().await;
    let client = fast(&fake.url()).build().unwrap();
    for bad in [
        client.track("u1", "").send(),
        client.track("", "x").send(),
        client.track("u1", "bell\u{7}").send(),
        client.track("u1", "x").revenue(f64::INFINITY).send(),
        client.track("u1", "x").timestamp_ms(0).send(),
    ] {
        assert!(matches!(bad, Err(TrackError::Invalid(_))), "{bad:?}");
    }
    let s = client.stats();
    assert_eq!((s.invalid, s.queued), (5, 0));
    assert!(client.shutdown().await.all_delivered());
    assert!(fake.requests().is_empty());
}

#[tokio::test]
async fn a_panicking_callback_does_not_stop_delivery() {
    let fake = FakeCollector::start().await;
    let client = fast(&fake.url())
        .on_delivery(|_| panic!("callback bug (expected in this test)"))
        .build()
        .unwrap();
    track_n(&client, 3, "a");
    assert!(client.flush().await.all_delivered());
    track_n(&client, 3, "b");
    assert!(client.flush().await.all_delivered());
    assert_eq!(fake.stored().len(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_app_threads_every_event_exactly_once() {
    let fake = FakeCollector::start().await;
    let client = fast(&fake.url()).batch_size(50).build().unwrap();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let c = client.clone();
            std::thread::spawn(move || {
                (0..500)
                    .map(|i| {
                        c.track(format!("u{t}"), format!("e{i}"))
                            .send()
                            .unwrap()
                            .to_string()
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let tracked: HashSet<String> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    assert_eq!(tracked.len(), 2000);
    let report = client.flush_within(10 * SEC).await;
    assert!(report.all_delivered(), "{report:?}");
    // Only what the flush itself settled: some batches were sent before.
    assert!(report.delivered <= 2000);
    let stored = fake.stored_ids();
    assert_eq!(stored.len(), 2000);
    assert_eq!(stored.into_iter().collect::<HashSet<_>>(), tracked);
    assert!(fake.requests().iter().all(|r| r.events().len() <= 50));
    let s = client.stats();
    assert_eq!(
        (s.accepted, s.duplicates, s.failed, s.dropped),
        (2000, 0, 0, 0)
    );
    assert_conserved(&s);
}

#[tokio::test]
async fn own_idempotency_keys_are_deduplicated_by_the_collector() {
    let fake = FakeCollector::start().await;
    let client = fast(&fake.url()).build().unwrap();
    let key = Uuid::now_v7();
    assert_eq!(client.track("u1", "order_paid").id(key).send(), Ok(key));
    assert_eq!(client.track("u1", "order_paid").id(key).send(), Ok(key));
    assert!(client.flush().await.all_delivered());
    assert_eq!(fake.stored_ids(), [key.to_string()]);
    let s = client.stats();
    assert_eq!((s.accepted, s.duplicates), (1, 1));
}
