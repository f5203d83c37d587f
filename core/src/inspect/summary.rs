//! The running summary of an inspection: items, passed, failed, pass rate and failures by rule.

use crate::objects::{Inspection, Verdict};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// Counts over the items inspected so far.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Summary {
    pub items: u64,
    pub passed: u64,
    pub failed: u64,
    /// Failed items per rule name (an item that fails two rules counts once under each).
    pub failures_by_rule: BTreeMap<String, u64>,
}

impl Summary {
    /// Counts one item.
    pub fn add(&mut self, inspection: &Inspection) {
        self.items += 1;
        match inspection.verdict {
            Verdict::Pass => self.passed += 1,
            Verdict::Fail => self.failed += 1,
        }
        let mut rules: Vec<&str> = inspection
            .failures
            .iter()
            .map(|f| f.rule.as_str())
            .collect();
        rules.sort_unstable();
        rules.dedup();
        for r in rules {
            *self.failures_by_rule.entry(r.to_string()).or_default() += 1;
        }
    }

    /// Passed items / items (0 when there are none).
    pub fn pass_rate(&self) -> f64 {
        if self.items == 0 {
            0.0
        } else {
            self.passed as f64 / self.items as f64
        }
    }
}

/// A short table:
///
/// ```text
/// items 40  pass 30  fail 10  pass rate 75.0%
///   lot-present          3
///   not-expired          4
/// ```
impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "items {}  pass {}  fail {}  pass rate {:.1}%",
            self.items,
            self.passed,
            self.failed,
            100.0 * self.pass_rate()
        )?;
        let width = self
            .failures_by_rule
            .keys()
            .map(|k| k.len())
            .max()
            .unwrap_or(0);
        for (rule, n) in &self.failures_by_rule {
            write!(f, "\n  {rule:<width$}  {n}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objects::Finding;

    fn fail(rules: &[&str]) -> Inspection {
        Inspection {
            verdict: Verdict::Fail,
            failures: rules
                .iter()
                .map(|r| Finding {
                    rule: r.to_string(),
                    reason: "x".into(),
                    ..Default::default()
                })
                .collect(),
            fields: Vec::new(),
        }
    }

    #[test]
    fn counts_items_verdicts_and_rules_once_per_item() {
        let mut s = Summary::default();
        assert_eq!(s.pass_rate(), 0.0);
        s.add(&Inspection::default());
        s.add(&Inspection::default());
        s.add(&Inspection::default());
        s.add(&fail(&["lot-present", "not-expired", "lot-present"]));
        s.add(&fail(&["not-expired"]));
        assert_eq!((s.items, s.passed, s.failed), (5, 3, 2));
        assert_eq!(s.pass_rate(), 0.6);
        assert_eq!(s.failures_by_rule["lot-present"], 1);
        assert_eq!(s.failures_by_rule["not-expired"], 2);
        assert_eq!(
            s.to_string(),
            "items 5  pass 3  fail 2  pass rate 60.0%\n  lot-present  1\n  not-expired  2"
        );
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<Summary>(&json).unwrap(), s);
        assert!(json.contains("\"failures_by_rule\":{\"lot-present\":1,\"not-expired\":2}"));
    }
}
