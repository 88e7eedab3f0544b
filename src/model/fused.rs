//! Fused CPU loops for the one-token decode step.
//!
//! At one token per step every elementwise operation of a block touches a few hundred
//! numbers, so libtorch's per-operation cost (dispatch, type promotion, allocation, a
//! thread-pool round trip) outweighs the arithmetic: about twenty such operations per block
//! cost as much as the int4 matmuls themselves. These loops do the RMSNorm, the RoPE
//! rotation with the KV-cache write, the SwiGLU product and the residual adds in one pass
//! each, straight on the tensors' memory. Matmuls and attention stay in libtorch.
//!
//! Numerics follow libtorch's operation by operation (each intermediate rounded to the
//! tensor dtype where libtorch rounds it), so the fused and unfused paths agree to the last
//! bit (RoPE, residual adds) or, where a sum's order or `exp` differs, to an ulp of the
//! stored dtype (norm, SwiGLU); the tests below hold each loop to libtorch.

use anyhow::{bail, ensure, Result};
use half::bf16;
use tch::{Device, Kind, Tensor};

/// Element types the loops read and write: f32, and bf16 computed in f32 as libtorch does.
pub(crate) trait Elem: Copy + 'static {
    const KIND: Kind;
    fn get(self) -> f32;
    fn put(v: f32) -> Self;
    /// Rounds an f32 result to this type and back, as a libtorch op storing it would.
    fn round(v: f32) -> f32 {
        Self::put(v).get()
    }
}

impl Elem for f32 {
    const KIND: Kind = Kind::Float;
    fn get(self) -> f32 {
        self
    }
    fn put(v: f32) -> Self {
        v
    }
}

impl Elem for bf16 {
    const KIND: Kind = Kind::BFloat16;
    fn get(self) -> f32 {
        self.to_f32()
    }
    /// Round to nearest even, as libtorch's `c10::BFloat16`.
    fn put(v: f32) -> Self {
        bf16::from_f32(v)
    }
}

/// Checks that `t` is a contiguous CPU tensor of `T` with `numel` elements.
fn check<T: Elem>(t: &Tensor, numel: usize, what: &str) -> Result<()> {
    ensure!(
        t.device() == Device::Cpu && t.kind() == T::KIND && t.is_contiguous(),
        "fused decode: {what} must be a contiguous CPU {:?} tensor, got {:?} on {:?}",
        T::KIND,
        t.kind(),
        t.device()
    );
    ensure!(
        t.numel() == numel,
        "fused decode: {what} has {} elements, expected {numel}",
        t.numel()
    );
    Ok(())
}

/// The elements of `t` (checked by [`check`]).
fn view<'a, T: Elem>(t: &'a Tensor, numel: usize, what: &str) -> Result<&'a [T]> {
    check::<T>(t, numel, what)?;
    // SAFETY: `t` is a contiguous CPU tensor of `numel` elements of `T` (checked above),
    // alive for the borrow's lifetime. Callers never write to it while this slice lives.
    Ok(unsafe { std::slice::from_raw_parts(t.data_ptr() as *const T, numel) })
}

/// The elements of `t` for writing (checked by [`check`]).
fn view_mut<'a, T: Elem>(t: &'a mut Tensor, numel: usize, what: &str) -> Result<&'a mut [T]> {
    check::<T>(t, numel, what)?;
    // SAFETY: as in `view`; the `&mut Tensor` borrow, and the distinct-storage check of
    // each caller, keep any other slice of this memory from being alive meanwhile.
    Ok(unsafe { std::slice::from_raw_parts_mut(t.data_ptr() as *mut T, numel) })
}

/// Refuses two tensors that share memory (an output may not alias an input).
fn distinct(a: &Tensor, b: &Tensor) -> Result<()> {
    if a.data_ptr() == b.data_ptr() {
        bail!("fused decode: output aliases an input");
    }
    Ok(())
}

