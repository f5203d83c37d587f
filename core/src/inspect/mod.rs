//! Industrial inspection: rules from YAML ([`config`]) checked against the text read on an item
//! (OCR objects of a [`FrameObjects`]), giving a PASS/FAIL [`Inspection`] with every failed rule and
//! its evidence; a running [`Summary`]; snapshots of failed items ([`snapshot`]).
//!
//! How an item is judged (`docs/inspection.md` is the reference):
//! 1. An item whose `item.error` is set fails with one finding, rule [`ITEM_ERROR_RULE`], and no rule runs.
//! 2. Text objects (label `text` unless a field says otherwise, with `text` set) are grouped into
//!    *lines*: boxes that overlap vertically by at least half the smaller height form one line, read
//!    left to right, whitespace collapsed. Each field's pattern is searched in each line (of its
//!    region); the field takes the line its `pick` says. A field with a `shape` corrects look-alike
//!    characters by position and is *unreadable* when the value still does not fit.
//! 3. Each rule is checked. A rule about a field that was not found (or is unreadable) fails with
//!    "not found" (or what was read), **unless** a `present` rule on the same field exists: that rule
//!    then reports the absence once and the field's other rules are skipped. The same holds for the
//!    key field of `equals_lookup`. So a missing lot gives one finding, not one per lot rule.

pub mod config;
pub mod snapshot;
pub mod summary;

pub use config::{Rules, RulesError};
pub use summary::Summary;

use crate::objects::{BBox, FieldValue, Finding, FrameObjects, Inspection, Object, Verdict};
use chrono::NaiveDate;
use config::{Check, DateBound, Field, Pick, Rule, collapse_whitespace};
use std::collections::HashMap;

/// The rule name of the finding of an item that could not be analysed (`item.error`).
pub const ITEM_ERROR_RULE: &str = "item-error";

/// Today's date (UTC).
pub fn today_utc() -> NaiveDate {
    let days = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() / 86_400)
        .unwrap_or(0);
    NaiveDate::from_ymd_opt(1970, 1, 1)
        .and_then(|d| d.checked_add_days(chrono::Days::new(days)))
        .expect("a date after 1970")
}

/// One text line of an item: one or more text objects side by side.
#[derive(Debug, Clone, PartialEq)]
pub struct TextLine {
    pub text: String,
    pub bbox: BBox,
    /// The lowest confidence of its objects.
    pub confidence: f32,
}

fn centre_in(b: &BBox, r: &BBox) -> bool {
    let (cx, cy) = (b.x + b.w / 2.0, b.y + b.h / 2.0);
    cx >= r.x && cx <= r.x2() && cy >= r.y && cy <= r.y2()
}

fn union(a: &BBox, b: &BBox) -> BBox {
    BBox::from_corners(
        a.x.min(b.x),
        a.y.min(b.y),
        a.x2().max(b.x2()),
        a.y2().max(b.y2()),
    )
}

/// Groups text objects into lines (see the [module docs](self)), top to bottom.
pub fn text_lines<'a>(objects: impl IntoIterator<Item = &'a Object>) -> Vec<TextLine> {
    let mut objs: Vec<&Object> = objects
        .into_iter()
        .filter(|o| o.text.as_deref().is_some_and(|t| !t.trim().is_empty()))
        .collect();
    objs.sort_by(|a, b| (a.bbox.y + a.bbox.h / 2.0).total_cmp(&(b.bbox.y + b.bbox.h / 2.0)));
    let mut rows: Vec<(BBox, Vec<&Object>)> = Vec::new();
    for o in objs {
        // Same line: overlapping vertically by half the smaller height, and side by side (a box
        // under another one, e.g. of a rotated label's tall print, overlaps it horizontally too).
        let joined = rows.iter_mut().find(|(rb, members)| {
            let overlap = rb.y2().min(o.bbox.y2()) - rb.y.max(o.bbox.y);
            overlap >= 0.5 * rb.h.min(o.bbox.h)
                && members.iter().all(|m| {
                    let h = m.bbox.x2().min(o.bbox.x2()) - m.bbox.x.max(o.bbox.x);
                    h < 0.5 * m.bbox.w.min(o.bbox.w)
                })
        });
        match joined {
            Some((rb, members)) => {
                *rb = union(rb, &o.bbox);
                members.push(o);
            }
            None => rows.push((o.bbox, vec![o])),
        }
    }
    rows.sort_by(|a, b| a.0.y.total_cmp(&b.0.y));
    rows.into_iter()
        .map(|(bbox, mut members)| {
            members.sort_by(|a, b| a.bbox.x.total_cmp(&b.bbox.x));
            let text = collapse_whitespace(
                &members
                    .iter()
                    .filter_map(|o| o.text.as_deref())
                    .collect::<Vec<_>>()
                    .join(" "),
            );
            let confidence = members
                .iter()
                .map(|o| o.confidence)
                .fold(f32::INFINITY, f32::min);
            TextLine {
                text,
                bbox,
                confidence,
            }
        })
        .collect()
}

