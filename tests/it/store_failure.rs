//! SPEC §2: "503 when the store cannot accept writes (disk full), never a
//! silent loss". A full disk is hard to arrange in a test, so the collector
//! runs in-process over a store that fails the way sled does when a write
//! hits ENOSPC.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::json;
use tally_collector::config::Config;
use tally_collector::http;
use tally_collector::store::{Admin, Error, EventStore, Export, Ingest, Outcome};

use tally_event::Event;
use tally_query::{MemSource, NameId, QueryError, Rows, Scan, Source};

use crate::support::{READ_KEY, WRITE_KEY};

/// Fails every write while `full` is set (panics, a bug, while `panics`
/// is); otherwise accepts everything.
#[derive(Default)]
struct FullDisk {
    full: AtomicBool,
    panics: AtomicBool,
    empty: MemSource,
}

impl Source for FullDisk {
    fn name_id(&self, name: &str) -> Option<NameId> {
        self.empty.name_id(name)
    }
    fn person_count(&self) -> usize {
        0
    }
    fn scan(&self, scan: &Scan<'_>) -> Result<Vec<Rows>, QueryError> {
        self.empty.scan(scan)
    }
}

impl Ingest for FullDisk {
    fn append(&self, events: Vec<Event>) -> Result<Vec<Outcome>, Error> {
        if self.panics.load(Ordering::SeqCst) {
            panic!("a bug in the store");
        }
        if self.full.load(Ordering::SeqCst) {
            return Err(Error::io(
                "appending to the store",
                std::io::Error::from_raw_os_error(28), // ENOSPC
            ));
        }
        Ok(vec![Outcome::Accepted; events.len()])
    }
    fn sync(&self) -> Result<(), Error> {
        Ok(())
    }
}

/// Backup and deletion are not faked: the defaults refuse.
impl Admin for FullDisk {}

impl Export for FullDisk {
    fn scan_events(
        &self,
        _: i64,
        _: i64,
        _: &mut dyn FnMut(Event) -> Result<(), Error>,
    ) -> Result<(), Error> {
        Ok(())
    }
}

#[test]
fn a_store_that_cannot_write_gets_503_and_unhealthy_then_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(FullDisk::default());
    store.full.store(true, Ordering::SeqCst);
    let config = Config {
        data: dir.path().to_path_buf(),
        listen: "127.0.0.1:0".into(),
        write_key: Some(WRITE_KEY.into()),
        read_key: Some(READ_KEY.into()),
        workers: Some(1),
        ..Config::default()
    };
    let (tx, rx) = std::sync::mpsc::channel();
    let backend: Arc<dyn EventStore> = store.clone();
    let server = std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let running = http::start_with_store(config, backend).unwrap();
            tx.send((running.addr, running.server_handle())).unwrap();
            running.wait().await.unwrap();
        })
    });
    let (addr, handle) = rx.recv().unwrap();
    let url = format!("http://{addr}");
    let client = crate::support::http();
    let post = || {
        client
            .post(format!("{url}/v1/batch"))
            .bearer_auth(WRITE_KEY)
            .json(&json!({ "batch": [{ "event": "signup", "user_id": "u1" }] }))
            .send()
            .unwrap()
    };

    let resp = post();
    assert_eq!(resp.status(), 503);
    let body: serde_json::Value = resp.json().unwrap();
    let error = body["error"].as_str().expect("503 has an error body");
    assert!(error.contains("not stored"), "{error}");
    let health = client.get(format!("{url}/healthz")).send().unwrap();
    assert_eq!(health.status(), 503);
    assert!(health.text().unwrap().contains("error"));

    // Space freed: writes succeed again and health recovers.
    store.full.store(false, Ordering::SeqCst);
    let resp = post();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        client
            .get(format!("{url}/healthz"))
            .send()
            .unwrap()
            .status(),
        200
    );

    actix_web::rt::System::new().block_on(handle.stop(true));
    server.join().unwrap();
}

/// A dead writer thread used to leave `/healthz` at 200 and every write at
/// 503 forever, and the process exited 0. Now the write fails, health
/// fails, and the collector stops with an error (a supervisor restarts it).
#[test]
fn a_dead_writer_thread_fails_health_and_stops_the_collector_with_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        data: dir.path().to_path_buf(),
        listen: "127.0.0.1:0".into(),
        write_key: Some(WRITE_KEY.into()),
        read_key: Some(READ_KEY.into()),
        workers: Some(1),
        ..Config::default()
    };
    let (tx, rx) = std::sync::mpsc::channel();
    // A store whose append panics, as the `chunk_events` underflow of
    // issue 16.4 did.
    let store = FullDisk::default();
    store.panics.store(true, Ordering::SeqCst);
    let backend: Arc<dyn EventStore> = Arc::new(store);
    let server = std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let running = http::start_with_store(config, backend).unwrap();
            tx.send(running.addr).unwrap();
            running.wait().await
        })
    });
    let addr = rx.recv().unwrap();
    let url = format!("http://{addr}");
    let client = crate::support::http();
    let resp = client
        .post(format!("{url}/v1/batch"))
        .bearer_auth(WRITE_KEY)
        .json(&json!({ "batch": [{ "event": "signup", "user_id": "u1" }] }))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 503);
    let result = server.join().unwrap();
    let err = result.expect_err("the collector stops with an error");
    assert!(err.to_string().contains("writer thread died"), "{err}");
}
