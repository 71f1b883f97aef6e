// Gradient statistics for a whole list of tensors in one launch.
//
// Block b works on chunk bmap[b].y of tensor bmap[b].x (multi_tensor_apply style) and
// computes over finite elements: sum and sum of squares (accumulated in fp64 per thread,
// so 1e30^2 cannot overflow and 1e-30^2 cannot underflow; see GradVisit::general for the
// guarded fp32 partial sums of each 16-byte vector), abs-max, the non-finite count and a
// 64-bin floor(log2|x|) histogram.
//
// Histogram: shared memory, a private 16-bit counter per thread and row (word w of a row
// holds thread w in its low half and thread w + 64 in its high half; a thread counts at
// most chunk / THREADS + 2 <= 514 elements of a block).  A thread's atomicAdd never meets
// another lane's address: no bank conflicts and no contention however concentrated the
// magnitudes are.  Rows are not bins (see ROWS below); the block reduction folds them.
//
// Speed: bf16 data is instruction-bound, so the usual vector (all values finite with
// |x| in [2^-48, 2^16), i.e. fp32 exponent e in [79, 142]) takes a fast path: with
// a' = (bits << 1) - (79 << 24) (per 16-bit lane for a pair of bf16) the exponent byte of
// a' is the histogram row e - 79, so one byte permute (__byte_perm) of a' and the
// thread's column byte is the counter's shared address and one atomicAdd counts it; the
// check is one test of two bits of the vector's max a' (a value outside the range wraps
// or overflows into them), and the same max gives the abs-max.  The decision is taken per
// warp (__all_sync), so a warp with a zero or an extreme value anywhere takes the general
// path for that vector on all lanes (no divergence).  The general path is the previous
// kernel's (clamped bins; exact for zeros, subnormals, non-finite values, any magnitude).
// Sums are accumulated in the same order as before on every path and every vector goes
// to the same thread as before, so the results are bit-identical to the previous kernel.
//
// Determinism: a tensor that spans several blocks has each block write its fp64 sums as
// a partial row and add its counts (integers: exact in any order) into the tensor's
// accumulator row with 64-bit atomics.  The block that finishes last (atomic ticket per
// tensor) reduces the partial rows in block order with a fixed tree, reads and resets
// the accumulators and the ticket for the next launch, and writes the output row.
// Floating-point sums therefore never depend on scheduling.
#include "common.cuh"

// Fast path: 0 = none (the general path for every vector), 1 = for every dtype from the
// fp32 bits, 2 = 1 with bf16 pairs handled as packed 16-bit lanes (default).
#ifndef DSN_FAST
#define DSN_FAST 2
#endif
// 1 (default): a warp takes the fast path when all its lanes can; 0: each lane decides.
#ifndef DSN_VOTE
#define DSN_VOTE 1
#endif
// Histogram update: 0 = shared atomicAdd (default); 2 = none (benchmark diagnostics).
#ifndef DSN_HIST_MODE
#define DSN_HIST_MODE 0
#endif
// Minimum resident blocks per SM asked of the compiler: 8 caps registers at 64 per thread
// (no spills) so that 8 blocks of 128 threads fit an SM.  Measured on an H200
// (benchmarks/kernel_variants.py, 1e9 elements, % of torch.sum): bf16 86.6% with the
// compiler's choice (90 registers, 5 blocks), 92.8% with 6, 98.4% with 8; fp32 97.1%,
// 101.7%, 104.9%; bf16 with 10% zeros 62.4%, 64.6%, 67.7% (the previous kernel: 68.4%).
#ifndef DSN_MINB
#define DSN_MINB 8
#endif

