// Update statistics around an optimizer step, in two launches over all tensors.
//
// dsn_snapshot copies every weight tensor into one flat snapshot buffer (read 1x + write
// 1x the weights).  dsn_update_stats then reads the snapshot and the new weights once
// (2x) and computes sum((new-old)^2), sum(old^2) over finite values in fp64 and the
// count of new != old.  Total traffic: 4 x element size per parameter (16 B for fp32,
// 8 B for bf16/fp16), the least that keeps "changed" exact for any optimizer.
//
// dsn_update_carry is dsn_update_stats that also writes the new weights over the snapshot
// (+1x write): the snapshot is then the "before" of the next step, so when the caller
// knows the weights did not change in between it skips the next dsn_snapshot: 12 B per
// fp32 parameter and step instead of 16 (an option of UpdateStatsProbe, see updates.py).
//
// A dense tensor's snapshot region starts at the same address modulo 16 as the tensor,
// so old and new values of one chunk split into the same scalar head, 16-byte vectors
// and tail.  Strided tensors are snapshotted in logical order.  Reduction across blocks
// is the same deterministic last-block scheme as grad_stats.cu (fp64 partial rows in
// block order, the integer count through a 64-bit atomic).
#include "common.cuh"

namespace dsn {

struct UpdateVisit {
  double dq, wq;
  u32 ch;
  __device__ __forceinline__ void operator()(float o, float n) {
    const double od = (double)o, nd = (double)n;
    const double big = __longlong_as_double(0x7fefffffffffffffLL);  // DBL_MAX
    double d = nd - od;
    d = fabs(d) <= big ? d : 0.0;                // NaN and +-Inf differences drop out
    const double of = fabs(od) <= big ? od : 0.0;
    dq = fma(d, d, dq);
    wq = fma(of, of, wq);
    ch += (n != o) ? 1u : 0u;                    // NaN != NaN counts as changed, as in torch
  }
};

// Element i of src copied over element j of dst (raw bits, ES bytes).
template <int ES>
__device__ __forceinline__ void copy_elem(char* dst, i64 j, const char* src, i64 i) {
  if constexpr (ES == 4) reinterpret_cast<u32*>(dst)[j] = __ldg(reinterpret_cast<const u32*>(src) + i);
  else reinterpret_cast<u16*>(dst)[j] = __ldg(reinterpret_cast<const u16*>(src) + i);
}

// The snapshot is read through the read-only cache unless this kernel also writes it.
template <bool CARRY>
__device__ __forceinline__ uint4 load_old(const uint4* p) {
  if constexpr (CARRY) return *p;
  else return __ldg(p);
}

template <int DT, bool CARRY>
__device__ __forceinline__ void update_dense(const char* pn, char* po, int len, UpdateVisit& v) {
  typedef Elem<DT> E;
  const int tid = threadIdx.x;
  int head = (int)(((16u - (u32)((u64)pn & 15u)) & 15u) / E::ES);
  if (head > len) head = len;
  if (tid < head) {
    v(E::load(po, tid), E::load(pn, tid));
    if (CARRY) copy_elem<E::ES>(po, tid, pn, tid);
  }
  const uint4* vn = reinterpret_cast<const uint4*>(pn + (i64)head * E::ES);
  uint4* vo = reinterpret_cast<uint4*>(po + (i64)head * E::ES);
  const int nvec = (len - head) / E::VEC;
  float fo[E::VEC], fn[E::VEC];
  int i = tid;
  for (; i + THREADS < nvec; i += 2 * THREADS) {
    const uint4 n0 = __ldg(vn + i), o0 = load_old<CARRY>(vo + i);
    const uint4 n1 = __ldg(vn + i + THREADS), o1 = load_old<CARRY>(vo + i + THREADS);
    if (CARRY) { vo[i] = n0; vo[i + THREADS] = n1; }
    E::unpack(n0, fn); E::unpack(o0, fo);
#pragma unroll
    for (int k = 0; k < E::VEC; ++k) v(fo[k], fn[k]);
    E::unpack(n1, fn); E::unpack(o1, fo);
#pragma unroll
    for (int k = 0; k < E::VEC; ++k) v(fo[k], fn[k]);
  }
  for (; i < nvec; i += THREADS) {
    const uint4 n0 = __ldg(vn + i), o0 = load_old<CARRY>(vo + i);
    if (CARRY) vo[i] = n0;
    E::unpack(n0, fn); E::unpack(o0, fo);
#pragma unroll
    for (int k = 0; k < E::VEC; ++k) v(fo[k], fn[k]);
  }
  const int done = head + nvec * E::VEC;
  if (tid < len - done) {
    v(E::load(po, done + tid), E::load(pn, done + tid));
    if (CARRY) copy_elem<E::ES>(po, done + tid, pn, done + tid);
  }
}

template <int DT, bool CARRY>
__device__ __forceinline__ void update_chunk(const i64* __restrict__ m, const char* base,
                                             char* snap, i64 chunk, i64 chunk_len,
                                             UpdateVisit& v) {
  typedef Elem<DT> E;
  const i64 numel = __ldg(m + M_NUMEL);
  const i64 start = chunk * chunk_len;
  const i64 rest = numel - start;
  const int len = (int)(rest < chunk_len ? (rest > 0 ? rest : 0) : chunk_len);
  char* old = snap + __ldg(m + M_SNAP) + start * E::ES;
  if (__ldg(m + M_MODE) == MODE_DENSE) {
    update_dense<DT, CARRY>(base + start * E::ES, old, len, v);
  } else {
    for (int i = threadIdx.x; i < len; i += THREADS) {
      const i64 off = strided_offset(m, start + i);
      v(E::load(old, i), E::load(base, off));
      if (CARRY) copy_elem<E::ES>(old, i, base, off);
    }
  }
}

}  // namespace dsn

