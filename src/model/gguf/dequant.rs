//! Dequantisation of GGML tensor data to f32, one tight loop per block.
//!
//! Block layouts and formulas follow ggml (`ggml-common.h` block structs and
//! `dequantize_row_*` in `ggml-quants.c`); all scales are little-endian f16. The float
//! operations are done in the same order as there (and as in gguf-py's `quants.py`), so
//! results match bit for bit (checked against gguf-py vectors in the tests below).

use super::types::GgmlType;
use anyhow::{bail, Result};
use half::f16;

/// Elements per K-quant super-block (`QK_K`).
const QK_K: usize = 256;

fn f16_le(lo: u8, hi: u8) -> f32 {
    f16::from_bits(u16::from_le_bytes([lo, hi])).to_f32()
}

/// Dequantises `src` (whole blocks of `ty`, as stored in the file) into `dst`, which must
/// hold exactly the number of elements those blocks encode. Errors name the type and the
/// length mismatch; unsupported types are an error listing the supported ones.
pub fn dequantize_into(ty: GgmlType, src: &[u8], dst: &mut [f32]) -> Result<()> {
    let Some(layout) = ty.layout() else {
        bail!("unknown GGML type id {}", ty.id());
    };
    let (bs, bb) = (layout.block_size as usize, layout.block_bytes as usize);
    if !src.len().is_multiple_of(bb) || src.len() / bb * bs != dst.len() {
        bail!(
            "{} data of {} bytes does not hold {} elements ({bs} elements per {bb}-byte block)",
            ty.name(),
            src.len(),
            dst.len()
        );
    }
    match ty {
        GgmlType::F32 => f32_(src, dst),
        GgmlType::F16 => f16_(src, dst),
        GgmlType::BF16 => bf16(src, dst),
        GgmlType::Q8_0 => q8_0(src, dst),
        GgmlType::Q4_0 => q4_0(src, dst),
        GgmlType::Q4_1 => q4_1(src, dst),
        GgmlType::Q4_K => q4_k(src, dst),
        GgmlType::Q6_K => q6_k(src, dst),
        GgmlType::Other(_) => bail!(
            "unsupported quantisation type {ty} (supported: {})",
            supported_list()
        ),
    }
    Ok(())
}

/// 4-bit codes of a Q4_0 or Q4_1 tensor without going through f32: for each element its
/// nibble `q` (0..15), and per block of 32 a `scale` and `min` with `y = q * scale + min`
/// (Q4_1: `d`, `m`; Q4_0: `d`, `-8 d`). The same values [`dequantize_into`] gives, so
/// int4 execution can run a GGUF's own 4-bit weights. `None` for other types.
pub fn q4_codes(ty: GgmlType, src: &[u8]) -> Option<Q4Codes> {
    let (bb, head) = match ty {
        GgmlType::Q4_0 => (18, 2),
        GgmlType::Q4_1 => (20, 4),
        _ => return None,
    };
    let n_blocks = src.len() / bb;
    let mut out = Q4Codes {
        q: vec![0u8; n_blocks * 32],
        scale: Vec::with_capacity(n_blocks),
        min: Vec::with_capacity(n_blocks),
    };
    for (b, q) in src.chunks_exact(bb).zip(out.q.chunks_exact_mut(32)) {
        let d = f16_le(b[0], b[1]);
        out.scale.push(d);
        out.min.push(if head == 4 {
            f16_le(b[2], b[3])
        } else {
            -8.0 * d
        });
        let (lo, hi) = q.split_at_mut(16);
        for (j, (lo, hi)) in lo.iter_mut().zip(hi).enumerate() {
            *lo = b[head + j] & 0x0F;
            *hi = b[head + j] >> 4;
        }
    }
    Some(out)
}

/// What [`q4_codes`] returns: one code per element, one scale and min per 32 elements.
pub struct Q4Codes {
    pub q: Vec<u8>,
    pub scale: Vec<f32>,
    pub min: Vec<f32>,
}

/// The names of the types [`dequantize_into`] handles, comma-separated, for messages.
pub fn supported_list() -> String {
    let names: Vec<&str> = super::types::SUPPORTED_TYPES
        .iter()
        .map(|t| t.name())
        .collect();
    names.join(", ")
}

