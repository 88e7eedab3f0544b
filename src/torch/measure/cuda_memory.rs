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
