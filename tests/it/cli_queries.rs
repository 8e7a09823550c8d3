//! SPEC §3 (analyses on the command line): the real `tally` binary on a
//! `--data` directory filled by `tally import`, every `--format`, the exit
//! codes, `--server` mode and the environment variables.

use std::path::Path;
use std::process::Output;

use serde_json::Value;

use crate::http_queries::{expected_funnel, expected_lifecycle, query_cases};
use crate::support::{
    READ_KEY, Server, analysis_dataset, assert_json_matches, import_file, post_batch, tally,
    write_ndjson,
};

/// A data directory holding `support::analysis_dataset`, loaded with `tally import`.
fn data_with_dataset() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.ndjson");
    write_ndjson(&file, &analysis_dataset());
    let summary = import_file(&dir.path().join("data"), &file);
    assert_eq!(summary["accepted"], 15, "{summary}");
    dir
}

fn data(dir: &tempfile::TempDir) -> std::path::PathBuf {
    dir.path().join("data")
}

/// Runs `tally <args> --data DATA`.
fn run(data: &Path, args: &[&str]) -> Output {
    tally()
        .args(args)
        .arg("--data")
        .arg(data)
        .output()
        .expect("run tally")
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).expect("utf8 stdout")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn json_output_of_every_analysis_matches_the_spec() {
    let dir = data_with_dataset();
    for (name, _, flags, expected) in query_cases() {
        let mut args = vec![name];
        args.extend(&flags);
        args.extend(["--format", "json"]);
        let out = run(&data(&dir), &args);
        let json: Value = serde_json::from_str(&stdout(&out)).expect("JSON output");
        assert_json_matches(&json, &expected, &args.join(" "));
    }
}

#[test]
fn json_echoes_from_to_as_rfc3339_utc() {
    let dir = data_with_dataset();
    let out = run(
        &data(&dir),
        &[
            "funnel",
            "--steps",
            "signup,purchase",
            "--window",
            "1h",
            "--from",
            "2026-10-01T02:00:00+02:00",
            "--to",
            "2026-10-19T19:00:00-05:00",
            "--format",
            "json",
        ],
    );
    let json: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_json_matches(&json, &expected_funnel(), "offsets");
    let out = run(
        &data(&dir),
        &[
            "funnel",
            "--steps",
            "signup,purchase",
            "--window",
            "90s",
            "--from",
            "2026-10-05T10:00:00.250Z",
            "--to",
            "2026-10-05t11:00:00z",
            "--format",
            "json",
        ],
    );
    let json: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(json["to"], "2026-10-05T11:00:00Z");
    assert!(
        json["from"] == "2026-10-05T10:00:00.250Z" || json["from"] == "2026-10-05T10:00:00.25Z",
        "{}",
        json["from"]
    );
    assert_eq!(json["window_seconds"], 90);
    // u1's 10:00:00.000 signup is before from: nobody enters.
    assert_eq!(json["steps"][0]["users"], 0);
}

#[test]
fn durations_in_every_unit_are_accepted() {
    let dir = data_with_dataset();
    for (window, seconds) in [
        ("90s", 90),
        ("30m", 1800),
        ("24h", 86_400),
        ("7d", 604_800),
        ("2w", 1_209_600),
    ] {
        let out = run(
            &data(&dir),
            &[
                "funnel",
                "--steps",
                "signup,purchase",
                "--window",
                window,
                "--format",
                "json",
            ],
        );
        let json: Value = serde_json::from_str(&stdout(&out)).unwrap();
        assert_eq!(json["window_seconds"], seconds, "{window}");
    }
}

