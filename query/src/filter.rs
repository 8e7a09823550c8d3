//! Properties as the analyses see them (SPEC §5): a property value at a
//! dotted path, the `--where 'PATH OP VALUE'` filters that test it, and the
//! `--by PATH` group values it falls into.
//!
//! Stores hand over [`Prop`]s, never JSON: the embedded store keeps them as
//! dictionary-encoded columns, and [`flatten`] is the one definition of which
//! paths an event's properties have, shared by every store so they agree.

use std::cmp::Ordering;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

/// A property's value at one path of one event, as far as filters and
/// breakdowns can tell values apart.
#[derive(Debug, Clone, PartialEq)]
pub enum Prop {
    /// No such path, or JSON `null`.
    Missing,
    /// `true` / `false`.
    Bool(bool),
    /// A JSON number.
    Num(f64),
    /// A JSON string.
    Str(String),
    /// An object or an array: only `!=` and `!~` hold against it.
    Other,
}

impl Prop {
    /// The value of one JSON scalar (or container).
    pub fn of_json(v: &Value) -> Prop {
        match v {
            Value::Null => Prop::Missing,
            Value::Bool(b) => Prop::Bool(*b),
            Value::Number(n) => n.as_f64().map_or(Prop::Other, Prop::Num),
            Value::String(s) => Prop::Str(s.clone()),
            Value::Array(_) | Value::Object(_) => Prop::Other,
        }
    }

    /// The value at `path` in an event's properties (compact JSON object
    /// text, as stored); `Missing` when the text is absent or not an object.
    pub fn at(properties: Option<&str>, path: &[String]) -> Prop {
        let Some(text) = properties else {
            return Prop::Missing;
        };
        match serde_json::from_str::<Value>(text) {
            Ok(v) => Prop::at_value(&v, path),
            Err(_) => Prop::Missing,
        }
    }

    /// The value at `path` inside a parsed properties object.
    pub fn at_value(properties: &Value, path: &[String]) -> Prop {
        let mut v = properties;
        for key in path {
            match v.get(key.as_str()) {
                Some(inner) if v.is_object() => v = inner,
                _ => return Prop::Missing,
            }
        }
        if std::ptr::eq(v, properties) {
            return Prop::Missing;
        }
        Prop::of_json(v)
    }
}

/// Every path a filter or breakdown can name in `properties`, with its
/// value: each key of every nested object, objects and arrays included
/// (as [`Prop::Other`]: they answer `!=`), `null`s left out (they are
/// [`Prop::Missing`] anyway). Keys that contain a dot are left out, with
/// everything under them: a path is split at every dot, so no `--where`
/// can name them. Paths are joined with dots, in document order.
pub fn flatten(properties: &Value) -> Vec<(String, Prop)> {
    fn walk(prefix: &str, v: &Value, out: &mut Vec<(String, Prop)>) {
        let Value::Object(map) = v else { return };
        for (key, value) in map {
            if key.contains('.') || key.is_empty() {
                continue;
            }
            let path = if prefix.is_empty() {
                key.clone()
            } else {
                format!("{prefix}.{key}")
            };
            match value {
                Value::Null => {}
                Value::Object(_) => {
                    out.push((path.clone(), Prop::Other));
                    walk(&path, value, out);
                }
                other => out.push((path, Prop::of_json(other))),
            }
        }
    }
    let mut out = Vec::new();
    walk("", properties, &mut out);
    out
}

/// A comparison operator of `--where`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `=`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `~`: the string contains the value.
    Contains,
    /// `!~`: it does not (or is not a string).
    NotContains,
}

impl Op {
    /// The operator as written.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Eq => "=",
            Op::Ne => "!=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Contains => "~",
            Op::NotContains => "!~",
        }
    }

    /// Whether an ordering satisfies this comparison (not for `~` / `!~`).
    fn accepts(self, ord: Ordering) -> bool {
        match self {
            Op::Eq => ord == Ordering::Equal,
            Op::Ne => ord != Ordering::Equal,
            Op::Lt => ord == Ordering::Less,
            Op::Le => ord != Ordering::Greater,
            Op::Gt => ord == Ordering::Greater,
            Op::Ge => ord != Ordering::Less,
            Op::Contains | Op::NotContains => false,
        }
    }

    /// The operator that starts `text`, with its length; two-character
    /// operators win over their one-character prefixes.
    fn at_start(text: &str) -> Option<(Op, usize)> {
        let b = text.as_bytes();
        let next = b.get(1).copied();
        match (b.first()?, next) {
            (b'!', Some(b'=')) => Some((Op::Ne, 2)),
            (b'!', Some(b'~')) => Some((Op::NotContains, 2)),
            (b'<', Some(b'=')) => Some((Op::Le, 2)),
            (b'>', Some(b'=')) => Some((Op::Ge, 2)),
            (b'<', _) => Some((Op::Lt, 1)),
            (b'>', _) => Some((Op::Gt, 1)),
            (b'=', _) => Some((Op::Eq, 1)),
            (b'~', _) => Some((Op::Contains, 1)),
            _ => None,
        }
    }
}

