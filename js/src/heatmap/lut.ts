// The colour of a float32 value without a log10 per cell. The scale (shared/colors.ts, a copy of
// colors.py) is monotone in the value, so its 256 colours are runs of consecutive float32 values.
// We find where each run starts (bisection over the float32 values in order: ~8,000 evaluations
// of the exact scale per range), then colour a cell from the top 16 bits of its order-preserving
// integer key (a table of the run at each 65,536-key bucket's start) and a step or two along the
// run starts. The result equals the exact scale for every float32 value, NaN (no data) included.
import { scale } from "../shared/colors";

/** Signed, order-preserving int32 key of the float32 with bits `u` (int32): keys compare like the
 * values (-NaN < -inf < ... < -0 < +0 < ... < +inf < +NaN). */
export function orderKey(u: number): number {
  return u ^ ((u >> 31) & 0x7fffffff);
}

const f32 = new Float32Array(1);
const i32 = new Int32Array(f32.buffer);
/** The float32 value of key `k` (orderKey is its own inverse). */
export function keyValue(k: number): number {
  i32[0] = orderKey(k | 0);
  return f32[0];
}
function keyOf(v: number): number {
  f32[0] = v;
  return orderKey(i32[0]);
}

/**
 * Packed colours of float32 values, exactly as `scale(lo, hi, log)` and the LUT give them.
 * Runs: 0 = NaN below -inf, 1 + i = LUT entry i, 257 = NaN above +inf; a key k is in run
 * `runAt[(k >> 16) + 32768]` advanced while `k >= starts[run]`.
 */
export class ColorMap {
  /** run of the first key of each 16-bit bucket */
  readonly runAt = new Uint16Array(65536);
  /** starts[r]: first key of run r + 1 (ascending; +Infinity after the last run) */
  readonly starts = new Float64Array(258);
  /** packed colour of each run (int32, so that hot loops stay in small integers) */
  readonly colors = new Int32Array(258);

  constructor(
    readonly lo: number,
    readonly hi: number,
    readonly log: boolean,
    private readonly lut: Uint32Array,
    private readonly nanPx: number,
  ) {
    const index = scale(lo, hi, log);
    const kLo = keyOf(-Infinity);
    const kHi = keyOf(Infinity);
    this.colors.fill(nanPx | 0);
    for (let i = 0; i < 256; i++) this.colors[1 + i] = (lut[i] ?? nanPx) | 0;
    this.starts[0] = kLo;
    this.starts[256] = kHi + 1;
    this.starts[257] = Infinity;
    if (Number.isNaN(lo) || Number.isNaN(hi)) {
      this.colors.fill(nanPx | 0); // no range: the scale gives every value the NaN colour
      for (let i = 1; i < 256; i++) this.starts[i] = kLo;
    } else {
      const at = (k: number): number => index(keyValue(k));
      let a0 = kLo; // index(-inf) = 0 < i
      for (let i = 1; i <= 255; i++) {
        let a = a0;
        let b = kHi; // index(+inf) = 255 >= i
        while (b - a > 1) {
          const m = a + Math.floor((b - a) / 2);
          if (at(m) >= i) b = m;
          else a = m;
        }
        this.starts[i] = b;
        a0 = a;
      }
    }
    let run = 0;
    for (let j = 0; j < 65536; j++) {
      const k0 = (j - 32768) * 65536;
      while (k0 >= this.starts[run]) run++;
      this.runAt[j] = run;
    }
  }

  /** The packed colour (as int32) of the float32 whose bits are `u` (int32). */
  colorOfBits(u: number): number {
    const k = u ^ ((u >> 31) & 0x7fffffff);
    let run = this.runAt[(k >> 16) + 32768];
    while (k >= this.starts[run]) run++;
    return this.colors[run];
  }

  /** Whether this map is the one for these arguments. */
  same(lo: number, hi: number, log: boolean, lut: Uint32Array, nanPx: number): boolean {
    return Object.is(lo, this.lo) && Object.is(hi, this.hi) && log === this.log && lut === this.lut && nanPx === this.nanPx;
  }
}

/** Colours the float32 values whose bits are src[i0 .. i0 + n) into out[o0], out[o0 + step], ...
 * (a bin's rows into a column of a row-major image). */
export function colorRun(cm: ColorMap, src: Int32Array, i0: number, n: number, out: Int32Array, o0: number, step: number): void {
  const runAt = cm.runAt;
  const starts = cm.starts;
  const colors = cm.colors;
  for (let i = i0, e = i0 + n, o = o0; i < e; i++, o += step) {
    const u = src[i];
    const k = u ^ ((u >> 31) & 0x7fffffff);
    let run = runAt[(k >> 16) + 32768];
    while (k >= starts[run]) run++;
    out[o] = colors[run];
  }
}