#[test]
fn csv_output_has_a_header_and_one_row_per_item() {
    let dir = data_with_dataset();
    for (name, _, flags, expected) in query_cases() {
        let mut args = vec![name];
        args.extend(&flags);
        args.extend(["--format", "csv"]);
        let text = stdout(&run(&data(&dir), &args));
        let lines: Vec<&str> = text.lines().collect();
        let rows = match name {
            "funnel" => expected["steps"].as_array().unwrap().len(),
            // The `total` and `mature` rows, then one per week.
            "activation" => expected["by_week"].as_array().unwrap().len() + 2,
            "retention" => expected["cohorts"].as_array().unwrap().len(),
            // Long format: users and events per stage, then six totals.
            "lifecycle" => 2 * expected["stages"].as_array().unwrap().len() + 6,
            "active" => expected["days"].as_array().unwrap().len(),
            // One per bucket, then the `total` row.
            "trend" => expected["series"].as_array().unwrap().len() + 1,
            _ => unreachable!(),
        };
        let what = args.join(" ");
        assert!(
            lines.len() == rows + 1 || lines.len() == rows + 2,
            "{what}:\n{text}"
        );
        let width = lines[0].split(',').count();
        assert!(width >= 2, "{what}: header {}", lines[0]);
        assert!(
            lines[0]
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ','),
            "{what}: header {}",
            lines[0]
        );
        for l in &lines[1..] {
            assert_eq!(l.split(',').count(), width, "{what}: ragged row {l:?}");
        }
    }
    // Spot checks of values.
    let text = stdout(&run(
        &data(&dir),
        &[
            "funnel",
            "--steps",
            "signup,purchase",
            "--window",
            "1h",
            "--from",
            "2026-10-01",
        ]
        .into_iter()
        .chain(["--to", "2026-10-20", "--format", "csv"])
        .collect::<Vec<_>>(),
    ));
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[1].contains("signup") && lines[1].contains(",5,"),
        "{text}"
    );
    assert!(
        lines[2].contains("purchase") && lines[2].contains(",3,"),
        "{text}"
    );
    assert!(
        lines[2].contains("0.6") && lines[2].contains("1800"),
        "{text}"
    );
    let text = stdout(&run(
        &data(&dir),
        &[
            "active",
            "--from",
            "2026-10-05",
            "--to",
            "2026-10-08",
            "--format",
            "csv",
        ],
    ));
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[1].starts_with("2026-10-05,5,6,6,0.833"), "{text}");
    assert!(lines[3].starts_with("2026-10-07,0,5,6,0"), "{text}");
    let text = stdout(&run(
        &data(&dir),
        &[
            "trend",
            "--event",
            "purchase",
            "--measure",
            "users",
            "--interval",
            "week",
            "--from",
            "2026-10-01",
            "--to",
            "2026-10-20",
            "--format",
            "csv",
        ],
    ));
    assert_eq!(
        text,
        "bucket,value\n2026-09-28,0\n2026-10-05,4\n2026-10-12,2\n2026-10-19,0\ntotal,5\n"
    );
}

/// Lines of a table whose first cell starts with `prefix`.
fn rows_starting<'a>(text: &'a str, prefixes: &[&str]) -> Vec<&'a str> {
    text.lines()
        .filter(|l| prefixes.iter().any(|p| l.starts_with(p)))
        .collect()
}

/// Char index of the end of the `n`-th whitespace-separated cell.
fn cell_end(line: &str, n: usize) -> usize {
    let chars: Vec<char> = line.chars().collect();
    let mut cell = 0;
    let mut i = 0;
    while i < chars.len() {
        while i < chars.len() && chars[i] == ' ' {
            i += 1;
        }
        let start = i;
        while i < chars.len() && chars[i] != ' ' {
            i += 1;
        }
        if start < i {
            if cell == n {
                return i;
            }
            cell += 1;
        }
    }
    panic!("no cell {n} in {line:?}");
}

