//! The seeded random numbers of the generator.
//!
//! Only the ChaCha8 stream of `rand_chacha` is used (its output is value-stable: the same seed and
//! stream give the same words on every platform and in every release of the crate); every conversion
//! of words into numbers is written out here, so no distribution code of another crate can change the
//! images between versions.

use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};

/// A seeded random stream: `Rng::new(seed, stream)`; streams of one seed are independent.
pub struct Rng(ChaCha8Rng);

impl Rng {
    pub fn new(seed: u64, stream: u64) -> Self {
        let mut r = ChaCha8Rng::seed_from_u64(seed);
        r.set_stream(stream);
        Rng(r)
    }

    pub fn next_u32(&mut self) -> u32 {
        self.0.next_u32()
    }

    /// Uniform in `[0, 1)` with 53 bits.
    pub fn unit(&mut self) -> f64 {
        (self.0.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in `[lo, hi)`.
    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }

    /// Uniform integer in `[lo, hi]` (inclusive; multiply-shift, bias below 2^-32).
    pub fn int(&mut self, lo: i64, hi: i64) -> i64 {
        assert!(hi >= lo);
        let n = (hi - lo + 1) as u64;
        lo + ((self.0.next_u64() >> 32).wrapping_mul(n) >> 32) as i64
    }

    /// A uniformly chosen index below `n`.
    pub fn index(&mut self, n: usize) -> usize {
        self.int(0, n as i64 - 1) as usize
    }

    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.index(items.len())]
    }

    /// Standard normal (Box–Muller; one value per call).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.unit(); // (0, 1]
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// Fisher–Yates shuffle.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.index(i + 1);
            items.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_numbers_and_streams_differ() {
        let a: Vec<u32> = {
            let mut r = Rng::new(7, 1);
            (0..8).map(|_| r.next_u32()).collect()
        };
        let b: Vec<u32> = {
            let mut r = Rng::new(7, 1);
            (0..8).map(|_| r.next_u32()).collect()
        };
        let c: Vec<u32> = {
            let mut r = Rng::new(7, 2);
            (0..8).map(|_| r.next_u32()).collect()
        };
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn int_stays_in_range_and_reaches_both_ends() {
        let mut r = Rng::new(1, 0);
        let v: Vec<i64> = (0..2000).map(|_| r.int(-3, 3)).collect();
        assert!(v.iter().all(|x| (-3..=3).contains(x)));
        assert!(v.contains(&-3) && v.contains(&3));
    }
}
