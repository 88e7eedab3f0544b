//! Linear layers with dense or weight-only quantised (int8, int4) weights, run through
//! libtorch's CPU kernels: `_weight_int8pack_mm` (per-output-channel int8) and
//! `_weight_int4pack_mm_for_cpu` (groups of 32 along the input, a scale and a zero point per
//! group). Decode is bound by the bytes of weights read per token, so fewer bytes per weight
//! is what makes it faster.
//!
//! Both kernels read bf16 activations fast (with f32 activations they take a slow path), and
//! they are vector kernels: for many rows at once (a long prompt) dequantising the weight to
//! bf16 and running a dense matmul is several times faster, so [`Linear::apply`] switches on
//! the row count.

use super::bf16x3::SplitWeight;
use anyhow::{bail, Context, Result};
use tch::{Kind, Tensor};

/// Elements per int4 quantisation group along the input dimension (as GGUF Q4_0/Q4_1).
pub const INT4_GROUP: i64 = 32;

/// From this many rows (batch × tokens) an f32 layer with a bf16x3 split multiplies through
/// [`super::bf16x3`]; fewer rows read the f32 weight, as the split reads as many bytes and
/// small products are bound by them. Measured on a 2-core Xeon with AMX, 3072 × 576 weight
/// not in cache: the split is slower at 32 rows (0.97 against 0.89 ms), faster at 64 (1.19
/// against 1.26 ms) and 1.7× faster at 512.
const SPLIT_MIN_ROWS: i64 = 64;

/// The int4 CPU kernel packs output rows in blocks of this many (see [`unpack_int4`]).
const INT4_BLOCK_N: i64 = 64;

/// Above this many rows (batch × tokens) an int8 layer dequantises its weight and runs a
/// dense bf16 matmul instead of the vector kernel. Measured on a 2-core Xeon with AMX: the
/// int8 kernel costs about 2 ms per row for all SmolLM2-135M layers, a dequantisation 21 ms.
const INT8_DENSE_ROWS: i64 = 12;
/// The same for int4: the kernel costs about 1.2 ms per row, a dequantisation about 70 ms.
const INT4_DENSE_ROWS: i64 = 64;

/// A layer's weight `[out, in]` and how it is multiplied.
pub enum Linear {
    /// Plain weight in the compute dtype.
    Dense(Tensor),
    /// f32 weight, with its bf16 high and low parts for products of many rows
    /// (`--matmul-precision high`, see [`super::bf16x3`]).
    DenseSplit { w: Tensor, split: SplitWeight },
    /// int8 weight `[out, in]` with one scale per output row (`[out]`, activation dtype, and
    /// the same in f32 for [`Linear::exact_rows`]): `w ≈ q * scale`.
    Int8 {
        q: Tensor,
        scales: Tensor,
        scales_f32: Tensor,
    },
    /// int4 weight packed for the CPU kernel, with `[in/32, out, 2]` scales and zero points
    /// (`w ≈ (q - 8) * scale + zero`, q in 0..15), and for dequantisation the scales and
    /// `zero - 8 scale` (so that `w = q * scale + that`) in the packed order,
    /// `[out/64, in/32, 1, 64]` each.
    Int4 {
        packed: Tensor,
        scales_zeros: Tensor,
        scales_packed: Tensor,
        zeros_packed: Tensor,
        out: i64,
        inp: i64,
    },
}

/// Group-wise asymmetric 4-bit codes of a weight: `w ≈ q * scale + min`, q in 0..15, one
/// `scale` and `min` per group of [`INT4_GROUP`] inputs (the GGUF Q4_1 form; Q4_0 is
/// `min = -8 scale`).
pub struct Int4Codes {
    /// `[out, in]` u8, values 0..15.
    pub q: Tensor,
    /// `[out, in/32]` f32.
    pub scale: Tensor,
    /// `[out, in/32]` f32.
    pub min: Tensor,
}