fn f32_(src: &[u8], dst: &mut [f32]) {
    for (x, y) in src.as_chunks::<4>().0.iter().zip(dst) {
        *y = f32::from_le_bytes(*x);
    }
}

fn f16_(src: &[u8], dst: &mut [f32]) {
    for (x, y) in src.as_chunks::<2>().0.iter().zip(dst) {
        *y = f16_le(x[0], x[1]);
    }
}

/// BF16 is the top half of an f32.
fn bf16(src: &[u8], dst: &mut [f32]) {
    for (x, y) in src.as_chunks::<2>().0.iter().zip(dst) {
        *y = f32::from_bits(u32::from(u16::from_le_bytes(*x)) << 16);
    }
}

/// `block_q8_0`: f16 `d`, 32 × i8 `qs`; `y = qs * d`.
fn q8_0(src: &[u8], dst: &mut [f32]) {
    let blocks = src.as_chunks::<34>().0;
    for (b, y) in blocks.iter().zip(dst.as_chunks_mut::<32>().0) {
        let d = f16_le(b[0], b[1]);
        for (j, y) in y.iter_mut().enumerate() {
            *y = f32::from(b[2 + j] as i8) * d;
        }
    }
}

/// `block_q4_0`: f16 `d`, 16 bytes of nibbles; element `j` is the low nibble of byte
/// `j` and element `j + 16` its high nibble; `y = (q - 8) * d`.
fn q4_0(src: &[u8], dst: &mut [f32]) {
    let blocks = src.as_chunks::<18>().0;
    for (b, y) in blocks.iter().zip(dst.as_chunks_mut::<32>().0) {
        let d = f16_le(b[0], b[1]);
        let (lo, hi) = y.split_at_mut(16);
        for (j, (lo, hi)) in lo.iter_mut().zip(hi).enumerate() {
            let q = b[2 + j];
            *lo = f32::from(((q & 0x0F) as i8) - 8) * d;
            *hi = f32::from(((q >> 4) as i8) - 8) * d;
        }
    }
}

/// `block_q4_1`: f16 `d`, f16 `m`, 16 bytes of nibbles (as Q4_0); `y = q * d + m`.
fn q4_1(src: &[u8], dst: &mut [f32]) {
    let blocks = src.as_chunks::<20>().0;
    for (b, y) in blocks.iter().zip(dst.as_chunks_mut::<32>().0) {
        let d = f16_le(b[0], b[1]);
        let m = f16_le(b[2], b[3]);
        let (lo, hi) = y.split_at_mut(16);
        for (j, (lo, hi)) in lo.iter_mut().zip(hi).enumerate() {
            let q = b[4 + j];
            *lo = f32::from(q & 0x0F) * d + m;
            *hi = f32::from(q >> 4) * d + m;
        }
    }
}

/// The eight 6-bit scales and mins packed in the 12 `scales` bytes of a Q4_K/Q5_K block
/// (`get_scale_min_k4` in ggml-quants.c).
fn scales_mins_k4(s: &[u8; 12]) -> ([u8; 8], [u8; 8]) {
    let mut sc = [0u8; 8];
    let mut mn = [0u8; 8];
    for j in 0..4 {
        sc[j] = s[j] & 63;
        mn[j] = s[j + 4] & 63;
        sc[j + 4] = (s[j + 8] & 0x0F) | ((s[j] >> 6) << 4);
        mn[j + 4] = (s[j + 8] >> 4) | ((s[j + 4] >> 6) << 4);
    }
    (sc, mn)
}