#[test]
fn table_output_is_aligned_with_percentages_bars_and_durations() {
    let dir = data_with_dataset();
    let range = ["--from", "2026-10-01", "--to", "2026-10-20"];
    let with = |a: &[&'static str]| -> Vec<&'static str> {
        a.iter().copied().chain(range.iter().copied()).collect()
    };

    // Table is the default format.
    let funnel = stdout(&run(
        &data(&dir),
        &with(&["funnel", "--steps", "signup,purchase", "--window", "1h"]),
    ));
    assert!(
        serde_json::from_str::<Value>(&funnel).is_err(),
        "table is not JSON"
    );
    assert!(
        funnel.contains("100.0%") && funnel.contains("60.0%"),
        "{funnel}"
    );
    assert!(funnel.contains('█'), "{funnel}");
    assert!(funnel.contains("30m"), "{funnel}");
    let steps = rows_starting(&funnel, &["1.", "2."]);
    assert_eq!(steps.len(), 2, "{funnel}");
    assert!(steps[0].contains("signup") && steps[1].contains("purchase"));
    // Right-aligned numbers: users and both rates end in the same column.
    for c in [2, 3, 4] {
        assert_eq!(
            cell_end(steps[0], c),
            cell_end(steps[1], c),
            "column {c}:\n{funnel}"
        );
    }
    assert_eq!(
        steps[0].chars().count(),
        steps[1].chars().count(),
        "{funnel}"
    );
    // A step time of 2 h 13 min reads naturally.
    let funnel = stdout(&run(
        &data(&dir),
        &with(&[
            "funnel",
            "--steps",
            "signup,refund",
            "--window",
            "1d",
            "--format",
            "table",
        ]),
    ));
    assert!(funnel.contains("2h 13m"), "{funnel}");
    assert!(funnel.contains("20.0%"), "{funnel}");

    let activation = stdout(&run(
        &data(&dir),
        &with(&[
            "activation",
            "--start",
            "signup",
            "--event",
            "purchase",
            "--within",
            "1d",
        ]),
    ));
    assert!(
        activation.contains("80.0%") && activation.contains("75.0%"),
        "{activation}"
    );
    assert!(activation.contains("45m"), "{activation}");
    assert!(
        activation.contains("2026-10-05") && activation.contains("2026-10-12"),
        "{activation}"
    );
    assert!(activation.contains('█'), "{activation}");

    let retention = stdout(&run(
        &data(&dir),
        &with(&[
            "retention",
            "--start",
            "signup",
            "--return",
            "purchase",
            "--periods",
            "2",
            "--as-of",
            "2026-11-01",
        ]),
    ));
    let cohorts = rows_starting(&retention, &["2026-10-05", "2026-10-12"]);
    assert_eq!(cohorts.len(), 2, "{retention}");
    assert!(cohorts[0].contains("25.0%"), "{retention}");
    assert_eq!(
        cell_end(cohorts[0], 1),
        cell_end(cohorts[1], 1),
        "size column:\n{retention}"
    );

    let lifecycle = stdout(&run(&data(&dir), &with(&["lifecycle"])));
    let names = [
        "discovery",
        "acquisition",
        "activation",
        "engagement",
        "retention",
        "revenue",
        "referral",
    ];
    // Stage rows: a stage name, then numbers (not "revenue (net) ...").
    let stages: Vec<&str> = lifecycle
        .lines()
        .filter(|l| {
            let mut cells = l.split_whitespace();
            cells.next().is_some_and(|c| names.contains(&c))
                && cells.next().is_some_and(|c| c.parse::<u64>().is_ok())
        })
        .collect();
    assert_eq!(stages.len(), 7, "{lifecycle}");
    for c in [1, 2] {
        let col: Vec<usize> = stages.iter().map(|l| cell_end(l, c)).collect();
        assert!(
            col.windows(2).all(|w| w[0] == w[1]),
            "column {c}:\n{lifecycle}"
        );
    }
    assert!(lifecycle.contains("50"), "{lifecycle}");
    assert!(lifecycle.contains("16"), "{lifecycle}");
    assert!(lifecycle.contains("8.33"), "{lifecycle}");

    let active = stdout(&run(
        &data(&dir),
        &["active", "--from", "2026-10-05", "--to", "2026-10-08"],
    ));
    let days = rows_starting(&active, &["2026-10-0"]);
    assert_eq!(days.len(), 3, "{active}");
    assert!(days[0].contains("83.3%"), "{active}");
    for c in 1..=4 {
        let col: Vec<usize> = days.iter().map(|l| cell_end(l, c)).collect();
        assert!(
            col.windows(2).all(|w| w[0] == w[1]),
            "column {c}:\n{active}"
        );
    }
}

#[test]
fn bad_flags_exit_2_naming_the_flag() {
    let dir = data_with_dataset();
    let cases: Vec<(Vec<&str>, &[&str])> = vec![
        (
            vec!["funnel", "--steps", "a,b", "--window", "7x"],
            &["--window", "unit"],
        ),
        (
            vec!["trend", "--event", "e", "--tz", "Europe/Atlantis"],
            &["--tz", "Europe/Atlantis"],
        ),
        (
            vec!["retention", "--start", "signup", "--tz", "Mars/Olympus"],
            &["--tz", "Mars/Olympus"],
        ),
        (vec!["trend", "--measure", "users"], &["--event"]),
        (
            vec!["trend", "--event", "e", "--interval", "minute"],
            &["--interval"],
        ),
        (
            vec![
                "trend",
                "--event",
                "e",
                "--interval",
                "hour",
                "--from",
                "2025-01-01",
                "--to",
                "2026-10-01",
            ],
            &["--interval", "10,000"],
        ),
        (
            vec!["funnel", "--steps", "a,b", "--window", "7"],
            &["--window"],
        ),
        (
            vec!["funnel", "--steps", "a,b", "--window", "0s"],
            &["--window"],
        ),
        (
            vec!["funnel", "--steps", "a,b", "--window", "3651d"],
            &["--window"],
        ),
        (vec!["funnel", "--steps", "a"], &["--steps"]),
        (vec!["funnel", "--window", "1h"], &["--steps"]),
        (
            vec!["funnel", "--steps", "a,b", "--from", "2026-02-30"],
            &["--from"],
        ),
        (
            vec!["funnel", "--steps", "a,b", "--to", "2026-10-05 10:00:00Z"],
            &["--to"],
        ),
        (
            vec![
                "funnel",
                "--steps",
                "a,b",
                "--from",
                "2026-10-05",
                "--to",
                "2026-10-01",
            ],
            &["--from"],
        ),
        (
            vec!["funnel", "--steps", "a,b", "--format", "xml"],
            &["--format"],
        ),
        (
            vec![
                "activation",
                "--start",
                "signup",
                "--event",
                "purchase",
                "--count",
                "0",
            ],
            &["--count"],
        ),
        (
            vec![
                "activation",
                "--start",
                "signup",
                "--event",
                "purchase",
                "--within",
                "5",
            ],
            &["--within"],
        ),
        (vec!["activation", "--start", "signup"], &["--event"]),
        (
            vec!["retention", "--start", "signup", "--periods", "366"],
            &["--periods"],
        ),
        (
            vec!["retention", "--start", "signup", "--period", "month"],
            &["--period"],
        ),
        (
            vec!["retention", "--start", "signup", "--as-of", "later"],
            &["--as-of"],
        ),
        (vec!["retention", "--period", "week"], &["--start"]),
        (
            vec!["retention", "--start", "signup", "--periods", "-1"],
            &["--periods", "0 to 365"],
        ),
        (
            vec![
                "activation",
                "--start",
                "signup",
                "--event",
                "purchase",
                "--count",
                "-1",
            ],
            &["--count", "at least 1"],
        ),
        (
            vec!["funnel", "--steps", "a,b", "--window", "-1d"],
            &["--window"],
        ),
        (
            vec![
                "funnel",
                "--steps",
                "a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p,q,r,s,t,u",
            ],
            &["--steps", "21"],
        ),
        (vec!["lifecycle", "--bogus"], &["--bogus"]),
        (vec!["active", "--from", "tomorrow"], &["--from"]),
    ];
    for (args, words) in cases {
        let out = run(&data(&dir), &args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            out.stdout.is_empty(),
            "{args:?} printed {:?}",
            String::from_utf8_lossy(&out.stdout)
        );
        for w in words {
            assert!(err.contains(w), "{args:?}: {err:?} should mention {w:?}");
        }
    }
    // Boundaries that are fine: --periods 0 and 365, --count 1, 20 steps.
    for args in [
        vec![
            "retention",
            "--start",
            "signup",
            "--periods",
            "0",
            "--format",
            "json",
        ],
        vec![
            "retention",
            "--start",
            "signup",
            "--periods",
            "365",
            "--format",
            "json",
        ],
        vec![
            "activation",
            "--start",
            "signup",
            "--event",
            "purchase",
            "--count",
            "1",
        ],
        vec![
            "funnel",
            "--steps",
            "a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p,q,r,s,t",
            "--window",
            "3650d",
        ],
        vec!["funnel", "--steps", "a,b", "--window", "1s"],
    ] {
        let out = run(&data(&dir), &args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    }
}

#[test]
fn a_data_dir_held_by_a_collector_exits_1_suggesting_server() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let (status, _) =
        post_batch(&crate::support::http(), &server.url, &analysis_dataset()).unwrap();
    assert_eq!(status, 200);
    for args in [
        vec!["funnel", "--steps", "signup,purchase"],
        vec!["activation", "--start", "signup", "--event", "purchase"],
        vec!["retention", "--start", "signup"],
        vec!["lifecycle", "--format", "json"],
        vec!["active", "--format", "csv"],
    ] {
        let out = run(dir.path(), &args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.contains("--server"),
            "{args:?}: {err:?} should suggest --server"
        );
    }
    // A bad flag is still a usage error (2), even with the directory busy.
    let out = run(dir.path(), &["funnel", "--steps", "a,b", "--window", "7x"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    // And the same queries through the collector work.
    let out = tally()
        .args([
            "lifecycle",
            "--from",
            "2026-10-01",
            "--to",
            "2026-10-20",
            "--format",
            "json",
        ])
        .args(["--server", &server.url, "--key", READ_KEY])
        .output()
        .unwrap();
    let json: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_json_matches(&json, &expected_lifecycle(), "lifecycle --server");
}

#[test]
fn server_and_key_from_flags_or_environment() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let (status, _) =
        post_batch(&crate::support::http(), &server.url, &analysis_dataset()).unwrap();
    assert_eq!(status, 200);
    let lifecycle = ["lifecycle", "--from", "2026-10-01", "--to", "2026-10-20"];
    // Flags (a trailing slash on the URL is fine).
    let url_slash = format!("{}/", server.url);
    let out = tally()
        .args(lifecycle)
        .args([
            "--format", "json", "--server", &url_slash, "--key", READ_KEY,
        ])
        .output()
        .unwrap();
    let json: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_json_matches(&json, &expected_lifecycle(), "flags");
    // Environment only.
    let out = tally()
        .env("TALLY_SERVER", &server.url)
        .env("TALLY_READ_KEY", READ_KEY)
        .args(lifecycle)
        .args(["--format", "json"])
        .output()
        .unwrap();
    let json: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_json_matches(&json, &expected_lifecycle(), "env");
    // Env server, flag key; other formats are rendered locally.
    let out = tally()
        .env("TALLY_SERVER", &server.url)
        .args(lifecycle)
        .args(["--format", "csv", "--key", READ_KEY])
        .output()
        .unwrap();
    let csv = stdout(&out);
    // The long format: a header, users and events for 7 stages, 6 totals.
    assert_eq!(csv.lines().count(), 1 + 14 + 6, "{csv}");
    let out = tally()
        .env("TALLY_SERVER", &server.url)
        .env("TALLY_READ_KEY", READ_KEY)
        .args(lifecycle)
        .output()
        .unwrap();
    assert!(stdout(&out).contains("acquisition"));
    // A wrong key is a failure (1) with a message, not a usage error.
    let out = tally()
        .env("TALLY_SERVER", &server.url)
        .env("TALLY_READ_KEY", "wrong-key-123")
        .args(lifecycle)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("401"), "{}", stderr(&out));
    // An explicit --data wins over TALLY_SERVER in the environment (here the
    // directory is busy, so the answer is the --data error, exit 1).
    let out = tally()
        .env("TALLY_SERVER", "http://127.0.0.1:9")
        .env("TALLY_READ_KEY", READ_KEY)
        .args(lifecycle)
        .arg("--data")
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("--server"), "{}", stderr(&out));
}

