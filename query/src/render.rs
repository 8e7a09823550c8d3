//! Shared pieces of human output (`--format table`) and CSV.

use std::fmt::Write as _;

/// Output format of the analyses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// Aligned, human-friendly text (the default).
    #[default]
    Table,
    /// Exactly the SPEC JSON shapes.
    Json,
    /// One row per step / cohort / day.
    Csv,
}

impl std::str::FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "table" => Ok(Format::Table),
            "json" => Ok(Format::Json),
            "csv" => Ok(Format::Csv),
            _ => Err(format!(
                "unknown format '{s}' (expected table, json or csv)"
            )),
        }
    }
}

/// A result that can be printed in every [`Format`].
pub trait Report: serde::Serialize {
    /// Human-readable text.
    fn table(&self) -> String;
    /// CSV with a header line.
    fn csv(&self) -> String;

    /// Renders in `format`, ending with a newline.
    fn render(&self, format: Format) -> String {
        match format {
            Format::Table => self.table(),
            Format::Csv => self.csv(),
            Format::Json => {
                let mut s = serde_json::to_string_pretty(self).expect("results serialize");
                s.push('\n');
                s
            }
        }
    }
}

/// `2h 13m`, `45s`, `3d 4h`, `0s`; two most significant units.
pub fn human_duration(seconds: f64) -> String {
    if seconds < 1.0 {
        return if seconds <= 0.0 {
            "0s".into()
        } else {
            format!("{:.0}ms", seconds * 1000.0)
        };
    }
    let total = seconds.round() as u64;
    let units = [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)];
    let mut parts = Vec::new();
    let mut rest = total;
    for (name, size) in units {
        if rest >= size || (!parts.is_empty() && parts.len() < 2) {
            parts.push(format!("{}{name}", rest / size));
            rest %= size;
        }
        if parts.len() == 2 {
            break;
        }
    }
    // Drop a trailing zero unit: "2h 0m" reads better as "2h".
    if parts.len() == 2 && parts[1].starts_with('0') {
        parts.pop();
    }
    parts.join(" ")
}

/// `42.5%` with one decimal.
pub fn percent(rate: f64) -> String {
    format!("{:.1}%", rate * 100.0)
}

/// A bar of `width` cells filled in proportion to `rate` in `[0, 1]`.
pub fn bar(rate: f64, width: usize) -> String {
    let filled = (rate.clamp(0.0, 1.0) * width as f64).round() as usize;
    let mut s = "█".repeat(filled);
    s.push_str(&"░".repeat(width - filled));
    s
}

/// Left-aligns the first column and right-aligns the others.
pub fn align(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let width = |c: usize| {
        rows.iter()
            .filter_map(|r| r.get(c))
            .map(|s| s.chars().count())
            .max()
            .unwrap_or(0)
    };
    let widths: Vec<usize> = (0..cols).map(width).collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            let pad = widths[c] - cell.chars().count();
            if c == 0 {
                let _ = write!(line, "{cell}{}", " ".repeat(pad));
            } else {
                let _ = write!(line, "  {}{cell}", " ".repeat(pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A text cell of CSV: quoted when it needs it, and defused when it starts
/// like a spreadsheet formula (`=`, `+`, `-`, `@`, or a tab or carriage
/// return) by a leading `'`, since event names and properties come from
/// untrusted clients. Numbers the tool computes are written as numbers,
/// not through this function, so a negative revenue stays a number.
pub fn csv_field(s: &str) -> String {
    let defused;
    let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        defused = format!("'{s}");
        defused.as_str()
    } else {
        s
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// `1234567` → `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Width of the bars in tables.
pub(crate) const BAR_WIDTH: usize = 24;

/// Money with two decimals, `—` when absent.
pub fn money(x: Option<f64>) -> String {
    x.map_or_else(
        || "—".into(),
        |v| {
            // Two decimals, thousands separated: -1234.5 → -1,234.50.
            let text = format!("{:.2}", v.abs());
            let (int, frac) = text.split_once('.').unwrap_or((&text, "00"));
            let int = int
                .parse::<u64>()
                .map_or_else(|_| int.to_string(), thousands);
            let sign = if v < 0.0 && text != "0.00" { "-" } else { "" };
            format!("{sign}{int}.{frac}")
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(human_duration(0.0), "0s");
        assert_eq!(human_duration(45.0), "45s");
        assert_eq!(human_duration(7980.0), "2h 13m");
        assert_eq!(human_duration(7200.0), "2h");
        assert_eq!(human_duration(3.0 * 86_400.0 + 4.0 * 3600.0), "3d 4h");
        assert_eq!(human_duration(0.0015), "2ms");
    }

    #[test]
    fn bars_and_alignment() {
        assert_eq!(bar(0.5, 4), "██░░");
        assert_eq!(
            align(&[
                vec!["a".into(), "1".into()],
                vec!["bcd".into(), "22".into()]
            ]),
            "a     1\nbcd  22\n"
        );
        assert_eq!(csv_field("a,b"), "\"a,b\"");
    }

    #[test]
    fn csv_cells_that_look_like_formulas_are_defused() {
        assert_eq!(csv_field("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_field("+1"), "'+1");
        assert_eq!(csv_field("-2+3"), "'-2+3");
        assert_eq!(csv_field("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(csv_field("\tx"), "'\tx");
        assert_eq!(csv_field("signup"), "signup");
        assert_eq!(csv_field("a=b"), "a=b");
    }
}
