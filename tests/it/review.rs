//! SPEC §6 end to end: `tally review` offline and through `--server`,
//! `GET /v1/review`, the KPI file's errors and the exit codes.
//!
//! The data is `support::analysis_dataset` (October 2026, UTC). As of
//! 2026-10-20 a weekly review reports the week of Monday 10-12 (u6's
//! signup and 15 of revenue) beside the week of 10-05 (four signups; net
//! revenue 20 + 30 + 10 + 5 − 30 = 35).

use std::path::Path;
use std::process::Output;

use serde_json::{Value, json};

use crate::support::{
    READ_KEY, Server, analysis_dataset, error_message, get_json, get_text, http, import_file,
    tally, write_ndjson,
};

const KPIS: &str = r#"
[[kpi]]
name = "Signups"
stage = "acquisition"
metric = "events"
event = "signup"
target = ">= 3"
pair = ["Revenue"]

[[kpi]]
name = "Revenue"
stage = "revenue"
metric = "revenue"
tripwire = "< 20"
"#;

fn data_with_kpis(kpis: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.ndjson");
    write_ndjson(&file, &analysis_dataset());
    let data = dir.path().join("data");
    assert_eq!(import_file(&data, &file)["accepted"], 15);
    std::fs::write(data.join("kpis.toml"), kpis).unwrap();
    dir
}

