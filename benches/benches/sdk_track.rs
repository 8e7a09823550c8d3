//! Cost of `track(..).send()` on the app thread (target: at most 1 µs per
//! event), with the SDK's background sender running:
//!
//! - `unreachable`: the sender points at a closed 127.0.0.1 port and backs
//!   off, so the queue stays full and every `send` also evicts the oldest
//!   event (drop policy `Oldest`): the steady state of an outage;
//! - `sink`: the sender delivers to a minimal local HTTP sink that answers
//!   every batch with 200 and drains the queue while the app tracks (in
//!   chunks of 5,000 events, with untimed pauses for the sender to catch
//!   up, so that no event is dropped): normal operation.
//!
//! With glibc's allocator, events with properties cost noticeably more in
//! the `sink` case than in the `unreachable` one: the sender frees, on its
//! own thread, what the app thread allocated, and glibc's arenas contend
//! (measured on 2 cores: ~1.2 µs, against ~0.35 µs with mimalloc as the
//! global allocator).
//!
//! `cargo bench -p tally-benches --bench sdk_track`

use std::hint::black_box;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tally_sdk::{Client, DropPolicy, Stage};

/// A blocking HTTP/1.1 sink on 127.0.0.1: reads each request and answers
/// `200 {"accepted":0}` (the SDK only trusts rejections and duplicates from
/// the answer, so it counts the whole batch as accepted).
fn start_sink() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            std::thread::spawn(move || serve(conn));
        }
    });
    format!("http://{addr}")
}

fn serve(conn: TcpStream) {
    let _ = conn.set_nodelay(true);
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut writer = conn;
    let body = "{\"accepted\":0,\"duplicates\":0,\"rejected\":[]}";
    // One write per answer: a head and a body in two small segments would
    // meet delayed ACKs.
    let answer = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    loop {
        let mut len = 0usize;
        let mut line = String::new();
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            if line == "\r\n" {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0u8; len];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        if writer.write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}

/// Times `iters` calls of `track` in chunks, letting the sender drain the
/// queue (untimed) between chunks, so that `send` never meets a full queue.
fn timed_with_drain(client: &Client, iters: u64, track: impl Fn(&Client)) -> Duration {
    const CHUNK: u64 = 5_000;
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let n = left.min(CHUNK);
        let start = Instant::now();
        for _ in 0..n {
            track(client);
        }
        total += start.elapsed();
        left -= n;
        let end = Instant::now() + Duration::from_secs(5);
        while client.stats().pending > 0 && Instant::now() < end {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    total
}

fn minimal(client: &Client) {
    let _ = black_box(client.track("user-42", "invoice_sent").send());
}

fn with_details(client: &Client) {
    let _ = black_box(
        client
            .track("user-42", "plan_upgraded")
            .stage(Stage::Revenue)
            .revenue(49.0)
            .property("plan", "pro")
            .property("seats", 5)
            .send(),
    );
}

fn bench_track(c: &mut Criterion) {
    // The app's runtime: the sender runs there, on its own worker thread.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("sdk_track");
    group.throughput(Throughput::Elements(1));

    // Outage: nothing listens on port 9; the sender backs off, the queue
    // stays full and each send also evicts the oldest event.
    let client = rt.block_on(async {
        Client::builder("http://127.0.0.1:9", "bench-key")
            .queue_capacity(50_000)
            .drop_policy(DropPolicy::Oldest)
            .max_retries(u32::MAX)
            .backoff(Duration::from_millis(200), Duration::from_secs(5))
            .build()
            .unwrap()
    });
    group.bench_function("unreachable/minimal", |b| b.iter(|| minimal(&client)));
    group.bench_function("unreachable/stage_revenue_2_props", |b| {
        b.iter(|| with_details(&client))
    });
    report("unreachable", &client);
    rt.block_on(client.shutdown_within(Duration::from_millis(200)));

    // Normal operation: a sink answers 200 and the sender drains the queue
    // while the app tracks.
    let client = rt.block_on(async {
        Client::builder(start_sink(), "bench-key")
            .batch_size(1000)
            .flush_interval(Duration::from_millis(10))
            .queue_capacity(50_000)
            .build()
            .unwrap()
    });
    group.bench_function("sink/minimal", |b| {
        b.iter_custom(|iters| timed_with_drain(&client, iters, minimal))
    });
    group.bench_function("sink/stage_revenue_2_props", |b| {
        b.iter_custom(|iters| timed_with_drain(&client, iters, with_details))
    });
    report("sink", &client);
    rt.block_on(client.shutdown_within(Duration::from_secs(5)));
    group.finish();
}

fn report(name: &str, client: &Client) {
    let s = client.stats();
    eprintln!(
        "{name}: queued {} accepted {} dropped {} requests {}",
        s.queued, s.accepted, s.dropped, s.requests
    );
}

criterion_group!(benches, bench_track);
criterion_main!(benches);