/// Corrects look-alike characters of `value` by position of `shape` (`A` letter, `9` digit, other
/// characters literal). `None` when the value does not fit.
pub fn fit_shape(value: &str, shape: &str) -> Option<String> {
    if value.chars().count() != shape.chars().count() {
        return None;
    }
    value
        .chars()
        .zip(shape.chars())
        .map(|(c, s)| match s {
            '9' => match c {
                '0'..='9' => Some(c),
                'O' | 'o' | 'Q' | 'D' => Some('0'),
                'I' | 'l' | 'L' | '|' | 'i' => Some('1'),
                'Z' | 'z' => Some('2'),
                'S' | 's' => Some('5'),
                'G' | 'b' => Some('6'),
                'B' => Some('8'),
                _ => None,
            },
            'A' => match c {
                'A'..='Z' => Some(c),
                'a'..='z' => Some(c.to_ascii_uppercase()),
                '0' => Some('O'),
                '1' => Some('I'),
                '2' => Some('Z'),
                '5' => Some('S'),
                '6' => Some('G'),
                '8' => Some('B'),
                _ => None,
            },
            lit => (c == lit).then_some(c),
        })
        .collect()
}

/// What became of a field on one item.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldResult {
    Found(FieldValue),
    /// The pattern matched but the value does not fit the field's shape.
    Unreadable {
        read: String,
        line: TextLine,
    },
    NotFound,
}

/// Checks items against [`Rules`].
#[derive(Debug, Clone)]
pub struct Inspector {
    rules: Rules,
    /// Fixed "today" (tests); `None`: the real date at each item.
    today: Option<NaiveDate>,
    /// Fields that a `present` rule covers.
    has_present: Vec<String>,
}

impl Inspector {
    pub fn new(rules: Rules) -> Self {
        let has_present = rules
            .rules
            .iter()
            .filter(|r| matches!(r.check, Check::Present))
            .filter_map(|r| r.field.clone())
            .collect();
        Self {
            rules,
            today: None,
            has_present,
        }
    }

    /// Uses `today` instead of the real date (for `today` and a missing `reference_date`).
    pub fn with_today(mut self, today: NaiveDate) -> Self {
        self.today = Some(today);
        self
    }

    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    fn today(&self) -> NaiveDate {
        self.today.unwrap_or_else(today_utc)
    }

    /// The date `not_before: reference_date` compares with.
    pub fn reference_date(&self) -> NaiveDate {
        self.rules.reference_date.unwrap_or_else(|| self.today())
    }

    fn region_bbox(&self, name: &Option<String>, frame: &FrameObjects) -> Option<BBox> {
        name.as_ref()
            .and_then(|n| self.rules.regions.get(n))
            .map(|r| r.bbox(frame.width, frame.height))
    }

    /// Extracts one field from the item.
    pub fn extract(&self, field: &Field, frame: &FrameObjects) -> FieldResult {
        let region = self.region_bbox(&field.region, frame);
        let lines = text_lines(frame.objects.iter().filter(|o| {
            field.labels.contains(&o.label) && region.is_none_or(|r| centre_in(&o.bbox, &r))
        }));
        let mut readable: Vec<FieldValue> = Vec::new();
        let mut unreadable: Vec<(String, TextLine)> = Vec::new();
        for line in lines {
            let Some(caps) = field.regex.captures(&line.text) else {
                continue;
            };
            let m = caps
                .get(1)
                .or_else(|| caps.get(0))
                .expect("group 0 matches");
            let mut value = collapse_whitespace(m.as_str());
            if field.ignore_case {
                value = value.to_uppercase();
            }
            match &field.shape {
                Some(shape) => match fit_shape(&value, shape) {
                    Some(v) => value = v,
                    None => {
                        unreadable.push((value, line));
                        continue;
                    }
                },
                None if value.is_empty() => continue,
                None => {}
            }
            readable.push(FieldValue {
                name: field.name.clone(),
                value,
                bbox: Some(line.bbox),
                confidence: line.confidence,
            });
        }
        let key = |f: &FieldValue| {
            let b = f.bbox.unwrap_or_default();
            match field.pick {
                Pick::Top => -b.y,
                Pick::Bottom => b.y,
                Pick::Largest => b.h,
                Pick::Confident => f.confidence,
            }
        };
        // Lines are top to bottom, so ties keep the first (top-most) line.
        let best = readable
            .into_iter()
            .reduce(|a, b| if key(&b) > key(&a) { b } else { a });
        match (best, unreadable.into_iter().next()) {
            (Some(f), _) => FieldResult::Found(f),
            (None, Some((read, line))) => FieldResult::Unreadable { read, line },
            (None, None) => FieldResult::NotFound,
        }
    }

