//! Text direction classification (PP-OCR cls): the 3x48x192 input of a crop and the decision to
//! turn it 180°.

use super::image::BgrImage;

/// Input height and width of the classifier.
pub const CLS_HEIGHT: usize = 48;
pub const CLS_WIDTH: usize = 192;

/// The classifier's input for `crop`: height 48, width by aspect ratio (at most 192), bilinear,
/// normalised, right-padded with 0. Shape `[3, 48, 192]`.
pub fn input(crop: &BgrImage) -> Vec<f32> {
    let ratio = crop.width as f64 / crop.height as f64;
    let w = ((CLS_HEIGHT as f64 * ratio).ceil() as usize).clamp(1, CLS_WIDTH);
    let resized = crop.resize_linear(w, CLS_HEIGHT);
    let mut t = vec![0f32; 3 * CLS_HEIGHT * CLS_WIDTH];
    resized.write_normalized(&mut t, CLS_WIDTH, CLS_HEIGHT);
    t
}

/// Whether the crop is upside down: the 180° class wins with a probability above `threshold`.
pub fn is_flipped(probs: &[f32], threshold: f32) -> bool {
    probs.len() >= 2 && probs[1] > probs[0] && probs[1] > threshold
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_keeps_the_ratio_and_pads_with_zero() {
        let crop = BgrImage {
            width: 20,
            height: 10,
            data: vec![255; 20 * 10 * 3],
        };
        let t = input(&crop);
        assert_eq!(t.len(), 3 * 48 * 192);
        // 48 * 2 = 96 columns of white (1.0), then 0.
        assert_eq!(t[95], 1.0);
        assert_eq!(t[96], 0.0);
        assert_eq!(t[2 * 48 * 192 + 47 * 192 + 95], 1.0);
    }

    #[test]
    fn flipped_only_when_confident() {
        assert!(is_flipped(&[0.05, 0.95], 0.9));
        assert!(!is_flipped(&[0.15, 0.85], 0.9));
        assert!(!is_flipped(&[0.95, 0.05], 0.9));
    }
}