impl Int4Codes {
    /// Quantises an f32 weight `[out, in]` group-wise: each group's range `[min, max]` is cut
    /// into 15 steps (round to nearest).
    pub fn quantize(w: &Tensor) -> Result<Self> {
        let (out, inp) = dims(w)?;
        if inp % INT4_GROUP != 0 {
            bail!("int4: input dimension {inp} is not a multiple of {INT4_GROUP}");
        }
        let g = w
            .to_kind(Kind::Float)
            .reshape([out, inp / INT4_GROUP, INT4_GROUP]);
        let lo = g.amin(-1, true);
        let hi = g.amax(-1, true);
        // A constant group has no range: any scale reproduces it from q = 0.
        let scale = ((&hi - &lo) / 15.0).clamp_min(f32::MIN_POSITIVE as f64);
        let q = ((g - &lo) / &scale).round().clamp(0.0, 15.0);
        Ok(Int4Codes {
            q: q.to_kind(Kind::Uint8).reshape([out, inp]),
            scale: scale.squeeze_dim(-1),
            min: lo.squeeze_dim(-1),
        })
    }

    /// The weight these codes stand for, in f32.
    pub fn dequantize(&self) -> Tensor {
        let (out, inp) = (self.q.size()[0], self.q.size()[1]);
        let q = self
            .q
            .to_kind(Kind::Float)
            .reshape([out, inp / INT4_GROUP, INT4_GROUP]);
        (q * self.scale.unsqueeze(-1) + self.min.unsqueeze(-1)).reshape([out, inp])
    }

    /// Rows `[a; b; ...]` stacked, as fused projections need.
    pub fn cat(parts: &[Int4Codes]) -> Int4Codes {
        let pick = |f: fn(&Int4Codes) -> &Tensor| -> Vec<&Tensor> { parts.iter().map(f).collect() };
        Int4Codes {
            q: Tensor::cat(&pick(|c| &c.q), 0),
            scale: Tensor::cat(&pick(|c| &c.scale), 0),
            min: Tensor::cat(&pick(|c| &c.min), 0),
        }
    }

    /// Applies the same row permutation to codes, scales and mins.
    pub fn map_rows(&self, f: impl Fn(&Tensor) -> Tensor) -> Int4Codes {
        Int4Codes {
            q: f(&self.q),
            scale: f(&self.scale),
            min: f(&self.min),
        }
    }
}

fn dims(w: &Tensor) -> Result<(i64, i64)> {
    match w.size().as_slice() {
        [o, i] => Ok((*o, *i)),
        s => bail!("a linear weight must be 2-D, got shape {s:?}"),
    }
}

/// Whether the int4 CPU kernel's packed layout (as [`unpack_int4`] reads it) covers `[out, in]`.
pub fn int4_fits(out: i64, inp: i64) -> bool {
    out % INT4_BLOCK_N == 0 && inp % INT4_GROUP == 0 && out > 0 && inp > 0
}

impl Linear {
    /// int8 with one symmetric scale per output row: `scale = max|w| / 127`.
    pub fn int8(w: &Tensor, act: Kind) -> Result<Self> {
        dims(w)?;
        let w = w.to_kind(Kind::Float);
        let scale = (w.abs().amax(-1, true) / 127.0).clamp_min(f32::MIN_POSITIVE as f64);
        let q = (&w / &scale)
            .round()
            .clamp(-127.0, 127.0)
            .to_kind(Kind::Int8);
        let scale = scale.squeeze_dim(-1);
        Ok(Linear::Int8 {
            q,
            scales: scale.to_kind(act),
            scales_f32: scale,
        })
    }

    /// int8 layers' rows stacked, as fused projections need (their scales are per row).
    pub fn cat_int8(parts: &[Linear]) -> Result<Self> {
        let mut q = Vec::with_capacity(parts.len());
        let mut scales = Vec::with_capacity(parts.len());
        let mut scales_f32 = Vec::with_capacity(parts.len());
        for p in parts {
            let Linear::Int8 {
                q: pq,
                scales: ps,
                scales_f32: pf,
            } = p
            else {
                bail!("int8: only int8 layers can be stacked");
            };
            q.push(pq);
            scales.push(ps);
            scales_f32.push(pf);
        }
        Ok(Linear::Int8 {
            q: Tensor::f_cat(&q, 0)?,
            scales: Tensor::f_cat(&scales, 0)?,
            scales_f32: Tensor::f_cat(&scales_f32, 0)?,
        })
    }

