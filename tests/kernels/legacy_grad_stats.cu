// LEGACY (benchmark comparison only): dsnotebook/kernels/grad_stats.cu + common.cuh as of commit 3535277,
// before the bf16 fast path (issue 15).  tests (bit-identity) and benchmarks/kernel_variants.py compile it as "v0".
// Same launch signature as the current dsn_grad_stats.
// Shared layout and element access for the dsnotebook statistics kernels.
//
// Why one header: the Python launcher (dsnotebook/kernels/layout.py) writes the
// per-tensor table and the block map that these kernels read; the constants below are
// the contract between the two and tests/test_kernels_compile.py checks they agree.
//
// Self-contained on purpose (no <cuda_fp16.h>, no <cfloat>): the same text compiles
// with NVRTC through cupy.RawModule and standalone with `nvcc -arch=sm_90 -c`.

namespace dsn {

typedef long long i64;
typedef unsigned long long u64;
typedef unsigned int u32;
typedef unsigned short u16;

// Launch shape: one block of THREADS threads per (tensor, chunk).  The chunk length is a
// launch argument chosen by the launcher (smaller chunks for small sets of tensors, so
// that every multiprocessor gets work); MAX_CHUNK bounds it.
constexpr int THREADS = 128;
constexpr int NWARPS = THREADS / 32;
constexpr i64 MAX_CHUNK = 65536;

// Output layout, identical to dsnotebook/stats.py.
constexpr int HIST_BINS = 64;
constexpr int HIST_EXP_MIN = -46;
constexpr int GRAD_COLS = 5 + HIST_BINS;
constexpr int UPDATE_COLS = 3;

// Per-tensor table: M_COLS int64 per tensor.
constexpr int MAXDIM = 6;
constexpr int M_PTR = 0;      // data pointer when the table was built (informational: the
                              // kernels read the current pointers from their own argument)
constexpr int M_NUMEL = 1;
constexpr int M_DTYPE = 2;    // DT_*
constexpr int M_MODE = 3;     // MODE_*
constexpr int M_FIRST = 4;    // first block (row of the partials) of this tensor
constexpr int M_NBLK = 5;     // blocks of this tensor (>= 1, also for empty tensors)
constexpr int M_SNAP = 6;     // byte offset of this tensor in the snapshot buffer
constexpr int M_NDIM = 7;     // MODE_STRIDED: collapsed dims
constexpr int M_SIZES = 8;
constexpr int M_STRIDES = M_SIZES + MAXDIM;  // in elements
constexpr int M_COLS = M_STRIDES + MAXDIM;

constexpr int DT_F32 = 0;
constexpr int DT_F16 = 1;
constexpr int DT_BF16 = 2;

// DENSE: non-overlapping and dense (any dim order, e.g. channels_last): the numel
// elements are read in memory order from M_PTR.  STRIDED: logical order via sizes/strides.
constexpr int MODE_DENSE = 0;
constexpr int MODE_STRIDED = 1;

// Tensors that span several blocks: fp64 partial rows per block (GPART_F / UPART_F
// doubles) and per-tensor 64-bit integer accumulators (GPART_U / UPART_U), zero between
// launches (the last block of each tensor resets them).
constexpr int GPART_F = 2;              // per block: sum, sumsq
constexpr int GPART_U = 2 + HIST_BINS;  // per tensor: absmax bits, nonfinite, hist[64] (hist[0] incl. non-finite)
constexpr int UPART_F = 2;              // per block: sum diff^2, sum old^2
constexpr int UPART_U = 1;              // per tensor: changed

__device__ __forceinline__ float f16_to_f32(u16 h) {
  float f;
  asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
  return f;
}

__device__ __forceinline__ bool finite_f32(float x) {
  return (__float_as_uint(x) & 0x7f800000u) != 0x7f800000u;
}

// Element types: scalar load at an element index and unpacking of one 16-byte vector.
template <int DT> struct Elem;

template <> struct Elem<DT_F32> {
  static constexpr int ES = 4;
  static constexpr int VEC = 4;
  __device__ static float load(const char* p, i64 i) {
    return __ldg(reinterpret_cast<const float*>(p) + i);
  }
  __device__ static void unpack(uint4 r, float (&f)[VEC]) {
    f[0] = __uint_as_float(r.x); f[1] = __uint_as_float(r.y);
    f[2] = __uint_as_float(r.z); f[3] = __uint_as_float(r.w);
  }
};

template <> struct Elem<DT_BF16> {
  static constexpr int ES = 2;
  static constexpr int VEC = 8;
  __device__ static float load(const char* p, i64 i) {
    return __uint_as_float(((u32)__ldg(reinterpret_cast<const unsigned short*>(p) + i)) << 16);
  }
  __device__ static void unpack(uint4 r, float (&f)[VEC]) {
    const u32 w[4] = {r.x, r.y, r.z, r.w};
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      f[2 * k] = __uint_as_float(w[k] << 16);
      f[2 * k + 1] = __uint_as_float(w[k] & 0xffff0000u);
    }
  }
};