/// `block_q4_K` (144 bytes, 256 elements): f16 `d`, f16 `dmin`, 12 bytes of 6-bit scales
/// and mins, 128 bytes of nibbles. Each 64-element chunk `c` uses bytes `32c..32c+32`:
/// low nibbles are sub-block `2c`, high nibbles sub-block `2c+1`;
/// `y = (d * scale) * q - dmin * min`.
fn q4_k(src: &[u8], dst: &mut [f32]) {
    let blocks = src.as_chunks::<144>().0;
    for (b, y) in blocks.iter().zip(dst.as_chunks_mut::<QK_K>().0) {
        let d = f16_le(b[0], b[1]);
        let dmin = f16_le(b[2], b[3]);
        let mut packed = [0u8; 12];
        packed.copy_from_slice(&b[4..16]);
        let (sc, mn) = scales_mins_k4(&packed);
        let qs = &b[16..];
        for (c, (y, q)) in y.chunks_exact_mut(64).zip(qs.chunks_exact(32)).enumerate() {
            let d1 = d * f32::from(sc[2 * c]);
            let m1 = dmin * f32::from(mn[2 * c]);
            let d2 = d * f32::from(sc[2 * c + 1]);
            let m2 = dmin * f32::from(mn[2 * c + 1]);
            let (lo, hi) = y.split_at_mut(32);
            for ((lo, hi), &q) in lo.iter_mut().zip(hi).zip(q) {
                *lo = d1 * f32::from(q & 0x0F) - m1;
                *hi = d2 * f32::from(q >> 4) - m2;
            }
        }
    }
}

