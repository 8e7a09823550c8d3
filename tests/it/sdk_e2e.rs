//! The SDK against a real `tally serve`: at-least-once delivery plus the
//! collector's dedup must give every tracked event exactly once, while a
//! fault-injecting proxy answers 500s and 429s, stalls, resets and loses
//! answers, and while the collector is killed and restarted mid-stream.

use std::collections::HashMap;
use std::time::Duration;

use tally_sdk::{Client, Person, Stage};

use crate::support::{Server, WRITE_KEY, export_ids};

#[path = "../../sdk/tests/it/proxy.rs"]
mod proxy;

use proxy::{Fault, FaultProxy};

fn addr_of(url: &str) -> std::net::SocketAddr {
    url.trim_start_matches("http://")
        .parse()
        .expect("server url is host:port")
}

fn client(url: String) -> Client {
    Client::builder(url, WRITE_KEY)
        .batch_size(40)
        .flush_interval(Duration::from_millis(20))
        .request_timeout(Duration::from_millis(800))
        .max_retries(1000)
        .backoff(Duration::from_millis(5), Duration::from_millis(100))
        .shutdown_timeout(Duration::from_secs(60))
        .build()
        .expect("client builds")
}

fn assert_exactly_once(data: &std::path::Path, tracked: &[uuid::Uuid]) {
    let mut stored: HashMap<String, usize> = HashMap::new();
    for id in export_ids(data) {
        *stored.entry(id).or_default() += 1;
    }
    let twice = stored.values().filter(|n| **n > 1).count();
    assert_eq!(twice, 0, "events stored more than once");
    let missing: Vec<_> = tracked
        .iter()
        .filter(|id| !stored.contains_key(&id.to_string()))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} tracked events missing",
        missing.len(),
        tracked.len()
    );
    assert_eq!(
        stored.len(),
        tracked.len(),
        "the store holds events nobody tracked"
    );
}

#[test]
fn every_event_exactly_once_through_faults_and_a_collector_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = Server::start(&data);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let tracked = rt.block_on(async {
        let proxy = FaultProxy::start(addr_of(&server.url)).await.unwrap();
        proxy.chaos(
            &[
                (Fault::PassThrough, 10),
                (Fault::Fail500, 2),
                (
                    Fault::TooMany {
                        retry_after_secs: 0,
                    },
                    2,
                ),
                (Fault::LoseResponse, 2),
                (Fault::Reset, 1),
                (Fault::Stall, 1),
            ],
            7,
        );
        let client = client(proxy.url());
        let mut tracked = Vec::new();
        for i in 0..1500u32 {
            if i == 700 {
                // Kill the collector without warning and bring it back on
                // another port: the SDK keeps retrying through the proxy.
                server.kill();
                tokio::time::sleep(Duration::from_millis(200)).await;
                server = Server::start(&data);
                proxy.set_upstream(addr_of(&server.url));
            }
            let person = if i % 5 == 0 {
                Person::anonymous(format!("visitor-{}", i % 40))
            } else {
                Person::user(format!("user-{}", i % 60))
            };
            let id = client
                .track(
                    person,
                    if i % 3 == 0 {
                        "invoice_sent"
                    } else {
                        "page_view"
                    },
                )
                .stage(Stage::Engagement)
                .property("i", i)
                .send()
                .expect("track accepts a valid event");
            tracked.push(id);
            if i % 100 == 0 {
                tokio::task::yield_now().await;
            }
        }
        let report = client.shutdown().await;
        assert!(
            report.all_delivered(),
            "undelivered after shutdown: {report:?}"
        );
        assert!(report.rejected.is_empty(), "{:?}", report.rejected);
        let counts = proxy.counts();
        assert!(
            counts.fail500 > 0 && counts.too_many > 0 && counts.lost > 0,
            "{counts:?}"
        );
        let stats = client.stats();
        assert!(stats.retries > 0, "{stats:?}");
        tracked
    });
    server.terminate();
    assert_exactly_once(&data, &tracked);
}

#[test]
fn blocking_client_delivers_to_a_real_collector() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = Server::start(&data);
    let client = tally_sdk::blocking::Client::builder(server.url.clone(), WRITE_KEY)
        .batch_size(25)
        .build()
        .unwrap();
    let tracked: Vec<_> = (0..100)
        .map(|i| {
            client
                .track(format!("user-{i}"), "signup")
                .stage(Stage::Acquisition)
                .revenue(f64::from(i))
                .send()
                .unwrap()
        })
        .collect();
    let report = client.shutdown();
    assert!(report.all_delivered(), "{report:?}");
    assert_eq!(client.stats().accepted, 100);
    server.terminate();
    assert_exactly_once(&data, &tracked);
}

#[test]
fn durable_queue_survives_an_app_restart_while_the_collector_is_down() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let queue = dir.path().join("queue");
    // The collector is down: nothing listens on this proxy's upstream.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let tracked = rt.block_on(async {
        let proxy = FaultProxy::start("127.0.0.1:9".parse().unwrap())
            .await
            .unwrap();
        let app = Client::builder(proxy.url(), WRITE_KEY)
            .durable(&queue)
            .request_timeout(Duration::from_millis(200))
            .backoff(Duration::from_millis(5), Duration::from_millis(20))
            .build()
            .unwrap();
        let ids: Vec<_> = (0..50)
            .map(|i| app.track(format!("u{i}"), "signup").send().unwrap())
            .collect();
        // The app exits: shutdown gives up quickly, events stay on disk.
        let report = app.shutdown_within(Duration::from_millis(300)).await;
        assert!(!report.all_delivered());
        ids
    });
    // Later: the collector is up, the app starts again with the same queue.
    let mut server = Server::start(&data);
    rt.block_on(async {
        let app = Client::builder(server.url.clone(), WRITE_KEY)
            .durable(&queue)
            .build()
            .unwrap();
        let report = app.shutdown_within(Duration::from_secs(20)).await;
        assert!(report.all_delivered(), "{report:?}");
    });
    server.terminate();
    assert_exactly_once(&data, &tracked);
}

#[test]
fn default_properties_are_merged_and_a_disabled_client_sends_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = Server::start(&data);
    let client = tally_sdk::blocking::Client::builder(server.url.clone(), WRITE_KEY)
        .property("app_version", "2.4.1")
        .property("region", "eu")
        .build()
        .unwrap();
    client.track("u1", "plain").send().unwrap();
    client
        .track("u1", "own_region")
        .property("region", "us")
        .property("extra", 1)
        .send()
        .unwrap();
    // A disabled client, built either way, with the collector listening.
    for off in [
        tally_sdk::blocking::Client::disabled(),
        tally_sdk::blocking::Client::builder(server.url.clone(), WRITE_KEY)
            .enabled(false)
            .build()
            .unwrap(),
    ] {
        off.track("u2", "never_sent").send().unwrap();
        assert!(matches!(
            off.track("u2", "").send(),
            Err(tally_sdk::TrackError::Invalid(_))
        ));
        assert_eq!(off.shutdown().undelivered().count(), 0);
        assert_eq!(off.stats().queued, 0);
    }
    assert!(client.shutdown().all_delivered());
    server.terminate();
    let events = crate::support::export_events(&data, &[]);
    assert_eq!(events.len(), 2, "{events:?}");
    let by = |name: &str| events.iter().find(|e| e["event"] == name).unwrap();
    assert_eq!(
        by("plain")["properties"],
        serde_json::json!({"app_version": "2.4.1", "region": "eu"})
    );
    assert_eq!(
        by("own_region")["properties"],
        serde_json::json!({"app_version": "2.4.1", "region": "us", "extra": 1})
    );
}
