//! Peak CUDA memory held by tensors: the caching allocator's own peak of allocated bytes
//! (not its reserve, not the CUDA context), as `torch.cuda.max_memory_allocated` reports
//! it. tch has no binding for the allocator's statistics; build.rs compiles a small C++
//! shim (`cuda_memory.cpp`) against libtorch's headers when libtorch has CUDA.

#[cfg(profiler_cuda_stats)]
extern "C" {
    fn profiler_cuda_peak_allocated(device: i32, peak: *mut i64) -> i32;
}

/// Whether this build can read the CUDA allocator's statistics at all.
pub fn available() -> bool {
    cfg!(profiler_cuda_stats)
}

/// Peak bytes allocated on CUDA device `index` since the process started; `None` when this
/// build has no CUDA statistics or the device is not there (no GPU, CUDA not initialised).
pub fn peak_allocated_bytes(index: usize) -> Option<u64> {
    #[cfg(profiler_cuda_stats)]
    {
        let device = i32::try_from(index).ok()?;
        let mut peak = -1i64;
        // SAFETY: the shim writes one i64 through `peak` and catches every C++ exception.
        let rc = unsafe { profiler_cuda_peak_allocated(device, &mut peak) };
        if rc == 0 {
            return u64::try_from(peak).ok();
        }
        None
    }
    #[cfg(not(profiler_cuda_stats))]
    {
        let _ = index;
        None
    }
}

/// `cudaMemGetInfo`'s free bytes on `device` (what the driver can still hand out, other
/// processes' use taken off); `None` off CUDA or where the CUDA runtime libtorch loaded does
/// not answer. Looked up among the loaded libraries, so no CUDA headers are needed.
pub fn free_bytes(device: tch::Device) -> Option<u64> {
    let tch::Device::Cuda(index) = device else {
        return None;
    };
    type MemGetInfo = unsafe extern "C" fn(free: *mut usize, total: *mut usize) -> i32;
    type GetDevice = unsafe extern "C" fn(device: *mut i32) -> i32;
    type SetDevice = unsafe extern "C" fn(device: i32) -> i32;
    let sym = |name: &std::ffi::CStr| {
        // SAFETY: dlsym with RTLD_DEFAULT only reads the loaded libraries' symbol tables.
        let p = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
        (!p.is_null()).then_some(p)
    };
    // SAFETY: the CUDA runtime's functions of these C signatures (CUDA Runtime API
    // reference: cudaMemGetInfo, cudaGetDevice, cudaSetDevice).
    let (info, get, set) = unsafe {
        (
            std::mem::transmute::<*mut libc::c_void, MemGetInfo>(sym(c"cudaMemGetInfo")?),
            std::mem::transmute::<*mut libc::c_void, GetDevice>(sym(c"cudaGetDevice")?),
            std::mem::transmute::<*mut libc::c_void, SetDevice>(sym(c"cudaSetDevice")?),
        )
    };
    let want = i32::try_from(index).ok()?;
    let (mut free, mut total, mut current) = (0usize, 0usize, 0i32);
    // SAFETY: plain runtime calls writing through valid pointers; the thread's current
    // device is put back as it was.
    unsafe {
        if get(&mut current) != 0 {
            return None;
        }
        if current != want && set(want) != 0 {
            return None;
        }
        let rc = info(&mut free, &mut total);
        if current != want {
            set(current);
        }
        (rc == 0).then_some(free as u64)
    }
}

/// The peak for a run on `device`; `None` off CUDA.
pub fn peak_for(device: tch::Device) -> Option<u64> {
    match device {
        tch::Device::Cuda(i) => peak_allocated_bytes(i),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind, Tensor};

    /// Where libtorch has CUDA (the project's torch does) the shim must be built and
    /// linked; without a GPU it answers `None` instead of failing.
    #[test]
    fn statistics_are_built_and_answer_without_a_gpu() {
        if option_env!("PROFILER_LIBTORCH_CUDA").is_some() {
            assert!(available(), "the CUDA statistics shim was not built");
        }
        assert_eq!(peak_for(Device::Cpu), None);
        if !tch::Cuda::is_available() {
            assert_eq!(peak_allocated_bytes(0), None);
            assert_eq!(peak_allocated_bytes(usize::MAX), None);
        }
    }

    /// On a GPU the peak covers a 64 MiB tensor allocated here.
    #[test]
    #[cfg_attr(
        not(feature = "gpu-tests"),
        ignore = "needs a CUDA GPU (scripts/test turns on gpu-tests where nvidia-smi lists one)"
    )]
    fn peak_counts_a_tensor_on_the_gpu() {
        assert!(
            tch::Cuda::is_available(),
            "gpu-tests is on but CUDA is unavailable"
        );
        let t = Tensor::zeros([16 << 20], (Kind::Float, Device::Cuda(0)));
        tch::Cuda::synchronize(0);
        let peak = peak_allocated_bytes(0).expect("a peak on CUDA device 0");
        assert!(peak >= 64 << 20, "peak {peak} below the 64 MiB tensor");
        drop(t);
        assert!(
            peak_allocated_bytes(0).unwrap() >= peak,
            "a peak never shrinks"
        );
    }
}