namespace dsn {

constexpr int HWORDS = THREADS / 2;    // 32-bit words per histogram row (two 16-bit counters each)
constexpr int HROW = HWORDS * 4;       // bytes per row: 256, so a byte permute can form the address
static_assert(HROW == 256, "the fast path's byte-permute addressing needs 256-byte histogram rows");
// Rows: row r < 64 counts fp32 exponent e = r + E_ROW0 (fast path: bin max(e - 80, 1));
// the general path writes bin b in 1..63 to row b + 1 and bin 0 (zeros, non-finite) to
// row ROW_ZERO.
constexpr int E_ROW0 = 127 + HIST_EXP_MIN - 2;  // 79: row 0 <-> |x| in [2^-48, 2^-47)
constexpr int ROWS = HIST_BINS + 2;
constexpr int ROW_ZERO = HIST_BINS + 1;
constexpr u32 A_SHIFT32 = (u32)E_ROW0 << 24;              // a' = a - A_SHIFT32 (a = fp32 bits << 1)
constexpr u32 A_SHIFT16 = ((u32)E_ROW0 << 8) * 0x10001u;  // the same per 16-bit lane of a bf16 pair
constexpr u32 A_OUT32 = 0xc0000000u;  // a' has one of these bits set: e outside [79, 142]
constexpr u32 A_OUT16 = 0xc000c000u;

// The block's histogram (at namespace scope: GradVisit and the kernel both use it).
__shared__ __align__(16) u32 g_hist[ROWS * HWORDS];

__device__ __forceinline__ u32 bits1(float x) { return __float_as_uint(x) << 1; }  // sign dropped

__device__ __forceinline__ u32 vmax_u16x2(u32 a, u32 b) {
  u32 d;
  asm("max.u16x2 %0, %1, %2;" : "=r"(d) : "r"(a), "r"(b));
  return d;
}

// Whether every lane of the warp passes (UNIFORM: all 32 lanes are known to be here).
template <bool UNIFORM>
__device__ __forceinline__ bool warp_all(bool ok) {
#if DSN_VOTE
  if constexpr (UNIFORM) return __all_sync(0xffffffffu, ok);
#endif
  return ok;
}

struct GradVisit {
  double s, q;
  float mx;    // abs-max of the scalar and element-by-element values
  u32 amax;    // abs-max (bits << 1) of the vectors of the fast and middle paths
  u32 amax16;  // bf16 fast path: per-lane max of (word << 1)
  u32 nf;
  u32 cb;      // byte offset of this thread's word within a row (< 256)
  u32 inc;     // 1 for threads 0..63, 1 << 16 for threads 64..127

  __device__ __forceinline__ void add_at(u32 byte_offset) {
#if DSN_HIST_MODE == 0
    // A reduction on a 32-bit shared-window address: ptxas keeps the array's address in a
    // uniform register and folds it into the instruction ([R + UR]), no add per count.
    const u32 base = (u32)__cvta_generic_to_shared(g_hist);
    asm volatile("red.shared.add.u32 [%0], %1;" ::"r"(base + byte_offset), "r"(inc) : "memory");
#else
    (void)byte_offset;
#endif
  }

  // General bin of one value from a = bits << 1 (sign dropped): floor(log2|v|) = biased
  // exponent - 127 for normals; subnormals (exponent 0) clamp to bin 1, exact zeros go to
  // bin 0; callers pass a = 0 for non-finite values.  Row = bin + 1; bin 0: ROW_ZERO.
  __device__ __forceinline__ void hist(u32 a) {
    const int e = (int)(a >> 24);
    const int row = a ? min(max(e - E_ROW0, 2), HIST_BINS) : ROW_ZERO;
    add_at(((u32)row << 8) + cb);
  }

  // Fast-path row: the exponent byte that SEL picks from a' (byte 3 for fp32; 1 or 3 for
  // the two bf16 of a word) goes to byte 1 of the address, the thread's column to byte 0.
  template <u32 SEL>
  __device__ __forceinline__ void hist_fast(u32 a_shifted) { add_at(__byte_perm(a_shifted, cb, SEL)); }

  // Counts, abs-max and histogram of one element; returns it with non-finite -> 0.
  __device__ __forceinline__ float count(float x) {
    const bool fin = finite_f32(x);
    const float v = fin ? x : 0.0f;   // non-finite: counted, then treated as 0 (bin 0)
    nf += fin ? 0u : 1u;
    mx = fmaxf(mx, fabsf(v));
    hist(bits1(v));
    return v;
  }

