// Blackwell GeForce/workstation (sm_120a) W4A4 GEMM on the native block-scaled FP4 tensor cores:
// mma.sync.aligned.m16n8k64.row.col.kind::mxf4.block_scale.scale_vec::2X.f32.e2m1.e2m1.f32.ue8m0.
// Compiled only for sm_120a (nvcc ≥ 12.8) into its own fatbin and selected at run time by compute capability 12.x.
// NOT RUN: the project's GPU machine is a Hopper H100; this kernel is compiled and disassembled there, and the scale
// layout it reads (Sm120ScaleLayout in LocalMxfp4.Cuda) is unit-tested on the CPU.
//
// Operands in our own MXFP4 planes, no repacking of elements: a 32-bit word of packed nibbles at byte 4t of a block holds
// elements 8t..8t+7 in ascending nibbles, which is the fragment order of the instruction (lane = 4g + t):
//   A (tokens, row-major): a0 = row g, k ∈ [8t, 8t+8) → block 2s, bytes 4t..4t+3; a1 = row g+8; a2/a3 = block 2s+1.
//   B (weights, "col"):    b0 = weight row g, block 2s, bytes 4t..4t+3; b1 = block 2s+1.
//   Scales, scale_vec::2X: a 32-bit register holds the E8M0 bytes of 4 consecutive blocks (K = 128) of one row, i.e.
//   one aligned word of the [rows, paddedBlocks] plane; byte-id 0 selects blocks 0,1 (first k64 step), byte-id 2 blocks 2,3.
//   thread-id-a 0: lane t = 0 supplies row g, lane t = 1 row g+8; thread-id-b 0: lane t = 0 supplies column g.
#include "lmx_common.cuh"

template <int ByteId>
__device__ __forceinline__ void mma_mxf4(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2], uint32_t sfa, uint32_t sfb) {
#if defined(__CUDA_ARCH_FEAT_SM120_ALL) || defined(__CUDA_ARCH_FEAT_SM121_ALL)
    asm volatile(
        "mma.sync.aligned.m16n8k64.row.col.kind::mxf4.block_scale.scale_vec::2X.f32.e2m1.e2m1.f32.ue8m0 "
        "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3}, %10, {%12, %13}, %11, {%12, %13};"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "r"(sfa), "r"(sfb), "n"(ByteId), "n"(0));
#else
    __trap();
#endif
}

// Y[t, r] (+)= Σ_k A[t, k]·W[r, k] with both operands MXFP4 (packed [n, paddedBlocks, 16] + E8M0 [n, paddedBlocks]).
// One warp per 16 tokens × 8 rows; a CTA of 4 warps covers 16 tokens × 32 rows. grid (ceil(rows/32), ceil(tokens/16)).
LMX_KERNEL void __launch_bounds__(128) lmx_gemm_mxf4_sm120(
    const uint8_t* __restrict__ wPacked, const uint8_t* __restrict__ wScales, int rows, int paddedBlocks,
    const uint8_t* __restrict__ aPacked, const uint8_t* __restrict__ aScales, int tokens,
    float* __restrict__ y, int yStride, int accumulate) {
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int g = lane >> 2, t = lane & 3;
    const int tok0 = blockIdx.y * 16, row0 = blockIdx.x * 32 + warp * 8;
    const int tokA = min(tok0 + g, tokens - 1), tokB = min(tok0 + g + 8, tokens - 1);
    const int wrow = min(row0 + g, rows - 1);
    const uint8_t* a0p = aPacked + (size_t)tokA * paddedBlocks * 16;
    const uint8_t* a1p = aPacked + (size_t)tokB * paddedBlocks * 16;
    const uint8_t* bp = wPacked + (size_t)wrow * paddedBlocks * 16;
    const uint32_t* sfaRow = reinterpret_cast<const uint32_t*>(aScales + (size_t)(t == 0 ? tokA : tokB) * paddedBlocks);
    const uint32_t* sfbRow = reinterpret_cast<const uint32_t*>(wScales + (size_t)wrow * paddedBlocks);
    float d[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (int j = 0; j < paddedBlocks / 4; j++) {
        uint32_t sfa = sfaRow[j], sfb = sfbRow[j];
#pragma unroll
        for (int s = 0; s < 2; s++) {
            int blk = 4 * j + 2 * s;
            uint32_t a[4], b[2];
            a[0] = *reinterpret_cast<const uint32_t*>(a0p + (size_t)blk * 16 + 4 * t);
            a[1] = *reinterpret_cast<const uint32_t*>(a1p + (size_t)blk * 16 + 4 * t);
            a[2] = *reinterpret_cast<const uint32_t*>(a0p + (size_t)(blk + 1) * 16 + 4 * t);
            a[3] = *reinterpret_cast<const uint32_t*>(a1p + (size_t)(blk + 1) * 16 + 4 * t);
            b[0] = *reinterpret_cast<const uint32_t*>(bp + (size_t)blk * 16 + 4 * t);
            b[1] = *reinterpret_cast<const uint32_t*>(bp + (size_t)(blk + 1) * 16 + 4 * t);
            if (s == 0) mma_mxf4<0>(d, a, b, sfa, sfb);
            else mma_mxf4<2>(d, a, b, sfa, sfb);
        }
    }
#pragma unroll
    for (int i = 0; i < 4; i++) {
        int tok = tok0 + g + (i >= 2 ? 8 : 0);
        int r = row0 + 2 * t + (i & 1);
        if (tok < tokens && r < rows) {
            float* dst = y + (size_t)tok * yStride + r;
            *dst = accumulate ? *dst + d[i] : d[i];
        }
    }
}
