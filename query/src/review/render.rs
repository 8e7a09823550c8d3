//! The review as a table (grouped by stage, pairs beside each KPI), CSV,
//! and a Markdown weekly update. Everything here is formatting of the
//! JSON's fields, so a remote review renders the same as a local one.

use std::fmt::Write as _;

use tally_event::Stage;
use tally_event::time::parse_rfc3339;

use super::{KpiResult, MetricKind, Num, ReviewPeriod, ReviewResult};
use crate::calendar::{Zone, date_label};
use crate::render::{align, csv_field, money, percent, thousands};

/// `--format` of `tally review`: the analyses' three and Markdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReviewFormat {
    /// Grouped by lifecycle stage.
    #[default]
    Table,
    /// Exactly SPEC §6.
    Json,
    /// One row per KPI.
    Csv,
    /// A ready-to-paste update: wins, watch, then every KPI.
    Markdown,
}

impl std::str::FromStr for ReviewFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "table" => Ok(ReviewFormat::Table),
            "json" => Ok(ReviewFormat::Json),
            "csv" => Ok(ReviewFormat::Csv),
            "markdown" | "md" => Ok(ReviewFormat::Markdown),
            _ => Err(format!(
                "unknown format '{s}' (expected table, json, csv or markdown)"
            )),
        }
    }
}

impl ReviewResult {
    /// Renders in `format`; `zone` names the local dates of the periods.
    pub fn render(&self, format: ReviewFormat, zone: &Zone) -> String {
        match format {
            ReviewFormat::Json => {
                let mut s = serde_json::to_string_pretty(self).expect("results serialize");
                s.push('\n');
                s
            }
            ReviewFormat::Csv => self.csv(),
            ReviewFormat::Table => self.table(zone),
            ReviewFormat::Markdown => self.markdown(zone),
        }
    }

    /// KPIs in lifecycle order of their stage (file order within one),
    /// those without a stage last.
    fn by_stage(&self) -> Vec<(Option<Stage>, Vec<&KpiResult>)> {
        let mut groups: Vec<(Option<Stage>, Vec<&KpiResult>)> = Stage::ALL
            .iter()
            .map(|s| Some(*s))
            .chain([None])
            .map(|s| (s, self.kpis.iter().filter(|k| k.stage == s).collect()))
            .collect();
        groups.retain(|(_, v): &(_, Vec<&KpiResult>)| !v.is_empty());
        groups
    }

    fn find(&self, name: &str) -> Option<&KpiResult> {
        self.kpis.iter().find(|k| k.name == name)
    }

    fn heading(&self, zone: &Zone) -> String {
        format!(
            "KPI review by {}, as of {} ({})",
            self.period.as_str(),
            local_time(&self.as_of, zone),
            zone.name()
        )
    }

    fn table(&self, zone: &Zone) -> String {
        let mut rows: Vec<Vec<String>> = vec![
            [
                "KPI", "period", "value", "change", "n / d", "target", "tripwire",
            ]
            .map(String::from)
            .to_vec(),
        ];
        // After which row (index into `rows`) each pair line goes.
        let mut pair_lines: Vec<(usize, String)> = Vec::new();
        for (stage, kpis) in self.by_stage() {
            rows.push(vec![
                stage.map_or("(no stage)".to_string(), |s| s.as_str().to_uppercase()),
            ]);
            for k in kpis {
                rows.push(vec![
                    format!("  {}", k.name),
                    period_label(self.period, &k.from, zone),
                    value_text(k, k.value),
                    change_text(k),
                    ratio_text(k),
                    match (&k.target, k.target_met) {
                        (None, _) => String::new(),
                        (Some(t), Some(true)) => format!("{t} ✓ met"),
                        (Some(t), Some(false)) => format!("{t} ✗ not met"),
                        (Some(t), None) => format!("{t} (no value)"),
                    },
                    match &k.tripwire {
                        None => String::new(),
                        Some(t) if k.tripped => format!("{t} TRIPPED"),
                        Some(t) => format!("{t} ok"),
                    },
                ]);
                for p in &k.pair {
                    if let Some(pk) = self.find(p) {
                        pair_lines.push((
                            rows.len() - 1,
                            format!(
                                "      ↳ paired with {}: {} {}",
                                pk.name,
                                value_text(pk, pk.value),
                                change_text(pk)
                            )
                            .trim_end()
                            .to_string(),
                        ));
                    }
                }
            }
        }
        let table = align(&rows);
        let mut out = self.heading(zone);
        out.push_str("\n\n");
        for (i, line) in table.lines().enumerate() {
            out.push_str(line);
            out.push('\n');
            for (_, p) in pair_lines.iter().filter(|(after, _)| *after == i) {
                out.push_str(p);
                out.push('\n');
            }
        }
        out.push('\n');
        if self.tripped.is_empty() {
            out.push_str("No tripwire tripped.\n");
        } else {
            let _ = writeln!(out, "TRIPPED: {}", self.tripped.join(", "));
        }
        out
    }

