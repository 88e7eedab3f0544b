//! MKL routines that libtorch carries but does not expose through its operators, looked up
//! by name among the loaded libraries (libtorch_cpu links MKL statically and exports its
//! symbols). Each lookup is `None` on a libtorch built without MKL; callers then fall back
//! to libtorch's operators.

use std::ffi::{c_char, c_int, c_void};
use std::sync::OnceLock;
use tch::{Device, Kind, Tensor};

/// `cblas_gemm_bf16bf16f32` (LP64): `C = alpha·op(A)·op(B) + beta·C`, A and B bf16 (as
/// `u16` bit patterns), C f32.
pub(crate) type GemmBf16 = unsafe extern "C" fn(
    layout: c_int,
    transa: c_int,
    transb: c_int,
    m: c_int,
    n: c_int,
    k: c_int,
    alpha: f32,
    a: *const u16,
    lda: c_int,
    b: *const u16,
    ldb: c_int,
    beta: f32,
    c: *mut f32,
    ldc: c_int,
);

/// `sgemv_`, the Fortran BLAS interface (column-major, every argument by pointer; libtorch
/// exports no `cblas_sgemv`): `y = alpha·op(A)·x + beta·y`.
type Sgemv = unsafe extern "C" fn(
    trans: *const c_char,
    m: *const c_int,
    n: *const c_int,
    alpha: *const f32,
    a: *const f32,
    lda: *const c_int,
    x: *const f32,
    incx: *const c_int,
    beta: *const f32,
    y: *mut f32,
    incy: *const c_int,
);

/// `cblas_sgemm_batch` (LP64): for each group of products sharing sizes and flags,
/// `C_i = alpha·op(A_i)·op(B_i) + beta·C_i`, the matrices given by arrays of pointers.
type SgemmBatch = unsafe extern "C" fn(
    layout: c_int,
    transa: *const c_int,
    transb: *const c_int,
    m: *const c_int,
    n: *const c_int,
    k: *const c_int,
    alpha: *const f32,
    a: *const *const f32,
    lda: *const c_int,
    b: *const *const f32,
    ldb: *const c_int,
    beta: *const f32,
    c: *const *mut f32,
    ldc: *const c_int,
    group_count: c_int,
    group_size: *const c_int,
);

/// `MKL_Set_Num_Threads_Local` (the C entry point; the lower-case symbol is the Fortran one,
/// which takes a pointer): the thread count for MKL calls from this thread.
type SetThreads = unsafe extern "C" fn(n: c_int) -> c_int;

pub(crate) const CBLAS_ROW_MAJOR: c_int = 101;
const CBLAS_COL_MAJOR: c_int = 102;
pub(crate) const CBLAS_NO_TRANS: c_int = 111;
pub(crate) const CBLAS_TRANS: c_int = 112;

struct Mkl {
    gemm_bf16: Option<GemmBf16>,
    sgemv: Option<Sgemv>,
    sgemm_batch: Option<SgemmBatch>,
    set_threads: Option<SetThreads>,
}

/// Looks a symbol up among the libraries already loaded.
fn symbol(name: &std::ffi::CStr) -> Option<*mut c_void> {
    // SAFETY: dlsym with RTLD_DEFAULT only reads the loaded libraries' symbol tables.
    let p = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
    (!p.is_null()).then_some(p)
}

fn mkl() -> &'static Mkl {
    static MKL: OnceLock<Mkl> = OnceLock::new();
    MKL.get_or_init(|| {
        // SAFETY: each symbol is MKL's function of the C signature given above (MKL
        // reference: "cblas_gemm_bf16bf16f32", "?gemv", "cblas_?gemm_batch",
        // "mkl_set_num_threads_local").
        unsafe {
            Mkl {
                gemm_bf16: symbol(c"cblas_gemm_bf16bf16f32")
                    .map(|p| std::mem::transmute::<*mut c_void, GemmBf16>(p)),
                sgemv: symbol(c"sgemv_").map(|p| std::mem::transmute::<*mut c_void, Sgemv>(p)),
                sgemm_batch: symbol(c"cblas_sgemm_batch")
                    .map(|p| std::mem::transmute::<*mut c_void, SgemmBatch>(p)),
                set_threads: symbol(c"MKL_Set_Num_Threads_Local")
                    .map(|p| std::mem::transmute::<*mut c_void, SetThreads>(p)),
            }
        }
    })
}