using namespace dsn;

// Copy chunk bmap[b] of every tensor into the snapshot buffer.
extern "C" __global__ void __launch_bounds__(THREADS)
dsn_snapshot(const i64* __restrict__ meta, const int2* __restrict__ bmap,
             const i64* __restrict__ ptrs, i64 chunk_len, char* __restrict__ snap) {
  const int2 bm = bmap[blockIdx.x];
  const i64* m = meta + (i64)bm.x * M_COLS;
  const int es = __ldg(m + M_DTYPE) == DT_F32 ? 4 : 2;
  const i64 numel = __ldg(m + M_NUMEL);
  const i64 start = (i64)bm.y * chunk_len;
  const i64 rest = numel - start;
  const int len = (int)(rest < chunk_len ? (rest > 0 ? rest : 0) : chunk_len);
  const char* src = reinterpret_cast<const char*>(__ldg(ptrs + bm.x));
  char* dst = snap + __ldg(m + M_SNAP) + start * es;
  const int tid = threadIdx.x;
  if (__ldg(m + M_MODE) == MODE_DENSE) {
    src += start * es;
    // Same alignment mod 16 on both sides: bytes head, 16-byte body, bytes tail.
    const int nbytes = len * es;
    int head = (int)((16u - (u32)((u64)src & 15u)) & 15u);
    if (head > nbytes) head = nbytes;
    if (tid < head) dst[tid] = src[tid];
    const uint4* s4 = reinterpret_cast<const uint4*>(src + head);
    uint4* d4 = reinterpret_cast<uint4*>(dst + head);
    const int nvec = (nbytes - head) >> 4;
    for (int i = tid; i < nvec; i += THREADS) d4[i] = __ldg(s4 + i);
    const int done = head + (nvec << 4);
    if (tid < nbytes - done) dst[done + tid] = src[done + tid];
  } else if (es == 4) {
    for (int i = tid; i < len; i += THREADS)
      reinterpret_cast<u32*>(dst)[i] = __ldg(reinterpret_cast<const u32*>(src) + strided_offset(m, start + i));
  } else {
    for (int i = tid; i < len; i += THREADS)
      reinterpret_cast<u16*>(dst)[i] = __ldg(reinterpret_cast<const u16*>(src) + strided_offset(m, start + i));
  }
}