    fn csv(&self) -> String {
        let mut out = String::from(
            "name,stage,metric,from,to,value,numerator,denominator,previous_from,previous_to,\
             previous_value,change,target,target_met,tripwire,tripped,pair\n",
        );
        let num = |n: Option<Num>| match n {
            None => String::new(),
            Some(Num::Int(i)) => i.to_string(),
            Some(Num::Float(x)) => x.to_string(),
        };
        let opt = |s: &Option<String>| s.as_deref().map(csv_field).unwrap_or_default();
        for k in &self.kpis {
            let _ = writeln!(
                out,
                "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
                csv_field(&k.name),
                k.stage.map(Stage::as_str).unwrap_or_default(),
                k.metric,
                k.from,
                k.to,
                num(k.value),
                num(k.numerator),
                num(k.denominator),
                k.previous.from,
                k.previous.to,
                num(k.previous.value),
                num(k.change),
                opt(&k.target),
                k.target_met.map(|b| b.to_string()).unwrap_or_default(),
                opt(&k.tripwire),
                k.tripped,
                csv_field(&k.pair.join(";")),
            );
        }
        out
    }

    fn markdown(&self, zone: &Zone) -> String {
        let md = |s: &str| s.replace('|', "\\|").replace(['\n', '\r'], " ");
        let mut out = format!("## {}\n\n", self.heading(zone));
        let mut wins = Vec::new();
        let mut watch = Vec::new();
        let paired: Vec<(&str, &str)> = self
            .kpis
            .iter()
            .flat_map(|k| k.pair.iter().map(move |p| (p.as_str(), k.name.as_str())))
            .collect();
        for k in &self.kpis {
            // Which way is good comes from the target, else the tripwire.
            // A win needs one of them (a direction the team chose); a pair
            // without either is taken as higher-is-better (counts, money,
            // rates), so a counter-metric that falls is still watched.
            let sign = k.change_sign().filter(|s| *s != 0);
            let moved = sign.zip(k.good_direction()).map(|(s, good)| s == good);
            let moved_or_fell = sign.map(|s| s == k.good_direction().unwrap_or(1));
            let what = format!(
                "**{}** ({}): {}{}",
                md(&k.name),
                period_label(self.period, &k.from, zone),
                value_text(k, k.value),
                match change_text(k).as_str() {
                    "" | "—" => String::new(),
                    c => format!(", {c}"),
                }
            );
            if k.tripped {
                watch.push(format!(
                    "- {what} — tripwire {} tripped",
                    md(k.tripwire.as_deref().unwrap_or_default())
                ));
                continue;
            }
            if k.target_met == Some(true) {
                wins.push(format!(
                    "- {what} — target {} met",
                    md(k.target.as_deref().unwrap_or_default())
                ));
            } else if moved == Some(true) {
                wins.push(format!("- {what} — moved the right way"));
            }
            if moved_or_fell == Some(false) {
                let goals: Vec<String> = paired
                    .iter()
                    .filter(|(p, _)| *p == k.name)
                    .map(|(_, g)| md(g))
                    .collect();
                if !goals.is_empty() {
                    watch.push(format!(
                        "- {what} — moved the wrong way (paired with {})",
                        goals.join(", ")
                    ));
                }
            }
        }
        for (title, items) in [("Wins", wins), ("Watch", watch)] {
            let _ = writeln!(out, "### {title}\n");
            if items.is_empty() {
                out.push_str("- none\n");
            }
            for i in items {
                out.push_str(&i);
                out.push('\n');
            }
            out.push('\n');
        }
        out.push_str("### All KPIs\n\n");
        out.push_str("| stage | KPI | period | value | change | n / d | target | tripwire |\n");
        out.push_str("|---|---|---|---:|---:|---:|---|---|\n");
        for (stage, kpis) in self.by_stage() {
            for k in kpis {
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} | {} | {} | {} | {} |",
                    stage.map(Stage::as_str).unwrap_or(""),
                    md(&k.name),
                    period_label(self.period, &k.from, zone),
                    value_text(k, k.value),
                    md(&change_text(k)),
                    md(&ratio_text(k)),
                    md(&match (&k.target, k.target_met) {
                        (None, _) => String::new(),
                        (Some(t), Some(true)) => format!("{t} ✓"),
                        (Some(t), Some(false)) => format!("{t} ✗"),
                        (Some(t), None) => t.clone(),
                    }),
                    md(&match &k.tripwire {
                        None => String::new(),
                        Some(t) if k.tripped => format!("{t} **tripped**"),
                        Some(t) => format!("{t} ok"),
                    }),
                );
            }
        }
        out
    }
}

