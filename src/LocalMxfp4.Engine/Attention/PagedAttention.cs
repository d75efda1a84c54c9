using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using LocalMxfp4.Engine.Contract;
using LocalMxfp4.Engine.Layers;
using LocalMxfp4.Numerics;

namespace LocalMxfp4.Engine.Attention;

/// <summary>
/// Grouped-query attention of a step's rows over their sequences' cached positions, read through block tables. One
/// work item is a (row, KV head) pair: each key and value row is read once for all the query heads that share it.
/// Every output is computed in a fixed order that depends only on the row's own sequence and position, so a row gives
/// the same bits whichever other rows share the step (the serving layer's batched = solo guarantee).
/// </summary>
internal static unsafe class PagedAttention
{
    [ThreadStatic]
    private static float[]? s_scores;

    /// <summary>Stores the step's keys <c>[rows, kvWidth]</c> (after RoPE) and values at each row's position.</summary>
    public static void Write(PagedKvCache cache, int layer, ReadOnlySpan<float> keys, ReadOnlySpan<float> values, StepRows rows)
    {
        int heads = cache.KeyValueHeads, dim = cache.HeadDim, size = cache.BlockSize, width = heads * dim;
        for (int r = 0; r < rows.Count; r++)
        {
            int position = rows.Position[r];
            int block = rows.Table(r)[position / size], slot = position % size;
            ReadOnlySpan<float> k = keys.Slice(r * width, width), v = values.Slice(r * width, width);
            if (cache.Precision == KvCachePrecision.Float32)
            {
                (float[] ka, int ko) = cache.Keys32(layer, block);
                (float[] va, int vo) = cache.Values32(layer, block);
                for (int h = 0; h < heads; h++)
                {
                    int kb = ko + (h * dim * size) + slot, vb = vo + (((h * size) + slot) * dim);
                    for (int d = 0; d < dim; d++)
                    {
                        ka[kb + (d * size)] = k[(h * dim) + d];
                    }

                    v.Slice(h * dim, dim).CopyTo(va.AsSpan(vb, dim));
                }
            }
            else
            {
                (ushort[] ka, int ko) = cache.Keys16(layer, block);
                (ushort[] va, int vo) = cache.Values16(layer, block);
                for (int h = 0; h < heads; h++)
                {
                    int kb = ko + (h * dim * size) + slot, vb = vo + (((h * size) + slot) * dim);
                    for (int d = 0; d < dim; d++)
                    {
                        ka[kb + (d * size)] = BFloat16.RoundToBits(k[(h * dim) + d]);
                    }

                    BFloat16.FromSingle(v.Slice(h * dim, dim), va.AsSpan(vb, dim));
                }
            }
        }
    }

    /// <summary>Attention output <c>[rows, heads·headDim]</c> of the queries <c>[rows, heads·headDim]</c>.</summary>
    public static void Run(PagedKvCache cache, int layer, float[] queries, float[] output, StepRows rows, int queryHeads, ParallelRows parallel)
    {
        int kvHeads = cache.KeyValueHeads, dim = cache.HeadDim;
        int items = rows.Count * kvHeads;
        float scale = 1f / MathF.Sqrt(dim);
        long work = (long)(rows.MaxPosition + 1) * dim * 2 * (queryHeads / kvHeads);
        parallel.For(items, work, (from, to) =>
        {
            for (int i = from; i < to; i++)
            {
                // Zig-zag order: contiguous chunks mix early (short) and late (long) rows of a prefill.
                int pair = i >> 1;
                int item = (i & 1) == 0 ? pair : items - 1 - pair;
                int row = item / kvHeads, kvHead = item % kvHeads;
                Item(cache, layer, queries, output, rows, row, kvHead, queryHeads, scale);
            }
        });
    }

