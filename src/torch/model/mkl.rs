//! MKL routines that libtorch carries but does not expose through its operators, looked up
//! by name in libtorch_cpu (which links MKL statically and exports its symbols), through
//! the handle of the already loaded library. Each routine is checked once, on first use,
//! against libtorch's own operator on a small product; one that is missing, or whose
//! result differs, is `None`, and so is every one under `--kernels libtorch`
//! ([`set_libtorch_only`]): callers then use libtorch's operators.

use std::ffi::{c_char, c_int, c_void};
use std::sync::atomic::{AtomicBool, Ordering};
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
    /// What the start-up check found, one entry per routine: `(name, Ok | why not used)`.
    status: Vec<(&'static str, std::result::Result<(), String>)>,
}

/// `--kernels libtorch`: no MKL routine, no fused loop (see [`crate::inference::Kernels`]).
static LIBTORCH_ONLY: AtomicBool = AtomicBool::new(false);

/// Turns the routines of this module (and the fused one-token step, which asks
/// [`custom_kernels`]) off or on for the process; set once, before the model is built.
pub fn set_libtorch_only(off: bool) {
    LIBTORCH_ONLY.store(off, Ordering::Relaxed);
}

/// Whether this project's own kernels may run (`--kernels custom`, the default).
pub fn custom_kernels() -> bool {
    !LIBTORCH_ONLY.load(Ordering::Relaxed)
}

/// The handle of the loaded libtorch_cpu (`RTLD_NOLOAD`: never loads it a second time).
fn libtorch_handle() -> Option<*mut c_void> {
    // SAFETY: dlopen with RTLD_NOLOAD only returns a handle to a library already loaded.
    let h = unsafe {
        libc::dlopen(
            c"libtorch_cpu.so".as_ptr(),
            libc::RTLD_NOLOAD | libc::RTLD_LAZY,
        )
    };
    (!h.is_null()).then_some(h)
}

/// Looks a symbol up in libtorch_cpu.
fn symbol(handle: *mut c_void, name: &std::ffi::CStr) -> Option<*mut c_void> {
    // SAFETY: dlsym on a live handle only reads that library's symbol table.
    let p = unsafe { libc::dlsym(handle, name.as_ptr()) };
    (!p.is_null()).then_some(p)
}

/// Largest absolute difference between two tensors, relative to the reference's largest
/// magnitude.
fn rel_diff(got: &Tensor, want: &Tensor) -> f64 {
    let scale = want.abs().max().double_value(&[]).max(1e-12);
    (got - want).abs().max().double_value(&[]) / scale
}

/// The start-up check of each routine against libtorch on a small seeded product.
fn check(result: Option<f64>, tolerance: f64) -> std::result::Result<(), String> {
    match result {
        None => Err("not in this libtorch".into()),
        Some(d) if d <= tolerance => Ok(()),
        Some(d) => Err(format!(
            "differs from libtorch by {d:.2e} (relative) on the start-up check"
        )),
    }
}

fn mkl() -> &'static Mkl {
    static MKL: OnceLock<Mkl> = OnceLock::new();
    MKL.get_or_init(|| {
        let Some(h) = libtorch_handle() else {
            let why = || Err("libtorch_cpu is not loaded under that name".to_string());
            return Mkl {
                gemm_bf16: None,
                sgemv: None,
                sgemm_batch: None,
                set_threads: None,
                status: vec![
                    ("sgemv", why()),
                    ("sgemm_batch", why()),
                    ("gemm_bf16", why()),
                ],
            };
        };
        // SAFETY: each symbol is MKL's function of the C signature given above (MKL
        // reference: "cblas_gemm_bf16bf16f32", "?gemv", "cblas_?gemm_batch",
        // "mkl_set_num_threads_local").
        let mut m = unsafe {
            Mkl {
                gemm_bf16: symbol(h, c"cblas_gemm_bf16bf16f32")
                    .map(|p| std::mem::transmute::<*mut c_void, GemmBf16>(p)),
                sgemv: symbol(h, c"sgemv_").map(|p| std::mem::transmute::<*mut c_void, Sgemv>(p)),
                sgemm_batch: symbol(h, c"cblas_sgemm_batch")
                    .map(|p| std::mem::transmute::<*mut c_void, SgemmBatch>(p)),
                set_threads: symbol(h, c"MKL_Set_Num_Threads_Local")
                    .map(|p| std::mem::transmute::<*mut c_void, SetThreads>(p)),
                status: Vec::new(),
            }
        };
        let _g = tch::no_grad_guard();
        let gemv = check(m.sgemv.map(self_test_gemv), 1e-5);
        let batch = check(m.sgemm_batch.map(self_test_batch), 1e-5);
        // bf16 inputs: the products are exact in f32, the sums agree to f32 rounding.
        let bf16 = check(m.gemm_bf16.map(self_test_gemm_bf16), 1e-4);
        if gemv.is_err() {
            m.sgemv = None;
        }
        if batch.is_err() {
            m.sgemm_batch = None;
        }
        if bf16.is_err() {
            m.gemm_bf16 = None;
        }
        m.status = vec![("sgemv", gemv), ("sgemm_batch", batch), ("gemm_bf16", bf16)];
        m
    })
}

