//! The inspection rules file: schema (serde), loading (YAML through `serde_norway`, lookups from CSV
//! files next to it) and validation. The reference is `docs/inspection.md`.
//!
//! ```yaml
//! reference_date: 2026-12-01        # optional; default: today (UTC)
//! regions:
//!   - {name: label, rect: [0.0, 0.0, 1.0, 1.0]}
//! lookups:
//!   lots: {file: lots.csv, key: product, value: lot}
//! fields:
//!   - {name: product, region: label, pattern: '^[A-Z][A-Z0-9 ]+$', pick: largest}
//!   - {name: lot, pattern: 'LOT[: ]*([A-Z0-9]{2}[0-9OIlSBZG]{4})', shape: AA9999}
//! rules:
//!   - {name: lot-present, field: lot, present: true}
//!   - {name: lot-matches-product, field: lot, equals_lookup: {lookup: lots, key_field: product}}
//! ```
//!
//! Every error names the file, the key path (`rules[2].matches`) and, when it can be found, its line.

use chrono::NaiveDate;
use regex::Regex;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The date format of `reference_date` and of literal dates in rules.
pub const ISO_DATE: &str = "%Y-%m-%d";

/// The rules file as written (see the [module docs](self)).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RulesFile {
    /// `YYYY-MM-DD`: the date `not_before: reference_date` compares with. Default: today (UTC) when
    /// the inspector is made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference_date: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub regions: Vec<RegionConfig>,
    /// Lookup tables by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub lookups: BTreeMap<String, LookupConfig>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<FieldConfig>,
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
}

/// A named region of interest `[x, y, w, h]`: fractions of the item's size when all four are within
/// 0..=1, else pixels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionConfig {
    pub name: String,
    pub rect: [f32; 4],
}

/// A CSV file with a header line; `key` and `value` name two of its columns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LookupConfig {
    /// Path, relative to the rules file.
    pub file: String,
    pub key: String,
    pub value: String,
    /// Compare keys without their spaces (`RICESNACKS 120G` finds `RICE SNACKS 120 G`): OCR often
    /// drops or adds the spaces of large print. Keys that become equal are an error. Default `false`.
    #[serde(default)]
    pub ignore_spaces: bool,
}

/// Which matching text line a field takes when several match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pick {
    /// The top-most line (reading order).
    #[default]
    Top,
    /// The bottom-most line.
    Bottom,
    /// The tallest line (largest print, e.g. a product name).
    Largest,
    /// The line read with the highest confidence.
    Confident,
}

/// A value extracted from the item's text lines.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldConfig {
    pub name: String,
    /// Regular expression searched in each text line (whitespace collapsed); the value is capture
    /// group 1 when the pattern has one, else the whole match.
    pub pattern: String,
    /// Only text lines whose centre lies in this region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default)]
    pub pick: Pick,
    /// Match case-insensitively; the value is then upper-cased.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ignore_case: bool,
    /// Expected shape of the value, one character per position: `A` a letter, `9` a digit, anything
    /// else itself. Look-alike characters are corrected by position (`O`→`0` where a digit must be,
    /// `0`→`O` where a letter must be, ...); a value that still does not fit is "unreadable".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shape: Option<String>,
    /// Labels of the objects whose `text` is read. Default `[text]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
}

/// `equals_lookup`: the field must equal the lookup's value for the key read in `key_field`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EqualsLookup {
    pub lookup: String,
    pub key_field: String,
}

/// `date`: the field parses as a date in `format` and, with `not_before`, is not earlier than it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DateCheck {
    /// chrono/strftime format, default `%Y-%m-%d`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// `reference_date`, `today` or a `YYYY-MM-DD` date.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<String>,
    /// Days a date may lie before `not_before` and still pass (negative: days of shelf life required).
    #[serde(default)]
    pub grace_days: i32,
}

/// `count`: number of objects with `label` (in the rule's region) within bounds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CountCheck {
    pub label: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exactly: Option<u32>,
}