template <> struct Elem<DT_F16> {
  static constexpr int ES = 2;
  static constexpr int VEC = 8;
  __device__ static float load(const char* p, i64 i) {
    return f16_to_f32(__ldg(reinterpret_cast<const unsigned short*>(p) + i));
  }
  __device__ static void unpack(uint4 r, float (&f)[VEC]) {
    const u32 w[4] = {r.x, r.y, r.z, r.w};
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      f[2 * k] = f16_to_f32((u16)(w[k] & 0xffffu));
      f[2 * k + 1] = f16_to_f32((u16)(w[k] >> 16));
    }
  }
};

// Element offset (in elements) of logical index i of a MODE_STRIDED tensor.
__device__ __forceinline__ i64 strided_offset(const i64* __restrict__ m, i64 i) {
  const int nd = (int)__ldg(m + M_NDIM);
  i64 off = 0;
  for (int d = nd - 1; d > 0; --d) {
    const i64 sz = __ldg(m + M_SIZES + d);
    const i64 q = i / sz;
    off += (i - q * sz) * __ldg(m + M_STRIDES + d);
    i = q;
  }
  return off + i * __ldg(m + M_STRIDES);
}

// Hands one unpacked 16-byte vector to the visitor as a whole (see GradVisit::vec).
template <int VEC, class Visit>
__device__ __forceinline__ void visit_vec(const float (&f)[VEC], Visit& visit) {
  visit.template vec<VEC>(f);
}

// Elements [0, len) of one chunk that starts at byte address p: a scalar head up to the
// first 16-byte boundary, 16-byte vector loads (four in flight per thread), a scalar
// tail.  Every element is visited exactly once, by exactly one thread.
template <int DT, class Visit>
__device__ __forceinline__ void dense_chunk(const char* p, int len, Visit& visit) {
  typedef Elem<DT> E;
  const int tid = threadIdx.x;
  int head = (int)(((16u - (u32)((u64)p & 15u)) & 15u) / E::ES);
  if (head > len) head = len;
  if (tid < head) visit(E::load(p, tid));
  const uint4* pv = reinterpret_cast<const uint4*>(p + (i64)head * E::ES);
  const int nvec = (len - head) / E::VEC;
  int v = tid;
  float f[E::VEC];
  for (; v + 3 * THREADS < nvec; v += 4 * THREADS) {
    const uint4 r0 = __ldg(pv + v);
    const uint4 r1 = __ldg(pv + v + THREADS);
    const uint4 r2 = __ldg(pv + v + 2 * THREADS);
    const uint4 r3 = __ldg(pv + v + 3 * THREADS);
    E::unpack(r0, f);
    visit_vec<E::VEC>(f, visit);
    E::unpack(r1, f);
    visit_vec<E::VEC>(f, visit);
    E::unpack(r2, f);
    visit_vec<E::VEC>(f, visit);
    E::unpack(r3, f);
    visit_vec<E::VEC>(f, visit);
  }
  for (; v < nvec; v += THREADS) {
    E::unpack(__ldg(pv + v), f);
    visit_vec<E::VEC>(f, visit);
  }
  const int done = head + nvec * E::VEC;
  if (tid < len - done) visit(E::load(p, done + tid));
}