fn seeded_pair(seed: i64, a: &[i64], b: &[i64]) -> (Tensor, Tensor) {
    let o = (Kind::Float, Device::Cpu);
    crate::model::synthetic::seeded(seed, || (Tensor::randn(a, o), Tensor::randn(b, o)))
}

/// `sgemv_` on a `[48, 40]` weight against `linear`.
fn self_test_gemv(f: Sgemv) -> f64 {
    let (w, x) = seeded_pair(11, &[48, 40], &[1, 40]);
    // SAFETY: a contiguous f32 CPU [48, 40] weight and [1, 40] row, as `sgemv_rows` needs.
    let y = unsafe { sgemv_rows(f, &w, &x, 48, 40) };
    rel_diff(&y, &x.linear::<Tensor>(&w, None))
}

/// `cblas_sgemm_batch` on two column-major `[6, 5]ᵀ·[6, 3]` products against `matmul`.
fn self_test_batch(f: SgemmBatch) -> f64 {
    let (a, b) = seeded_pair(12, &[2, 5, 6], &[2, 3, 6]);
    let c = Tensor::zeros([2, 3, 5], (Kind::Float, Device::Cpu));
    let ptr = |t: &Tensor, i: usize, n: usize| (t.data_ptr() as *mut f32).wrapping_add(i * n);
    let pa: Vec<*const f32> = (0..2).map(|i| ptr(&a, i, 30) as *const f32).collect();
    let pb: Vec<*const f32> = (0..2).map(|i| ptr(&b, i, 18) as *const f32).collect();
    let pc: Vec<*mut f32> = (0..2).map(|i| ptr(&c, i, 15)).collect();
    let (m, n, k, ld_c, count) = (5 as c_int, 3 as c_int, 6 as c_int, 5 as c_int, 2 as c_int);
    let (one, zero) = (1.0f32, 0.0f32);
    // SAFETY: each pointer starts a matrix of the sizes given, inside its tensor.
    unsafe {
        f(
            CBLAS_COL_MAJOR,
            &CBLAS_TRANS,
            &CBLAS_NO_TRANS,
            &m,
            &n,
            &k,
            &one,
            pa.as_ptr(),
            &k,
            pb.as_ptr(),
            &k,
            &zero,
            pc.as_ptr(),
            &ld_c,
            1,
            &count,
        );
    }
    rel_diff(&c, &b.matmul(&a.transpose(1, 2)))
}

/// `cblas_gemm_bf16bf16f32` on bf16-exact `[4, 8]·[8, 3]` against the f32 product.
fn self_test_gemm_bf16(f: GemmBf16) -> f64 {
    let (a, b) = seeded_pair(13, &[4, 8], &[8, 3]);
    let (a, b) = (a.to_kind(Kind::BFloat16), b.to_kind(Kind::BFloat16));
    let c = Tensor::zeros([4, 3], (Kind::Float, Device::Cpu));
    // SAFETY: row-major contiguous [4, 8] and [8, 3] bf16 (u16 bit patterns) and a [4, 3]
    // f32 output, alive until the call returns.
    unsafe {
        f(
            CBLAS_ROW_MAJOR,
            CBLAS_NO_TRANS,
            CBLAS_NO_TRANS,
            4,
            3,
            8,
            1.0,
            a.data_ptr() as *const u16,
            8,
            b.data_ptr() as *const u16,
            3,
            0.0,
            c.data_ptr() as *mut f32,
            3,
        );
    }
    rel_diff(&c, &a.to_kind(Kind::Float).matmul(&b.to_kind(Kind::Float)))
}