/// MKL's bf16 GEMM, when this libtorch carries it.
pub(crate) fn gemm_bf16() -> Option<GemmBf16> {
    mkl().gemm_bf16
}

/// Gives MKL calls from this thread libtorch's thread count (MKL keeps its own setting per
/// thread, and the inference thread is not the one libtorch configured).
pub(crate) fn use_torch_threads() {
    if let Some(set) = mkl().set_threads {
        // SAFETY: plain MKL call taking an integer.
        unsafe { set(tch::get_num_threads().max(1)) };
    }
}

/// Column-major products `C_i[m, n] = op(A_i)·op(B_i)` (`beta = 0`) of one shape, for
/// every `i`, in one call to MKL's `cblas_sgemm_batch` with libtorch's thread count: MKL
/// shares the products among its threads, which a loop of small calls cannot (for one decode
/// step's attention, 1.3 % shorter steps than one single-threaded `sgemm_` per product).
/// `false`, having written nothing, when MKL is missing or the arrays' lengths differ.
///
/// # Safety
/// Every `a[i]`, `b[i]` and `c[i]` must hold the matrices that the sizes, transposition
/// flags and leading dimensions describe, each `c[i]` writable and overlapping nothing else.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn sgemm_batch(
    trans_a: bool,
    trans_b: bool,
    m: c_int,
    n: c_int,
    k: c_int,
    a: &[*const f32],
    lda: c_int,
    b: &[*const f32],
    ldb: c_int,
    c: &[*mut f32],
    ldc: c_int,
) -> bool {
    let Some(batch) = mkl().sgemm_batch else {
        return false;
    };
    let Ok(count) = c_int::try_from(a.len()) else {
        return false;
    };
    if b.len() != a.len() || c.len() != a.len() {
        return false;
    }
    let flag = |t: bool| if t { CBLAS_TRANS } else { CBLAS_NO_TRANS };
    let (ta, tb) = (flag(trans_a), flag(trans_b));
    let (one, zero) = (1.0f32, 0.0f32);
    use_torch_threads();
    batch(
        CBLAS_COL_MAJOR,
        &ta,
        &tb,
        &m,
        &n,
        &k,
        &one,
        a.as_ptr(),
        &lda,
        b.as_ptr(),
        &ldb,
        &zero,
        c.as_ptr(),
        &ldc,
        1,
        &count,
    );
    true
}