/// One rule as written: a name, optionally the field and region it is about, and exactly one check.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// `true`: the field must be found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub present: Option<bool>,
    /// The field must match this regular expression (whole value unless anchored otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matches: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equals: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub one_of: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equals_lookup: Option<EqualsLookup>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date: Option<DateCheck>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<CountCheck>,
    /// Confidence floor: of the field, or (without `field`) of every text line in the region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_confidence: Option<f32>,
}

/// A rules error, one line naming the file (and the key path and line for invalid values).
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}: {}{message}", location(.line, .column))]
    Parse {
        file: String,
        line: Option<usize>,
        column: Option<usize>,
        message: String,
    },
    #[error("{file}: {}{key}: {message}", location(.line, &None))]
    Invalid {
        file: String,
        line: Option<usize>,
        key: String,
        message: String,
    },
}

fn location(line: &Option<usize>, column: &Option<usize>) -> String {
    match (line, column) {
        (Some(l), Some(c)) => format!("line {l} column {c}: "),
        (Some(l), None) => format!("line {l}: "),
        _ => String::new(),
    }
}

/// A region in item pixels or fractions.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Region {
    pub rect: [f32; 4],
    pub fractional: bool,
}

impl Region {
    /// The region in pixels of a `width` x `height` item.
    pub fn bbox(&self, width: u32, height: u32) -> crate::objects::BBox {
        let [x, y, w, h] = self.rect;
        if self.fractional {
            let (fw, fh) = (width as f32, height as f32);
            crate::objects::BBox::new(x * fw, y * fh, w * fw, h * fh)
        } else {
            crate::objects::BBox::new(x, y, w, h)
        }
    }
}

/// A compiled field.
#[derive(Debug, Clone)]
pub struct Field {
    pub name: String,
    pub regex: Regex,
    pub region: Option<String>,
    pub pick: Pick,
    pub ignore_case: bool,
    pub shape: Option<String>,
    pub labels: Vec<String>,
}

/// Where `not_before` points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DateBound {
    Reference,
    Today,
    Fixed(NaiveDate),
}

/// The check of a compiled rule.
#[derive(Debug, Clone)]
pub enum Check {
    Present,
    Matches(Regex),
    Equals(String),
    OneOf(Vec<String>),
    EqualsLookup {
        lookup: String,
        key_field: String,
    },
    Date {
        format: String,
        not_before: Option<DateBound>,
        grace_days: i32,
    },
    Count {
        label: String,
        min: Option<u32>,
        max: Option<u32>,
    },
    MinConfidence(f32),
}

/// A compiled rule.
#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    pub field: Option<String>,
    pub region: Option<String>,
    pub check: Check,
}

/// The validated rules, ready for [`super::Inspector`].
#[derive(Debug, Clone, Default)]
pub struct Rules {
    /// Where they came from (for messages).
    pub file: String,
    pub reference_date: Option<NaiveDate>,
    pub regions: HashMap<String, Region>,
    /// Lookup tables: key → value.
    pub lookups: HashMap<String, HashMap<String, String>>,
    /// Lookups whose keys are compared without spaces (their table's keys are stored without them).
    pub lookups_ignoring_spaces: HashSet<String>,
    pub fields: Vec<Field>,
    pub rules: Vec<Rule>,
}

impl Rules {
    /// Reads and validates a rules file; lookups are read relative to its folder.
    pub fn load(path: &Path) -> Result<Rules, RulesError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| RulesError::Read {
            file: file.clone(),
            source,
        })?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Rules::parse(&text, &file, &base)
    }

    /// Parses and validates rules `text` (named `file` in errors); lookup paths are relative to `base`.
    pub fn parse(text: &str, file: &str, base: &Path) -> Result<Rules, RulesError> {
        let raw: RulesFile = serde_norway::from_str(text).map_err(|e| {
            let loc = e.location();
            RulesError::Parse {
                file: file.to_string(),
                line: loc.as_ref().map(|l| l.line()),
                column: loc.as_ref().map(|l| l.column()),
                message: e.to_string().replace('\n', " "),
            }
        })?;
        compile(&raw, text, file, base)
    }
}

struct Ctx<'a> {
    text: &'a str,
    file: &'a str,
}

