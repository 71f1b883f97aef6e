// Shared layout and element access for the dsnotebook statistics kernels.
//
// Why one header: the Python launcher (dsnotebook/kernels/layout.py) writes the
// per-tensor table and the block map that these kernels read; the constants below are
// the contract between the two and tests/test_kernels_compile.py checks they agree.
//
// Self-contained on purpose (no <cuda_fp16.h>, no <cfloat>): the same text compiles
// with NVRTC through cupy.RawModule and standalone with `nvcc -arch=sm_90 -c`.
#pragma once

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

// Elements [0, len) of one chunk that starts at byte address p: a scalar head up to the
// first 16-byte boundary, 16-byte vector loads (four in flight per thread), a scalar
// tail.  Every element is visited exactly once, by exactly one thread: scalars as
// visit(float), each raw 16-byte vector as visit.vec<DT, UNIFORM>(uint4) (the visitor
// unpacks it, so that it can also work on the packed bits).  Thread tid takes vectors
// tid, tid + THREADS, ... in that order; the main loop's trip count is the same for the
// whole block (UNIFORM = true: every lane of every warp is there, warp votes are safe).
template <int DT, class Visit>
__device__ __forceinline__ void dense_chunk(const char* p, int len, Visit& visit) {
  typedef Elem<DT> E;
  const int tid = threadIdx.x;
  int head = (int)(((16u - (u32)((u64)p & 15u)) & 15u) / E::ES);
  if (head > len) head = len;
  if (tid < head) visit(E::load(p, tid));
  const uint4* pv = reinterpret_cast<const uint4*>(p + (i64)head * E::ES);
  const int nvec = (len - head) / E::VEC;
  int v0 = 0;
  for (; v0 + 4 * THREADS <= nvec; v0 += 4 * THREADS) {
    const uint4* q = pv + v0 + tid;
    const uint4 r0 = __ldg(q);
    const uint4 r1 = __ldg(q + THREADS);
    const uint4 r2 = __ldg(q + 2 * THREADS);
    const uint4 r3 = __ldg(q + 3 * THREADS);
    visit.template vec<DT, true>(r0);
    visit.template vec<DT, true>(r1);
    visit.template vec<DT, true>(r2);
    visit.template vec<DT, true>(r3);
  }
  for (int v = v0 + tid; v < nvec; v += THREADS) visit.template vec<DT, false>(__ldg(pv + v));
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