  __device__ __forceinline__ void operator()(float x) {
    const double d = (double)count(x);
    s += d;
    q = fma(d, d, q);
  }

  // A vector whose values are not all in the fast range.  When the fp32 partial sum of
  // squares is inside [2^-60, 2^100] the fp32 partial sums are exact enough (squares of
  // 16-bit values are exact in fp32, fp32 squares round once: at most 2N-1 roundings,
  // < 1e-6 relative) and every value is finite, so only the bins need the general
  // formula; otherwise the vector is redone element by element in fp64, non-finite values
  // counted and left out.
  template <int N>
  __device__ __forceinline__ void general(const float (&f)[N], float sv, float qv) {
    if (qv >= 0x1p-60f && qv <= 0x1p100f) {  // all finite; |sv| <= sqrt(N * qv): no overflow
      s += (double)sv;
      q += (double)qv;
#pragma unroll
      for (int k = 0; k < N; ++k) {
        const u32 a = bits1(f[k]);
        amax = max(amax, a);
        hist(a);
      }
    } else {
#pragma unroll
      for (int k = 0; k < N; ++k) (*this)(f[k]);
    }
  }

  // One 16-byte vector of N values as floats (fp32, fp16; bf16 unless DSN_FAST is 2).
  template <int N, bool UNIFORM>
  __device__ __forceinline__ void vecf(const float (&f)[N]) {
    float sv = 0.0f, qv = 0.0f;
#pragma unroll
    for (int k = 0; k < N; ++k) {
      sv += f[k];
      qv = fmaf(f[k], f[k], qv);
    }
#if DSN_FAST >= 1
    u32 ap[N], am = 0;
#pragma unroll
    for (int k = 0; k < N; ++k) {
      ap[k] = bits1(f[k]) - A_SHIFT32;
      am = max(am, ap[k]);
    }
    // qv >= 2^-60: the sums of such a vector are made exactly as the general path makes them.
    if (warp_all<UNIFORM>(!(am & A_OUT32) && qv >= 0x1p-60f)) {
      s += (double)sv;
      q += (double)qv;
      amax = max(amax, am + A_SHIFT32);
#pragma unroll
      for (int k = 0; k < N; ++k) hist_fast<0x5534>(ap[k]);
      return;
    }
#endif
    general<N>(f, sv, qv);
  }

  template <int DT, bool UNIFORM>
  __device__ __forceinline__ void vec(uint4 r) {
    float f[Elem<DT>::VEC];
    Elem<DT>::unpack(r, f);
#if DSN_FAST == 2
    if constexpr (DT == DT_BF16) {
      // The two bf16 of a word at once: in a' = (w << 1) - A_SHIFT16 the low value's
      // exponent row is byte 1, the high value's byte 3.  The high lane's bit 0 holds the
      // low value's sign, below the resolution of every test; a low lane that wraps
      // borrows from the high lane, but then the vector fails the test anyway.
      const u32 w[4] = {r.x, r.y, r.z, r.w};
      float sv = 0.0f, qv = 0.0f;
#pragma unroll
      for (int k = 0; k < 8; ++k) {
        sv += f[k];
        qv = fmaf(f[k], f[k], qv);
      }
      u32 ap[4];
#pragma unroll
      for (int k = 0; k < 4; ++k) ap[k] = (w[k] << 1) - A_SHIFT16;
      const u32 am = vmax_u16x2(vmax_u16x2(ap[0], ap[1]), vmax_u16x2(ap[2], ap[3]));
      if (warp_all<UNIFORM>(!(am & A_OUT16) && qv >= 0x1p-60f)) {
        s += (double)sv;
        q += (double)qv;
        amax16 = vmax_u16x2(amax16, am + A_SHIFT16);  // no carry between lanes: each < 0x8f00
#pragma unroll
        for (int k = 0; k < 4; ++k) {
          hist_fast<0x5514>(ap[k]);
          hist_fast<0x5534>(ap[k]);
        }
        return;
      }
      general<8>(f, sv, qv);
      return;
    }
#endif
    vecf<Elem<DT>::VEC, UNIFORM>(f);
  }