impl Ctx<'_> {
    fn err(&self, key: impl Into<String>, message: impl Into<String>) -> RulesError {
        let key = key.into();
        RulesError::Invalid {
            file: self.file.to_string(),
            line: locate_key(self.text, &key),
            key,
            message: message.into(),
        }
    }
}

fn parse_iso(s: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(s.trim(), ISO_DATE).ok()
}

/// Checks that a strftime format only has directives chrono knows and can round-trip a date.
fn check_date_format(format: &str) -> Result<(), String> {
    use chrono::format::{Item, StrftimeItems};
    if StrftimeItems::new(format).any(|i| matches!(i, Item::Error)) {
        return Err(format!("invalid date format '{format}'"));
    }
    let probe = NaiveDate::from_ymd_opt(2031, 12, 28).expect("valid date");
    // Directives that need a time or a time zone (`%s`, `%H`, `%z`, ...) cannot print a date:
    // chrono reports that as a formatting error, which `to_string` would turn into a panic.
    let mut printed = String::new();
    if write!(printed, "{}", probe.format(format)).is_err() {
        return Err(format!(
            "date format '{format}' cannot print a date (it has a directive that needs a time or a time zone)"
        ));
    }
    match NaiveDate::parse_from_str(&printed, format) {
        Ok(d) if d == probe => Ok(()),
        _ => Err(format!(
            "date format '{format}' does not give a whole date (it needs a year, a month and a day)"
        )),
    }
}