    private static void Item(PagedKvCache cache, int layer, float[] queries, float[] output, StepRows rows, int row, int kvHead, int queryHeads, float scale)
    {
        int dim = cache.HeadDim, size = cache.BlockSize, group = queryHeads / cache.KeyValueHeads;
        int visible = rows.Position[row] + 1;
        int blocks = (visible + size - 1) / size, padded = blocks * size;
        float[] scores = s_scores is { } s && s.Length >= group * padded ? s : (s_scores = new float[Math.Max(group * padded, 1024)]);
        ReadOnlySpan<int> table = rows.Table(row);
        int queryOffset = (row * queryHeads * dim) + (kvHead * group * dim);
        fixed (float* q = &queries[queryOffset])
        fixed (float* o = &output[queryOffset])
        fixed (float* sc = scores)
        {
            for (int b = 0; b < blocks; b++)
            {
                int block = table[b];
                if (cache.Precision == KvCachePrecision.Float32)
                {
                    (float[] ka, int ko) = cache.Keys32(layer, block);
                    fixed (float* k = &ka[ko + (kvHead * dim * size)])
                    {
                        Scores32(k, q, sc + (b * size), padded, group, dim, size, scale);
                    }
                }
                else
                {
                    (ushort[] ka, int ko) = cache.Keys16(layer, block);
                    fixed (ushort* k = &ka[ko + (kvHead * dim * size)])
                    {
                        Scores16(k, q, sc + (b * size), padded, group, dim, size, scale);
                    }
                }
            }

            Span<float> sums = stackalloc float[group];
            for (int g = 0; g < group; g++)
            {
                sums[g] = Exponentiate(new Span<float>(sc + (g * padded), padded), visible);
            }

            new Span<float>(o, group * dim).Clear();
            for (int b = 0; b < blocks; b++)
            {
                int block = table[b], slots = Math.Min(size, visible - (b * size));
                if (cache.Precision == KvCachePrecision.Float32)
                {
                    (float[] va, int vo) = cache.Values32(layer, block);
                    fixed (float* v = &va[vo + (kvHead * size * dim)])
                    {
                        Accumulate32(v, sc + (b * size), padded, o, group, dim, slots);
                    }
                }
                else
                {
                    (ushort[] va, int vo) = cache.Values16(layer, block);
                    fixed (ushort* v = &va[vo + (kvHead * size * dim)])
                    {
                        Accumulate16(v, sc + (b * size), padded, o, group, dim, slots);
                    }
                }
            }

            for (int g = 0; g < group; g++)
            {
                TensorPrimitives.Divide(new ReadOnlySpan<float>(o + (g * dim), dim), sums[g], new Span<float>(o + (g * dim), dim));
            }
        }
    }

    /// <summary>
    /// Turns one head's scores into unnormalised weights <c>exp(s − max)</c> over the first <paramref name="visible"/>
    /// entries (zero after them) and returns their sum, in an order fixed by <paramref name="visible"/>.
    /// </summary>
    private static float Exponentiate(Span<float> s, int visible)
    {
        Span<float> live = s[..visible];
        // The max subtracted (raw exponentials overflow once a score passes ~88), and clamped at −87: exp below that is a
        // float32 denormal, computed through slow microcode, and < 1e-38 of the largest weight.
        TensorPrimitives.Subtract(live, TensorPrimitives.Max(live), live);
        TensorPrimitives.Max(live, -87f, live);
        TensorPrimitives.Exp(live, live);
        s[visible..].Clear();
        if (Vector256.IsHardwareAccelerated)
        {
            Vector256<float> acc = Vector256<float>.Zero;
            int i = 0;
            for (; i + 8 <= s.Length; i += 8)
            {
                acc += Vector256.Create(s.Slice(i, 8));
            }

            float total = Vector256.Sum(acc);
            for (; i < s.Length; i++)
            {
                total += s[i];
            }

            return total;
        }

        float sum = 0;
        foreach (float v in s)
        {
            sum += v;
        }

        return sum;
    }