  __device__ __forceinline__ void finish() {
    // bf16 lanes of amax16 hold (bits << 1) of a value, plus the other value's sign in bit
    // 0 of the high lane: drop it and move each lane to the top of a word.
    amax = max(amax, max((amax16 & 0xfffeu) << 16, amax16 & 0xfffe0000u));
    mx = fmaxf(mx, __uint_as_float(amax >> 1));
  }
};

// The two 16-bit counters of one histogram word.
__device__ __forceinline__ u32 pair_sum(u32 w2) { return (w2 & 0xffffu) + (w2 >> 16); }

template <class Visit>
__device__ __forceinline__ void visit_chunk(const i64* __restrict__ m, const char* base, i64 chunk,
                                            i64 chunk_len, Visit& v) {
  const i64 numel = __ldg(m + M_NUMEL);
  const i64 start = chunk * chunk_len;
  const i64 rest = numel - start;
  const int len = (int)(rest < chunk_len ? (rest > 0 ? rest : 0) : chunk_len);
  const int dt = (int)__ldg(m + M_DTYPE);
  if (__ldg(m + M_MODE) == MODE_DENSE) {
    if (dt == DT_F32) dense_chunk<DT_F32>(base + start * 4, len, v);
    else if (dt == DT_BF16) dense_chunk<DT_BF16>(base + start * 2, len, v);
    else dense_chunk<DT_F16>(base + start * 2, len, v);
  } else {
    if (dt == DT_F32) strided_chunk<DT_F32>(m, base, start, len, v);
    else if (dt == DT_BF16) strided_chunk<DT_BF16>(m, base, start, len, v);
    else strided_chunk<DT_F16>(m, base, start, len, v);
  }
}

}  // namespace dsn

using namespace dsn;