fn review(data: &Path, args: &[&str]) -> Output {
    tally()
        .arg("review")
        .arg("--data")
        .arg(data)
        .args(args)
        .output()
        .expect("run tally review")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn expected() -> Value {
    json!({
        "period": "week",
        "as_of": "2026-10-20T00:00:00Z",
        "kpis": [
            {
                "name": "Signups", "stage": "acquisition", "metric": "events",
                "from": "2026-10-12T00:00:00Z", "to": "2026-10-19T00:00:00Z",
                "value": 1, "numerator": null, "denominator": null,
                "previous": {"from": "2026-10-05T00:00:00Z", "to": "2026-10-12T00:00:00Z", "value": 4},
                "change": -3, "target": ">= 3", "target_met": false,
                "tripwire": null, "tripped": false, "pair": ["Revenue"]
            },
            {
                "name": "Revenue", "stage": "revenue", "metric": "revenue",
                "from": "2026-10-12T00:00:00Z", "to": "2026-10-19T00:00:00Z",
                "value": 15.0, "numerator": null, "denominator": null,
                "previous": {"from": "2026-10-05T00:00:00Z", "to": "2026-10-12T00:00:00Z", "value": 35.0},
                "change": -20.0, "target": null, "target_met": null,
                "tripwire": "< 20", "tripped": true, "pair": []
            }
        ],
        "tripped": ["Revenue"]
    })
}

#[test]
fn review_offline_prints_the_spec_json_and_exits_3_on_a_tripwire() {
    let dir = data_with_kpis(KPIS);
    let data = dir.path().join("data");
    let out = review(&data, &["--as-of", "2026-10-20", "--format", "json"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v, expected());

    // The table: grouped by stage, the pair beside its goal.
    let out = review(&data, &["--as-of", "2026-10-20"]);
    assert_eq!(out.status.code(), Some(3));
    let table = text(&out.stdout);
    assert!(
        table.contains("ACQUISITION") && table.contains("REVENUE"),
        "{table}"
    );
    assert!(
        table.contains("↳ paired with Revenue: 15.00 ▼ -20.00"),
        "{table}"
    );
    assert!(table.contains("TRIPPED: Revenue"), "{table}");

    // Without the tripwire: exit 0. --kpis names another file.
    let other = dir.path().join("calm.toml");
    std::fs::write(&other, KPIS.replace("tripwire = \"< 20\"", "")).unwrap();
    let out = tally()
        .args([
            "review",
            "--as-of",
            "2026-10-20",
            "--format",
            "markdown",
            "--data",
        ])
        .arg(&data)
        .arg("--kpis")
        .arg(&other)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let md = text(&out.stdout);
    assert!(md.starts_with("## KPI review by week"), "{md}");
    // Revenue fell beside its goal, Signups: the pair is watched.
    assert!(
        md.contains("moved the wrong way (paired with Signups)"),
        "{md}"
    );

    // A month, in Berlin: October is not over by 10-20, so September
    // (local) is reported; it holds only u7's pageview.
    let out = review(
        &data,
        &[
            "--as-of",
            "2026-10-20",
            "--period",
            "month",
            "--tz",
            "Europe/Berlin",
            "--format",
            "json",
        ],
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["kpis"][0]["from"], "2026-08-31T22:00:00Z");
    assert_eq!(v["kpis"][0]["to"], "2026-09-30T22:00:00Z");
    assert_eq!(v["kpis"][0]["value"], 0);
}

#[test]
fn a_bad_kpi_file_exits_2_with_every_problem() {
    let dir = data_with_kpis(
        r#"
[[kpi]]
name = "Signups"
metric = "event"

[[kpi]]
name = "Signups"
metric = "activation"
start = "signup"
event = "purchase"
target = "big"
pair = ["Nobody"]
"#,
    );
    let data = dir.path().join("data");
    let out = review(&data, &["--as-of", "2026-10-20"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    let file = data.join("kpis.toml").display().to_string();
    for want in [
        "4 problems",
        "KPI \"Signups\" (#1), field `metric`: unknown metric 'event'",
        "KPI \"Signups\" (#2), field `name`",
        "KPI \"Signups\" (#2), field `target`",
        "KPI \"Signups\" (#2), field `pair`: names no KPI: 'Nobody'",
    ] {
        assert!(err.contains(want), "{want} in {err}");
    }
    assert_eq!(err.matches(&file).count(), 5, "{err}");
    // A bad flag is a usage error too; a missing file says how to make one.
    let out = review(&data, &["--period", "year"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--period: unknown period 'year'"));
    let out = review(&data, &["--kpis", "/nonexistent/kpis.toml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("tally review --init"));
}

#[test]
fn init_writes_a_starter_file_that_reviews_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.ndjson");
    write_ndjson(&file, &analysis_dataset());
    let data = dir.path().join("data");
    import_file(&data, &file);
    let out = review(&data, &["--init"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let written = std::fs::read_to_string(data.join("kpis.toml")).unwrap();
    assert!(written.contains("[[kpi]]"));
    // It runs (its placeholder names are warned about, not fatal).
    let out = review(&data, &["--as-of", "2026-10-20", "--format", "json"]);
    assert!(
        matches!(out.status.code(), Some(0 | 3)),
        "{}",
        text(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["kpis"].as_array().unwrap().len() >= 7);
    assert!(text(&out.stderr).contains("warning: no event named 'page_view'"));
    // A second --init leaves the file alone.
    std::fs::write(data.join("kpis.toml"), "# mine\n").unwrap();
    let out = review(&data, &["--init"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("already exists"));
    assert_eq!(
        std::fs::read_to_string(data.join("kpis.toml")).unwrap(),
        "# mine\n"
    );
}

#[test]
fn http_review_serves_the_same_json_from_the_collectors_file() {
    let dir = data_with_kpis(KPIS);
    let data = dir.path().join("data");
    let offline = review(&data, &["--as-of", "2026-10-20", "--format", "json"]);
    let server = Server::start(&data);
    let client = http();
    let (status, body) = get_json(&client, &server.url, "/v1/review?as-of=2026-10-20");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, expected());
    assert_eq!(
        body,
        serde_json::from_slice::<Value>(&offline.stdout).unwrap()
    );

    // Bad parameters: 400 naming them; no key: 401.
    for (q, want) in [
        ("period=year", "--period"),
        ("as-of=soon", "--as-of"),
        ("tz=Mars/Base", "--tz"),
        ("from=2026-01-01", "--from: unknown parameter"),
        ("format=csv", "--format"),
    ] {
        let (status, body) = get_json(&client, &server.url, &format!("/v1/review?{q}"));
        assert_eq!(status, 400, "{q}: {body}");
        assert!(error_message(&body).contains(want), "{q}: {body}");
    }
    let (status, _) = get_text(&client, &server.url, "/v1/review", None);
    assert_eq!(status, 401);

    // The CLI through the server: same JSON, same exit code; --kpis is the
    // collector's business there.
    let out = tally()
        .args([
            "review",
            "--as-of",
            "2026-10-20",
            "--format",
            "json",
            "--server",
        ])
        .arg(&server.url)
        .args(["--key", READ_KEY])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert_eq!(
        serde_json::from_slice::<Value>(&out.stdout).unwrap(),
        expected()
    );
    let out = tally()
        .args(["review", "--kpis", "x.toml", "--server"])
        .arg(&server.url)
        .args(["--key", READ_KEY])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = tally()
        .args(["review", "--period", "year", "--server"])
        .arg(&server.url)
        .args(["--key", READ_KEY])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));

    // The file is read per request: a broken edit is the collector's
    // configuration problem (500, naming the file and field).
    std::fs::write(data.join("kpis.toml"), "[[kpi]]\nname = \"X\"\n").unwrap();
    let (status, body) = get_json(&client, &server.url, "/v1/review");
    assert_eq!(status, 500, "{body}");
    let msg = error_message(&body);
    assert!(
        msg.contains("kpis.toml") && msg.contains("field `metric`"),
        "{msg}"
    );
    std::fs::remove_file(data.join("kpis.toml")).unwrap();
    let (status, body) = get_json(&client, &server.url, "/v1/review");
    assert_eq!(status, 500, "{body}");
    assert!(
        error_message(&body).contains("tally review --init"),
        "{body}"
    );
}
