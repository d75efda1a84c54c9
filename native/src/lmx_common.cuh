// Shared device helpers of the LocalMxfp4 kernels: the exact MXFP4 numerics of the C# reference
// (E8M0.FromAmax, E8M0.InverseScale, the doubled-E2M1 codes) and the nibble → int8 table lookup.
#pragma once
#include <cuda_bf16.h>
#include <stdint.h>

#define LMX_KERNEL extern "C" __global__

namespace lmx {

// Scale rules, numbered as LocalMxfp4.Numerics.Mxfp4.ScaleRule.
constexpr int kRuleFloor = 0;
constexpr int kRuleEven = 1;
constexpr int kRuleRoundUp = 2;

// E8M0 byte for a block whose largest magnitude has the (sign-cleared, finite) float bits `bits`.
// Same arithmetic as E8M0.FromAmax: floor(log2 amax) − 2, plus one binade for Even (m ≥ 1.75) or RoundUp (m > 1.5),
// clamped to [0, 254]; amax = 0 gives 0. Subnormal amax is normalised first.
__device__ __forceinline__ int e8m0_from_amax_bits(uint32_t bits, int rule) {
    if (bits == 0u) return 0;
    int k;
    uint32_t fraction;
    int field = (int)(bits >> 23);
    if (field != 0) {
        k = field - 127;
        fraction = bits & 0x7FFFFFu;
    } else {
        int msb = 31 - __clz((int)bits);
        k = msb - 149;
        fraction = (bits << (23 - msb)) & 0x7FFFFFu;
    }
    int up = rule == kRuleEven ? (fraction >= 0x600000u ? 1 : 0)
           : rule == kRuleRoundUp ? (fraction > 0x400000u ? 1 : 0) : 0;
    int e = k - 2 + up + 127;
    return e < 0 ? 0 : (e > 254 ? 254 : e);
}

// 2^(127 − scale) as float (exact; scale 254 gives the subnormal 2^-127).
__device__ __forceinline__ float e8m0_inverse(int scale) {
    int e = 127 - scale;  // in [-127, 127]
    return e >= -126 ? __int_as_float((e + 127) << 23) : __int_as_float(0x00400000);
}

// 2^(scale − 127) as float (0xFF is NaN, 0 is the subnormal 2^-127).
__device__ __forceinline__ float e8m0_value(int scale) {
    return scale == 255 ? __int_as_float(0x7FC00000) : (scale == 0 ? __int_as_float(0x00400000) : __int_as_float(scale << 23));
}

// E2M1 magnitude code (0..7) of |v| already divided by the scale: round to nearest, ties to the even code, saturate.
__device__ __forceinline__ int e2m1_code(float m) {
    return (m > 0.25f) + (m >= 0.75f) + (m > 1.25f) + (m >= 1.75f) + (m > 2.5f) + (m >= 3.5f) + (m > 5.0f);
}

// Code c ↦ 2·value: c for c ≤ 4, then 6, 8, 12.
__device__ __forceinline__ int e2m1_doubled(int code) {
    return code + max(code - 4, 0) + 2 * max(code - 6, 0);
}

// The factor of one block product, 2^(ea+ew−256), built from bits as the C# kernels do: exponent field
// clamp(ea + ew − 129, 0, 254); an activation NaN scale (0xFF) gives NaN.
__device__ __forceinline__ float block_factor(int ea, int ew) {
    int e = ea + ew - 129;
    e = e < 0 ? 0 : (e > 254 ? 254 : e);
    float f = __int_as_float(e << 23);
    return ea == 255 ? __int_as_float(0x7FC00000) : f;
}

// Eight E2M1 nibbles (element 8i+n in nibble n of the little-endian word) → two words of four doubled int8 values:
// .x = elements 0,2,4,6 (low nibbles), .y = elements 1,3,5,7 (high nibbles). Table lookups through byte permutes:
// the low three bits of a nibble pick the magnitude entry, bit 3 picks the positive or negative half of the table.
__device__ __forceinline__ int2 nibbles_to_int8(uint32_t q) {
    const uint32_t t0 = 0x03020100u, t1 = 0x0C080604u;  // 0 1 2 3 | 4 6 8 12
    const uint32_t t2 = 0xFDFEFF00u, t3 = 0xF4F8FAFCu;  // 0 −1 −2 −3 | −4 −6 −8 −12
    uint32_t select = 0x32103210u | ((q & 0x88888888u) >> 1);
    uint32_t low0 = __byte_perm(t0, t1, q & 0x7777u);
    uint32_t high0 = __byte_perm(t2, t3, q & 0x7777u);
    uint32_t first = __byte_perm(low0, high0, select & 0xFFFFu);
    uint32_t low1 = __byte_perm(t0, t1, (q >> 16) & 0x7777u);
    uint32_t high1 = __byte_perm(t2, t3, (q >> 16) & 0x7777u);
    uint32_t second = __byte_perm(low1, high1, (select >> 16) & 0xFFFFu);
    return make_int2((int)__byte_perm(first, second, 0x6420u), (int)__byte_perm(first, second, 0x7531u));
}

// 16 bytes of streamed weights: not kept in L1 (each byte is used once per token).
__device__ __forceinline__ uint4 load_stream_16(const void* p) {
    uint4 v;
    asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];"
                 : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(p));
    return v;
}

// Programmatic dependent launch (Hopper+): a kernel launched with programmatic stream serialization may start while its
// predecessor finishes; pdl_wait() blocks until every prerequisite grid has completed and its memory is visible, so each
// kernel calls it before touching anything an earlier kernel wrote (and may prefetch weights before it). pdl_trigger()
// lets the next kernel be scheduled. Both are no-ops without a programmatic dependency, and before sm_90.
__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

__device__ __forceinline__ void pdl_trigger() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xFFFFFFFFu, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xFFFFFFFFu, v, o));
    return v;
}

__device__ __forceinline__ double warp_sum_double(double v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xFFFFFFFFu, v, o);
    return v;
}

__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }
__device__ __forceinline__ void store_kv(float* p, float v) { *p = v; }
__device__ __forceinline__ void store_kv(__nv_bfloat16* p, float v) { *p = __float2bfloat16_rn(v); }

}  // namespace lmx
