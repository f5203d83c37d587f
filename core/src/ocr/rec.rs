//! Text recognition (PP-OCR rec, CTC): batches of crops and the greedy CTC decoding.

use std::borrow::Borrow;

use super::image::BgrImage;

/// Input height of the recogniser.
pub const REC_HEIGHT: usize = 48;
/// The narrowest batch width (the reference's `rec_img_shape` 3x48x320).
pub const REC_MIN_WIDTH: usize = 320;

/// Crops recognised together: the crops of one image sorted by aspect ratio (stable), in groups of
/// `batch` (the reference's `rec_batch_num`, 6). Each group is padded to one width, so its members
/// have the same shape; returns the groups as indices into `crops` with the group's input width.
pub fn groups<C: Borrow<BgrImage>>(crops: &[C], batch: usize) -> Vec<(Vec<usize>, usize)> {
    let ratio = |c: &C| {
        let c = c.borrow();
        c.width as f64 / c.height as f64
    };
    let mut order: Vec<usize> = (0..crops.len()).collect();
    order.sort_by(|&a, &b| ratio(&crops[a]).total_cmp(&ratio(&crops[b])));
    order
        .chunks(batch.max(1))
        .map(|g| {
            let max_ratio = g
                .iter()
                .map(|&i| ratio(&crops[i]))
                .fold(REC_MIN_WIDTH as f64 / REC_HEIGHT as f64, f64::max);
            (g.to_vec(), (REC_HEIGHT as f64 * max_ratio) as usize)
        })
        .collect()
}

/// The recogniser's input for `crop` in a batch of width `width`: height 48, width by aspect ratio
/// (at most `width`), bilinear, normalised, right-padded with 0. Shape `[3, 48, width]`.
pub fn input(crop: &BgrImage, width: usize) -> Vec<f32> {
    let ratio = crop.width as f64 / crop.height as f64;
    let w = ((REC_HEIGHT as f64 * ratio).ceil() as usize).clamp(1, width);
    let resized = crop.resize_linear(w, REC_HEIGHT);
    let mut t = vec![0f32; 3 * REC_HEIGHT * width];
    resized.write_normalized(&mut t, width, REC_HEIGHT);
    t
}

/// The character list of a CTC model from its dictionary (one character a line): index 0 is the
/// blank, then the dictionary, then a space.
pub fn charset(dictionary: &str) -> Vec<String> {
    let mut chars = vec![String::new()];
    chars.extend(
        dictionary
            .split('\n')
            .map(|l| l.strip_suffix('\r').unwrap_or(l).to_owned()),
    );
    // A trailing newline leaves an empty last entry that is no character.
    if dictionary.ends_with('\n') {
        chars.pop();
    }
    chars.push(" ".to_owned());
    chars
}

/// Greedy CTC decoding of `steps` x `classes` probabilities: the best class of each step, repeats
/// merged, blanks (0) dropped; the score is the mean probability of the kept steps (0 when none).
pub fn ctc_decode(probs: &[f32], classes: usize, charset: &[String]) -> (String, f32) {
    let mut text = String::new();
    let (mut sum, mut n) = (0f64, 0usize);
    let mut prev = usize::MAX;
    for step in probs.chunks_exact(classes) {
        let (best, p) =
            step.iter().enumerate().fold(
                (0usize, f32::MIN),
                |acc, (i, &v)| if v > acc.1 { (i, v) } else { acc },
            );
        if best != 0 && best != prev {
            if let Some(c) = charset.get(best) {
                text.push_str(c);
            }
            sum += p as f64;
            n += 1;
        }
        prev = best;
    }
    let score = if n == 0 { 0.0 } else { (sum / n as f64) as f32 };
    (text, score)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crop(w: usize, h: usize) -> BgrImage {
        BgrImage::new(w, h)
    }

    #[test]
    fn groups_sort_by_ratio_and_share_a_width() {
        let crops = vec![crop(400, 40), crop(100, 50), crop(30, 30), crop(96, 48)];
        let g = groups(&crops, 2);
        // Ratios 10, 2, 1, 2: order 2, 1, 3, 0 (stable for the equal ones).
        assert_eq!(g[0].0, vec![2, 1]);
        assert_eq!(g[0].1, 320);
        assert_eq!(g[1].0, vec![3, 0]);
        assert_eq!(g[1].1, 480);
        let t = input(&crops[1], 320);
        assert_eq!(t.len(), 3 * 48 * 320);
        // A black crop is -1 over its 96 columns, 0 after.
        assert_eq!(t[95], -1.0);
        assert_eq!(t[96], 0.0);
    }

    #[test]
    fn ctc_merges_repeats_and_drops_blanks() {
        let cs = charset("a\nb\n");
        assert_eq!(cs, vec!["", "a", "b", " "]);
        let step = |i: usize, p: f32| {
            let mut v = vec![(1.0 - p) / 3.0; 4];
            v[i] = p;
            v
        };
        let probs: Vec<f32> = [
            step(1, 0.9),
            step(1, 0.8),
            step(0, 0.9),
            step(1, 0.7),
            step(3, 0.6),
            step(2, 1.0),
        ]
        .concat();
        let (text, score) = ctc_decode(&probs, 4, &cs);
        assert_eq!(text, "aa b");
        assert!((score - (0.9 + 0.7 + 0.6 + 1.0) / 4.0).abs() < 1e-6);
        assert_eq!(ctc_decode(&step(0, 0.9), 4, &cs), (String::new(), 0.0));
    }
}