fn compile(raw: &RulesFile, text: &str, file: &str, base: &Path) -> Result<Rules, RulesError> {
    let cx = Ctx { text, file };
    let mut out = Rules {
        file: file.to_string(),
        ..Default::default()
    };
    if let Some(d) = &raw.reference_date {
        out.reference_date =
            Some(parse_iso(d).ok_or_else(|| {
                cx.err("reference_date", format!("'{d}' is not a YYYY-MM-DD date"))
            })?);
    }
    for (i, r) in raw.regions.iter().enumerate() {
        let key = format!("regions[{i}]");
        if r.name.trim().is_empty() {
            return Err(cx.err(format!("{key}.name"), "empty name"));
        }
        if out.regions.contains_key(&r.name) {
            return Err(cx.err(
                format!("{key}.name"),
                format!("region '{}' is defined twice", r.name),
            ));
        }
        let [x, y, w, h] = r.rect;
        if !r.rect.iter().all(|v| v.is_finite()) || w <= 0.0 || h <= 0.0 || x < 0.0 || y < 0.0 {
            return Err(cx.err(
                format!("{key}.rect"),
                "expected [x, y, w, h] with x, y >= 0 and w, h > 0",
            ));
        }
        let fractional = r.rect.iter().all(|v| *v <= 1.0);
        if fractional && (x + w > 1.0 + 1e-6 || y + h > 1.0 + 1e-6) {
            return Err(cx.err(
                format!("{key}.rect"),
                "a region in fractions must lie within the item (x + w <= 1, y + h <= 1)",
            ));
        }
        out.regions.insert(
            r.name.clone(),
            Region {
                rect: r.rect,
                fractional,
            },
        );
    }
    let region_ok = |key: String, region: &Option<String>| -> Result<(), RulesError> {
        match region {
            Some(name) if !out.regions.contains_key(name) => Err(cx.err(
                key,
                format!(
                    "unknown region '{name}' (regions: {})",
                    names(out.regions.keys())
                ),
            )),
            _ => Ok(()),
        }
    };
    for (name, l) in &raw.lookups {
        let key = format!("lookups.{name}");
        let path = resolve(base, &l.file);
        let table =
            load_csv(&path, &l.key, &l.value).map_err(|m| cx.err(format!("{key}.file"), m))?;
        let table = if l.ignore_spaces {
            out.lookups_ignoring_spaces.insert(name.clone());
            let mut compact: HashMap<String, (String, String)> = HashMap::new();
            for (k, v) in table {
                let c = without_spaces(&k);
                if let Some((other, _)) = compact.get(&c) {
                    return Err(cx.err(
                        format!("{key}.ignore_spaces"),
                        format!(
                            "keys \"{other}\" and \"{k}\" of {} are the same without spaces",
                            path.display()
                        ),
                    ));
                }
                compact.insert(c, (k, v));
            }
            compact.into_iter().map(|(c, (_, v))| (c, v)).collect()
        } else {
            table
        };
        out.lookups.insert(name.clone(), table);
    }
    let mut field_names = HashSet::new();
    for (i, f) in raw.fields.iter().enumerate() {
        let key = format!("fields[{i}]");
        if f.name.trim().is_empty() {
            return Err(cx.err(format!("{key}.name"), "empty name"));
        }
        if !field_names.insert(f.name.clone()) {
            return Err(cx.err(
                format!("{key}.name"),
                format!("field '{}' is defined twice", f.name),
            ));
        }
        region_ok(format!("{key}.region"), &f.region)?;
        let regex = regex::RegexBuilder::new(&f.pattern)
            .case_insensitive(f.ignore_case)
            .build()
            .map_err(|e| cx.err(format!("{key}.pattern"), one_line(&e.to_string())))?;
        if let Some(shape) = &f.shape
            && shape.is_empty()
        {
            return Err(cx.err(format!("{key}.shape"), "empty shape"));
        }
        out.fields.push(Field {
            name: f.name.clone(),
            regex,
            region: f.region.clone(),
            pick: f.pick,
            ignore_case: f.ignore_case,
            shape: f.shape.clone(),
            labels: if f.labels.is_empty() {
                vec!["text".to_string()]
            } else {
                f.labels.clone()
            },
        });
    }
    let mut rule_names = HashSet::new();
    if raw.rules.is_empty() {
        return Err(cx.err("rules", "no rules"));
    }
    for (i, r) in raw.rules.iter().enumerate() {
        let key = format!("rules[{i}]");
        if r.name.trim().is_empty() {
            return Err(cx.err(format!("{key}.name"), "empty name"));
        }
        if r.name == super::ITEM_ERROR_RULE {
            return Err(cx.err(
                format!("{key}.name"),
                format!("'{}' is reserved for items that could not be read", r.name),
            ));
        }
        if !rule_names.insert(r.name.clone()) {
            return Err(cx.err(
                format!("{key}.name"),
                format!("rule '{}' is defined twice", r.name),
            ));
        }
        if let Some(f) = &r.field
            && !field_names.contains(f)
        {
            return Err(cx.err(
                format!("{key}.field"),
                format!(
                    "unknown field '{f}' (fields: {})",
                    names(field_names.iter())
                ),
            ));
        }
        region_ok(format!("{key}.region"), &r.region)?;
        let set: Vec<&str> = [
            ("present", r.present.is_some()),
            ("matches", r.matches.is_some()),
            ("equals", r.equals.is_some()),
            ("one_of", r.one_of.is_some()),
            ("equals_lookup", r.equals_lookup.is_some()),
            ("date", r.date.is_some()),
            ("count", r.count.is_some()),
            ("min_confidence", r.min_confidence.is_some()),
        ]
        .into_iter()
        .filter_map(|(n, s)| s.then_some(n))
        .collect();
        if set.len() != 1 {
            return Err(cx.err(
                key,
                format!(
                    "a rule needs exactly one check of present, matches, equals, one_of, equals_lookup, \
                     date, count, min_confidence; found {}",
                    if set.is_empty() { "none".to_string() } else { set.join(", ") }
                ),
            ));
        }
        let needs_field = |check: &str| -> Result<(), RulesError> {
            if r.field.is_none() {
                Err(cx.err(format!("{key}.field"), format!("'{check}' needs a 'field'")))
            } else {
                Ok(())
            }
        };
        let check = if let Some(p) = r.present {
            needs_field("present")?;
            if !p {
                return Err(cx.err(
                    format!("{key}.present"),
                    "only 'present: true' is supported",
                ));
            }
            Check::Present
        } else if let Some(m) = &r.matches {
            needs_field("matches")?;
            let re = Regex::new(m)
                .map_err(|e| cx.err(format!("{key}.matches"), one_line(&e.to_string())))?;
            Check::Matches(re)
        } else if let Some(v) = &r.equals {
            needs_field("equals")?;
            Check::Equals(v.clone())
        } else if let Some(v) = &r.one_of {
            needs_field("one_of")?;
            if v.is_empty() {
                return Err(cx.err(format!("{key}.one_of"), "empty list"));
            }
            Check::OneOf(v.clone())
        } else if let Some(l) = &r.equals_lookup {
            needs_field("equals_lookup")?;
            if !out.lookups.contains_key(&l.lookup) {
                return Err(cx.err(
                    format!("{key}.equals_lookup.lookup"),
                    format!(
                        "unknown lookup '{}' (lookups: {})",
                        l.lookup,
                        names(out.lookups.keys())
                    ),
                ));
            }
            if !field_names.contains(&l.key_field) {
                return Err(cx.err(
                    format!("{key}.equals_lookup.key_field"),
                    format!("unknown field '{}'", l.key_field),
                ));
            }
            Check::EqualsLookup {
                lookup: l.lookup.clone(),
                key_field: l.key_field.clone(),
            }
        } else if let Some(d) = &r.date {
            needs_field("date")?;
            let format = d.format.clone().unwrap_or_else(|| ISO_DATE.to_string());
            check_date_format(&format).map_err(|m| cx.err(format!("{key}.date.format"), m))?;
            let not_before = match d.not_before.as_deref().map(str::trim) {
                None => None,
                Some("reference_date") => Some(DateBound::Reference),
                Some("today") => Some(DateBound::Today),
                Some(s) => Some(DateBound::Fixed(parse_iso(s).ok_or_else(|| {
                    cx.err(
                        format!("{key}.date.not_before"),
                        format!("'{s}' is neither reference_date, today nor a YYYY-MM-DD date"),
                    )
                })?)),
            };
            Check::Date {
                format,
                not_before,
                grace_days: d.grace_days,
            }
        } else if let Some(c) = &r.count {
            if r.field.is_some() {
                return Err(cx.err(
                    format!("{key}.field"),
                    "'count' counts objects and takes no 'field'",
                ));
            }
            if c.label.trim().is_empty() {
                return Err(cx.err(format!("{key}.count.label"), "empty label"));
            }
            let (min, max) = match (c.exactly, c.min, c.max) {
                (Some(n), None, None) => (Some(n), Some(n)),
                (Some(_), _, _) => {
                    return Err(
                        cx.err(format!("{key}.count"), "'exactly' excludes 'min' and 'max'")
                    );
                }
                (None, None, None) => {
                    return Err(cx.err(format!("{key}.count"), "set 'min', 'max' or 'exactly'"));
                }
                (None, min, max) => {
                    if let (Some(a), Some(b)) = (min, max)
                        && a > b
                    {
                        return Err(cx.err(format!("{key}.count"), format!("min {a} > max {b}")));
                    }
                    (min, max)
                }
            };
            Check::Count {
                label: c.label.clone(),
                min,
                max,
            }
        } else {
            let v = r.min_confidence.unwrap_or_default();
            if !(0.0..=1.0).contains(&v) {
                return Err(cx.err(
                    format!("{key}.min_confidence"),
                    format!("{v} is not within 0..=1"),
                ));
            }
            Check::MinConfidence(v)
        };
        out.rules.push(Rule {
            name: r.name.clone(),
            field: r.field.clone(),
            region: r.region.clone(),
            check,
        });
    }
    Ok(out)
}