/// The right-hand side of a `--where`.
#[derive(Debug, Clone, PartialEq)]
pub struct Literal {
    /// The text strings compare with (a quoted value unescaped).
    pub text: String,
    /// The number, when written unquoted in JSON number syntax.
    pub number: Option<f64>,
    /// `true` / `false`, when written unquoted.
    pub boolean: Option<bool>,
}

/// One `--where 'PATH OP VALUE'` filter.
#[derive(Debug, Clone, PartialEq)]
pub struct Where {
    /// `PATH` split at every dot.
    pub path: Vec<String>,
    /// The comparison.
    pub op: Op,
    /// `VALUE`.
    pub value: Literal,
    /// The filter as given (trimmed), for messages and echoing.
    pub text: String,
}

impl Where {
    /// Parses `PATH OP VALUE`: the first operator in the text splits it,
    /// and spaces around both sides are trimmed. The error says what is
    /// wrong, without the parameter name.
    pub fn parse(text: &str) -> Result<Where, String> {
        const SHAPE: &str = "expected PATH OP VALUE with OP one of = != < <= > >= ~ !~, e.g. 'plan = pro' or 'utm.source ~ news'";
        let (at, op, len) = text
            .char_indices()
            .find_map(|(i, _)| Op::at_start(&text[i..]).map(|(op, len)| (i, op, len)))
            .ok_or_else(|| format!("'{text}' has no operator ({SHAPE})"))?;
        let path_text = text[..at].trim();
        if path_text.is_empty() {
            return Err(format!(
                "'{text}' names no property before '{}' ({SHAPE})",
                op.as_str()
            ));
        }
        let path = parse_path(path_text).map_err(|m| format!("'{text}': {m}"))?;
        let value = parse_literal(text[at + len..].trim()).map_err(|m| format!("'{text}': {m}"))?;
        Ok(Where {
            path,
            op,
            value,
            text: text.trim().to_string(),
        })
    }

    /// Whether a property with value `p` passes this filter (SPEC §5).
    pub fn holds(&self, p: &Prop) -> bool {
        let negative = matches!(self.op, Op::Ne | Op::NotContains);
        match (p, self.op) {
            (Prop::Str(s), Op::Contains) => s.contains(self.value.text.as_str()),
            (Prop::Str(s), Op::NotContains) => !s.contains(self.value.text.as_str()),
            (Prop::Str(s), op) => op.accepts(s.as_bytes().cmp(self.value.text.as_bytes())),
            (Prop::Num(x), op) if !matches!(op, Op::Contains | Op::NotContains) => {
                match self.value.number {
                    Some(v) => x.partial_cmp(&v).is_some_and(|ord| op.accepts(ord)),
                    None => negative,
                }
            }
            (Prop::Bool(b), Op::Eq | Op::Ne) => match self.value.boolean {
                Some(v) => (*b == v) == (self.op == Op::Eq),
                None => negative,
            },
            _ => negative,
        }
    }
}

/// `utm.source` → `["utm", "source"]`; an empty segment is an error.
pub fn parse_path(text: &str) -> Result<Vec<String>, String> {
    let path: Vec<String> = text.split('.').map(str::to_string).collect();
    if path.iter().any(String::is_empty) {
        return Err(format!(
            "property path '{text}' has an empty segment (write nested keys as a.b)"
        ));
    }
    Ok(path)
}

fn parse_literal(text: &str) -> Result<Literal, String> {
    if text.starts_with('"') {
        let s: String = serde_json::from_str(text).map_err(|_| {
            format!(
                "{text} is not a JSON string literal (a quoted value must be one, e.g. \"pro\")"
            )
        })?;
        return Ok(Literal {
            text: s,
            number: None,
            boolean: None,
        });
    }
    Ok(Literal {
        text: text.to_string(),
        number: json_number(text),
        boolean: match text {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        },
    })
}