    /// <summary>Scores of one block's positions for the group's query heads: <c>scale · q·k</c>, written at <c>scores[g·stride + slot]</c>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Scores32(float* keys, float* q, float* scores, int stride, int group, int dim, int size, float scale)
    {
        if (!Vector256.IsHardwareAccelerated)
        {
            for (int g = 0; g < group; g++)
            {
                for (int slot = 0; slot < size; slot++)
                {
                    float acc = 0;
                    for (int d = 0; d < dim; d++)
                    {
                        acc = MathF.FusedMultiplyAdd(q[(g * dim) + d], keys[(d * size) + slot], acc);
                    }

                    scores[(g * stride) + slot] = acc * scale;
                }
            }

            return;
        }

        Vector256<float> vs = Vector256.Create(scale);
        for (int sub = 0; sub < size; sub += 8)
        {
            for (int g0 = 0; g0 < group; g0 += 4)
            {
                float* q0 = q + (g0 * dim), q1 = q + (Math.Min(g0 + 1, group - 1) * dim), q2 = q + (Math.Min(g0 + 2, group - 1) * dim), q3 = q + (Math.Min(g0 + 3, group - 1) * dim);
                Vector256<float> a0 = Vector256<float>.Zero, a1 = a0, a2 = a0, a3 = a0;
                float* k = keys + sub;
                for (int d = 0; d < dim; d++, k += size)
                {
                    Vector256<float> kv = Vector256.Load(k);
                    a0 = Vector256.FusedMultiplyAdd(Vector256.Create(q0[d]), kv, a0);
                    a1 = Vector256.FusedMultiplyAdd(Vector256.Create(q1[d]), kv, a1);
                    a2 = Vector256.FusedMultiplyAdd(Vector256.Create(q2[d]), kv, a2);
                    a3 = Vector256.FusedMultiplyAdd(Vector256.Create(q3[d]), kv, a3);
                }

                StoreScores(scores + sub, stride, g0, group, a0 * vs, a1 * vs, a2 * vs, a3 * vs);
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Scores16(ushort* keys, float* q, float* scores, int stride, int group, int dim, int size, float scale)
    {
        if (!Vector256.IsHardwareAccelerated)
        {
            for (int g = 0; g < group; g++)
            {
                for (int slot = 0; slot < size; slot++)
                {
                    float acc = 0;
                    for (int d = 0; d < dim; d++)
                    {
                        acc = MathF.FusedMultiplyAdd(q[(g * dim) + d], BitConverter.Int32BitsToSingle(keys[(d * size) + slot] << 16), acc);
                    }

                    scores[(g * stride) + slot] = acc * scale;
                }
            }

            return;
        }

        Vector256<float> vs = Vector256.Create(scale);
        for (int sub = 0; sub < size; sub += 8)
        {
            for (int g0 = 0; g0 < group; g0 += 4)
            {
                float* q0 = q + (g0 * dim), q1 = q + (Math.Min(g0 + 1, group - 1) * dim), q2 = q + (Math.Min(g0 + 2, group - 1) * dim), q3 = q + (Math.Min(g0 + 3, group - 1) * dim);
                Vector256<float> a0 = Vector256<float>.Zero, a1 = a0, a2 = a0, a3 = a0;
                ushort* k = keys + sub;
                for (int d = 0; d < dim; d++, k += size)
                {
                    Vector256<float> kv = Widen(k);
                    a0 = Vector256.FusedMultiplyAdd(Vector256.Create(q0[d]), kv, a0);
                    a1 = Vector256.FusedMultiplyAdd(Vector256.Create(q1[d]), kv, a1);
                    a2 = Vector256.FusedMultiplyAdd(Vector256.Create(q2[d]), kv, a2);
                    a3 = Vector256.FusedMultiplyAdd(Vector256.Create(q3[d]), kv, a3);
                }

                StoreScores(scores + sub, stride, g0, group, a0 * vs, a1 * vs, a2 * vs, a3 * vs);
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreScores(float* scores, int stride, int g0, int group, Vector256<float> a0, Vector256<float> a1, Vector256<float> a2, Vector256<float> a3)
    {
        a0.Store(scores + (g0 * stride));
        if (g0 + 1 < group)
        {
            a1.Store(scores + ((g0 + 1) * stride));
        }

        if (g0 + 2 < group)
        {
            a2.Store(scores + ((g0 + 2) * stride));
        }

        if (g0 + 3 < group)
        {
            a3.Store(scores + ((g0 + 3) * stride));
        }
    }

    /// <summary>Adds <c>Σ_slot w[g, slot] · v[slot]</c> of one block into each head's output (unnormalised).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Accumulate32(float* values, float* weights, int stride, float* output, int group, int dim, int slots)
    {
        if (!Vector256.IsHardwareAccelerated || dim % 8 != 0)
        {
            for (int g = 0; g < group; g++)
            {
                for (int d = 0; d < dim; d++)
                {
                    float acc = output[(g * dim) + d];
                    for (int slot = 0; slot < slots; slot++)
                    {
                        acc = MathF.FusedMultiplyAdd(weights[(g * stride) + slot], values[(slot * dim) + d], acc);
                    }

                    output[(g * dim) + d] = acc;
                }
            }

            return;
        }

        for (int c = 0; c < dim; c += 8)
        {
            for (int g0 = 0; g0 < group; g0 += 4)
            {
                float* w0 = weights + (g0 * stride), w1 = weights + (Math.Min(g0 + 1, group - 1) * stride), w2 = weights + (Math.Min(g0 + 2, group - 1) * stride), w3 = weights + (Math.Min(g0 + 3, group - 1) * stride);
                Vector256<float> a0 = Vector256.Load(output + (g0 * dim) + c);
                Vector256<float> a1 = g0 + 1 < group ? Vector256.Load(output + ((g0 + 1) * dim) + c) : default;
                Vector256<float> a2 = g0 + 2 < group ? Vector256.Load(output + ((g0 + 2) * dim) + c) : default;
                Vector256<float> a3 = g0 + 3 < group ? Vector256.Load(output + ((g0 + 3) * dim) + c) : default;
                float* v = values + c;
                for (int slot = 0; slot < slots; slot++, v += dim)
                {
                    Vector256<float> vv = Vector256.Load(v);
                    a0 = Vector256.FusedMultiplyAdd(Vector256.Create(w0[slot]), vv, a0);
                    a1 = Vector256.FusedMultiplyAdd(Vector256.Create(w1[slot]), vv, a1);
                    a2 = Vector256.FusedMultiplyAdd(Vector256.Create(w2[slot]), vv, a2);
                    a3 = Vector256.FusedMultiplyAdd(Vector256.Create(w3[slot]), vv, a3);
                }

                StoreOutputs(output + c, dim, g0, group, a0, a1, a2, a3);
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Accumulate16(ushort* values, float* weights, int stride, float* output, int group, int dim, int slots)
    {
        if (!Vector256.IsHardwareAccelerated || dim % 8 != 0)
        {
            for (int g = 0; g < group; g++)
            {
                for (int d = 0; d < dim; d++)
                {
                    float acc = output[(g * dim) + d];
                    for (int slot = 0; slot < slots; slot++)
                    {
                        acc = MathF.FusedMultiplyAdd(weights[(g * stride) + slot], BitConverter.Int32BitsToSingle(values[(slot * dim) + d] << 16), acc);
                    }

                    output[(g * dim) + d] = acc;
                }
            }

            return;
        }

        for (int c = 0; c < dim; c += 8)
        {
            for (int g0 = 0; g0 < group; g0 += 4)
            {
                float* w0 = weights + (g0 * stride), w1 = weights + (Math.Min(g0 + 1, group - 1) * stride), w2 = weights + (Math.Min(g0 + 2, group - 1) * stride), w3 = weights + (Math.Min(g0 + 3, group - 1) * stride);
                Vector256<float> a0 = Vector256.Load(output + (g0 * dim) + c);
                Vector256<float> a1 = g0 + 1 < group ? Vector256.Load(output + ((g0 + 1) * dim) + c) : default;
                Vector256<float> a2 = g0 + 2 < group ? Vector256.Load(output + ((g0 + 2) * dim) + c) : default;
                Vector256<float> a3 = g0 + 3 < group ? Vector256.Load(output + ((g0 + 3) * dim) + c) : default;
                ushort* v = values + c;
                for (int slot = 0; slot < slots; slot++, v += dim)
                {
                    Vector256<float> vv = Widen(v);
                    a0 = Vector256.FusedMultiplyAdd(Vector256.Create(w0[slot]), vv, a0);
                    a1 = Vector256.FusedMultiplyAdd(Vector256.Create(w1[slot]), vv, a1);
                    a2 = Vector256.FusedMultiplyAdd(Vector256.Create(w2[slot]), vv, a2);
                    a3 = Vector256.FusedMultiplyAdd(Vector256.Create(w3[slot]), vv, a3);
                }

                StoreOutputs(output + c, dim, g0, group, a0, a1, a2, a3);
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreOutputs(float* output, int dim, int g0, int group, Vector256<float> a0, Vector256<float> a1, Vector256<float> a2, Vector256<float> a3)
    {
        a0.Store(output + (g0 * dim));
        if (g0 + 1 < group)
        {
            a1.Store(output + ((g0 + 1) * dim));
        }

        if (g0 + 2 < group)
        {
            a2.Store(output + ((g0 + 2) * dim));
        }

        if (g0 + 3 < group)
        {
            a3.Store(output + ((g0 + 3) * dim));
        }
    }

    /// <summary>Eight bfloat16 values widened to float32 (a 16-bit shift: exact).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Widen(ushort* p) =>
        (Vector256.WidenLower(Vector256.Create(Vector128.Load(p), Vector128<ushort>.Zero)) << 16).AsSingle();
}
