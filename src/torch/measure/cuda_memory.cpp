// Peak bytes allocated by libtorch's CUDA caching allocator, read from the allocator's own
// statistics (what Python's torch.cuda.max_memory_allocated reports). tch has no binding
// for them, so build.rs compiles this file against libtorch's headers. It goes through
// c10's device-generic allocator interface, so no CUDA headers are needed; plain C
// functions, and no exception crosses into Rust.
#include <c10/core/CachingDeviceAllocator.h>

#include <cstdint>

extern "C" int profiler_cuda_peak_allocated(int device, int64_t* peak) {
  try {
    const auto stats = c10::getDeviceAllocator(c10::DeviceType::CUDA)
                           ->getDeviceStats(static_cast<c10::DeviceIndex>(device));
    const auto aggregate =
        static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE);
    *peak = stats.allocated_bytes[aggregate].peak;
    return 0;
  } catch (...) {
    return -1;
  }
}
