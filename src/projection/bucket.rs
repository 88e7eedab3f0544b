//! Static-shape buckets of the Neuron compiler: the graphs are compiled for a few sequence
//! lengths, a prompt is padded to the next one, and the KV cache is sized for the compiled
//! sequence length.
//!
//! Source: NxD Inference feature guide, section Bucketing ("automatically chooses the smallest
//! bucket that fits the input"; default buckets are powers of two from 128 up to the maximum
//! length), aws-neuron-sdk `libraries/nxd-inference/developer_guides/feature-guide.rst`.

/// Power-of-two buckets from `min` up to `max`, the last bucket being `max` itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Buckets {
    pub min: u32,
    pub max: u32,
}

impl Buckets {
    /// Buckets from `min` (at least 1) to `max` (at least `min`).
    pub fn new(min: u32, max: u32) -> Self {
        let min = min.max(1);
        Buckets {
            min,
            max: max.max(min),
        }
    }

    /// The smallest bucket holding `n` tokens; `max` when `n` exceeds every bucket.
    pub fn bucket_for(&self, n: u32) -> u32 {
        let mut b = self.min;
        while b < n && b < self.max {
            b = b.saturating_mul(2);
        }
        b.min(self.max)
    }

    /// Every bucket, ascending.
    pub fn all(&self) -> Vec<u32> {
        let mut out = Vec::new();
        let mut b = self.min;
        while b < self.max {
            out.push(b);
            b = b.saturating_mul(2);
        }
        out.push(self.max);
        out
    }
}

/// Compiled sequence length for a workload: prompt plus output, rounded up to `multiple`.
/// This project's assumption, matching the published Neuron runs where the compiled
/// sequence length equals input + output (e.g. 128 + 1024 = 1152).
pub fn compiled_seq_len(input_len: u32, output_len: u32, multiple: u32) -> u32 {
    let n = input_len.saturating_add(output_len).max(1);
    let m = multiple.max(1);
    n.div_ceil(m).saturating_mul(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompt_is_padded_to_next_power_of_two_bucket() {
        let b = Buckets::new(128, 4096);
        assert_eq!(b.bucket_for(1), 128);
        assert_eq!(b.bucket_for(128), 128);
        assert_eq!(b.bucket_for(129), 256);
        assert_eq!(b.bucket_for(500), 512);
        assert_eq!(b.bucket_for(4096), 4096);
        assert_eq!(b.bucket_for(9000), 4096);
    }

    #[test]
    fn last_bucket_is_the_compiled_length() {
        let b = Buckets::new(128, 1152);
        assert_eq!(b.all(), vec![128, 256, 512, 1024, 1152]);
        assert_eq!(b.bucket_for(1100), 1152);
    }

    #[test]
    fn compiled_length_rounds_up() {
        assert_eq!(compiled_seq_len(128, 1024, 128), 1152);
        assert_eq!(compiled_seq_len(100, 28, 128), 128);
        assert_eq!(compiled_seq_len(100, 29, 128), 256);
    }
}