template <int DT, class Visit>
__device__ __forceinline__ void strided_chunk(const i64* __restrict__ m, const char* base,
                                              i64 start, int len, Visit& visit) {
  for (int i = threadIdx.x; i < len; i += THREADS)
    visit(Elem<DT>::load(base, strided_offset(m, start + i)));
}

// Deterministic block sum of a double: fixed shuffle tree, then warps in index order.
// Every thread must call it; the result is valid in thread 0.
__device__ __forceinline__ double block_sum(double x, double* scratch) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) x += __shfl_down_sync(0xffffffffu, x, o);
  const int warp = threadIdx.x >> 5;
  if ((threadIdx.x & 31) == 0) scratch[warp] = x;
  __syncthreads();
  double s = 0.0;
  if (threadIdx.x == 0)
    for (int w = 0; w < NWARPS; ++w) s += scratch[w];
  __syncthreads();
  return s;
}

}  // namespace dsn
// Gradient statistics for a whole list of tensors in one launch.
//
// Block b works on chunk bmap[b].y of tensor bmap[b].x (multi_tensor_apply style) and
// computes over finite elements: sum and sum of squares (accumulated in fp64 per thread,
// so 1e30^2 cannot overflow and 1e-30^2 cannot underflow; see GradVisit::vec for the
// guarded fp32 partial sums of each 16-byte vector), abs-max, the non-finite count and a
// 64-bin floor(log2|x|) histogram.  The histogram lives in shared memory with one
// private column per thread (hist[bin][thread]): a thread's atomicAdd never meets
// another lane's address, so there are no bank conflicts and no contention however
// concentrated the gradient's magnitudes are.
//
// Determinism: a tensor that spans several blocks has each block write its fp64 sums as
// a partial row and add its counts (integers: exact in any order) into the tensor's
// accumulator row with 64-bit atomics.  The block that finishes last (atomic ticket per
// tensor) reduces the partial rows in block order with a fixed tree, reads and resets
// the accumulators and the ticket for the next launch, and writes the output row.
// Floating-point sums therefore never depend on scheduling.

// Histogram update: 0 = shared atomicAdd on the thread's own column (default);
// 1 = plain load/add/store on the own column; 2 = no histogram (benchmark diagnostics).
#ifndef DSN_HIST_MODE
#define DSN_HIST_MODE 0
#endif
// Sums: 1 = fp32 partial sums per 16-byte vector with a guard, accumulated in fp64
// (default; see GradVisit::vec); 0 = fp64 per element for every dtype;
// 2 = fp32 per thread (benchmark diagnostics only, loses precision).
#ifndef DSN_SUMS
#define DSN_SUMS 1
#endif

namespace dsn {

struct GradVisit {
  double s, q;
  float mx;
  u32 nf;
  u32* col;  // this thread's histogram column in shared memory
  float fs, fq;

  // Histogram of one value from its bits shifted left by one (sign dropped).
  // floor(log2|v|) = biased exponent - 127 for normals; subnormals (exponent 0) clamp to
  // bin 1, exact zeros go to bin 0, exponent 255 (Inf/NaN) would land in the last bin.
  __device__ __forceinline__ void hist(u32 a) {
    const int e = (int)(a >> 24);
    const int lo = (int)min(a, 1u);
    const int bin = min(max(e + (1 - HIST_EXP_MIN - 127), lo), HIST_BINS - 1);
#if DSN_HIST_MODE == 0
    atomicAdd(col + bin * THREADS, 1u);
#elif DSN_HIST_MODE == 1
    col[bin * THREADS] += 1u;
#else
    (void)bin;
#endif
  }