/// MKL's bf16 GEMM, when this libtorch carries it, it passed its check and custom kernels
/// are on.
pub(crate) fn gemm_bf16() -> Option<GemmBf16> {
    custom_kernels().then(|| mkl().gemm_bf16).flatten()
}

/// Which custom kernels run in this process: the MKL routines that passed their start-up
/// check, or why each does not run; `fused_step` adds the fused one-token step when the
/// model uses it. `"libtorch"` under `--kernels libtorch`.
pub fn describe(fused_step: bool) -> String {
    if !custom_kernels() {
        return "libtorch".into();
    }
    let mut used = Vec::new();
    let mut not = Vec::new();
    for (name, st) in &mkl().status {
        match st {
            Ok(()) => used.push(format!("mkl {name}")),
            Err(why) => not.push(format!("mkl {name}: {why}")),
        }
    }
    if fused_step {
        used.push("fused one-token step".into());
    }
    let mut s = format!(
        "custom: {}",
        if used.is_empty() {
            "none".into()
        } else {
            used.join(", ")
        }
    );
    if !not.is_empty() {
        s.push_str(&format!(" (not used: {})", not.join("; ")));
    }
    s
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
    let Some(batch) = custom_kernels().then(|| mkl().sgemm_batch).flatten() else {
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
    let sgemv = custom_kernels().then(|| mkl().sgemv).flatten()?;
    let cpu_f32 = |t: &Tensor| t.kind() == Kind::Float && t.device() == Device::Cpu;
    let (ws, xs) = (w.size(), x.size());
    let (&[out, inp], &[1, xin]) = (&ws[..], &xs[..]) else {
        return None;
    };
    if !(cpu_f32(w) && cpu_f32(x) && w.is_contiguous() && x.is_contiguous()) || inp != xin {
        return None;
    }
    let (rows, cols) = (c_int::try_from(out).ok()?, c_int::try_from(inp).ok()?);
    use_torch_threads();
    // SAFETY: the operands were checked to be of the form `sgemv_rows` needs.
    Some(unsafe { sgemv_rows(sgemv, w, x, rows, cols) })
}

/// `w @ x` through `sgemv_` as `[1, rows]`, with the thread's MKL thread count as it is
/// (the start-up check runs it before that is set).
///
/// # Safety
/// `w` must be a contiguous f32 CPU `[rows, cols]` tensor and `x` a contiguous f32 CPU
/// `[1, cols]` one.
unsafe fn sgemv_rows(sgemv: Sgemv, w: &Tensor, x: &Tensor, rows: c_int, cols: c_int) -> Tensor {
    let y = Tensor::empty([1, rows as i64], (Kind::Float, Device::Cpu));
    let (one, zero, inc) = (1.0f32, 0.0f32, 1 as c_int);
    // SAFETY: the row-major `[rows, cols]` weight is the column-major `[cols, rows]` matrix
    // with leading dimension `cols`, so `trans = 'T'` gives `w @ x`; `x` holds `cols` and
    // `y` `rows` contiguous f32 numbers, all alive until the call returns.
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
    y
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

    #[test]
    fn every_routine_passes_its_start_up_check_here() {
        let d = describe(false);
        // libtorch 2.11 from PyPI carries all three; a failed check would say why. The bf16
        // product is required where the CPU has bf16 matrix instructions (bf16-tests).
        assert!(d.starts_with("custom: mkl sgemv, mkl sgemm_batch"), "{d}");
        if cfg!(feature = "bf16-tests") {
            assert!(
                d.starts_with("custom: mkl sgemv, mkl sgemm_batch, mkl gemm_bf16"),
                "{d}"
            );
            assert!(!d.contains("not used"), "{d}");
        }
    }
}