/// `text` as a number if it is in JSON number syntax (`-2`, `0.5`, `1e3`;
/// not `+1`, `.5`, `01`, `NaN`).
fn json_number(text: &str) -> Option<f64> {
    let b = text.as_bytes();
    let mut i = 0;
    if b.get(i) == Some(&b'-') {
        i += 1;
    }
    match b.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => {
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
        }
        _ => return None,
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return None;
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return None;
        }
    }
    if i != b.len() {
        return None;
    }
    text.parse::<f64>().ok().filter(|v| v.is_finite())
}

/// The group an event falls into for `--by` (SPEC §5): a string, a number
/// (grouped by numeric value), a boolean, or `null` (missing, `null`, an
/// object or an array).
#[derive(Debug, Clone)]
pub enum GroupValue {
    /// `true` / `false`.
    Bool(bool),
    /// A number; `1` and `1.0` are one group.
    Num(f64),
    /// A string.
    Str(String),
    /// No scalar value.
    Null,
}

impl GroupValue {
    /// The group of a property value.
    pub fn of(p: &Prop) -> GroupValue {
        match p {
            Prop::Bool(b) => GroupValue::Bool(*b),
            Prop::Num(x) => GroupValue::Num(if *x == 0.0 { 0.0 } else { *x }),
            Prop::Str(s) => GroupValue::Str(s.clone()),
            Prop::Missing | Prop::Other => GroupValue::Null,
        }
    }

    fn rank(&self) -> u8 {
        match self {
            GroupValue::Bool(_) => 0,
            GroupValue::Num(_) => 1,
            GroupValue::Str(_) => 2,
            GroupValue::Null => 3,
        }
    }
}

/// SPEC §5's order of values: booleans, numbers, strings in byte order,
/// `null` last.
impl Ord for GroupValue {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (GroupValue::Bool(a), GroupValue::Bool(b)) => a.cmp(b),
            (GroupValue::Num(a), GroupValue::Num(b)) => a.total_cmp(b),
            (GroupValue::Str(a), GroupValue::Str(b)) => a.as_bytes().cmp(b.as_bytes()),
            _ => self.rank().cmp(&other.rank()),
        }
    }
}

impl PartialOrd for GroupValue {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for GroupValue {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for GroupValue {}

impl std::hash::Hash for GroupValue {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.rank().hash(state);
        match self {
            GroupValue::Bool(b) => b.hash(state),
            GroupValue::Num(x) => x.to_bits().hash(state),
            GroupValue::Str(s) => s.hash(state),
            GroupValue::Null => {}
        }
    }
}

/// A group value as JSON: a whole number without `.0`.
impl Serialize for GroupValue {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            GroupValue::Bool(b) => s.serialize_bool(*b),
            GroupValue::Num(x) if x.fract() == 0.0 && x.abs() < 9.0e15 => {
                s.serialize_i64(*x as i64)
            }
            GroupValue::Num(x) => s.serialize_f64(*x),
            GroupValue::Str(v) => s.serialize_str(v),
            GroupValue::Null => s.serialize_unit(),
        }
    }
}

impl<'de> Deserialize<'de> for GroupValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(GroupValue::of(&Prop::of_json(&Value::deserialize(d)?)))
    }
}