    /// Judges one item.
    pub fn inspect(&self, frame: &FrameObjects) -> Inspection {
        if let Some(err) = frame.item.as_ref().and_then(|i| i.error.as_ref()) {
            return Inspection {
                verdict: Verdict::Fail,
                failures: vec![Finding {
                    rule: ITEM_ERROR_RULE.into(),
                    reason: format!("item could not be analysed: {err}"),
                    ..Default::default()
                }],
                fields: Vec::new(),
            };
        }
        let values: HashMap<&str, FieldResult> = self
            .rules
            .fields
            .iter()
            .map(|f| (f.name.as_str(), self.extract(f, frame)))
            .collect();
        let failures: Vec<Finding> = self
            .rules
            .rules
            .iter()
            .filter_map(|r| self.check(r, frame, &values))
            .collect();
        let fields = self
            .rules
            .fields
            .iter()
            .filter_map(|f| match &values[f.name.as_str()] {
                FieldResult::Found(v) => Some(v.clone()),
                _ => None,
            })
            .collect();
        Inspection {
            verdict: if failures.is_empty() {
                Verdict::Pass
            } else {
                Verdict::Fail
            },
            failures,
            fields,
        }
    }

    /// The finding of a field that is missing or unreadable, or `None` when it is the job of the
    /// field's `present` rule (and `rule` is not that rule).
    fn absent(
        &self,
        rule: &Rule,
        field: &str,
        result: &FieldResult,
        frame: &FrameObjects,
        what: &str,
    ) -> Option<Finding> {
        let is_present_rule =
            matches!(rule.check, Check::Present) && rule.field.as_deref() == Some(field);
        if !is_present_rule && self.has_present.iter().any(|f| f == field) {
            return None;
        }
        let region_name = self
            .rules
            .fields
            .iter()
            .find(|f| f.name == field)
            .and_then(|f| f.region.clone());
        Some(match result {
            FieldResult::Unreadable { read, line } => Finding {
                rule: rule.name.clone(),
                region: region_name,
                reason: format!(
                    "{what}{field} unreadable: read \"{read}\", which does not fit its shape"
                ),
                text: Some(line.text.clone()),
                bbox: Some(line.bbox),
                confidence: Some(line.confidence),
            },
            _ => Finding {
                rule: rule.name.clone(),
                bbox: self.region_bbox(&region_name, frame),
                region: region_name,
                reason: format!("{what}{field} not found"),
                ..Default::default()
            },
        })
    }