extern "C" __global__ void __launch_bounds__(THREADS, DSN_MINB)
dsn_grad_stats(const i64* __restrict__ meta, const int2* __restrict__ bmap,
               const i64* __restrict__ ptrs, i64 chunk_len,
               double* __restrict__ part_f, u64* __restrict__ accu,
               u32* __restrict__ tickets, double* __restrict__ out) {
  u32* const hist = g_hist;
  __shared__ u32 tot[HIST_BINS];
  __shared__ double scratch[NWARPS];
  __shared__ float smx[NWARPS];
  __shared__ u32 snf[NWARPS];
  __shared__ double fin_s, fin_q;
  __shared__ float fin_mx;
  __shared__ u32 fin_nf;
  __shared__ u64 ctot[GPART_U];
  __shared__ bool am_last;

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int2 bm = bmap[blockIdx.x];
  const int t = bm.x;
  const i64* m = meta + (i64)t * M_COLS;

  uint4 zero;
  zero.x = zero.y = zero.z = zero.w = 0u;
#pragma unroll
  for (int i = tid; i < ROWS * HWORDS / 4; i += THREADS) reinterpret_cast<uint4*>(hist)[i] = zero;
  __syncthreads();  // rows are shared by two threads: all zero before anyone counts

  GradVisit v{0.0, 0.0, 0.0f, 0u, 0u, 0u, (u32)(tid % HWORDS) * 4u, tid < HWORDS ? 1u : 0x10000u};
  visit_chunk(m, reinterpret_cast<const char*>(__ldg(ptrs + t)), (i64)bm.y, chunk_len, v);
  v.finish();

  // Block reduction.  Floats: fixed shuffle tree then warps in order (deterministic).
  float mx = v.mx;
  u32 nf = v.nf;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    mx = fmaxf(mx, __shfl_down_sync(0xffffffffu, mx, o));
    nf += __shfl_down_sync(0xffffffffu, nf, o);
  }
  if (lane == 0) { smx[warp] = mx; snf[warp] = nf; }
  const double s = block_sum(v.s, scratch);   // contains __syncthreads (hist complete)
  const double q = block_sum(v.q, scratch);
  for (int b = warp; b < HIST_BINS; b += NWARPS) {
    // bin 0 <- row ROW_ZERO; bin 1 <- rows 0, 1, 2; bin b <- row b + 1.
    const int r0 = b == 0 ? ROW_ZERO : b + 1;
    u32 c = 0;
#pragma unroll
    for (int k = 0; k < HWORDS / 32; ++k) {
      c += pair_sum(hist[r0 * HWORDS + k * 32 + lane]);
      if (b == 1) c += pair_sum(hist[k * 32 + lane]) + pair_sum(hist[HWORDS + k * 32 + lane]);
    }
    c = __reduce_add_sync(0xffffffffu, c);
    if (lane == 0) tot[b] = c;
  }
  if (tid == 0) {
    float bm_ = 0.0f;
    u32 bn = 0;
    for (int w = 0; w < NWARPS; ++w) { bm_ = fmaxf(bm_, smx[w]); bn += snf[w]; }
    fin_s = s; fin_q = q; fin_mx = bm_; fin_nf = bn;
  }
  __syncthreads();

  const i64 nblk = __ldg(m + M_NBLK);
  double* row = out + (i64)t * GRAD_COLS;
  if (nblk == 1) {  // the whole tensor in this block: write its row directly
    if (tid == 0) {
      row[0] = fin_s; row[1] = fin_q; row[2] = (double)fin_mx; row[3] = (double)fin_nf;
      row[4] = (double)(tot[0] - fin_nf);
    }
    if (tid < HIST_BINS) row[5 + tid] = (double)(tid == 0 ? tot[0] - fin_nf : tot[tid]);
    return;
  }

  // Tensor spread over several blocks.  Counts and abs-max: 64-bit integer atomics into
  // the tensor's accumulator row (exact and order-free, so still deterministic).  Sums:
  // one fp64 partial row per block, reduced below in block order.
  const i64 blk = blockIdx.x;
  u64* acc = accu + (i64)t * GPART_U;
  if (tid == 0) {
    part_f[blk * GPART_F] = fin_s;
    part_f[blk * GPART_F + 1] = fin_q;
    atomicMax(acc, (u64)__float_as_uint(fin_mx));  // |x| bits order like the values
    if (fin_nf) atomicAdd(acc + 1, (u64)fin_nf);
  }
  if (tid < HIST_BINS && tot[tid]) atomicAdd(acc + 2 + tid, (u64)tot[tid]);
  __threadfence();
  __syncthreads();
  if (tid == 0) am_last = atomicAdd(tickets + t, 1u) == (u32)(nblk - 1);
  __syncthreads();
  if (!am_last) return;
  __threadfence();

  // Last block of tensor t: every other block's atomics and partial row are visible.
  const i64 first = __ldg(m + M_FIRST);
  double ps = 0.0, pq = 0.0;
  for (i64 r = tid; r < nblk; r += THREADS) {
    ps += __ldcg(part_f + (first + r) * GPART_F);
    pq += __ldcg(part_f + (first + r) * GPART_F + 1);
  }
  const double S = block_sum(ps, scratch);
  const double Q = block_sum(pq, scratch);
  if (tid < GPART_U) ctot[tid] = atomicExch(acc + tid, 0ull);  // read and reset for the next launch
  __syncthreads();
  const u64 nonfinite = ctot[1];
  if (tid == 0) {
    row[0] = S; row[1] = Q; row[2] = (double)__uint_as_float((u32)ctot[0]);
    row[3] = (double)nonfinite; row[4] = (double)(ctot[2] - nonfinite);
    tickets[t] = 0u;  // ready for the next launch
  }
  if (tid < HIST_BINS) row[5 + tid] = (double)(tid == 0 ? ctot[2] - nonfinite : ctot[2 + tid]);
}
