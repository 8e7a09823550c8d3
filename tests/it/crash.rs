//! What a 200 promises: every acknowledged event survives a SIGKILL of the
//! collector at any moment, exactly once. Several cycles of concurrent
//! load, kill, restart.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;

use crate::support::{Server, export_ids, http, post_batch};

/// Crash cycles per test; `TALLY_CRASH_CYCLES` raises it for the soak
/// (`benches/soak/crash.sh`).
const CYCLES: usize = 4;

fn cycles() -> usize {
    std::env::var("TALLY_CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(CYCLES)
}
const CLIENTS: usize = 4;
const BATCH: usize = 50;

fn batch(client_id: usize, n: usize) -> (Vec<String>, Vec<serde_json::Value>) {
    let ids: Vec<String> = (0..BATCH)
        .map(|_| uuid::Uuid::now_v7().to_string())
        .collect();
    let events = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            json!({
                "id": id,
                "event": if i % 2 == 0 { "page_view" } else { "invoice_sent" },
                "user_id": format!("c{client_id}-u{}", (n * BATCH + i) % 97),
                "properties": { "n": n, "i": i, "pad": "x".repeat(64) },
            })
        })
        .collect();
    (ids, events)
}

#[test]
fn acknowledged_events_survive_sigkill_exactly_once() {
    crash_cycles(&[]);
}

/// With chunks of 300 events the store seals every few requests, so the
/// kills land in the middle of seals (chunk written but not published,
/// published but the old log not yet removed, ...).
#[test]
fn acknowledged_events_survive_sigkill_during_seals() {
    crash_cycles(&[("TALLY_CHUNK_EVENTS", "300")]);
}

fn crash_cycles(env: &[(&str, &str)]) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut first_batch: Option<Vec<serde_json::Value>> = None;

    let cycles = cycles();
    for cycle in 0..cycles {
        let mut server = Server::start_with_env(&data, &[], env);
        let stop = Arc::new(AtomicBool::new(false));
        let workers: Vec<_> = (0..CLIENTS)
            .map(|c| {
                let (url, stop, acked) = (server.url.clone(), stop.clone(), acked.clone());
                std::thread::spawn(move || {
                    let client = http();
                    let mut sent = Vec::new();
                    for n in 0.. {
                        if stop.load(Ordering::Relaxed) || n > 10_000 {
                            break;
                        }
                        let (ids, events) = batch(cycle * CLIENTS + c, n);
                        match post_batch(&client, &url, &events) {
                            Ok((200, body)) => {
                                assert_eq!(body["accepted"], BATCH, "{body}");
                                acked.lock().unwrap().extend(ids);
                                if sent.is_empty() {
                                    sent = events;
                                }
                            }
                            // The server died under us: these events may or
                            // may not be stored, but must never be stored twice.
                            Ok(_) | Err(_) => break,
                        }
                    }
                    sent
                })
            })
            .collect();
        // Let load build up, then kill without warning.
        std::thread::sleep(Duration::from_millis(400 + 150 * (cycle % 8) as u64));
        server.kill();
        stop.store(true, Ordering::Relaxed);
        for w in workers {
            let sent = w.join().unwrap();
            if first_batch.is_none() && !sent.is_empty() {
                first_batch = Some(sent);
            }
        }
    }

    // A retried batch that was acknowledged before a crash is a duplicate
    // after restart, not a second copy.
    let server = Server::start_with_env(&data, &[], env);
    let first = first_batch.expect("at least one batch was acknowledged");
    let (status, body) = post_batch(&http(), &server.url, &first).unwrap();
    assert_eq!(status, 200);
    assert_eq!(body["accepted"], 0, "{body}");
    assert_eq!(body["duplicates"], BATCH, "{body}");
    drop(server);

    let acked = acked.lock().unwrap();
    eprintln!(
        "{} acknowledged events over {cycles} crash cycles",
        acked.len()
    );
    assert!(
        acked.len() >= cycles * BATCH,
        "too little load to prove anything: {}",
        acked.len()
    );
    let mut stored: HashMap<String, usize> = HashMap::new();
    for id in export_ids(&data) {
        *stored.entry(id).or_default() += 1;
    }
    let twice: Vec<_> = stored.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "events stored more than once: {twice:?}");
    let lost: Vec<_> = acked
        .iter()
        .filter(|id| !stored.contains_key(*id))
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged events lost, e.g. {:?}",
        lost.len(),
        acked.len(),
        lost.first()
    );
}