/// RMSNorm of each row of `x` (`[rows, h]`, residual dtype `R`) times `weight` (`[h]`,
/// `R`), written to `out` in its own dtype: `x * rsqrt(mean(x^2) + eps) * weight` (Zhang &
/// Sennrich 2019, eq. 4), computed in f32. As libtorch, a bf16 input is normalised, rounded
/// to bf16, then multiplied by the weight; f32 is rounded once, by the caller's `to_kind`.
pub(crate) fn rms_norm<R: Elem, O: Elem>(
    x: &Tensor,
    weight: &Tensor,
    eps: f64,
    out: &mut Tensor,
    rows: usize,
    h: usize,
) -> Result<()> {
    distinct(x, out)?;
    let xs = view::<R>(x, rows * h, "norm input")?;
    let w = view::<R>(weight, h, "norm weight")?;
    let o = view_mut::<O>(out, rows * h, "norm output")?;
    for (xr, or) in xs.chunks_exact(h).zip(o.chunks_exact_mut(h)) {
        let ss: f64 = xr.iter().map(|&v| f64::from(v.get()).powi(2)).sum();
        let mean = (ss / h as f64) as f32;
        let r = 1.0 / (mean + eps as f32).sqrt();
        for ((o, &v), &wv) in or.iter_mut().zip(xr).zip(w) {
            *o = O::put(R::round(v.get() * r) * wv.get());
        }
    }
    Ok(())
}

/// Shapes of one decode step's attention inputs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Heads {
    pub batch: usize,
    pub q: usize,
    pub kv: usize,
    pub dim: usize,
    /// Cache capacity in positions.
    pub max_len: usize,
    /// Cache column this token goes to.
    pub pos: usize,
}

/// Splits `qkv` (`[batch, (q + 2 kv) * dim]`) into heads, rotates queries and keys by the
/// rows' RoPE tables (`cos`, `sin`: `[batch, dim]`, the sine's first half negated, so the
/// rotation is `x * cos + roll(x, dim/2) * sin`; Su et al. 2021, eq. 34), writes the queries
/// to `q_out` (`[batch, q, dim]`) and the keys and values to the caches (`[batch, kv,
/// max_len, dim]`) at column `pos`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn rope_into_cache<T: Elem>(
    qkv: &Tensor,
    cos: &Tensor,
    sin: &Tensor,
    s: Heads,
    q_out: &mut Tensor,
    k_cache: &mut Tensor,
    v_cache: &mut Tensor,
) -> Result<()> {
    let Heads {
        batch,
        q,
        kv,
        dim,
        max_len,
        pos,
    } = s;
    ensure!(
        pos < max_len,
        "fused decode: position {pos} beyond the cache's {max_len}"
    );
    ensure!(dim % 2 == 0, "fused decode: odd head dimension {dim}");
    for o in [&*q_out, &*k_cache, &*v_cache] {
        distinct(qkv, o)?;
    }
    distinct(k_cache, v_cache)?;
    let width = (q + 2 * kv) * dim;
    let x = view::<T>(qkv, batch * width, "qkv")?;
    let c = view::<T>(cos, batch * dim, "cos rows")?;
    let sn = view::<T>(sin, batch * dim, "sin rows")?;
    let qo = view_mut::<T>(q_out, batch * q * dim, "query buffer")?;
    let kc = view_mut::<T>(k_cache, batch * kv * max_len * dim, "key cache")?;
    let vc = view_mut::<T>(v_cache, batch * kv * max_len * dim, "value cache")?;
    let half = dim / 2;
    // x * cos and roll(x) * sin are separate libtorch products, each rounded, then added.
    let rotate = |src: &[T], c: &[T], s: &[T], dst: &mut [T]| {
        for j in 0..dim {
            let a = T::round(src[j].get() * c[j].get());
            let b = T::round(src[(j + half) % dim].get() * s[j].get());
            dst[j] = T::put(a + b);
        }
    };
    for b in 0..batch {
        let row = &x[b * width..(b + 1) * width];
        let (cr, sr) = (&c[b * dim..(b + 1) * dim], &sn[b * dim..(b + 1) * dim]);
        for h in 0..q {
            let src = &row[h * dim..(h + 1) * dim];
            let at = (b * q + h) * dim;
            rotate(src, cr, sr, &mut qo[at..at + dim]);
        }
        for h in 0..kv {
            let at = ((b * kv + h) * max_len + pos) * dim;
            let k = &row[(q + h) * dim..(q + h + 1) * dim];
            rotate(k, cr, sr, &mut kc[at..at + dim]);
            let v = &row[(q + kv + h) * dim..(q + kv + h + 1) * dim];
            vc[at..at + dim].copy_from_slice(v);
        }
    }
    Ok(())
}