fn names<'a>(it: impl Iterator<Item = &'a String>) -> String {
    let mut v: Vec<&str> = it.map(String::as_str).collect();
    v.sort_unstable();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn resolve(base: &Path, file: &str) -> PathBuf {
    let p = Path::new(file);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// Collapses whitespace runs into one space and trims: how text lines, lookup keys and values are
/// compared.
/// `s` without any whitespace (keys of `ignore_spaces` lookups).
pub fn without_spaces(s: &str) -> String {
    s.chars().filter(|c| !c.is_whitespace()).collect()
}

pub fn collapse_whitespace(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Splits one CSV line (commas; a field may be double-quoted, with `""` for a quote).
fn csv_fields(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    out.push(cur);
    out.into_iter().map(|f| collapse_whitespace(&f)).collect()
}

/// Reads a lookup table: a CSV file with a header naming `key` and `value` among its columns.
pub fn load_csv(path: &Path, key: &str, value: &str) -> Result<HashMap<String, String>, String> {
    let shown = path.display();
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let Some((_, header)) = lines.next() else {
        return Err(format!("{shown}: empty file (a header line is needed)"));
    };
    let header = csv_fields(header.trim_start_matches('\u{feff}'));
    let col = |name: &str| {
        header.iter().position(|h| h == name).ok_or_else(|| {
            format!(
                "{shown}: no column '{name}' in the header ({})",
                header.join(", ")
            )
        })
    };
    let (k, v) = (col(key)?, col(value)?);
    let mut table = HashMap::new();
    for (i, line) in lines {
        let f = csv_fields(line);
        let (Some(kv), Some(vv)) = (f.get(k), f.get(v)) else {
            return Err(format!(
                "{shown}: line {}: {} columns, the header has {}",
                i + 1,
                f.len(),
                header.len()
            ));
        };
        if kv.is_empty() {
            return Err(format!("{shown}: line {}: empty {key}", i + 1));
        }
        if let Some(old) = table.insert(kv.clone(), vv.clone())
            && old != *vv
        {
            return Err(format!(
                "{shown}: line {}: {key} '{kv}' appears twice with different {value}s ('{old}', '{vv}')",
                i + 1
            ));
        }
    }
    Ok(table)
}

/// The 1-based line of a key path (`rules[2].matches`, `lookups.lots.file`) in block-style YAML;
/// flow-style items (`- {name: x, ...}`) resolve to the item's line. `None` when not found.
pub fn locate_key(text: &str, key: &str) -> Option<usize> {
    let lines: Vec<&str> = text.lines().collect();
    let indent = |l: &str| l.len() - l.trim_start().len();
    let content = |l: &str| {
        let t = l.trim();
        !t.is_empty() && !t.starts_with('#')
    };
    let (mut start, mut end, mut min_indent) = (0usize, lines.len(), 0usize);
    let mut found = None;
    for part in key.split('.') {
        let (name, rest) = part.split_once('[').unwrap_or((part, ""));
        let mut segs: Vec<Result<&str, usize>> = Vec::new();
        if !name.is_empty() {
            segs.push(Ok(name));
        }
        segs.extend(
            rest.split('[')
                .filter_map(|s| s.trim_end_matches(']').parse().ok())
                .map(Err),
        );
        for seg in segs {
            let mut hit = None;
            let mut count = 0;
            let mut item_indent = None;
            for (i, l) in lines.iter().enumerate().take(end).skip(start) {
                if !content(l) || indent(l) < min_indent {
                    continue;
                }
                match seg {
                    Ok(name) => {
                        let t = l.trim_start().trim_start_matches("- ");
                        if t.strip_prefix(name)
                            .is_some_and(|r| r.trim_start().starts_with(':'))
                        {
                            hit = Some(i);
                            break;
                        }
                    }
                    Err(n) => {
                        if l.trim_start().starts_with('-')
                            && item_indent.is_none_or(|ii| ii == indent(l))
                        {
                            item_indent = Some(indent(l));
                            if count == n {
                                hit = Some(i);
                                break;
                            }
                            count += 1;
                        }
                    }
                }
            }
            let Some(i) = hit else {
                return found;
            };
            found = Some(i + 1);
            let base = indent(lines[i]);
            let item = lines[i].trim_start().starts_with('-');
            let mut j = i + 1;
            while j < lines.len() && (!content(lines[j]) || indent(lines[j]) > base) {
                j += 1;
            }
            start = if item { i } else { i + 1 };
            end = j;
            min_indent = if item { base } else { base + 1 };
            // A flow-style mapping on this line holds everything below this key.
            if lines[i].contains('{') {
                return found;
            }
        }
    }
    found
}

impl fmt::Display for Pick {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Pick::Top => "top",
            Pick::Bottom => "bottom",
            Pick::Largest => "largest",
            Pick::Confident => "confident",
        })
    }
}
