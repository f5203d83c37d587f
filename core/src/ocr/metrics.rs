//! How two readings of the same image compare: lines matched by box overlap, exact texts and the
//! character error rate (the metrics of the OCR parity test and of `vigil models quantize`).

use super::OcrLine;

/// The Levenshtein distance between `a` and `b` in characters (insertions, deletions and
/// substitutions).
pub fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for i in 1..=a.len() {
        let mut cur = vec![i; b.len() + 1];
        for j in 1..=b.len() {
            let sub = prev[j - 1] + usize::from(a[i - 1] != b[j - 1]);
            cur[j] = sub.min(prev[j] + 1).min(cur[j - 1] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// A candidate reading against a reference reading, summed over images.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct LineAgreement {
    /// Lines of the reference.
    pub lines: usize,
    /// Reference lines with a candidate line over them (box IoU ≥ the minimum).
    pub matched: usize,
    /// Matched lines with exactly the reference's text.
    pub exact: usize,
    /// Characters of the reference's lines.
    pub chars: usize,
    /// Edit distance summed over the reference's lines (an unmatched line counts all its characters).
    pub errors: usize,
}

impl LineAgreement {
    /// The share of reference lines read exactly alike (1 when the reference has none).
    pub fn exact_share(&self) -> f64 {
        if self.lines == 0 {
            1.0
        } else {
            self.exact as f64 / self.lines as f64
        }
    }

    /// Character error rate: errors over the reference's characters.
    pub fn cer(&self) -> f64 {
        if self.chars == 0 {
            0.0
        } else {
            self.errors as f64 / self.chars as f64
        }
    }

    /// Adds the lines of one image: each reference line is matched with the unused candidate line
    /// of the largest box overlap, if it is at least `min_iou`.
    pub fn add(&mut self, reference: &[OcrLine], candidate: &[OcrLine], min_iou: f32) {
        let mut used = vec![false; candidate.len()];
        for r in reference {
            self.lines += 1;
            let chars = r.text.chars().count();
            self.chars += chars;
            let best = candidate
                .iter()
                .enumerate()
                .filter(|(i, _)| !used[*i])
                .map(|(i, c)| (i, r.bbox.iou(&c.bbox)))
                .filter(|&(_, iou)| iou >= min_iou)
                .max_by(|a, b| a.1.total_cmp(&b.1));
            match best {
                Some((i, _)) => {
                    used[i] = true;
                    self.matched += 1;
                    let d = edit_distance(&r.text, &candidate[i].text);
                    self.exact += usize::from(d == 0);
                    self.errors += d;
                }
                None => self.errors += chars,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objects::BBox;

    fn line(x: f32, text: &str) -> OcrLine {
        let bbox = BBox::new(x, 0.0, 100.0, 20.0);
        OcrLine {
            quad: Default::default(),
            bbox,
            text: text.to_owned(),
            score: 1.0,
            box_score: 1.0,
        }
    }

    #[test]
    fn edit_distance_counts_insertions_deletions_substitutions() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("Product of ltaly", "Product of ltaly"), 0);
    }

    #[test]
    fn lines_match_by_overlap_and_count_exact_texts_and_errors() {
        let reference = [
            line(0.0, "LOT A12"),
            line(500.0, "EXP 2027"),
            line(900.0, "OK"),
        ];
        let candidate = [line(2.0, "LOT A12"), line(505.0, "EXP 2O27")];
        let mut a = LineAgreement::default();
        a.add(&reference, &candidate, 0.5);
        assert_eq!((a.lines, a.matched, a.exact), (3, 2, 1));
        assert_eq!(a.chars, 7 + 8 + 2);
        assert_eq!(a.errors, 1 + 2);
        assert!((a.exact_share() - 1.0 / 3.0).abs() < 1e-9);
        assert_eq!(LineAgreement::default().exact_share(), 1.0);
    }
}