  // Counts, abs-max and histogram of one element; returns it with non-finite -> 0.
  __device__ __forceinline__ float count(float x) {
    const bool fin = finite_f32(x);
    const float v = fin ? x : 0.0f;   // non-finite: counted, then treated as 0 (bin 0)
    nf += fin ? 0u : 1u;
    mx = fmaxf(mx, fabsf(v));
    hist(__float_as_uint(v) << 1);
    return v;
  }

  __device__ __forceinline__ void operator()(float x) {
    const float v = count(x);
#if DSN_SUMS == 2
    fs += v;
    fq = fmaf(v, v, fq);
#else
    const double d = (double)v;
    s += d;
    q = fma(d, d, q);
#endif
  }

  // One 16-byte vector (N = 8 bf16/fp16 or 4 fp32 values), on the assumption that all
  // are finite and of moderate size: the raw values go into the histogram and into fp32
  // partial sums.  Squares of 16-bit values are exact in fp32 (at most 11 significant
  // bits); fp32 squares round once.  So the partial sums lose at most 2N-1 roundings
  // (< 1e-6 relative, the issue asks 1e-5) -- as long as no square underflows and no sum
  // overflows: when the partial sum of squares is outside [2^-60, 2^100] (or NaN/Inf,
  // which any non-finite value makes it) the vector is redone element by element in
  // fp64, and its non-finite values are counted and moved from the last bin to bin 0,
  // as count() would have binned them.  This drops the per-element finiteness selects
  // and N-1 of N fp64 conversions and additions: 16-bit data is instruction-bound.
  template <int N>
  __device__ __forceinline__ void vec(const float (&f)[N]) {
#if DSN_SUMS == 1
    float sv = 0.0f, qv = 0.0f;
    u32 am = 0;
#pragma unroll
    for (int k = 0; k < N; ++k) {
      const u32 a = __float_as_uint(f[k]) << 1;
      am = max(am, a);
      hist(a);
      sv += f[k];
      qv = fmaf(f[k], f[k], qv);
    }
    if (qv >= 0x1p-60f && qv <= 0x1p100f) {  // all finite; |sv| <= sqrt(N * qv): no overflow
      s += (double)sv;
      q += (double)qv;
      mx = fmaxf(mx, __uint_as_float(am >> 1));
    } else {
#pragma unroll
      for (int k = 0; k < N; ++k) {
        const bool fin = finite_f32(f[k]);
        if (!fin) {
          ++nf;
          // Move it from the last bin to bin 0, where count() puts non-finite values
          // (the output subtracts them from bin 0).
#if DSN_HIST_MODE == 0
          atomicAdd(col + (HIST_BINS - 1) * THREADS, 0xffffffffu);
          atomicAdd(col, 1u);
#elif DSN_HIST_MODE == 1
          col[(HIST_BINS - 1) * THREADS] -= 1u;
          col[0] += 1u;
#endif
        }
        const float v = fin ? f[k] : 0.0f;
        mx = fmaxf(mx, fabsf(v));
        const double d = (double)v;
        s += d;
        q = fma(d, d, q);
      }
    }
#else
#pragma unroll
    for (int k = 0; k < N; ++k) (*this)(f[k]);
#endif
  }

  __device__ __forceinline__ void finish() { s += (double)fs; q += (double)fq; }
};

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

extern "C" __global__ void __launch_bounds__(THREADS)
dsn_grad_stats(const i64* __restrict__ meta, const int2* __restrict__ bmap,
               const i64* __restrict__ ptrs, i64 chunk_len,
               double* __restrict__ part_f, u64* __restrict__ accu,
               u32* __restrict__ tickets, double* __restrict__ out) {
  __shared__ u32 hist[HIST_BINS * THREADS];
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

#pragma unroll 16
  for (int b = 0; b < HIST_BINS; ++b) hist[b * THREADS + tid] = 0u;  // own column only

  GradVisit v{0.0, 0.0, 0.0f, 0u, hist + tid, 0.0f, 0.0f};
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
    u32 c = 0;
#pragma unroll
    for (int k = 0; k < NWARPS; ++k) c += hist[b * THREADS + k * 32 + lane];
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