/// `w @ x` for a contiguous f32 CPU weight `[out, in]` and one f32 CPU row `x` (`[1, in]`),
/// as `[1, out]`, through MKL's matrix-vector product; `None` when the operands are not of
/// that form or MKL is missing (the caller then uses libtorch's `linear`).
///
/// A one-token step is bound by reading the weights. With the model's shapes, MKL's
/// matrix-vector product called directly reads them faster than libtorch's `linear` (all
/// of a SmolLM2-135M step's products back to back on a 2-core Xeon: 20.6 against 22.2 ms;
/// in the decode step, interleaved A/B: 1.7 % shorter steps).
pub(crate) fn gemv_f32(w: &Tensor, x: &Tensor) -> Option<Tensor> {
    let sgemv = mkl().sgemv?;
    let cpu_f32 = |t: &Tensor| t.kind() == Kind::Float && t.device() == Device::Cpu;
    let (ws, xs) = (w.size(), x.size());
    let (&[out, inp], &[1, xin]) = (&ws[..], &xs[..]) else {
        return None;
    };
    if !(cpu_f32(w) && cpu_f32(x) && w.is_contiguous() && x.is_contiguous()) || inp != xin {
        return None;
    }
    let (rows, cols) = (c_int::try_from(out).ok()?, c_int::try_from(inp).ok()?);
    let y = Tensor::empty([1, out], (Kind::Float, Device::Cpu));
    let (one, zero, inc) = (1.0f32, 0.0f32, 1 as c_int);
    use_torch_threads();
    // SAFETY: the row-major `[out, in]` weight is the column-major `[in, out]` matrix with
    // leading dimension `in`, so `trans = 'T'` gives `w @ x`; `x` holds `in` and `y` `out`
    // contiguous f32 numbers, all alive until the call returns.
    unsafe {
        sgemv(
            c"T".as_ptr(),
            &cols,
            &rows,
            &one,
            w.data_ptr() as *const f32,
            &cols,
            x.data_ptr() as *const f32,
            &inc,
            &zero,
            y.data_ptr() as *mut f32,
            &inc,
        );
    }
    Some(y)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gemv_matches_libtorch_linear() {
        let o = (Kind::Float, Device::Cpu);
        let (w, x) = crate::model::synthetic::seeded(7, || {
            (Tensor::randn([300, 77], o), Tensor::randn([1, 77], o))
        });
        let got = gemv_f32(&w, &x).expect("libtorch carries MKL's sgemv");
        let want = x.linear::<Tensor>(&w, None);
        assert_eq!(got.size(), [1, 300]);
        let diff = (got - &want).abs().max().double_value(&[]);
        assert!(diff < 1e-4, "largest difference {diff}");
        // Not the form it handles: two rows, a transposed weight, another dtype.
        assert!(gemv_f32(&w, &Tensor::randn([2, 77], o)).is_none());
        assert!(gemv_f32(&w.tr().contiguous().tr(), &x).is_none());
        assert!(gemv_f32(&w.to_kind(Kind::Double), &x.to_kind(Kind::Double)).is_none());
    }

    #[test]
    fn batched_products_match_libtorch() {
        let o = (Kind::Float, Device::Cpu);
        // Row-major a_i [5, 7] and b_i [4, 7]: column-major they are [7, 5] and [7, 4], and
        // C_i = a_iᵀ·b_i (column-major [5, 4]) is row-major [4, 5] = b_i·a_iᵀ.
        let (a, b) = crate::model::synthetic::seeded(8, || {
            (Tensor::randn([3, 5, 7], o), Tensor::randn([3, 4, 7], o))
        });
        let c = Tensor::full([3, 4, 5], f64::NAN, o);
        let ptr = |t: &Tensor, i: usize| {
            (t.data_ptr() as *mut f32).wrapping_add(i * t.size()[1] as usize * 7)
        };
        let pa: Vec<*const f32> = (0..3).map(|i| ptr(&a, i) as *const f32).collect();
        let pb: Vec<*const f32> = (0..3).map(|i| ptr(&b, i) as *const f32).collect();
        let pc: Vec<*mut f32> = (0..3)
            .map(|i| (c.data_ptr() as *mut f32).wrapping_add(i * 20))
            .collect();
        // SAFETY: each pointer starts a matrix of the sizes given, inside its tensor.
        assert!(unsafe { sgemm_batch(true, false, 5, 4, 7, &pa, 7, &pb, 7, &pc, 5) });
        let want = b.matmul(&a.transpose(1, 2));
        let diff = (&c - want).abs().max().double_value(&[]);
        assert!(diff < 1e-5, "largest difference {diff}");
        // Arrays of different lengths are refused before MKL sees them.
        // SAFETY: nothing is read or written when refused.
        assert!(!unsafe { sgemm_batch(true, false, 5, 4, 7, &pa[..2], 7, &pb, 7, &pc, 5) });
    }
}