    fn check(
        &self,
        rule: &Rule,
        frame: &FrameObjects,
        values: &HashMap<&str, FieldResult>,
    ) -> Option<Finding> {
        let fail = |reason: String, evidence: Option<&FieldValue>| Finding {
            rule: rule.name.clone(),
            region: rule.region.clone(),
            reason,
            text: evidence.map(|v| v.value.clone()),
            bbox: evidence.and_then(|v| v.bbox),
            confidence: evidence.map(|v| v.confidence),
        };
        // Rules without a field.
        let Some(field) = rule.field.as_deref() else {
            let region = self.region_bbox(&rule.region, frame);
            let inside = |o: &&Object| region.is_none_or(|r| centre_in(&o.bbox, &r));
            return match &rule.check {
                Check::Count { label, min, max } => {
                    let n = frame
                        .objects
                        .iter()
                        .filter(inside)
                        .filter(|o| &o.label == label)
                        .count() as u32;
                    let expected = match (min, max) {
                        (Some(a), Some(b)) if a == b => format!("exactly {a}"),
                        (Some(a), Some(b)) => format!("{a} to {b}"),
                        (Some(a), None) => format!("at least {a}"),
                        (None, Some(b)) => format!("at most {b}"),
                        (None, None) => unreachable!("validated"),
                    };
                    let ok = min.is_none_or(|a| n >= a) && max.is_none_or(|b| n <= b);
                    (!ok).then(|| Finding {
                        rule: rule.name.clone(),
                        region: rule.region.clone(),
                        reason: format!("{n} '{label}' objects, expected {expected}"),
                        bbox: region,
                        ..Default::default()
                    })
                }
                Check::MinConfidence(floor) => {
                    let low: Vec<&Object> = frame
                        .objects
                        .iter()
                        .filter(inside)
                        .filter(|o| o.text.is_some() && o.confidence < *floor)
                        .collect();
                    let worst = low
                        .iter()
                        .min_by(|a, b| a.confidence.total_cmp(&b.confidence))?;
                    Some(Finding {
                        rule: rule.name.clone(),
                        region: rule.region.clone(),
                        reason: format!(
                            "{} text line(s) read with confidence below {floor:.2}, lowest {:.2}",
                            low.len(),
                            worst.confidence
                        ),
                        text: worst.text.clone(),
                        bbox: Some(worst.bbox),
                        confidence: Some(worst.confidence),
                    })
                }
                _ => unreachable!("validated: the other checks need a field"),
            };
        };
        let result = &values[field];
        let FieldResult::Found(v) = result else {
            return self.absent(rule, field, result, frame, "");
        };
        let value = v.value.as_str();
        match &rule.check {
            Check::Present => None,
            Check::Matches(re) => (!re.is_match(value)).then(|| {
                fail(
                    format!("{field} \"{value}\" does not match {}", re.as_str()),
                    Some(v),
                )
            }),
            Check::Equals(lit) => (collapse_whitespace(lit) != value)
                .then(|| fail(format!("{field} \"{value}\" is not \"{lit}\""), Some(v))),
            Check::OneOf(list) => {
                (!list.iter().any(|l| collapse_whitespace(l) == value)).then(|| {
                    fail(
                        format!("{field} \"{value}\" is not one of {}", list.join(", ")),
                        Some(v),
                    )
                })
            }
            Check::EqualsLookup { lookup, key_field } => {
                let key_result = &values[key_field.as_str()];
                let FieldResult::Found(k) = key_result else {
                    return self.absent(
                        rule,
                        key_field,
                        key_result,
                        frame,
                        &format!("cannot check {field} against '{lookup}': "),
                    );
                };
                let lookup_key = if self.rules.lookups_ignoring_spaces.contains(lookup) {
                    config::without_spaces(&k.value)
                } else {
                    k.value.clone()
                };
                match self.rules.lookups[lookup].get(&lookup_key) {
                    None => Some(Finding {
                        reason: format!(
                            "{key_field} \"{}\" has no entry in '{lookup}' (read {field} \"{value}\")",
                            k.value
                        ),
                        ..fail(String::new(), Some(k))
                    }),
                    Some(expected) if expected != value => Some(fail(
                        format!(
                            "{field} \"{value}\" is not \"{expected}\", the {field} of {key_field} \"{}\"",
                            k.value
                        ),
                        Some(v),
                    )),
                    Some(_) => None,
                }
            }
            Check::Date {
                format,
                not_before,
                grace_days,
            } => {
                let Ok(date) = NaiveDate::parse_from_str(value, format) else {
                    return Some(fail(
                        format!("{field} \"{value}\" is not a date in the format {format}"),
                        Some(v),
                    ));
                };
                let (bound, name) = match (*not_before)? {
                    DateBound::Reference => (self.reference_date(), "the reference date"),
                    DateBound::Today => (self.today(), "today"),
                    DateBound::Fixed(d) => (d, "the limit"),
                };
                let days = chrono::Days::new(grace_days.unsigned_abs() as u64);
                let limit = if *grace_days >= 0 {
                    bound.checked_sub_days(days)
                } else {
                    bound.checked_add_days(days)
                }
                .unwrap_or(bound);
                (date < limit).then(|| {
                    let grace = match grace_days {
                        0 => String::new(),
                        g => format!(" (grace {g} days)"),
                    };
                    fail(
                        format!("{field} {date} is before {name} {bound}{grace}"),
                        Some(v),
                    )
                })
            }
            Check::MinConfidence(floor) => (v.confidence < *floor).then(|| {
                fail(
                    format!(
                        "{field} read with confidence {:.2} < {floor:.2}",
                        v.confidence
                    ),
                    Some(v),
                )
            }),
            Check::Count { .. } => unreachable!("validated: count takes no field"),
        }
    }
}

#[cfg(test)]
mod tests;