#[test]
fn explicit_data_wins_over_tally_server_in_the_environment() {
    let dir = data_with_dataset();
    let out = tally()
        .env("TALLY_SERVER", "http://127.0.0.1:9")
        .env("TALLY_READ_KEY", READ_KEY)
        .args([
            "lifecycle",
            "--from",
            "2026-10-01",
            "--to",
            "2026-10-20",
            "--format",
            "json",
        ])
        .arg("--data")
        .arg(data(&dir))
        .output()
        .unwrap();
    let json: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_json_matches(&json, &expected_lifecycle(), "--data with TALLY_SERVER set");
}

#[test]
fn server_without_a_key_or_unreachable() {
    // --server without --key: a usage error naming --key.
    let out = tally()
        .args(["lifecycle", "--server", "http://127.0.0.1:9"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--key"), "{}", stderr(&out));
    // Nothing listening: exit 1 with a message.
    let out = tally()
        .args([
            "lifecycle",
            "--server",
            "http://127.0.0.1:9",
            "--key",
            READ_KEY,
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(!stderr(&out).is_empty());
}

#[test]
fn a_missing_data_dir_is_an_error_not_created() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nothing-here");
    let out = run(&missing, &["lifecycle"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(!stderr(&out).is_empty());
    assert!(
        !missing.exists(),
        "a query must not create the data directory"
    );
}

/// Issue 9, item 4: tables say which numbers are still running.
#[test]
fn tables_mark_partial_periods() {
    let dir = data_with_dataset();
    // Activation count 2 within 30d as of 2026-11-14: the week of 10-12
    // ends 10-19, + 30d = 11-18 > as-of, so it is still running.
    let activation = stdout(&run(
        &data(&dir),
        &[
            "activation",
            "--start",
            "signup",
            "--event",
            "purchase",
            "--count",
            "2",
            "--within",
            "30d",
            "--from",
            "2026-10-01",
            "--to",
            "2026-10-20",
            "--as-of",
            "2026-11-14",
        ],
    ));
    let week = |w: &str| {
        activation
            .lines()
            .find(|l| l.starts_with(w))
            .unwrap_or_else(|| panic!("{w}:\n{activation}"))
            .to_string()
    };
    assert!(
        !week("2026-10-05").contains("still running"),
        "{activation}"
    );
    assert!(week("2026-10-12").contains("still running"), "{activation}");
    assert!(activation.contains("As of"), "{activation}");
    assert!(activation.contains("2026-11-14T00:00:00Z"), "{activation}");

    // `tally active` marks today's row as partial. An event now puts today
    // in the default range.
    let file = dir.path().join("today.ndjson");
    write_ndjson(
        &file,
        &[serde_json::json!({"event": "view", "user_id": "today"})],
    );
    import_file(&data(&dir), &file);
    let active = stdout(&run(&data(&dir), &["active"]));
    let today = tally_event::time::ms_to_date(tally_event::time::now_ms()).to_string();
    let line = active
        .lines()
        .find(|l| l.starts_with(&today))
        .unwrap_or_else(|| panic!("{today}:\n{active}"));
    assert!(line.starts_with(&format!("{today} *")), "{active}");
    assert!(
        active.contains("today: the day is not over yet"),
        "{active}"
    );
    // Other days are not marked.
    assert_eq!(active.matches(" *").count(), 1, "{active}");
}

#[test]
fn trend_table_lists_every_bucket_and_the_total() {
    let dir = data_with_dataset();
    let table = stdout(&run(
        &data(&dir),
        &[
            "trend",
            "--event",
            "purchase",
            "--measure",
            "revenue",
            "--from",
            "2026-10-04",
            "--to",
            "2026-10-07",
        ],
    ));
    let lines = rows_starting(&table, &["2026-10-04", "2026-10-05", "2026-10-06", "total"]);
    assert_eq!(lines.len(), 4, "{table}");
    // Purchases on 10-05: 20 + 30 + 10 + 5 (the refund is another event).
    assert!(
        lines[1].contains("65.00") && lines[1].contains('█'),
        "{table}"
    );
    assert!(lines[3].contains("65.00"), "{table}");
    // Values end in one column.
    let ends: Vec<usize> = lines.iter().map(|l| cell_end(l, 1)).collect();
    assert!(ends.windows(2).all(|w| w[0] == w[1]), "{table}");
}

#[test]
fn bad_filters_and_breakdowns_exit_2_naming_the_flag() {
    // Checked before the store is read, so no property data is needed.
    let dir = data_with_dataset();
    let cases: Vec<(Vec<&str>, &[&str])> = vec![
        (
            vec!["funnel", "--steps", "a,b", "--where", "plan"],
            &["--where", "'plan'", "no operator"],
        ),
        // Every repeat is read: the second one is the bad one.
        (
            vec![
                "funnel",
                "--steps",
                "a,b",
                "--where",
                "plan = pro",
                "--where",
                "utm..x = 1",
            ],
            &["--where", "utm..x"],
        ),
        (
            vec!["trend", "--event", "e", "--where", "a = \"open"],
            &["--where"],
        ),
        (
            vec!["funnel", "--steps", "a,b", "--by", "a..b"],
            &["--by", "empty segment"],
        ),
        (
            vec!["retention", "--start", "s", "--by", "plan", "--limit", "0"],
            &["--limit", "1 to 1000"],
        ),
        (
            vec!["trend", "--event", "e", "--by", "plan", "--limit", "1001"],
            &["--limit"],
        ),
        (
            vec!["activation", "--start", "s", "--event", "e", "--limit", "5"],
            &["--limit", "--by"],
        ),
        (
            vec!["lifecycle", "--identity", "merged"],
            &["--identity", "linked", "none"],
        ),
        // `active` has no breakdown, `events` neither filters nor groups.
        (vec!["active", "--by", "plan"], &["--by"]),
        (vec!["active", "--limit", "3"], &["--limit"]),
        (vec!["events", "--where", "a = 1"], &["--where"]),
    ];
    for (args, words) in cases {
        let out = run(&data(&dir), &args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?}");
        for w in words {
            assert!(err.contains(w), "{args:?}: {err:?} should mention {w:?}");
        }
    }
}

#[test]
fn repeated_where_reaches_the_collector_through_server() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let out = tally()
        .args(["lifecycle", "--where", "plan = pro", "--where", "oops"])
        .args(["--server", &server.url, "--key", READ_KEY])
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--where") && err.contains("'oops'"), "{err}");
    // --identity and --limit travel too.
    let out = tally()
        .args(["trend", "--event", "e", "--by", "plan", "--limit", "0"])
        .args(["--server", &server.url, "--key", READ_KEY])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--limit"), "{}", stderr(&out));
}