    /// int4 from group-wise codes, packed for the CPU kernel.
    pub fn int4(codes: &Int4Codes, act: Kind) -> Result<Self> {
        let (out, inp) = dims(&codes.q)?;
        if !int4_fits(out, inp) {
            bail!("int4: a [{out}, {inp}] weight does not fit the CPU kernel's layout (rows a multiple of {INT4_BLOCK_N}, columns of {INT4_GROUP})");
        }
        let packed = codes
            .q
            .to_kind(Kind::Int)
            .f_internal_convert_weight_to_int4pack_for_cpu(2)
            .context("int4: libtorch cannot pack the weight")?;
        // (q - 8) * scale + zero = q * scale + min  =>  zero = min + 8 scale.
        let zero = &codes.min + &codes.scale * 8.0;
        let scale = codes.scale.to_kind(act);
        let zero = zero.to_kind(act);
        let scales_zeros = Tensor::stack(&[scale.tr(), zero.tr()], -1).contiguous();
        // [out, in/32] -> [out/64, 64, in/32] -> [out/64, in/32, 1, 64]
        let blocked = |t: &Tensor| {
            t.reshape([out / INT4_BLOCK_N, INT4_BLOCK_N, inp / INT4_GROUP])
                .permute([0, 2, 1])
                .unsqueeze(2)
                .contiguous()
        };
        let min = (&zero - &scale * 8.0).to_kind(act);
        Ok(Linear::Int4 {
            packed,
            scales_packed: blocked(&scale),
            zeros_packed: blocked(&min),
            scales_zeros,
            out,
            inp,
        })
    }

    /// This layer with bf16 high and low parts for products of many rows, when it is a
    /// dense f32 layer; any other layer as it is.
    pub fn with_split(self) -> Result<Linear> {
        match self {
            Linear::Dense(w) if w.kind() == Kind::Float => {
                let split = SplitWeight::new(&w)?;
                Ok(Linear::DenseSplit { w, split })
            }
            other => Ok(other),
        }
    }

    /// `x @ w.T` for `x` of shape `[.., in]`.
    pub fn apply(&self, x: &Tensor) -> Tensor {
        let (lead, rows, inp) = flatten(x);
        match self {
            Linear::Dense(w) | Linear::DenseSplit { w, .. } if rows == 1 => {
                match super::mkl::gemv_f32(w, &x.reshape([1, inp])) {
                    Some(y) => unflatten(y, lead),
                    None => x.linear::<Tensor>(w, None),
                }
            }
            Linear::Dense(w) => x.linear::<Tensor>(w, None),
            Linear::DenseSplit { w, split } => {
                let prod = (rows >= SPLIT_MIN_ROWS)
                    .then(|| split.matmul(&x.reshape([rows, inp])))
                    .flatten();
                match prod {
                    Some(y) => unflatten(y, lead),
                    None => x.linear::<Tensor>(w, None),
                }
            }
            Linear::Int8 { q, scales, .. } if rows > INT8_DENSE_ROWS => {
                // int8 times the bf16 scales promotes to bf16 in one pass.
                x.linear::<Tensor>(&(q * scales.unsqueeze(-1)), None)
            }
            Linear::Int4 { out, .. } if rows > INT4_DENSE_ROWS => {
                // Dequantised in the kernel's blocked order, then laid out as `[in, out]`
                // (one copy) for a plain matmul.
                let w_t = self
                    .dequantize_blocked()
                    .permute([1, 0, 2])
                    .reshape([inp, *out]);
                unflatten(x.reshape([rows, inp]).matmul(&w_t), lead)
            }
            _ => unflatten(self.apply_rows(&x.reshape([rows, inp]).contiguous()), lead),
        }
    }

    /// [`Linear::apply`] for a contiguous `[rows, in]` input, straight to the kernel without
    /// the reshapes: the decode step calls this four times per block, where each libtorch
    /// call around a small matmul costs a visible share of the step.
    pub fn apply_rows(&self, x: &Tensor) -> Tensor {
        let rows = x.size().first().copied().unwrap_or(0);
        match self {
            Linear::Int8 { q, scales, .. } if rows <= INT8_DENSE_ROWS => {
                x.internal_weight_int8pack_mm(q, scales)
            }
            Linear::Int4 {
                packed,
                scales_zeros,
                ..
            } if rows <= INT4_DENSE_ROWS => {
                x.internal_weight_int4pack_mm_for_cpu(packed, INT4_GROUP, scales_zeros)
            }
            // One f32 row: MKL's matrix-vector product directly (see `mkl::gemv_f32`); other
            // dtypes straight to `linear`, not through `apply`, which would try MKL again.
            Linear::Dense(w) | Linear::DenseSplit { w, .. } if rows == 1 => {
                super::mkl::gemv_f32(w, x).unwrap_or_else(|| x.linear::<Tensor>(w, None))
            }
            _ => self.apply(x),
        }
    }