template <bool CARRY>
__device__ __forceinline__ void update_stats_body(const i64* __restrict__ meta, const int2* __restrict__ bmap,
                                                  const i64* __restrict__ ptrs, i64 chunk_len,
                                                  char* __restrict__ snap, double* __restrict__ part_f,
                                                  u64* __restrict__ accu, u32* __restrict__ tickets,
                                                  double* __restrict__ out) {
  __shared__ double scratch[NWARPS];
  __shared__ u32 sch[NWARPS];
  __shared__ bool am_last;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int2 bm = bmap[blockIdx.x];
  const int t = bm.x;
  const i64* m = meta + (i64)t * M_COLS;

  UpdateVisit v{0.0, 0.0, 0u};
  const int dt = (int)__ldg(m + M_DTYPE);
  const char* base = reinterpret_cast<const char*>(__ldg(ptrs + t));
  if (dt == DT_F32) update_chunk<DT_F32, CARRY>(m, base, snap, (i64)bm.y, chunk_len, v);
  else if (dt == DT_BF16) update_chunk<DT_BF16, CARRY>(m, base, snap, (i64)bm.y, chunk_len, v);
  else update_chunk<DT_F16, CARRY>(m, base, snap, (i64)bm.y, chunk_len, v);

  u32 ch = __reduce_add_sync(0xffffffffu, v.ch);
  if (lane == 0) sch[warp] = ch;
  const double dq = block_sum(v.dq, scratch);
  const double wq = block_sum(v.wq, scratch);
  u32 bch = 0;
  if (tid == 0) for (int w = 0; w < NWARPS; ++w) bch += sch[w];

  const i64 nblk = __ldg(m + M_NBLK);
  double* row = out + (i64)t * UPDATE_COLS;
  if (nblk == 1) {
    if (tid == 0) { row[0] = dq; row[1] = wq; row[2] = (double)bch; }
    return;
  }
  const i64 blk = blockIdx.x;
  if (tid == 0) {
    part_f[blk * UPART_F] = dq; part_f[blk * UPART_F + 1] = wq;
    if (bch) atomicAdd(accu + t, (u64)bch);  // integer: exact in any order
    __threadfence();
    am_last = atomicAdd(tickets + t, 1u) == (u32)(nblk - 1);
  }
  __syncthreads();
  if (!am_last) return;
  __threadfence();
  const i64 first = __ldg(m + M_FIRST);
  double a = 0.0, b = 0.0;
  for (i64 r = tid; r < nblk; r += THREADS) {
    a += __ldcg(part_f + (first + r) * UPART_F);
    b += __ldcg(part_f + (first + r) * UPART_F + 1);
  }
  const double A = block_sum(a, scratch);
  const double B = block_sum(b, scratch);
  if (tid == 0) {
    const u64 C = atomicExch(accu + t, 0ull);  // read and reset for the next launch
    row[0] = A; row[1] = B; row[2] = (double)C;
    tickets[t] = 0u;
  }
}


extern "C" __global__ void __launch_bounds__(THREADS)
dsn_update_stats(const i64* __restrict__ meta, const int2* __restrict__ bmap,
                 const i64* __restrict__ ptrs, i64 chunk_len,
                 char* __restrict__ snap, double* __restrict__ part_f,
                 u64* __restrict__ accu, u32* __restrict__ tickets, double* __restrict__ out) {
  update_stats_body<false>(meta, bmap, ptrs, chunk_len, snap, part_f, accu, tickets, out);
}

// dsn_update_stats, and the new weights written over the snapshot (see the top of the file).
extern "C" __global__ void __launch_bounds__(THREADS)
dsn_update_carry(const i64* __restrict__ meta, const int2* __restrict__ bmap,
                 const i64* __restrict__ ptrs, i64 chunk_len,
                 char* __restrict__ snap, double* __restrict__ part_f,
                 u64* __restrict__ accu, u32* __restrict__ tickets, double* __restrict__ out) {
  update_stats_body<true>(meta, bmap, ptrs, chunk_len, snap, part_f, accu, tickets, out);
}