fn kind(k: &KpiResult) -> Option<MetricKind> {
    MetricKind::parse(&k.metric)
}

/// A value in the KPI's unit: a percentage, money, a count or a quotient.
fn value_text(k: &KpiResult, v: Option<Num>) -> String {
    let Some(v) = v else {
        return "—".into();
    };
    match kind(k) {
        Some(m) if m.is_rate() => percent(v.as_f64()),
        Some(m) if m.is_money() => money(Some(v.as_f64())),
        Some(MetricKind::Ratio) => decimal(v.as_f64()),
        _ => number(v),
    }
}

/// `▲ +3.1 pts`, `▼ -12`, `±0`; `—` without a previous value.
fn change_text(k: &KpiResult) -> String {
    let Some(c) = k.change else {
        return "—".into();
    };
    let x = c.as_f64();
    let arrow = if x > 0.0 {
        "▲ +"
    } else if x < 0.0 {
        "▼ -"
    } else {
        return "±0".into();
    };
    let magnitude = match (kind(k), c) {
        (Some(m), _) if m.is_rate() => format!("{:.1} pts", x.abs() * 100.0),
        (Some(m), _) if m.is_money() => money(Some(x.abs())),
        (_, Num::Int(n)) => thousands(n.unsigned_abs()),
        (_, Num::Float(f)) => decimal(f.abs()),
    };
    format!("{arrow}{magnitude}")
}

/// `(89 / 216)` for rates and ratios; empty for counts.
fn ratio_text(k: &KpiResult) -> String {
    match (k.numerator, k.denominator) {
        (Some(n), Some(d)) => format!("{} / {}", number(n), number(d)),
        _ => String::new(),
    }
}

fn number(n: Num) -> String {
    match n {
        Num::Int(i) if i < 0 => format!("-{}", thousands(i.unsigned_abs())),
        Num::Int(i) => thousands(i.unsigned_abs()),
        Num::Float(x) => money(Some(x)),
    }
}

/// A quotient with four significant decimals for small values.
fn decimal(x: f64) -> String {
    if x.abs() >= 100.0 {
        format!("{x:.1}")
    } else {
        let s = format!("{x:.4}");
        let s = s.trim_end_matches('0').trim_end_matches('.');
        if s == "-0" { "0".into() } else { s.to_string() }
    }
}

/// How the table names a period: its local date, `week of` its Monday, or
/// its month.
fn period_label(period: ReviewPeriod, from: &str, zone: &Zone) -> String {
    let Ok(ms) = parse_rfc3339(from) else {
        return from.to_string();
    };
    let date = date_label(zone.local_day(ms));
    match period {
        ReviewPeriod::Day => date,
        ReviewPeriod::Week => format!("week of {date}"),
        ReviewPeriod::Month => date[..7].to_string(),
    }
}

fn local_time(rfc3339: &str, zone: &Zone) -> String {
    parse_rfc3339(rfc3339).map_or_else(|_| rfc3339.to_string(), |ms| zone.local_minute(ms))
}