/// `block_q6_K` (210 bytes, 256 elements): 128 bytes `ql` (low 4 bits), 64 bytes `qh`
/// (high 2 bits), 16 × i8 scales (one per 16 elements), f16 `d` last. Each 128-element
/// half `n` uses `ql[64n..]`, `qh[32n..]`, scales `[8n..]`; `y = (d * scale) * (q - 32)`.
fn q6_k(src: &[u8], dst: &mut [f32]) {
    let blocks = src.as_chunks::<210>().0;
    for (b, y) in blocks.iter().zip(dst.as_chunks_mut::<QK_K>().0) {
        let d = f16_le(b[208], b[209]);
        let (ql, rest) = b.split_at(128);
        let (qh, sc) = rest.split_at(64);
        let halves = y
            .chunks_exact_mut(128)
            .zip(ql.chunks_exact(64))
            .zip(qh.chunks_exact(32))
            .zip(sc.chunks_exact(8));
        for (((y, ql), qh), sc) in halves {
            // Scale of element e of this half is sc[e / 16].
            let mut ds = [0f32; 8];
            for (ds, &s) in ds.iter_mut().zip(sc) {
                *ds = d * f32::from(s as i8);
            }
            for l in 0..32 {
                let (a, b, h) = (ql[l], ql[l + 32], qh[l]);
                let q1 = (a & 0x0F) | ((h & 3) << 4);
                let q2 = (b & 0x0F) | (((h >> 2) & 3) << 4);
                let q3 = (a >> 4) | (((h >> 4) & 3) << 4);
                let q4 = (b >> 4) | ((h >> 6) << 4);
                let is = l / 16;
                y[l] = ds[is] * f32::from(q1 as i8 - 32);
                y[l + 32] = ds[is + 2] * f32::from(q2 as i8 - 32);
                y[l + 64] = ds[is + 4] * f32::from(q3 as i8 - 32);
                y[l + 96] = ds[is + 6] * f32::from(q4 as i8 - 32);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Raw blocks and the values gguf-py's `gguf.quants.dequantize` gives for them,
    /// written by `scripts/make_gguf_vectors.py`.
    macro_rules! vectors {
        ($stem:literal) => {
            (
                &include_bytes!(concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/tests/fixtures/gguf/",
                    $stem,
                    ".bin"
                ))[..],
                &include_bytes!(concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/tests/fixtures/gguf/",
                    $stem,
                    ".f32"
                ))[..],
            )
        };
    }

    fn check_against_gguf_py(ty: GgmlType, (raw, expected): (&[u8], &[u8])) {
        let expected: Vec<f32> = expected
            .as_chunks::<4>()
            .0
            .iter()
            .map(|b| f32::from_le_bytes(*b))
            .collect();
        assert!(expected.len() >= 64, "{ty}: fixture too small");
        let mut got = vec![f32::NAN; expected.len()];
        dequantize_into(ty, raw, &mut got).unwrap();
        let mut nonzero = 0;
        for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
            // NaN payloads may differ (f16 signalling NaNs are quieted by F16C); any NaN matches.
            let same = g.to_bits() == e.to_bits() || (g.is_nan() && e.is_nan());
            assert!(
                same,
                "{ty} element {i}: got {g:e} ({:#010x}), gguf-py {e:e} ({:#010x})",
                g.to_bits(),
                e.to_bits()
            );
            nonzero += usize::from(*e != 0.0);
        }
        assert!(
            nonzero > expected.len() / 2,
            "{ty}: fixture is mostly zeros"
        );
    }

    #[test]
    fn f32_matches_gguf_py() {
        check_against_gguf_py(GgmlType::F32, vectors!("f32"));
    }

    #[test]
    fn f16_matches_gguf_py_including_specials() {
        check_against_gguf_py(GgmlType::F16, vectors!("f16"));
    }

    #[test]
    fn bf16_matches_gguf_py_including_specials() {
        check_against_gguf_py(GgmlType::BF16, vectors!("bf16"));
    }

    #[test]
    fn q8_0_matches_gguf_py() {
        check_against_gguf_py(GgmlType::Q8_0, vectors!("q8_0"));
    }

    #[test]
    fn q4_0_matches_gguf_py() {
        check_against_gguf_py(GgmlType::Q4_0, vectors!("q4_0"));
    }

    #[test]
    fn q4_1_matches_gguf_py() {
        check_against_gguf_py(GgmlType::Q4_1, vectors!("q4_1"));
    }

    #[test]
    fn q4_k_matches_gguf_py() {
        check_against_gguf_py(GgmlType::Q4_K, vectors!("q4_k"));
    }

    #[test]
    fn q6_k_matches_gguf_py() {
        check_against_gguf_py(GgmlType::Q6_K, vectors!("q6_k"));
    }

    /// Codes times scale plus min give exactly what dequantisation gives, for both types.
    #[test]
    fn q4_codes_reproduce_dequantisation() {
        for (ty, v) in [
            (GgmlType::Q4_0, vectors!("q4_0")),
            (GgmlType::Q4_1, vectors!("q4_1")),
        ] {
            let (src, _) = v;
            let c = q4_codes(ty, src).unwrap();
            let mut want = vec![0f32; c.q.len()];
            dequantize_into(ty, src, &mut want).unwrap();
            for (i, w) in want.iter().enumerate().filter(|(_, w)| w.is_finite()) {
                let got = f32::from(c.q[i]) * c.scale[i / 32] + c.min[i / 32];
                assert!(
                    (got - w).abs() <= 1e-6 * w.abs().max(1.0),
                    "{ty} element {i}"
                );
            }
        }
        assert!(q4_codes(GgmlType::Q8_0, &[0; 34]).is_none());
    }

    /// A hand-made Q4_1 block: d = 0.5, m = -1, nibbles 0..15 then 15..0.
    #[test]
    fn q4_1_hand_block() {
        let mut b = vec![0u8; 20];
        b[0..2].copy_from_slice(&f16::from_f32(0.5).to_bits().to_le_bytes());
        b[2..4].copy_from_slice(&f16::from_f32(-1.0).to_bits().to_le_bytes());
        for j in 0..16u8 {
            b[4 + j as usize] = j | ((15 - j) << 4);
        }
        let mut y = [0f32; 32];
        dequantize_into(GgmlType::Q4_1, &b, &mut y).unwrap();
        assert_eq!(y[0], -1.0);
        assert_eq!(y[15], 6.5);
        assert_eq!(y[16], 6.5);
        assert_eq!(y[31], -1.0);
    }

    #[test]
    fn length_mismatch_and_unsupported_types_are_errors() {
        let mut y = [0f32; 32];
        let e = dequantize_into(GgmlType::Q8_0, &[0u8; 33], &mut y)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("Q8_0 data of 33 bytes does not hold 32 elements"),
            "{e}"
        );
        let e = dequantize_into(GgmlType::Q4_0, &[0u8; 18], &mut y[..16])
            .unwrap_err()
            .to_string();
        assert!(e.contains("does not hold 16 elements"), "{e}");
        let e = dequantize_into(GgmlType::Other(13), &[0u8; 176], &mut [0f32; 256])
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "unsupported quantisation type Q5_K (supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K, Q6_K)"
        );
        let e = dequantize_into(GgmlType::Other(5), &[], &mut [])
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown GGML type id 5"), "{e}");
    }
}