impl std::fmt::Display for GroupValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GroupValue::Bool(b) => write!(f, "{b}"),
            GroupValue::Num(_) => write!(f, "{}", serde_json::to_string(self).unwrap_or_default()),
            GroupValue::Str(v) => f.write_str(v),
            GroupValue::Null => f.write_str("(none)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn w(text: &str) -> Where {
        Where::parse(text).unwrap()
    }

    #[test]
    fn the_first_operator_splits_and_sides_are_trimmed() {
        let f = w(" plan  =  a=b ");
        assert_eq!(f.path, ["plan"]);
        assert_eq!(f.op, Op::Eq);
        assert_eq!(f.value.text, "a=b");
        assert_eq!(w("a<=1").op, Op::Le);
        assert_eq!(w("a!~x").op, Op::NotContains);
        assert_eq!(w("a ! = x").op, Op::Eq, "'!' alone is part of the path");
        assert_eq!(w("a ! = x").path, ["a !"]);
        assert_eq!(w("utm.source ~ news").path, ["utm", "source"]);
        assert!(Where::parse("plan").is_err());
        assert!(Where::parse(" = pro").is_err());
        assert!(Where::parse("a..b = 1").is_err());
        assert!(Where::parse("a = \"unterminated").is_err());
    }

    #[test]
    fn literals_are_numbers_only_in_json_syntax_and_unquoted() {
        for (t, n) in [
            ("-2", Some(-2.0)),
            ("0.5", Some(0.5)),
            ("1e3", Some(1000.0)),
        ] {
            assert_eq!(w(&format!("a = {t}")).value.number, n);
        }
        for t in ["+1", ".5", "01", "1.", "NaN", "1e", "0x10", "\"5\""] {
            assert_eq!(w(&format!("a = {t}")).value.number, None, "{t}");
        }
        assert_eq!(w("a = \"x\\\"y\"").value.text, "x\"y");
        assert_eq!(w("a = true").value.boolean, Some(true));
        assert_eq!(w("a = \"true\"").value.boolean, None);
    }

    #[test]
    fn comparisons_follow_spec_section_5() {
        let s = |v: &str| Prop::Str(v.into());
        // missing or null: only != and !~.
        for op in ["=", "<", "<=", ">", ">=", "~"] {
            assert!(!w(&format!("a {op} x")).holds(&Prop::Missing), "{op}");
        }
        assert!(w("a != x").holds(&Prop::Missing));
        assert!(w("a !~ x").holds(&Prop::Missing));
        // strings: byte order, substring; an unquoted number compares as text.
        assert!(w("a < b").holds(&s("a")));
        assert!(w("a < a").holds(&s("B")), "byte order: 'B' < 'a'");
        assert!(w("a = 5").holds(&s("5")));
        assert!(!w("a = 5.0").holds(&s("5")));
        assert!(w("a ~ ew").holds(&s("news")));
        assert!(w("a !~ x").holds(&s("news")));
        // numbers: numerically against an unquoted number only.
        assert!(w("a = 5.0").holds(&Prop::Num(5.0)));
        assert!(w("a > 1e0").holds(&Prop::Num(2.0)));
        assert!(!w("a = \"5\"").holds(&Prop::Num(5.0)));
        assert!(w("a != \"5\"").holds(&Prop::Num(5.0)));
        assert!(!w("a < x").holds(&Prop::Num(5.0)));
        assert!(
            !w("a ~ 5").holds(&Prop::Num(5.0)),
            "~ looks inside strings only"
        );
        assert!(w("a !~ 5").holds(&Prop::Num(5.0)));
        // booleans: = / != against unquoted true/false.
        assert!(w("a = true").holds(&Prop::Bool(true)));
        assert!(w("a != false").holds(&Prop::Bool(true)));
        assert!(!w("a = \"true\"").holds(&Prop::Bool(true)));
        assert!(w("a != \"true\"").holds(&Prop::Bool(true)));
        assert!(!w("a < true").holds(&Prop::Bool(false)));
        // objects and arrays: only != and !~.
        assert!(!w("a = x").holds(&Prop::Other));
        assert!(w("a != x").holds(&Prop::Other));
        assert!(w("a !~ x").holds(&Prop::Other));
    }

    #[test]
    fn paths_reach_into_nested_objects_only() {
        let props = json!({"utm": {"source": "news", "n": 2}, "a.b": 1, "list": [1], "nil": null});
        let p = |path: &str| Prop::at_value(&props, &parse_path(path).unwrap());
        assert_eq!(p("utm.source"), Prop::Str("news".into()));
        assert_eq!(p("utm"), Prop::Other);
        assert_eq!(p("list"), Prop::Other);
        assert_eq!(p("nil"), Prop::Missing);
        assert_eq!(p("a.b"), Prop::Missing, "split at every dot");
        assert_eq!(p("utm.source.x"), Prop::Missing);
        let flat = flatten(&props);
        let names: Vec<&str> = flat.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(names, ["list", "utm", "utm.n", "utm.source"]);
    }

    #[test]
    fn group_values_order_and_serialize_as_spec_says() {
        let mut v = vec![
            GroupValue::Null,
            GroupValue::Str("b".into()),
            GroupValue::Num(2.0),
            GroupValue::Str("B".into()),
            GroupValue::Bool(true),
            GroupValue::Num(-1.5),
            GroupValue::Bool(false),
        ];
        v.sort();
        assert_eq!(
            serde_json::to_string(&v).unwrap(),
            r#"[false,true,-1.5,2,"B","b",null]"#
        );
        assert_eq!(GroupValue::Num(1.0), GroupValue::of(&Prop::Num(1.0)));
        assert_eq!(GroupValue::of(&Prop::Other), GroupValue::Null);
    }
}