    /// The weight `[out, in]` in `kind`, as the quantised form stands for it.
    pub fn dequantize(&self, kind: Kind) -> Tensor {
        match self {
            Linear::Dense(w) | Linear::DenseSplit { w, .. } => w.to_kind(kind),
            Linear::Int8 { q, scales_f32, .. } => {
                (q.to_kind(Kind::Float) * scales_f32.unsqueeze(-1)).to_kind(kind)
            }
            Linear::Int4 { out, inp, .. } => self
                .dequantize_blocked()
                .to_kind(kind)
                .permute([0, 2, 1])
                .reshape([*out, *inp]),
        }
    }

    /// An int4 weight dequantised in the kernel's blocked order, `[out/64, in, 64]`, in the
    /// activation dtype: `q * scale + (zero - 8 scale)` in one pass over the codes.
    fn dequantize_blocked(&self) -> Tensor {
        let Linear::Int4 {
            packed,
            scales_packed,
            zeros_packed,
            out,
            inp,
            ..
        } = self
        else {
            unreachable!("dequantize_blocked is for int4 layers")
        };
        let q = unpack_int4(packed, *out, *inp).view([
            out / INT4_BLOCK_N,
            inp / INT4_GROUP,
            INT4_GROUP,
            INT4_BLOCK_N,
        ]);
        zeros_packed
            .addcmul(&q, scales_packed)
            .view([out / INT4_BLOCK_N, *inp, INT4_BLOCK_N])
    }

    /// Rows `idx` (`[n]` i64) of the weight in f32, exactly as stored (f32 scales); `None`
    /// for int4. Lets a caller recompute a few outputs of a bf16 kernel in f32.
    pub fn exact_rows(&self, idx: &Tensor) -> Option<Tensor> {
        match self {
            Linear::Dense(w) | Linear::DenseSplit { w, .. } => {
                Some(w.index_select(0, idx).to_kind(Kind::Float))
            }
            Linear::Int8 { q, scales_f32, .. } => Some(
                q.index_select(0, idx).to_kind(Kind::Float)
                    * scales_f32.index_select(0, idx).unsqueeze(-1),
            ),
            Linear::Int4 { .. } => None,
        }
    }

    /// Bytes of weight a one-token step reads (codes plus scales; a split layer's f32
    /// weight, not its bf16 parts, which only prompts read).
    pub fn bytes(&self) -> i64 {
        let b = |t: &Tensor| t.numel() as i64 * t.kind().elt_size_in_bytes() as i64;
        match self {
            Linear::Dense(w) | Linear::DenseSplit { w, .. } => b(w),
            Linear::Int8 { q, scales, .. } => b(q) + b(scales),
            Linear::Int4 {
                packed,
                scales_zeros,
                ..
            } => b(packed) + b(scales_zeros),
        }
    }
}

/// The int4 CPU kernel's packing, read back as codes in its blocked order
/// `[out/64, in, 64]`: each byte of block row `k` holds output `j` (low nibble) and output
/// `j + 32` (high nibble) of that 64-row block. Checked against libtorch's packer by the
/// unit tests below, so a change of layout in a later libtorch fails them.
fn unpack_int4(packed: &Tensor, out: i64, inp: i64) -> Tensor {
    let p = packed.view([out / INT4_BLOCK_N, inp, INT4_BLOCK_N / 2]);
    let lo = p.bitwise_and(15);
    let hi = p.bitwise_right_shift_tensor_scalar(4);
    Tensor::cat(&[lo, hi], -1)
}

/// `[a, b, .., in]` -> (leading dims, rows, in).
fn flatten(x: &Tensor) -> (Vec<i64>, i64, i64) {
    let s = x.size();
    let inp = *s.last().unwrap_or(&1);
    let lead = s[..s.len().saturating_sub(1)].to_vec();
    (lead.clone(), lead.iter().product(), inp)
}

