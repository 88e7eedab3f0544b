//! A small seeded random-number generator and the distributions the load generator draws
//! from, so that a simulation is reproduced exactly from its seed on every platform.
//!
//! Generator: xoshiro256** seeded through SplitMix64 (Blackman & Vigna, "Scrambled linear
//! pseudorandom number generators", ACM TOMS 47(4), 2021). Normal deviates by Box–Muller;
//! gamma deviates by Marsaglia & Tsang, "A simple method for generating gamma variables",
//! ACM TOMS 26(3), 2000 (with the `U^(1/k)` boost for shape `k < 1`).

/// xoshiro256** state.
#[derive(Debug, Clone)]
pub struct Rng {
    s: [u64; 4],
}

impl Rng {
    /// A generator whose whole sequence is fixed by `seed`.
    pub fn new(seed: u64) -> Self {
        let mut x = seed;
        let mut next = || {
            // SplitMix64.
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        Rng {
            s: [next(), next(), next(), next()],
        }
    }

    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let out = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        out
    }

    /// Uniform in the open interval (0, 1): 53 random bits, never 0.
    pub fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    /// Exponential with mean `mean`.
    pub fn exponential(&mut self, mean: f64) -> f64 {
        -mean * self.uniform().ln()
    }

    /// Standard normal (Box–Muller, one deviate per call).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.uniform();
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }

    /// Gamma with shape `k > 0` and scale 1.
    pub fn gamma(&mut self, k: f64) -> f64 {
        if k < 1.0 {
            let u = self.uniform();
            return self.gamma(k + 1.0) * u.powf(1.0 / k);
        }
        let d = k - 1.0 / 3.0;
        let c = 1.0 / (9.0 * d).sqrt();
        loop {
            let x = self.normal();
            let v = 1.0 + c * x;
            if v <= 0.0 {
                continue;
            }
            let v = v * v * v;
            let u = self.uniform();
            if u.ln() < 0.5 * x * x + d - d * v + d * v.ln() {
                return d * v;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mean_var(xs: &[f64]) -> (f64, f64) {
        let n = xs.len() as f64;
        let m = xs.iter().sum::<f64>() / n;
        (
            m,
            xs.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (n - 1.0),
        )
    }

    #[test]
    fn same_seed_same_sequence_other_seed_other_sequence() {
        let a: Vec<u64> = (0..5)
            .scan(Rng::new(7), |r, _| Some(r.next_u64()))
            .collect();
        let b: Vec<u64> = (0..5)
            .scan(Rng::new(7), |r, _| Some(r.next_u64()))
            .collect();
        let c: Vec<u64> = (0..5)
            .scan(Rng::new(8), |r, _| Some(r.next_u64()))
            .collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn distributions_have_their_closed_form_moments() {
        let mut r = Rng::new(1);
        let n = 200_000;
        // Exponential(mean 2): mean 2, variance 4.
        let e: Vec<f64> = (0..n).map(|_| r.exponential(2.0)).collect();
        let (m, v) = mean_var(&e);
        assert!((m - 2.0).abs() < 0.03 && (v - 4.0).abs() < 0.12, "{m} {v}");
        // Normal: mean 0, variance 1.
        let x: Vec<f64> = (0..n).map(|_| r.normal()).collect();
        let (m, v) = mean_var(&x);
        assert!(m.abs() < 0.01 && (v - 1.0).abs() < 0.02, "{m} {v}");
        // Gamma(k): mean k, variance k, for k above and below 1.
        for k in [0.5, 3.0] {
            let g: Vec<f64> = (0..n).map(|_| r.gamma(k)).collect();
            let (m, v) = mean_var(&g);
            assert!((m - k).abs() < 0.02 * k.max(1.0), "k {k}: {m}");
            assert!((v - k).abs() < 0.05 * k.max(1.0), "k {k}: {v}");
        }
    }
}