/// `x += y` for the residual stream `x` (in `R`) and a block output `y` (in `T`): libtorch
/// adds in f32 and rounds to `R`, and so does this.
pub(crate) fn add_into<R: Elem, T: Elem>(x: &mut Tensor, y: &Tensor, numel: usize) -> Result<()> {
    distinct(x, y)?;
    let ys = view::<T>(y, numel, "block output")?;
    let xs = view_mut::<R>(x, numel, "residual stream")?;
    for (a, &b) in xs.iter_mut().zip(ys) {
        *a = R::put(a.get() + b.get());
    }
    Ok(())
}

/// SwiGLU: `silu(gate) * up` for `gu` = `[rows, 2 inter]` (gate then up), into `out`
/// (`[rows, inter]`); `silu(x) = x / (1 + exp(-x))` (Shazeer 2020), rounded to `T` before
/// the product as libtorch's two operations do.
pub(crate) fn silu_mul<T: Elem>(
    gu: &Tensor,
    out: &mut Tensor,
    rows: usize,
    inter: usize,
) -> Result<()> {
    distinct(gu, out)?;
    let g = view::<T>(gu, rows * 2 * inter, "gate/up")?;
    let o = view_mut::<T>(out, rows * inter, "SwiGLU output")?;
    for (r, or) in g.chunks_exact(2 * inter).zip(o.chunks_exact_mut(inter)) {
        let (gate, up) = r.split_at(inter);
        for ((o, &a), &u) in or.iter_mut().zip(gate).zip(up) {
            let a = a.get();
            let s = T::round(a / (1.0 + (-a).exp()));
            *o = T::put(s * u.get());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::quant::tests::max_abs;

    fn rand(shape: &[i64], kind: Kind, seed: i64) -> Tensor {
        crate::model::synthetic::seeded(seed, || {
            Tensor::randn(shape, (Kind::Float, Device::Cpu)).to_kind(kind)
        })
    }

    #[test]
    fn rms_norm_matches_libtorch() {
        let x = rand(&[3, 96], Kind::Float, 1) * 4.0;
        let w = rand(&[96], Kind::Float, 2);
        let want = x.rms_norm([96], Some(&w), 1e-5);
        let mut got = Tensor::empty([3, 96], (Kind::Float, Device::Cpu));
        rms_norm::<f32, f32>(&x, &w, 1e-5, &mut got, 3, 96).unwrap();
        assert!(max_abs(&want, &got) < 1e-5, "{}", max_abs(&want, &got));
        // To bf16: libtorch's norm then one rounding; ours may differ by one bf16 ulp at
        // most where the f32 sums differ in their last bit.
        let mut got = Tensor::empty([3, 96], (Kind::BFloat16, Device::Cpu));
        rms_norm::<f32, bf16>(&x, &w, 1e-5, &mut got, 3, 96).unwrap();
        let want = want.to_kind(Kind::BFloat16);
        assert!(within_a_bf16_ulp(&want, &got));
        // bf16 in, bf16 weight, bf16 out (the bf16 model's residual stream).
        let (xb, wb) = (x.to_kind(Kind::BFloat16), w.to_kind(Kind::BFloat16));
        let want = xb.rms_norm([96], Some(&wb), 1e-5);
        let mut got = Tensor::empty([3, 96], (Kind::BFloat16, Device::Cpu));
        rms_norm::<bf16, bf16>(&xb, &wb, 1e-5, &mut got, 3, 96).unwrap();
        assert!(within_a_bf16_ulp(&want, &got));
    }

    /// Every element of `got` within one bf16 rounding step of `want`'s.
    fn within_a_bf16_ulp(want: &Tensor, got: &Tensor) -> bool {
        let want = want.to_kind(Kind::Float);
        let ulp = (want.abs() / 128.0).clamp_min(1e-30);
        let off = ((&want - got.to_kind(Kind::Float)).abs() - ulp)
            .max()
            .double_value(&[]);
        off <= 0.0
    }

    /// The rotation of the unfused path, on the same inputs.
    fn rope_reference(x: &Tensor, c: &Tensor, s: &Tensor, hd: i64) -> Tensor {
        x * c + x.roll([hd / 2], [-1]) * s
    }

    fn rope_case(kind: Kind) {
        let (b, q, kv, hd, max_len, pos) = (2usize, 3usize, 1usize, 8usize, 5usize, 3usize);
        let width = ((q + 2 * kv) * hd) as i64;
        let qkv = rand(&[b as i64, width], kind, 3);
        let c = rand(&[b as i64, hd as i64], kind, 4);
        let s = rand(&[b as i64, hd as i64], kind, 5);
        let opts = (kind, Device::Cpu);
        let mut qo = Tensor::zeros([b as i64, q as i64, hd as i64], opts);
        let cache_shape = [b as i64, kv as i64, max_len as i64, hd as i64];
        let mut kc = Tensor::zeros(cache_shape, opts);
        let mut vc = Tensor::zeros(cache_shape, opts);
        let heads = Heads {
            batch: b,
            q,
            kv,
            dim: hd,
            max_len,
            pos,
        };
        let run = |qo: &mut Tensor, kc: &mut Tensor, vc: &mut Tensor| {
            if kind == Kind::Float {
                rope_into_cache::<f32>(&qkv, &c, &s, heads, qo, kc, vc)
            } else {
                rope_into_cache::<bf16>(&qkv, &c, &s, heads, qo, kc, vc)
            }
        };
        run(&mut qo, &mut kc, &mut vc).unwrap();
        let heads_of = |from: usize, n: usize| {
            qkv.narrow(1, (from * hd) as i64, (n * hd) as i64)
                .view([b as i64, n as i64, hd as i64])
        };
        let (cu, su) = (c.unsqueeze(1), s.unsqueeze(1));
        let hd = hd as i64;
        assert!(qo.equal(&rope_reference(&heads_of(0, q), &cu, &su, hd)));
        let k_want = rope_reference(&heads_of(q, kv), &cu, &su, hd);
        assert!(kc.select(2, pos as i64).equal(&k_want));
        assert!(vc.select(2, pos as i64).equal(&heads_of(q + kv, kv)));
        // Other columns untouched.
        assert_eq!(kc.abs().sum(Kind::Double).double_value(&[]), {
            k_want.abs().sum(Kind::Double).double_value(&[])
        });
    }

    #[test]
    fn rope_matches_libtorch_bit_for_bit() {
        rope_case(Kind::Float);
        rope_case(Kind::BFloat16);
    }

    #[test]
    fn silu_mul_and_residual_add_match_libtorch() {
        for kind in [Kind::Float, Kind::BFloat16] {
            let gu = rand(&[2, 40], kind, 6) * 3.0;
            let want = gu.narrow(1, 0, 20).silu() * gu.narrow(1, 20, 20);
            let mut got = Tensor::empty([2, 20], (kind, Device::Cpu));
            if kind == Kind::Float {
                silu_mul::<f32>(&gu, &mut got, 2, 20).unwrap();
                assert!(max_abs(&want, &got) < 1e-5);
            } else {
                silu_mul::<bf16>(&gu, &mut got, 2, 20).unwrap();
                // exp may differ from libtorch's in the last f32 bit: at most one bf16 ulp.
                assert!(within_a_bf16_ulp(&want, &got));
            }
            let mut x = rand(&[2, 20], Kind::Float, 7);
            let want = &x + &got;
            if kind == Kind::Float {
                add_into::<f32, f32>(&mut x, &got, 40).unwrap();
            } else {
                add_into::<f32, bf16>(&mut x, &got, 40).unwrap();
                // A bf16 residual stream: the sum rounded to bf16, as libtorch's `+=`.
                let mut xb = rand(&[2, 20], Kind::BFloat16, 11);
                let want = &xb + &got;
                add_into::<bf16, bf16>(&mut xb, &got, 40).unwrap();
                assert!(xb.equal(&want));
            }
            assert!(x.equal(&want));
        }
    }

    #[test]
    fn wrong_inputs_are_refused_not_read() {
        let x = rand(&[2, 8], Kind::Float, 8);
        let w = rand(&[8], Kind::Float, 9);
        let mut out = Tensor::empty([2, 8], (Kind::BFloat16, Device::Cpu));
        // Wrong dtype for the output type asked for.
        assert!(rms_norm::<f32, f32>(&x, &w, 1e-5, &mut out, 2, 8).is_err());
        // Wrong size.
        assert!(rms_norm::<f32, bf16>(&x, &w, 1e-5, &mut out, 3, 8).is_err());
        // Not contiguous.
        let xt = rand(&[8, 2], Kind::Float, 10).transpose(0, 1);
        assert!(rms_norm::<f32, bf16>(&xt, &w, 1e-5, &mut out, 2, 8).is_err());
        // Aliasing.
        let mut same = x.shallow_clone();
        assert!(add_into::<f32, f32>(&mut same, &x, 16).is_err());
    }
}