fn unflatten(y: Tensor, mut lead: Vec<i64>) -> Tensor {
    lead.push(y.size()[1]);
    y.view(lead.as_slice())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use tch::Device;

    fn weight(out: i64, inp: i64, seed: i64) -> Tensor {
        crate::model::synthetic::seeded(seed, || {
            Tensor::randn([out, inp], (Kind::Float, Device::Cpu)) * 0.05
        })
    }

    /// Largest absolute elementwise difference, for tests of numerics.
    pub(crate) fn max_abs(a: &Tensor, b: &Tensor) -> f64 {
        (a.to_kind(Kind::Float) - b.to_kind(Kind::Float))
            .abs()
            .max()
            .double_value(&[])
    }

    #[test]
    fn int4_codes_round_trip_within_half_a_step() {
        let w = weight(128, 96, 1);
        let c = Int4Codes::quantize(&w).unwrap();
        let step = c.scale.max().double_value(&[]);
        assert!(max_abs(&c.dequantize(), &w) <= step / 2.0 + 1e-6);
        // Extremes of each group are exact.
        let g = w.reshape([128, 3, 32]);
        assert!(max_abs(&c.min, &g.amin(-1, false)) < 1e-7);
    }

    #[test]
    fn unpacking_reads_libtorchs_packed_layout() {
        let c = Int4Codes::quantize(&weight(128, 64, 2)).unwrap();
        let l = Linear::int4(&c, Kind::Float).unwrap();
        let Linear::Int4 { packed, .. } = &l else {
            unreachable!()
        };
        let back = unpack_int4(packed, 128, 64)
            .permute([0, 2, 1])
            .reshape([128, 64]);
        assert!(back.to_kind(Kind::Uint8).equal(&c.q));
    }

    #[test]
    fn int4_dequantisation_matches_the_codes_and_the_kernel() {
        let c = Int4Codes::quantize(&weight(192, 128, 3)).unwrap();
        let l = Linear::int4(&c, Kind::Float).unwrap();
        let reference = c.dequantize();
        assert!(max_abs(&l.dequantize(Kind::Float), &reference) < 1e-6);
        // The kernel, the dense path and the reference agree on a few rows.
        let x = weight(3, 128, 4);
        let want = x.linear::<Tensor>(&reference, None);
        assert!(max_abs(&l.apply(&x), &want) < 1e-4);
        let many = weight(INT4_DENSE_ROWS + 1, 128, 5);
        let want = many.linear::<Tensor>(&reference, None);
        assert!(max_abs(&l.apply(&many), &want) < 1e-4);
    }

    #[test]
    fn int8_kernel_and_dense_path_agree_with_the_dequantised_weight() {
        let w = weight(48, 40, 6);
        let l = Linear::int8(&w, Kind::Float).unwrap();
        let d = l.dequantize(Kind::Float);
        let Linear::Int8 { scales, .. } = &l else {
            unreachable!()
        };
        // Half a step per row at most.
        assert!(max_abs(&d, &w) <= scales.max().double_value(&[]) / 2.0 + 1e-7);
        for rows in [2, INT8_DENSE_ROWS + 3] {
            let x = weight(rows, 40, 7);
            let want = x.linear::<Tensor>(&d, None);
            assert!(max_abs(&l.apply(&x), &want) < 1e-4, "{rows} rows");
        }
    }

    #[test]
    fn bf16_activations_take_the_kernels_too() {
        let c = Int4Codes::quantize(&weight(64, 64, 8)).unwrap();
        let l = Linear::int4(&c, Kind::BFloat16).unwrap();
        let x = weight(1, 64, 9).to_kind(Kind::BFloat16);
        let y = l.apply(&x);
        assert_eq!(y.kind(), Kind::BFloat16);
        let want = x
            .to_kind(Kind::Float)
            .linear::<Tensor>(&c.dequantize(), None);
        assert!(max_abs(&y, &want) < 0.02);
    }

    #[test]
    fn shapes_outside_the_int4_layout_are_refused_with_the_shape() {
        let c = Int4Codes::quantize(&weight(48, 64, 10)).unwrap();
        let e = Linear::int4(&c, Kind::BFloat16).err().unwrap().to_string();
        assert!(e.contains("[48, 64]"), "{e}");
        assert!(Int4Codes::quantize(&weight(64, 40, 11)).is_err());
    }
}
