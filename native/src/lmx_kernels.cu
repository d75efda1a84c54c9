// LocalMxfp4 CUDA kernels: the W4A4 MXFP4 LLaMA forward pass, all on the device.
// Numerics follow the C# CPU engine (src/LocalMxfp4.Engine): the online block transform accumulates in float64 and
// rounds once, activations are MXFP4-quantized with the model's scale rule, and every W4A4 block product is the
// exact integer Σ int8a·int8w of doubled E2M1 values times 2^(ea+ew−256).
//
// Activation layout ("dp4a order"): per token, per 32-block, 32 int8 doubled-E2M1 values grouped by weight word:
// for word w (elements 8w..8w+7) first elements 8w+0,2,4,6 then 8w+1,3,5,7 — the order nibbles_to_int8 produces from
// the weight bytes, so no unpacking is needed on the activation side. Block counts are padded to a multiple of 4.
#include "lmx_common.cuh"

using namespace lmx;

// ---------------------------------------------------------------------------------------------------------------
// Fused (optional RMSNorm | optional SiLU·mul) → per-32-block online transform (float64) → MXFP4 quantization.
// grid (ceil(paddedBlocks / 8), tokens), block 256: one warp per 32-block, lane j owns element j.
// mode 0: input as is; 1: RMSNorm with gain `gamma`; 2: h = silu(x[i]) · x[upOffset + i];
// 3: the attention output, merged from the chunk partials (x = partO, partML, chunks, headDim; only the chunks that
//    hold positions ≤ *pos + token, of chunkSize positions each, are read).
// transform: null, one shared 32×32 matrix (transformShared = 1) or [transformBlocks, 32, 32], x_b ← x_b · M_b.
// Outputs: codes [tokens, paddedBlocks, 32] (dp4a order), exps [tokens, paddedBlocks] (E8M0 bytes), and optionally
// packed [tokens, paddedBlocks, 16] standard MXFP4 nibbles (element 2i low) for the Blackwell kernels and tests.
LMX_KERNEL void __launch_bounds__(256) lmx_quantize(
    const float* __restrict__ x, int xStride, int width, int paddedBlocks,
    int mode, const float* __restrict__ gamma, double eps, int upOffset,
    const float* __restrict__ transform, int transformBlocks, int transformShared, int rule,
    int8_t* __restrict__ codes, uint8_t* __restrict__ exps, uint8_t* __restrict__ packed,
    const float* __restrict__ partML, int chunks, int headDim, const int* __restrict__ pos, int chunkSize) {
    const int token = blockIdx.y;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const float* row = x + (size_t)token * xStride;
    __shared__ double partial[8];
    __shared__ float rmsScale;
    const int b = blockIdx.x * 8 + warp;
    // The transform column this lane needs, loaded first so its latency overlaps the norm.
    const bool transformed = transform != nullptr && b < transformBlocks && b < paddedBlocks;
    float mcol[32];
    if (transformed) {
        const float* m = transformShared ? transform : transform + (size_t)b * 1024;
#pragma unroll
        for (int i = 0; i < 32; i++) mcol[i] = __ldg(m + i * 32 + lane);
    }
    pdl_trigger();
    pdl_wait();

    if (mode == 1) {
        // Sum of squares in float64 (each square is exact in double), as RmsNorm.Apply does.
        double s = 0.0;
        if (((xStride | width) & 3) == 0) {
            const float4* row4 = reinterpret_cast<const float4*>(row);
#pragma unroll 4
            for (int i = threadIdx.x; i < width / 4; i += 256) {
                float4 v = row4[i];
                s = fma((double)v.x, (double)v.x, s);
                s = fma((double)v.y, (double)v.y, s);
                s = fma((double)v.z, (double)v.z, s);
                s = fma((double)v.w, (double)v.w, s);
            }
        } else {
#pragma unroll 4
            for (int i = threadIdx.x; i < width; i += 256) {
                double v = (double)row[i];
                s = fma(v, v, s);
            }
        }
        s = warp_sum_double(s);
        if (lane == 0) partial[warp] = s;
        __syncthreads();
        if (threadIdx.x == 0) {
            double total = 0.0;
            for (int w = 0; w < 8; w++) total += partial[w];
            rmsScale = (float)(1.0 / sqrt(total / (double)width + eps));
        }
        __syncthreads();
    }

    if (b >= paddedBlocks) return;
    const int idx = b * 32 + lane;
    float v = 0.0f;
    if (idx < width) {
        if (mode == 1) {
            v = __fmul_rn(__fmul_rn(row[idx], rmsScale), gamma[idx]);
        } else if (mode == 3) {
            // Attention output: merge the flash-decoding chunks of (token, head) for element d,
            // o = Σ_c o_c·e^(m_c−M) / Σ_c l_c·e^(m_c−M); x holds partO [tokens, heads, chunks, D].
            int heads = width / headDim, h = idx / headDim, d = idx % headDim;
            size_t base = ((size_t)token * heads + h) * chunks;
            const float* ml = partML + base * 2;
            int live = min(chunks, (*pos + token + chunkSize) / chunkSize);  // chunks holding positions ≤ pos + token
            float m = -INFINITY;
#pragma unroll 4
            for (int c = 0; c < live; c++)
                if (ml[2 * c + 1] > 0.0f) m = fmaxf(m, ml[2 * c]);
            float l = 0.0f, o = 0.0f;
#pragma unroll 4
            for (int c = 0; c < live; c++) {
                if (ml[2 * c + 1] > 0.0f) {
                    float w = expf(ml[2 * c] - m);
                    l = fmaf(ml[2 * c + 1], w, l);
                    o = fmaf(x[(base + c) * headDim + d], w, o);
                }
            }
            v = o / l;
        } else if (mode == 2) {
            float g = row[idx], u = row[upOffset + idx];
            float sig = 1.0f / (1.0f + expf(-g));
            v = __fmul_rn(__fmul_rn(g, sig), u);
        } else {
            v = row[idx];
        }
    }

    if (transformed) {
        double acc = 0.0;
#pragma unroll
        for (int i = 0; i < 32; i++) {
            float xi = __shfl_sync(0xFFFFFFFFu, v, i);
            acc = fma((double)xi, (double)mcol[i], acc);  // product exact in double: one rounding, as in C#
        }
        v = (float)acc;
    }

    uint32_t bits = __float_as_uint(v) & 0x7FFFFFFFu;
    uint32_t amax = __reduce_max_sync(0xFFFFFFFFu, bits);
    int scale, d, nib;
    if (amax >= 0x7F800000u) {
        scale = 255;
        d = 0;
        nib = 0;
    } else {
        scale = e8m0_from_amax_bits(amax, rule);
        float xs = v * e8m0_inverse(scale);
        int code = e2m1_code(fabsf(xs));
        bool negative = (__float_as_uint(xs) >> 31) != 0;
        d = e2m1_doubled(code);
        d = negative ? -d : d;
        nib = code | (negative ? 8 : 0);
    }

    // Output byte L of the block holds element j = 8w + 2q + h for L = 8w + 4h + q.
    int L = lane;
    int j = (L & ~7) + 2 * (L & 3) + ((L >> 2) & 1);
    int dj = __shfl_sync(0xFFFFFFFFu, d, j);
    size_t blockIndex = (size_t)token * paddedBlocks + b;
    codes[blockIndex * 32 + L] = (int8_t)dj;
    if (lane == 0) exps[blockIndex] = (uint8_t)scale;
    if (packed != nullptr) {
        int high = __shfl_down_sync(0xFFFFFFFFu, nib, 1);
        if ((lane & 1) == 0) packed[blockIndex * 16 + (lane >> 1)] = (uint8_t)(nib | (high << 4));
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Decode GEMV, W4A4 exact: y[r] (+)= Σ_b factor(ea_b, ew_rb) · Σ int8a·int8w. Persistent: each CTA first copies the
// token's activation codes into shared memory (two 16-byte planes, conflict-free), then its warps walk row pairs with a
// grid stride; lane = block, four blocks per lane and row per step with all weight loads issued before the first use.
// packed [rows, paddedBlocks, 16], scales [rows, paddedBlocks]; codes/exps of one token.
// grid ≤ ceil(rows / 16) (the host caps it at 4 CTAs per SM), block 256, dynamic smem 33 bytes per block (16-aligned).
namespace {
constexpr int kGemvUnroll = 4;

// Weights of one row pair for one step: blocks b0 + 32u (u < kGemvUnroll) of rows r0 and r1, below bEnd.
struct GemvPairStep {
    uint4 w0[kGemvUnroll], w1[kGemvUnroll];
    int ew0[kGemvUnroll], ew1[kGemvUnroll];

    __device__ __forceinline__ void load(const uint8_t* packed, const uint8_t* scales, int paddedBlocks, int r0, int r1, int b0, int bEnd) {
#pragma unroll
        for (int u = 0; u < kGemvUnroll; u++) {
            int b = b0 + 32 * u;
            if (b < bEnd) {
                w0[u] = load_stream_16(packed + ((size_t)r0 * paddedBlocks + b) * 16);
                w1[u] = load_stream_16(packed + ((size_t)r1 * paddedBlocks + b) * 16);
                ew0[u] = __ldg(scales + (size_t)r0 * paddedBlocks + b);
                ew1[u] = __ldg(scales + (size_t)r1 * paddedBlocks + b);
            }
        }
    }

    // acc (+)= Σ_b factor(ea_b, ew_b) · Σ int8a·int8w over the loaded blocks; activations from shared memory.
    __device__ __forceinline__ void accumulate(const int4* actLo, const int4* actHi, const uint8_t* actExp, int b0, int bEnd,
                                               float& acc0, float& acc1) const {
#pragma unroll
        for (int u = 0; u < kGemvUnroll; u++) {
            int b = b0 + 32 * u;
            if (b < bEnd) {
                int4 a0 = actLo[b], a1 = actHi[b];
                int ea = actExp[b];
                int2 q;
                int sum0 = 0, sum1 = 0;
                q = nibbles_to_int8(w0[u].x); sum0 = __dp4a(q.x, a0.x, sum0); sum0 = __dp4a(q.y, a0.y, sum0);
                q = nibbles_to_int8(w0[u].y); sum0 = __dp4a(q.x, a0.z, sum0); sum0 = __dp4a(q.y, a0.w, sum0);
                q = nibbles_to_int8(w0[u].z); sum0 = __dp4a(q.x, a1.x, sum0); sum0 = __dp4a(q.y, a1.y, sum0);
                q = nibbles_to_int8(w0[u].w); sum0 = __dp4a(q.x, a1.z, sum0); sum0 = __dp4a(q.y, a1.w, sum0);
                q = nibbles_to_int8(w1[u].x); sum1 = __dp4a(q.x, a0.x, sum1); sum1 = __dp4a(q.y, a0.y, sum1);
                q = nibbles_to_int8(w1[u].y); sum1 = __dp4a(q.x, a0.z, sum1); sum1 = __dp4a(q.y, a0.w, sum1);
                q = nibbles_to_int8(w1[u].z); sum1 = __dp4a(q.x, a1.x, sum1); sum1 = __dp4a(q.y, a1.y, sum1);
                q = nibbles_to_int8(w1[u].w); sum1 = __dp4a(q.x, a1.z, sum1); sum1 = __dp4a(q.y, a1.w, sum1);
                acc0 = fmaf(block_factor(ea, ew0[u]), (float)sum0, acc0);
                acc1 = fmaf(block_factor(ea, ew1[u]), (float)sum1, acc1);
            }
        }
    }
};

// The token's activation codes into shared memory: two 16-byte planes (conflict-free reads by lane = block) and exponents.
__device__ __forceinline__ void gemv_stage_activations(const int8_t* codes, const uint8_t* exps, int paddedBlocks, int4* actLo, int4* actHi, uint8_t* actExp) {
    const int4* src = reinterpret_cast<const int4*>(codes);
    for (int i = threadIdx.x; i < paddedBlocks; i += blockDim.x) {
        actLo[i] = src[2 * i];
        actHi[i] = src[2 * i + 1];
        actExp[i] = exps[i];
    }
}
}  // namespace

LMX_KERNEL void __launch_bounds__(256, 4) lmx_gemv(
    const uint8_t* __restrict__ packed, const uint8_t* __restrict__ scales, int rows, int paddedBlocks,
    const int8_t* __restrict__ codes, const uint8_t* __restrict__ exps, float* __restrict__ y, int accumulate) {
    extern __shared__ __align__(16) unsigned char gemvSmem[];
    int4* actLo = reinterpret_cast<int4*>(gemvSmem);
    int4* actHi = actLo + paddedBlocks;
    uint8_t* actExp = reinterpret_cast<uint8_t*>(actHi + paddedBlocks);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int pairs = (rows + 1) >> 1;
    const int stride = gridDim.x * 8;
    GemvPairStep step;
    auto rowsOf = [&](int pair, int& r0, int& r1) { r0 = 2 * pair; r1 = r0 + 1 < rows ? r0 + 1 : r0; };

    // Weights do not depend on the previous kernel: start streaming them before waiting for it.
    int pair = blockIdx.x * 8 + warp;
    int r0, r1;
    if (pair < pairs) {
        rowsOf(pair, r0, r1);
        step.load(packed, scales, paddedBlocks, r0, r1, lane, paddedBlocks);
    }
    pdl_trigger();
    pdl_wait();
    gemv_stage_activations(codes, exps, paddedBlocks, actLo, actHi, actExp);
    __syncthreads();

    for (; pair < pairs; pair += stride) {
        rowsOf(pair, r0, r1);
        float acc0 = 0.0f, acc1 = 0.0f;
        for (int b0 = lane; b0 < paddedBlocks; b0 += 32 * kGemvUnroll) {
            if (b0 != lane) step.load(packed, scales, paddedBlocks, r0, r1, b0, paddedBlocks);  // the first step was loaded ahead
            step.accumulate(actLo, actHi, actExp, b0, paddedBlocks, acc0, acc1);
        }
        if (pair + stride < pairs) {  // next pair's first step, in flight during the reduction
            int n0, n1;
            rowsOf(pair + stride, n0, n1);
            step.load(packed, scales, paddedBlocks, n0, n1, lane, paddedBlocks);
        }
        acc0 = warp_sum(acc0);
        acc1 = warp_sum(acc1);
        if (lane == 0) {
            y[r0] = accumulate ? y[r0] + acc0 : acc0;
            if (r1 != r0) y[r1] = accumulate ? y[r1] + acc1 : acc1;
        }
    }
}

// The dp4a GEMV with the blocks split over splitK warps (1, 2, 4 or 8) for matrices with few rows (o, down), where one
// warp per row pair leaves most SMs short of loads in flight. A CTA's 8 warps are 8/splitK row pairs × splitK slices;
// the slices meet in shared memory. grid ceil(ceil(rows / 2) / (8 / splitK)), block 256, dynamic smem as lmx_gemv + 64.
LMX_KERNEL void __launch_bounds__(256) lmx_gemv_split(
    const uint8_t* __restrict__ packed, const uint8_t* __restrict__ scales, int rows, int paddedBlocks,
    const int8_t* __restrict__ codes, const uint8_t* __restrict__ exps, float* __restrict__ y, int accumulate, int splitK) {
    extern __shared__ __align__(16) unsigned char gemvSmem[];
    int4* actLo = reinterpret_cast<int4*>(gemvSmem);
    int4* actHi = actLo + paddedBlocks;
    uint8_t* actExp = reinterpret_cast<uint8_t*>(actHi + paddedBlocks);
    float* partial = reinterpret_cast<float*>(gemvSmem + (((size_t)paddedBlocks * 33 + 15) & ~(size_t)15));  // [8 warps][2 rows]
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int pairsPerCta = 8 / splitK;
    const int pair = blockIdx.x * pairsPerCta + warp / splitK, slice = warp % splitK;
    // Slices of whole 32-block strides, so every lane keeps the same blocks mod 32.
    const int strides = (paddedBlocks + 31) / 32;
    const int bBegin = 32 * (strides * slice / splitK), bEnd = min(paddedBlocks, 32 * (strides * (slice + 1) / splitK));
    const int r0 = min(2 * pair, rows - 1), r1 = min(2 * pair + 1, rows - 1);
    const bool active = 2 * pair < rows;
    GemvPairStep step;
    if (active) step.load(packed, scales, paddedBlocks, r0, r1, bBegin + lane, bEnd);
    pdl_trigger();
    pdl_wait();
    gemv_stage_activations(codes, exps, paddedBlocks, actLo, actHi, actExp);
    __syncthreads();

    float acc0 = 0.0f, acc1 = 0.0f;
    if (active) {
        for (int b0 = bBegin + lane; b0 < bEnd; b0 += 32 * kGemvUnroll) {
            if (b0 != bBegin + lane) step.load(packed, scales, paddedBlocks, r0, r1, b0, bEnd);
            step.accumulate(actLo, actHi, actExp, b0, bEnd, acc0, acc1);
        }
    }
    acc0 = warp_sum(acc0);
    acc1 = warp_sum(acc1);
    if (lane == 0) {
        partial[warp * 2] = acc0;
        partial[warp * 2 + 1] = acc1;
    }
    __syncthreads();
    if (threadIdx.x < pairsPerCta * 2) {
        const int p = threadIdx.x >> 1, k = threadIdx.x & 1;
        const int r = (blockIdx.x * pairsPerCta + p) * 2 + k;
        if (r < rows) {
            float sum = 0.0f;
            for (int sl = 0; sl < splitK; sl++) sum += partial[(p * splitK + sl) * 2 + k];
            y[r] = accumulate ? y[r] + sum : sum;
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Decode GEMV, W4A4 exact, on the FP8 tensor cores (compute capability ≥ 8.9, PTX ≥ 8.4 — absent from older builds; the
// host falls back to lmx_gemv). Why: lmx_gemv spends ~14 integer instructions per 8 weights on the nibble → int8 table
// lookup, and integer instructions issue at half the FP32 rate, so it cannot stream weights at full bandwidth. Here an
// E2M1 nibble becomes an e4m3 byte by moving bits (sign → bit 7, exponent+mantissa → bits 4..2: value · 2^-6, exact,
// subnormals included), 3 instructions per 4 weights, and one mma.sync m16n8k32 e4m3 (f32 accumulate) takes 16 block
// products at once. Every product (a·w·2^-12, |a·w| ≤ 36) and every 32-term sum is exact in f32, so a block sum is the
// same integer as the dp4a kernel's (D = S · 2^-14) and y gets the same terms S · 2^(ea+ew−256).
// Tiling: an mma computes D[16 × 8] = A[16 × 32] · B[32 × 8]. A row g (and g + 8) of the mma is (weight row r0 + (g & 1)
// (resp. r0 + 2 + (g & 1)), block b + g/2); B column n is the activation block b + n/2. So 4 rows × 4 blocks go through
// one instruction, and the wanted block sums are the "diagonal" D[g][n] with g/2 = n/2: lane (g, t) holds them when
// t = g/2 (d0 for its first row, d2 for its second); the other lanes' products are discarded before the reduction.
// Each lane loads word t (4 bytes) of its two (row, block) pairs: a warp load reads 2 × 64 contiguous bytes.
// A warp owns a quad of rows and a 1/splitK slice of the blocks; the CTA (8 warps = 8/splitK quads) adds the slices.
// grid ceil(ceil(rows / 4) / (8 / splitK)), block 256, dynamic smem paddedBlocks · 36 + 128 bytes.
#if defined(__CUDACC_VER_MAJOR__) && (__CUDACC_VER_MAJOR__ > 12 || (__CUDACC_VER_MAJOR__ == 12 && __CUDACC_VER_MINOR__ >= 4))
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 890
#define LMX_GEMV_FP8 1
#endif
#endif

#if defined(LMX_GEMV_FP8)
namespace {
// Four doubled-E2M1 int8 values (0, ±1 … ±12) → four e4m3 bytes of value/2 · 2^-6.
__device__ __forceinline__ uint32_t doubled_to_e4m3x4(uint32_t v) {
    uint32_t out = 0;
#pragma unroll
    for (int i = 0; i < 4; i++) {
        int d = (int)(int8_t)(v >> (8 * i));
        int m = d < 0 ? -d : d;
        uint32_t code = m <= 4 ? (uint32_t)m : (m == 6 ? 5u : (m == 8 ? 6u : 7u));
        out |= ((d < 0 ? 0x80u : 0u) | (code << 2)) << (8 * i);
    }
    return out;
}

// Even nibbles (low half of each byte) and odd nibbles (high half) of a weight word as e4m3 bytes.
__device__ __forceinline__ uint32_t even_e4m3(uint32_t q) { return ((q << 4) & 0x80808080u) | ((q << 2) & 0x1C1C1C1Cu); }
__device__ __forceinline__ uint32_t odd_e4m3(uint32_t q) { return (q & 0x80808080u) | ((q >> 2) & 0x1C1C1C1Cu); }

__device__ __forceinline__ uint32_t load_stream_4(const void* p) {
    uint32_t v;
    asm volatile("ld.global.nc.L1::no_allocate.u32 %0, [%1];" : "=r"(v) : "l"(p));
    return v;
}
}  // namespace

LMX_KERNEL void __launch_bounds__(256) lmx_gemv_fp8(
    const uint8_t* __restrict__ packed, const uint8_t* __restrict__ scales, int rows, int paddedBlocks,
    const int8_t* __restrict__ codes, const uint8_t* __restrict__ exps, float* __restrict__ y, int accumulate, int splitK) {
    extern __shared__ __align__(16) unsigned char fp8Smem[];
    uint2* act = reinterpret_cast<uint2*>(fp8Smem);                                  // [paddedBlocks · 4] {even, odd}
    float* actScale = reinterpret_cast<float*>(fp8Smem + (size_t)paddedBlocks * 32);  // [paddedBlocks] 2^(ea − 115)
    float* partial = actScale + paddedBlocks;                                         // [8 warps][4 rows]
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int g = lane >> 2, t = lane & 3;
    const int quadsPerCta = 8 / splitK;
    const int quad = blockIdx.x * quadsPerCta + warp / splitK, slice = warp % splitK;
    const int steps = paddedBlocks >> 2;  // mma steps of 4 blocks
    const int jBegin = (int)((long)steps * slice / splitK), jEnd = (int)((long)steps * (slice + 1) / splitK);
    const int r0 = quad * 4;
    const int rowA = min(r0 + (g & 1), rows - 1), rowB = min(r0 + 2 + (g & 1), rows - 1);
    const uint8_t* pA = packed + ((size_t)rowA * paddedBlocks + (g >> 1)) * 16 + 4 * t;
    const uint8_t* pB = packed + ((size_t)rowB * paddedBlocks + (g >> 1)) * 16 + 4 * t;
    const uint8_t* sA = scales + (size_t)rowA * paddedBlocks + (g >> 1);
    const uint8_t* sB = scales + (size_t)rowB * paddedBlocks + (g >> 1);
    const bool active = r0 < rows;

    constexpr int U = 8;
    uint32_t wa[U], wb[U];
    int ewa[U], ewb[U];
    auto load = [&](int j0) {
#pragma unroll
        for (int u = 0; u < U; u++) {
            int j = j0 + u;
            if (active && j < jEnd) {
                wa[u] = load_stream_4(pA + (size_t)j * 64);
                wb[u] = load_stream_4(pB + (size_t)j * 64);
                ewa[u] = __ldg(sA + 4 * j);
                ewb[u] = __ldg(sB + 4 * j);
            }
        }
    };

    load(jBegin);  // weights do not depend on the previous kernel
    pdl_trigger();
    pdl_wait();
    const uint32_t* src = reinterpret_cast<const uint32_t*>(codes);
    for (int i = threadIdx.x; i < paddedBlocks * 4; i += 256) {
        act[i] = make_uint2(doubled_to_e4m3x4(src[2 * i]), doubled_to_e4m3x4(src[2 * i + 1]));
    }
    for (int i = threadIdx.x; i < paddedBlocks; i += 256) {
        int ea = exps[i];
        actScale[i] = ea == 255 ? __int_as_float(0x7FC00000) : __int_as_float(min(ea + 12, 254) << 23);  // 2^(ea − 115)
    }
    __syncthreads();

    float acc0 = 0.0f, acc1 = 0.0f;
    if (active) {
        for (int j0 = jBegin; j0 < jEnd; j0 += U) {
#pragma unroll
            for (int u = 0; u < U; u++) {
                int j = j0 + u;
                if (j < jEnd) {
                    const int blk = 4 * j + (g >> 1);
                    uint2 b = act[blk * 4 + t];
                    float fa = actScale[blk];
                    float d0 = 0.0f, d1 = 0.0f, d2 = 0.0f, d3 = 0.0f;
                    asm volatile(
                        "mma.sync.aligned.m16n8k32.row.col.f32.e4m3.e4m3.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
                        : "+f"(d0), "+f"(d1), "+f"(d2), "+f"(d3)
                        : "r"(even_e4m3(wa[u])), "r"(even_e4m3(wb[u])), "r"(odd_e4m3(wa[u])), "r"(odd_e4m3(wb[u])), "r"(b.x), "r"(b.y));
                    acc0 = fmaf(d0 * fa, __int_as_float(ewa[u] << 23), acc0);
                    acc1 = fmaf(d2 * fa, __int_as_float(ewb[u] << 23), acc1);
                }
            }
            if (j0 + U < jEnd) load(j0 + U);
        }
    }
    // Keep the diagonal lanes (t = g/2); sum lanes of the same row parity (lane bit 2 = g & 1).
    const bool diagonal = t == (g >> 1);
    acc0 = diagonal ? acc0 : 0.0f;
    acc1 = diagonal ? acc1 : 0.0f;
#pragma unroll
    for (int o = 1; o <= 16; o <<= 1) {
        if (o == 4) continue;
        acc0 += __shfl_xor_sync(0xFFFFFFFFu, acc0, o);
        acc1 += __shfl_xor_sync(0xFFFFFFFFu, acc1, o);
    }
    // lane 0: rows r0 (acc0), r0 + 2 (acc1); lane 4: rows r0 + 1, r0 + 3.
    if (lane == 0) { partial[warp * 4 + 0] = acc0; partial[warp * 4 + 2] = acc1; }
    if (lane == 4) { partial[warp * 4 + 1] = acc0; partial[warp * 4 + 3] = acc1; }
    __syncthreads();
    if (threadIdx.x < quadsPerCta * 4) {
        const int q = threadIdx.x >> 2, k = threadIdx.x & 3;
        const int r = (blockIdx.x * quadsPerCta + q) * 4 + k;
        if (r < rows) {
            float sum = 0.0f;
            for (int s = 0; s < splitK; s++) sum += partial[(q * splitK + s) * 4 + k];
            y[r] = accumulate ? y[r] + sum : sum;
        }
    }
}
#endif

// The exact integer block sums of every (row, block) for one token: sums [rows, paddedBlocks]. For tests.
LMX_KERNEL void lmx_block_sums(
    const uint8_t* __restrict__ packed, int rows, int paddedBlocks, const int8_t* __restrict__ codes, int* __restrict__ sums) {
    pdl_trigger();
    pdl_wait();
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= rows * paddedBlocks) return;
    int r = i / paddedBlocks, b = i % paddedBlocks;
    const uint32_t* w = reinterpret_cast<const uint32_t*>(packed + ((size_t)r * paddedBlocks + b) * 16);
    const int* a = reinterpret_cast<const int*>(codes + (size_t)b * 32);
    int s = 0;
    for (int k = 0; k < 4; k++) {
        int2 q = nibbles_to_int8(w[k]);
        s = __dp4a(q.x, a[2 * k], s);
        s = __dp4a(q.y, a[2 * k + 1], s);
    }
    sums[i] = s;
}

// ---------------------------------------------------------------------------------------------------------------
// Prefill GEMM, W4A4 with exact integer block sums on the tensor cores: one mma.sync m16n8k32 s8 is one MX block
// (16 tokens × 8 rows × 32). Within a block the K order is permuted identically on both sides: A slots 4t..4t+3 hold
// the even elements of weight word t and slots 16+4t.. its odd elements, which is what nibbles_to_int8 gives B.
// Each block's int32 tile is scaled by 2^(ea−127)·2^(ew−127) and accumulated in float32; the final ¼ undoes the doubling.
// CTA tile 64 tokens × 128 rows × 4 blocks, 8 warps (2 along tokens × 4 along rows), cp.async double buffering.
// Y[t, r] (+)= …, row stride yStride. grid (ceil(rows/128), ceil(tokens/64)), block 256.
namespace {
constexpr int kGemmM = 64, kGemmN = 128;
constexpr int kAStride = 160;  // 128 bytes of codes + 32 pad: conflict-free 8-byte fragment loads
constexpr int kWStride = 80;   // 64 bytes of nibbles + 16 pad: conflict-free 4-byte fragment loads

__device__ __forceinline__ void cp_async_16(void* smem, const void* global, bool valid) {
    uint32_t s = (uint32_t)__cvta_generic_to_shared(smem);
    int bytes = valid ? 16 : 0;
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(s), "l"(global), "r"(bytes));
}

__device__ __forceinline__ void cp_async_4(void* smem, const void* global, bool valid) {
    uint32_t s = (uint32_t)__cvta_generic_to_shared(smem);
    int bytes = valid ? 4 : 0;
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;" ::"r"(s), "l"(global), "r"(bytes));
}

__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;"); }
template <int N>
__device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;" ::"n"(N)); }

struct GemmStage {
    int8_t a[kGemmM * kAStride];
    uint8_t w[kGemmN * kWStride];
    uint8_t ea[kGemmM * 4];
    uint8_t ew[kGemmN * 4];
};
}  // namespace

LMX_KERNEL void __launch_bounds__(256) lmx_gemm(
    const uint8_t* __restrict__ packed, const uint8_t* __restrict__ scales, int rows, int paddedBlocks,
    const int8_t* __restrict__ codes, const uint8_t* __restrict__ exps, int tokens,
    float* __restrict__ y, int yStride, int accumulate) {
    pdl_trigger();
    pdl_wait();
    extern __shared__ __align__(16) unsigned char gemmSmem[];
    GemmStage* stages = reinterpret_cast<GemmStage*>(gemmSmem);
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int g = lane >> 2, t = lane & 3;
    const int warpM = warp >> 2, warpN = warp & 3;
    const int row0 = blockIdx.x * kGemmN, tok0 = blockIdx.y * kGemmM;
    const int steps = paddedBlocks / 4;

    auto load = [&](int stage, int step) {
        GemmStage& s = stages[stage];
        int kb0 = step * 4;
        for (int c = tid; c < kGemmM * 8; c += 256) {  // activations: 64 tokens × 8 chunks of 16 B
            int tt = c >> 3, col = c & 7;
            int tok = tok0 + tt;
            bool ok = tok < tokens;
            const int8_t* src = codes + ((size_t)(ok ? tok : 0) * paddedBlocks + kb0) * 32 + col * 16;
            cp_async_16(s.a + tt * kAStride + col * 16, src, ok);
        }
        for (int c = tid; c < kGemmN * 4; c += 256) {  // weights: 128 rows × 4 chunks of 16 B
            int rr = c >> 2, col = c & 3;
            int r = row0 + rr;
            bool ok = r < rows;
            const uint8_t* src = packed + ((size_t)(ok ? r : 0) * paddedBlocks + kb0) * 16 + col * 16;
            cp_async_16(s.w + rr * kWStride + col * 16, src, ok);
        }
        if (tid < kGemmN) {
            int r = row0 + tid;
            bool ok = r < rows;
            cp_async_4(s.ew + tid * 4, scales + (size_t)(ok ? r : 0) * paddedBlocks + kb0, ok);
        } else if (tid < kGemmN + kGemmM) {
            int tt = tid - kGemmN, tok = tok0 + tt;
            bool ok = tok < tokens;
            cp_async_4(s.ea + tt * 4, exps + (size_t)(ok ? tok : 0) * paddedBlocks + kb0, ok);
        }
    };

    float acc[2][4][4];
#pragma unroll
    for (int i = 0; i < 2; i++)
#pragma unroll
        for (int j = 0; j < 4; j++)
#pragma unroll
            for (int k = 0; k < 4; k++) acc[i][j][k] = 0.0f;

    load(0, 0);
    cp_async_commit();
    for (int step = 0; step < steps; step++) {
        if (step + 1 < steps) load((step + 1) & 1, step + 1);
        cp_async_commit();
        cp_async_wait<1>();
        __syncthreads();
        const GemmStage& s = stages[step & 1];
#pragma unroll
        for (int kb = 0; kb < 4; kb++) {
            uint32_t a[2][4];
            float fa[2][2];
#pragma unroll
            for (int mt = 0; mt < 2; mt++) {
                int r = warpM * 32 + mt * 16 + g;
                uint2 lo = *reinterpret_cast<const uint2*>(s.a + r * kAStride + kb * 32 + 8 * t);
                uint2 hi = *reinterpret_cast<const uint2*>(s.a + (r + 8) * kAStride + kb * 32 + 8 * t);
                a[mt][0] = lo.x; a[mt][1] = hi.x; a[mt][2] = lo.y; a[mt][3] = hi.y;
                fa[mt][0] = e8m0_value(s.ea[r * 4 + kb]);
                fa[mt][1] = e8m0_value(s.ea[(r + 8) * 4 + kb]);
            }
#pragma unroll
            for (int nt = 0; nt < 4; nt++) {
                int n = warpN * 32 + nt * 8;
                uint32_t word = *reinterpret_cast<const uint32_t*>(s.w + (n + g) * kWStride + kb * 16 + 4 * t);
                int2 b = nibbles_to_int8(word);
                float fw0 = e8m0_value(s.ew[(n + 2 * t) * 4 + kb]);
                float fw1 = e8m0_value(s.ew[(n + 2 * t + 1) * 4 + kb]);
#pragma unroll
                for (int mt = 0; mt < 2; mt++) {
                    int c0, c1, c2, c3;
                    asm(
                        "mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%10,%10,%10,%10};"
                        : "=r"(c0), "=r"(c1), "=r"(c2), "=r"(c3)
                        : "r"(a[mt][0]), "r"(a[mt][1]), "r"(a[mt][2]), "r"(a[mt][3]), "r"(b.x), "r"(b.y), "r"(0));
                    acc[mt][nt][0] = fmaf(fa[mt][0] * fw0, (float)c0, acc[mt][nt][0]);
                    acc[mt][nt][1] = fmaf(fa[mt][0] * fw1, (float)c1, acc[mt][nt][1]);
                    acc[mt][nt][2] = fmaf(fa[mt][1] * fw0, (float)c2, acc[mt][nt][2]);
                    acc[mt][nt][3] = fmaf(fa[mt][1] * fw1, (float)c3, acc[mt][nt][3]);
                }
            }
        }
        __syncthreads();
    }

#pragma unroll
    for (int mt = 0; mt < 2; mt++) {
#pragma unroll
        for (int nt = 0; nt < 4; nt++) {
            int tokA = tok0 + warpM * 32 + mt * 16 + g;
            int col = row0 + warpN * 32 + nt * 8 + 2 * t;
#pragma unroll
            for (int i = 0; i < 4; i++) {
                int tok = tokA + (i >= 2 ? 8 : 0);
                int r = col + (i & 1);
                if (tok < tokens && r < rows) {
                    float* dst = y + (size_t)tok * yStride + r;
                    float v = acc[mt][nt][i] * 0.25f;  // doubled E2M1 on both sides: Σ int8a·int8w = 4 · Σ a·w
                    *dst = accumulate ? *dst + v : v;
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Embedding gather: x[t, :] = float(emb[ids[t], :]) (bf16 table). grid tokens, block 256.
LMX_KERNEL void lmx_embed(const __nv_bfloat16* __restrict__ emb, const int* __restrict__ ids, int hidden, float* __restrict__ x) {
    pdl_trigger();
    pdl_wait();
    int t = blockIdx.x;
    const __nv_bfloat16* src = emb + (size_t)ids[t] * hidden;
    for (int i = threadIdx.x; i < hidden; i += blockDim.x) x[(size_t)t * hidden + i] = __bfloat162float(src[i]);
}

// Plain RMSNorm (the final norm): out[t] = x[t] · (1/√(mean(x²)+eps)) · gamma, float64 sum of squares. grid tokens, block 256.
LMX_KERNEL void __launch_bounds__(256) lmx_rmsnorm(const float* __restrict__ x, int width, const float* __restrict__ gamma, double eps, float* __restrict__ out) {
    pdl_trigger();
    pdl_wait();
    __shared__ double partial[8];
    __shared__ float scale;
    const float* row = x + (size_t)blockIdx.x * width;
    double s = 0.0;
    for (int i = threadIdx.x; i < width; i += 256) {
        double v = (double)row[i];
        s = fma(v, v, s);
    }
    s = warp_sum_double(s);
    if ((threadIdx.x & 31) == 0) partial[threadIdx.x >> 5] = s;
    __syncthreads();
    if (threadIdx.x == 0) {
        double total = 0.0;
        for (int w = 0; w < 8; w++) total += partial[w];
        scale = (float)(1.0 / sqrt(total / (double)width + eps));
    }
    __syncthreads();
    for (int i = threadIdx.x; i < width; i += 256) out[(size_t)blockIdx.x * width + i] = __fmul_rn(__fmul_rn(row[i], scale), gamma[i]);
}

// ---------------------------------------------------------------------------------------------------------------
// RoPE (HF rotate_half) on q and k of every token, in place in the fused qkv rows, then k and v into the cache.
// qkv [tokens, stride]: q (heads·D) | k (kvHeads·D) | v (kvHeads·D). cos/sin tables [context, D/2] computed on the
// host in float64 as RotaryEmbedding.Angles does. Cache per layer: [kvHeads, context, D]. Position of token 0 at *pos.
// grid (tokens, slices), block 256: the (head, pair) items of a token are spread over gridDim.y CTAs, since one CTA per
// token left decode waiting on one SM walking 2,560 rotations (ncu: 10 µs).
template <typename KV>
__device__ void rope_kv(float* qkv, int stride, int heads, int kvHeads, int D, const float* cosT, const float* sinT,
                        const int* pos, int context, KV* kc, KV* vc) {
    pdl_trigger();
    pdl_wait();
    const int t = blockIdx.x;
    const int p = *pos + t;
    const int half = D / 2;
    float* row = qkv + (size_t)t * stride;
    const float* c = cosT + (size_t)p * half;
    const float* s = sinT + (size_t)p * half;
    const int pairs = (heads + kvHeads) * half;
    const int first = blockIdx.y * blockDim.x + threadIdx.x, step = gridDim.y * blockDim.x;
#pragma unroll 4
    for (int i = first; i < pairs; i += step) {
        int h = i / half, j = i % half;
        float* head = row + h * D;
        float a = head[j], b = head[j + half];
        float na = __fsub_rn(__fmul_rn(a, c[j]), __fmul_rn(b, s[j]));
        float nb = __fadd_rn(__fmul_rn(b, c[j]), __fmul_rn(a, s[j]));
        head[j] = na;
        head[j + half] = nb;
        if (h >= heads) {
            int kh = h - heads;
            KV* dst = kc + ((size_t)kh * context + p) * D;
            store_kv(dst + j, na);
            store_kv(dst + j + half, nb);
        }
    }
    const float* v = row + (heads + kvHeads) * D;
    for (int i = first; i < kvHeads * D; i += step) {
        int kh = i / D, d = i % D;
        store_kv(vc + ((size_t)kh * context + p) * D + d, v[i]);
    }
}

LMX_KERNEL void lmx_rope_kv_bf16(float* qkv, int stride, int heads, int kvHeads, int D, const float* cosT, const float* sinT,
                                 const int* pos, int context, __nv_bfloat16* kc, __nv_bfloat16* vc) {
    rope_kv(qkv, stride, heads, kvHeads, D, cosT, sinT, pos, context, kc, vc);
}

LMX_KERNEL void lmx_rope_kv_f32(float* qkv, int stride, int heads, int kvHeads, int D, const float* cosT, const float* sinT,
                                const int* pos, int context, float* kc, float* vc) {
    rope_kv(qkv, stride, heads, kvHeads, D, cosT, sinT, pos, context, kc, vc);
}

// ---------------------------------------------------------------------------------------------------------------
// Attention, flash-decoding style: CTA (kv head, chunk of positions, token) handles the whole GQA group of that kv
// head over its chunk and writes unnormalised partial outputs with their (max, sum); lmx_quantize (mode 3) combines the
// chunks (lmx_quantize mode 3, which merges while it quantizes the o_proj input). Token t sees positions [0, *pos + t]. group ≤ 8, D ≤ 256, chunk ≤ 256. grid (kvHeads, chunks, tokens), block 128.
// partO [tokens, heads, chunks, D], partML [tokens, heads, chunks, 2].
namespace {
constexpr int kAttnThreads = 128;
constexpr int kMaxGroup = 8, kMaxD = 256, kMaxChunk = 256;
}

template <typename KV>
__device__ void attention_chunk(const float* q, int qStride, const KV* kc, const KV* vc, int context, int D, int heads,
                                int kvHeads, int chunk, int chunks, const int* pos, float scale, float* partO, float* partML) {
    pdl_trigger();
    pdl_wait();
    __shared__ float qs[kMaxGroup * kMaxD];
    __shared__ float sc[kMaxGroup * kMaxChunk];
    __shared__ float red[kMaxGroup * kAttnThreads];
    __shared__ float stats[kMaxGroup * 2];
    const int kvh = blockIdx.x, c = blockIdx.y, t = blockIdx.z;
    const int group = heads / kvHeads;
    const int visible = *pos + t + 1;
    const int start = c * chunk;
    const int end = min(start + chunk, visible);
    const int tid = threadIdx.x;
    const size_t base = ((size_t)t * heads + (size_t)kvh * group) * chunks + c;  // (t, first head, c)
    if (start >= end) {
        for (int j = tid; j < group; j += kAttnThreads) {
            float* ml = partML + (base + (size_t)j * chunks) * 2;
            ml[0] = -INFINITY;
            ml[1] = 0.0f;
        }
        return;
    }
    const int n = end - start;
    for (int i = tid; i < group * D; i += kAttnThreads) {
        int j = i / D, d = i % D;
        qs[j * D + d] = q[(size_t)t * qStride + (size_t)(kvh * group + j) * D + d];
    }
    __syncthreads();

    // Scores: each warp takes four positions at a time; lanes split the head dimension (coalesced key rows).
    const KV* kbase = kc + ((size_t)kvh * context + start) * D;
    {
        const int w = tid >> 5, ln = tid & 31;
        constexpr int P = 4;  // positions per warp step
        for (int p0 = P * w; p0 < n; p0 += P * (kAttnThreads / 32)) {
            float dots[P][kMaxGroup];
#pragma unroll
            for (int i = 0; i < P; i++)
#pragma unroll
                for (int j = 0; j < kMaxGroup; j++) dots[i][j] = 0.0f;
#pragma unroll 4
            for (int d = ln; d < D; d += 32) {
                float kv[P];
#pragma unroll
                for (int i = 0; i < P; i++) kv[i] = p0 + i < n ? to_float(kbase[(size_t)(p0 + i) * D + d]) : 0.0f;
#pragma unroll
                for (int j = 0; j < kMaxGroup; j++) {
                    if (j < group) {
                        float qv = qs[j * D + d];
#pragma unroll
                        for (int i = 0; i < P; i++) dots[i][j] = fmaf(qv, kv[i], dots[i][j]);
                    }
                }
            }
#pragma unroll
            for (int i = 0; i < P; i++) {
#pragma unroll
                for (int j = 0; j < kMaxGroup; j++) {
                    if (j < group) {
                        float sum = warp_sum(dots[i][j]);
                        if (ln == 0 && p0 + i < n) sc[j * kMaxChunk + p0 + i] = sum * scale;
                    }
                }
            }
        }
    }
    __syncthreads();

    // Per head: max and Σ exp(s − max) over the chunk (warp j%4 handles head j).
    const int warp = tid >> 5, lane = tid & 31;
    for (int j = warp; j < group; j += kAttnThreads / 32) {
        float m = -INFINITY;
        for (int p = lane; p < n; p += 32) m = fmaxf(m, sc[j * kMaxChunk + p]);
        m = warp_max(m);
        float l = 0.0f;
        for (int p = lane; p < n; p += 32) {
            float e = expf(fmaxf(sc[j * kMaxChunk + p] - m, -87.0f));
            sc[j * kMaxChunk + p] = e;
            l += e;
        }
        l = warp_sum(l);
        if (lane == 0) {
            stats[2 * j] = m;
            stats[2 * j + 1] = l;
        }
    }
    __syncthreads();

    // o[j][d] = Σ_p e[j][p] · V[p][d]: thread (slice, d), slices split the positions.
    const KV* vbase = vc + ((size_t)kvh * context + start) * D;
    for (int d0 = 0; d0 < D; d0 += kAttnThreads) {
        int width = min(D - d0, kAttnThreads);
        int slices = kAttnThreads / width;
        int d = d0 + tid % width, slice = tid / width;
        float o[kMaxGroup];
#pragma unroll
        for (int j = 0; j < kMaxGroup; j++) o[j] = 0.0f;
        if (slice < slices) {
#pragma unroll 8
            for (int p = slice; p < n; p += slices) {
                float v = to_float(vbase[(size_t)p * D + d]);
#pragma unroll
                for (int j = 0; j < kMaxGroup; j++)
                    if (j < group) o[j] = fmaf(sc[j * kMaxChunk + p], v, o[j]);
            }
#pragma unroll
            for (int j = 0; j < kMaxGroup; j++)
                if (j < group) red[(j * slices + slice) * width + (tid % width)] = o[j];
        }
        __syncthreads();
        for (int i = tid; i < group * width; i += kAttnThreads) {
            int j = i / width, dd = i % width;
            float sum = 0.0f;
            for (int sl = 0; sl < slices; sl++) sum += red[(j * slices + sl) * width + dd];
            partO[(base + (size_t)j * chunks) * D + d0 + dd] = sum;
        }
        __syncthreads();
    }
    for (int j = tid; j < group; j += kAttnThreads) {
        float* ml = partML + (base + (size_t)j * chunks) * 2;
        ml[0] = stats[2 * j];
        ml[1] = stats[2 * j + 1];
    }
}

LMX_KERNEL void __launch_bounds__(128) lmx_attention_bf16(const float* q, int qStride, const __nv_bfloat16* kc, const __nv_bfloat16* vc, int context, int D,
                                   int heads, int kvHeads, int chunk, int chunks, const int* pos, float scale, float* partO, float* partML) {
    attention_chunk(q, qStride, kc, vc, context, D, heads, kvHeads, chunk, chunks, pos, scale, partO, partML);
}

LMX_KERNEL void __launch_bounds__(128) lmx_attention_f32(const float* q, int qStride, const float* kc, const float* vc, int context, int D,
                                  int heads, int kvHeads, int chunk, int chunks, const int* pos, float scale, float* partO, float* partML) {
    attention_chunk(q, qStride, kc, vc, context, D, heads, kvHeads, chunk, chunks, pos, scale, partO, partML);
}

// Decode attention (one token, head_dim ≤ 128, chunks of 32 positions): same outputs as attention_chunk, but every
// global load of the CTA — q, the chunk's keys and values — is issued together up front, so the kernel waits for memory
// about twice instead of once per phase. At short contexts only a few CTAs have work and each runs alone on its SM, so
// the kernel's time is one warp's instruction chain: 8 warps share a chunk (4 positions each for the scores, two
// position slices for P·V) and the GQA group loops are unrolled to MG = 4 when the group fits (LLaMA-3 8B/1B/3B),
// which an ncu pass showed cutting nothing but serial instructions. grid (kvHeads, chunks, 1), block 256.
namespace {
constexpr int kDecodeChunk = 32, kDecodeThreads = 256;
}

template <typename KV, int MG>
__device__ void attention_decode(const float* q, const KV* kc, const KV* vc, int context, int D, int heads, int kvHeads,
                                 int chunks, const int* pos, float scale, float* partO, float* partML) {
    pdl_trigger();
    pdl_wait();
    constexpr int kWarps = kDecodeThreads / 32, kPerWarp = kDecodeChunk / kWarps;
    constexpr int kQ = MG * 128 / kDecodeThreads > 0 ? MG * 128 / kDecodeThreads : 1;
    constexpr int kV = kDecodeChunk * 128 / kDecodeThreads;  // positions per P·V slice when D = 128 (more slices when D < 128)
    __shared__ float qs[MG * 128];
    __shared__ float sc[MG * kDecodeChunk];
    __shared__ float red[MG * kDecodeThreads];
    __shared__ float stats[MG * 2];
    const int kvh = blockIdx.x, c = blockIdx.y;
    const int group = heads / kvHeads;
    const int start = c * kDecodeChunk;
    const int end = min(start + kDecodeChunk, *pos + 1);
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const size_t base = (size_t)kvh * group * chunks + c;
    if (start >= end) {
        if (tid < group) {
            float* ml = partML + (base + (size_t)tid * chunks) * 2;
            ml[0] = -INFINITY;
            ml[1] = 0.0f;
        }
        return;
    }
    const int n = end - start;

    // Issue every load: q → registers, keys (warp w: positions kPerWarp·w…, lane: d = lane + 32e), values (thread: d, slice).
    float qv[kQ];
#pragma unroll
    for (int i = 0; i < kQ; i++) {
        int k = tid + i * kDecodeThreads;
        qv[i] = k < group * D ? q[(size_t)(kvh * group) * D + k] : 0.0f;
    }
    const KV* kbase = kc + ((size_t)kvh * context + start) * D;
    const KV* vbase = vc + ((size_t)kvh * context + start) * D;
    float kr[kPerWarp][4];
#pragma unroll
    for (int i = 0; i < kPerWarp; i++) {
        int p = warp * kPerWarp + i;
#pragma unroll
        for (int e = 0; e < 4; e++) {
            int d = lane + 32 * e;
            kr[i][e] = (p < n && d < D) ? to_float(kbase[(size_t)p * D + d]) : 0.0f;
        }
    }
    const int width = D, slices = kDecodeThreads / width;
    const int d = tid % width, slice = tid / width;
    float vr[kV];
#pragma unroll
    for (int i = 0; i < kV; i++) {
        int p = slice + i * slices;
        vr[i] = (slice < slices && p < n) ? to_float(vbase[(size_t)p * D + d]) : 0.0f;
    }
#pragma unroll
    for (int i = 0; i < kQ; i++) {
        int k = tid + i * kDecodeThreads;
        if (k < group * D) qs[k] = qv[i];
    }
    __syncthreads();

    // Scores.
#pragma unroll
    for (int i = 0; i < kPerWarp; i++) {
        int p = warp * kPerWarp + i;
#pragma unroll
        for (int j = 0; j < MG; j++) {
            if (j < group) {
                float dot = 0.0f;
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    int dd = lane + 32 * e;
                    if (dd < D) dot = fmaf(qs[j * D + dd], kr[i][e], dot);
                }
                dot = warp_sum(dot);
                if (lane == 0 && p < n) sc[j * kDecodeChunk + p] = dot * scale;
            }
        }
    }
    __syncthreads();

    // Softmax statistics per head.
    for (int j = warp; j < group; j += kWarps) {
        float s = lane < n ? sc[j * kDecodeChunk + lane] : -INFINITY;
        float m = warp_max(s);
        float e = lane < n ? expf(fmaxf(s - m, -87.0f)) : 0.0f;
        if (lane < n) sc[j * kDecodeChunk + lane] = e;
        float l = warp_sum(e);
        if (lane == 0) {
            stats[2 * j] = m;
            stats[2 * j + 1] = l;
        }
    }
    __syncthreads();

    // o[j][d] = Σ_p e[j][p] · V[p][d], per slice of positions.
    if (slice < slices) {
#pragma unroll
        for (int j = 0; j < MG; j++) {
            if (j < group) {
                float o = 0.0f;
#pragma unroll
                for (int i = 0; i < kV; i++) {
                    int p = slice + i * slices;
                    if (p < n) o = fmaf(sc[j * kDecodeChunk + p], vr[i], o);
                }
                red[(j * slices + slice) * width + d] = o;
            }
        }
    }
    __syncthreads();
    for (int i = tid; i < group * width; i += kDecodeThreads) {
        int j = i / width, dd = i % width;
        float sum = 0.0f;
        for (int sl = 0; sl < slices; sl++) sum += red[(j * slices + sl) * width + dd];
        partO[(base + (size_t)j * chunks) * D + dd] = sum;
    }
    if (tid < group) {
        float* ml = partML + (base + (size_t)tid * chunks) * 2;
        ml[0] = stats[2 * tid];
        ml[1] = stats[2 * tid + 1];
    }
}

#define LMX_ATTENTION_DECODE(NAME, KV, MG)                                                                                  \
    LMX_KERNEL void __launch_bounds__(kDecodeThreads) NAME(const float* q, const KV* kc, const KV* vc, int context, int D,   \
                                                           int heads, int kvHeads, int chunks, const int* pos, float scale, \
                                                           float* partO, float* partML) {                                   \
        attention_decode<KV, MG>(q, kc, vc, context, D, heads, kvHeads, chunks, pos, scale, partO, partML);                 \
    }
LMX_ATTENTION_DECODE(lmx_attention_decode_bf16, __nv_bfloat16, 8)
LMX_ATTENTION_DECODE(lmx_attention_decode_f32, float, 8)
LMX_ATTENTION_DECODE(lmx_attention_decode_g4_bf16, __nv_bfloat16, 4)
LMX_ATTENTION_DECODE(lmx_attention_decode_g4_f32, float, 4)

// ---------------------------------------------------------------------------------------------------------------
// lm_head, bf16 weights × float activations, float32 accumulation. One warp per two rows. grid ceil(rows/16), block 256.
LMX_KERNEL void __launch_bounds__(256) lmx_gemv_bf16(const __nv_bfloat16* __restrict__ w, int rows, int cols, const float* __restrict__ x, float* __restrict__ y) {
    pdl_trigger();
    pdl_wait();
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int r0 = (blockIdx.x * 8 + warp) * 2;
    if (r0 >= rows) return;
    const bool two = r0 + 1 < rows;
    const __nv_bfloat16* w0 = w + (size_t)r0 * cols;
    const __nv_bfloat16* w1 = two ? w0 + cols : w0;
    float acc0 = 0.0f, acc1 = 0.0f;
    if ((cols & 7) == 0) {
        const int chunks = cols >> 3;
#pragma unroll 2
        for (int c = lane; c < chunks; c += 32) {
            uint4 u0 = load_stream_16(w0 + (size_t)c * 8);
            uint4 u1 = load_stream_16(w1 + (size_t)c * 8);
            float4 xa = __ldg(reinterpret_cast<const float4*>(x) + 2 * c);
            float4 xb = __ldg(reinterpret_cast<const float4*>(x) + 2 * c + 1);
            float xs[8] = {xa.x, xa.y, xa.z, xa.w, xb.x, xb.y, xb.z, xb.w};
            uint32_t a[4] = {u0.x, u0.y, u0.z, u0.w}, b[4] = {u1.x, u1.y, u1.z, u1.w};
#pragma unroll
            for (int k = 0; k < 4; k++) {
                acc0 = fmaf(__uint_as_float(a[k] << 16), xs[2 * k], acc0);
                acc0 = fmaf(__uint_as_float(a[k] & 0xFFFF0000u), xs[2 * k + 1], acc0);
                acc1 = fmaf(__uint_as_float(b[k] << 16), xs[2 * k], acc1);
                acc1 = fmaf(__uint_as_float(b[k] & 0xFFFF0000u), xs[2 * k + 1], acc1);
            }
        }
    } else {
        for (int c = lane; c < cols; c += 32) {
            acc0 = fmaf(__bfloat162float(w0[c]), x[c], acc0);
            acc1 = fmaf(__bfloat162float(w1[c]), x[c], acc1);
        }
    }
    acc0 = warp_sum(acc0);
    acc1 = warp_sum(acc1);
    if (lane == 0) {
        y[r0] = acc0;
        if (two) y[r0 + 1] = acc1;
    }
}

// lm_head for many tokens (ForwardAll): Y[t, r] = Σ_k X[t, k] · W[r, k], float32 CUDA cores, 64×64 tiles.
// grid (ceil(rows/64), ceil(tokens/64)), block (16, 16).
LMX_KERNEL void __launch_bounds__(256) lmx_gemm_bf16(const __nv_bfloat16* __restrict__ w, int rows, int cols, const float* __restrict__ x, int tokens, float* __restrict__ y) {
    pdl_trigger();
    pdl_wait();
    __shared__ float xs[16][65];
    __shared__ float ws[16][65];
    const int tx = threadIdx.x, ty = threadIdx.y, tid = ty * 16 + tx;
    const int r0 = blockIdx.x * 64, t0 = blockIdx.y * 64;
    float acc[4][4] = {};
    for (int k0 = 0; k0 < cols; k0 += 16) {
        for (int i = tid; i < 64 * 16; i += 256) {
            int rr = i / 16, kk = i % 16;
            int k = k0 + kk;
            int tok = t0 + rr, r = r0 + rr;
            xs[kk][rr] = (tok < tokens && k < cols) ? x[(size_t)tok * cols + k] : 0.0f;
            ws[kk][rr] = (r < rows && k < cols) ? __bfloat162float(w[(size_t)r * cols + k]) : 0.0f;
        }
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < 16; kk++) {
            float xv[4], wv[4];
#pragma unroll
            for (int i = 0; i < 4; i++) {
                xv[i] = xs[kk][ty + 16 * i];
                wv[i] = ws[kk][tx + 16 * i];
            }
#pragma unroll
            for (int i = 0; i < 4; i++)
#pragma unroll
                for (int j = 0; j < 4; j++) acc[i][j] = fmaf(xv[i], wv[j], acc[i][j]);
        }
        __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < 4; i++)
#pragma unroll
        for (int j = 0; j < 4; j++) {
            int tok = t0 + ty + 16 * i, r = r0 + tx + 16 * j;
            if (tok < tokens && r < rows) y[(size_t)tok * rows + r] = acc[i][j];
        }
}

// ---------------------------------------------------------------------------------------------------------------
// Greedy: the index of the largest logit, lowest index on ties, NaN never chosen, 0 when nothing beats −∞
// (Sampler.ArgMax). Phase 1: per-CTA best → (value, index) pairs; phase 2 (one CTA) picks the winner, writes it to
// *token and history[*step], and advances *pos and *step (the decode graph's own bookkeeping).
namespace {
__device__ __forceinline__ void better(float& bv, int& bi, float v, int i) {
    if (v > bv || (v == bv && i < bi)) { bv = v; bi = i; }
}
__device__ __forceinline__ void block_best(float& bv, int& bi) {
    __shared__ float sv[32];
    __shared__ int si[32];
    for (int o = 16; o > 0; o >>= 1) {
        float ov = __shfl_xor_sync(0xFFFFFFFFu, bv, o);
        int oi = __shfl_xor_sync(0xFFFFFFFFu, bi, o);
        better(bv, bi, ov, oi);
    }
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    if (lane == 0) { sv[warp] = bv; si[warp] = bi; }
    __syncthreads();
    if (warp == 0) {
        int warps = (blockDim.x + 31) >> 5;
        bv = lane < warps ? sv[lane] : -INFINITY;
        bi = lane < warps ? si[lane] : 0x7FFFFFFF;
        for (int o = 16; o > 0; o >>= 1) {
            float ov = __shfl_xor_sync(0xFFFFFFFFu, bv, o);
            int oi = __shfl_xor_sync(0xFFFFFFFFu, bi, o);
            better(bv, bi, ov, oi);
        }
    }
}
}  // namespace

LMX_KERNEL void lmx_argmax_partial(const float* __restrict__ logits, int n, float* __restrict__ values, int* __restrict__ indices) {
    pdl_trigger();
    pdl_wait();
    float bv = -INFINITY;
    int bi = 0x7FFFFFFF;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        float v = logits[i];
        if (v > bv) { bv = v; bi = i; }  // strided ascending: the first maximum of this thread
    }
    block_best(bv, bi);
    if (threadIdx.x == 0) { values[blockIdx.x] = bv; indices[blockIdx.x] = bi; }
}

LMX_KERNEL void lmx_argmax_final(const float* __restrict__ values, const int* __restrict__ indices, int parts,
                                 int* __restrict__ token, int* __restrict__ history, int* __restrict__ step, int* __restrict__ pos) {
    pdl_trigger();
    pdl_wait();
    float bv = -INFINITY;
    int bi = 0x7FFFFFFF;
    for (int i = threadIdx.x; i < parts; i += blockDim.x) better(bv, bi, values[i], indices[i]);
    block_best(bv, bi);
    if (threadIdx.x == 0) {
        int id = bi == 0x7FFFFFFF ? 0 : bi;
        *token = id;
        if (history != nullptr) history[*step] = id;
        if (step != nullptr) *step += 1;
        if (pos != nullptr) *pos += 1;
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Sampling penalties (Sampler.ApplyPenalties): for each distinct id in the window with its count,
// v = rep ≠ 1 ? (v > 0 ? v / rep : v · rep) : v; v −= count·freq + pres. One thread per id.
LMX_KERNEL void lmx_penalties(float* logits, const int* ids, const int* counts, int n, float repetition, float frequency, float presence) {
    pdl_trigger();
    pdl_wait();
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float v = logits[ids[i]];
    if (repetition != 1.0f) v = v > 0.0f ? v / repetition : v * repetition;
    logits[ids[i]] = v - ((float)counts[i] * frequency) - presence;
}

// Temperature sampling with Sampler's semantics, one CTA of 1024 threads:
// p_i = exp(max((l_i − max)·(1/T), −87)) unnormalised; then top-k (k largest, ties by lower id), else the nucleus
// candidates (p ≥ cutoff, cutoff = max·0.25^j lowered until they hold ≥ topP of the mass), sorted by (p desc, id asc),
// cut at the first prefix whose share of the candidates' mass reaches topP; r = u·(kept mass), and the first candidate
// whose running sum exceeds r is drawn. Without top-k/top-p the draw scans ids in order. u comes from the host's
// seeded System.Random (one NextDouble per draw, as the CPU sampler). Candidate lists longer than `capacity` return −1
// in *token (the caller then samples on the host).
namespace {
constexpr int kSampleThreads = 1024;
__device__ double block_sum_double(double v, double* shared) {
    v = warp_sum_double(v);
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    __syncthreads();
    if (lane == 0) shared[warp] = v;
    __syncthreads();
    double total = 0.0;
    if (threadIdx.x == 0) {
        for (int w = 0; w < kSampleThreads / 32; w++) total += shared[w];
        shared[32] = total;
    }
    __syncthreads();
    return shared[32];
}
__device__ int block_sum_int(int v, int* shared) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xFFFFFFFFu, v, o);
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    __syncthreads();
    if (lane == 0) shared[warp] = v;
    __syncthreads();
    if (threadIdx.x == 0) {
        int total = 0;
        for (int w = 0; w < kSampleThreads / 32; w++) total += shared[w];
        shared[32] = total;
    }
    __syncthreads();
    return shared[32];
}
// Sort key: probability descending, then id ascending — as one 64-bit unsigned key, ascending.
__device__ __forceinline__ unsigned long long sample_key(float p, int id) {
    return ((unsigned long long)(~__float_as_uint(p)) << 32) | (unsigned)id;
}
}  // namespace

LMX_KERNEL void __launch_bounds__(1024) lmx_sample(const float* __restrict__ logits, int n, float temperature, int topK, float topP, double u,
                                                   float* __restrict__ probs, unsigned long long* __restrict__ keys, int capacity, int* __restrict__ token) {
    pdl_trigger();
    pdl_wait();
    __shared__ double dsh[33];
    __shared__ int ish[33];
    __shared__ float fsh[32];
    __shared__ int chosen;
    const int tid = threadIdx.x;

    float m = -INFINITY;
    for (int i = tid; i < n; i += kSampleThreads) m = fmaxf(m, logits[i]);
    m = warp_max(m);
    if ((tid & 31) == 0) fsh[tid >> 5] = m;
    __syncthreads();
    m = -INFINITY;
    for (int w = 0; w < 32; w++) m = fmaxf(m, fsh[w]);
    const float invT = 1.0f / temperature;
    for (int i = tid; i < n; i += kSampleThreads) probs[i] = expf(fmaxf(__fmul_rn(logits[i] - m, invT), -87.0f));
    __syncthreads();

    bool useTopK = topK > 0 && topK < n;
    bool useTopP = topP < 1.0f;
    if (!useTopK && !useTopP) {
        // Draw over all ids in order: per-thread contiguous ranges, prefix over threads.
        int per = (n + kSampleThreads - 1) / kSampleThreads;
        int lo = min(n, tid * per), hi = min(n, lo + per);
        double local = 0.0;
        for (int i = lo; i < hi; i++) local += probs[i];
        __shared__ double prefix[kSampleThreads];
        prefix[tid] = local;
        __syncthreads();
        if (tid == 0) {
            double acc = 0.0;
            for (int i = 0; i < kSampleThreads; i++) { double v = prefix[i]; prefix[i] = acc; acc += v; }
            dsh[32] = acc;
            chosen = -1;
        }
        __syncthreads();
        double r = u * dsh[32];
        double acc = prefix[tid];
        if (lo < hi && r < acc + local && r >= acc) {
            for (int i = lo; i < hi; i++) {
                acc += probs[i];
                if (r < acc) { chosen = i; break; }
            }
        }
        __syncthreads();
        if (tid == 0) {
            if (chosen < 0) {  // rounding pushed r past the end: the most likely id, as the CPU fallback
                float bv = -1.0f; int bi = 0;
                for (int i = 0; i < n; i++) if (probs[i] > bv) { bv = probs[i]; bi = i; }
                chosen = bi;
            }
            *token = chosen;
        }
        return;
    }

    // Candidate selection.
    int count;
    if (useTopK) {
        // Radix select of the k-th largest probability (positive floats order as their bits).
        unsigned prefixBits = 0, mask = 0;
        int remaining = topK;
        __shared__ int hist[256];
        for (int shift = 24; shift >= 0; shift -= 8) {
            for (int i = tid; i < 256; i += kSampleThreads) hist[i] = 0;
            __syncthreads();
            for (int i = tid; i < n; i += kSampleThreads) {
                unsigned b = __float_as_uint(probs[i]);
                if ((b & mask) == prefixBits) atomicAdd(&hist[(b >> shift) & 0xFF], 1);
            }
            __syncthreads();
            if (tid == 0) {
                int acc = 0, digit = 255;
                for (; digit >= 0; digit--) {
                    if (acc + hist[digit] >= remaining) break;
                    acc += hist[digit];
                }
                ish[32] = digit;
                ish[31] = remaining - acc;
            }
            __syncthreads();
            prefixBits |= (unsigned)ish[32] << shift;
            mask |= 0xFFu << shift;
            remaining = ish[31];
            __syncthreads();
        }
        // Candidates: every p above the k-th value, plus the lowest ids equal to it (`remaining` of them).
        float kth = __uint_as_float(prefixBits);
        if (tid == 0) ish[30] = 0;
        __syncthreads();
        for (int i = tid; i < n; i += kSampleThreads) {
            if (probs[i] > kth) {
                int slot = atomicAdd(&ish[30], 1);
                if (slot < capacity) keys[slot] = sample_key(probs[i], i);
            }
        }
        __syncthreads();
        // The lowest ids equal to the k-th value: contiguous id ranges per thread, ranked by a prefix over threads.
        {
            __shared__ int equalPrefix[kSampleThreads];
            int per = (n + kSampleThreads - 1) / kSampleThreads;
            int lo = min(n, tid * per), hi = min(n, lo + per);
            int local = 0;
            for (int i = lo; i < hi; i++) local += probs[i] == kth ? 1 : 0;
            equalPrefix[tid] = local;
            __syncthreads();
            if (tid == 0) {
                int acc = 0;
                for (int i = 0; i < kSampleThreads; i++) { int v = equalPrefix[i]; equalPrefix[i] = acc; acc += v; }
            }
            __syncthreads();
            int rank = equalPrefix[tid];
            int above = ish[30];
            for (int i = lo; i < hi && rank < remaining; i++) {
                if (probs[i] == kth) {
                    int slot = above + rank;
                    if (slot < capacity) keys[slot] = sample_key(probs[i], i);
                    rank++;
                }
            }
            __syncthreads();
            if (tid == 0) ish[30] = above + remaining;
            __syncthreads();
        }
        count = ish[30];
    } else {
        double total = 0.0;
        for (int i = tid; i < n; i += kSampleThreads) total += probs[i];
        total = block_sum_double(total, dsh);
        float cutoff = 1.0f;  // max p is exp(0) = 1
        while (true) {
            cutoff *= 0.25f;
            double mass = 0.0;
            int c = 0;
            for (int i = tid; i < n; i += kSampleThreads)
                if (probs[i] >= cutoff) { mass += probs[i]; c++; }
            mass = block_sum_double(mass, dsh);
            c = block_sum_int(c, ish);
            if (mass >= (double)topP * total || cutoff == 0.0f || c == n) { count = c; break; }
        }
        if (tid == 0) ish[30] = 0;
        __syncthreads();
        if (count <= capacity) {
            for (int i = tid; i < n; i += kSampleThreads)
                if (probs[i] >= cutoff) keys[atomicAdd(&ish[30], 1)] = sample_key(probs[i], i);
        }
        __syncthreads();
    }
    if (count > capacity) {
        if (tid == 0) *token = -1;
        return;
    }

    // Sort the candidates (bitonic, in global scratch; capacity is a power of two ≥ count).
    int size = 1;
    while (size < count) size <<= 1;
    for (int i = count + tid; i < size; i += kSampleThreads) keys[i] = ~0ull;
    __syncthreads();
    for (int k = 2; k <= size; k <<= 1) {
        for (int j = k >> 1; j > 0; j >>= 1) {
            for (int i = tid; i < size; i += kSampleThreads) {
                int partner = i ^ j;
                if (partner > i) {
                    unsigned long long a = keys[i], b = keys[partner];
                    bool up = (i & k) == 0;
                    if ((a > b) == up) { keys[i] = b; keys[partner] = a; }
                }
            }
            __syncthreads();
        }
    }

    if (tid == 0) {
        double sum = 0.0;
        for (int i = 0; i < count; i++) sum += __uint_as_float(~(unsigned)(keys[i] >> 32));
        int cut = count;
        double kept = sum;
        if (useTopP) {
            double cumulative = 0.0, keptMass = 0.0;
            for (int i = 0; i < count; i++) {
                double p = __uint_as_float(~(unsigned)(keys[i] >> 32));
                cumulative += p / sum;
                keptMass += p;
                if (cumulative >= (double)topP) { cut = i + 1; break; }
            }
            kept = keptMass;  // the CPU sampler's `sum = kept`, also when rounding never reaches topP
        }
        double r = u * kept, acc = 0.0;
        int id = (int)(unsigned)(keys[cut - 1] & 0xFFFFFFFFu);
        for (int i = 0; i < cut; i++) {
            acc += __uint_as_float(~(unsigned)(keys[i] >> 32));
            if (r < acc) { id = (int)(unsigned)(keys[i] & 0xFFFFFFFFu); break; }
        }
        *token = id;
    }
}

// Set a device int (graph bookkeeping without host copies).
LMX_KERNEL void lmx_set_int(int* dst, int value) {
    pdl_wait();
    *dst = value;
}
