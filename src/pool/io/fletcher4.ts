/**
 * Fletcher-4, exactly as ZFS defines it (module/zcommon/zfs_fletcher.c,
 * fletcher_4_native): four uint64 accumulators, all arithmetic mod 2^64, fed
 * with the data read as little-endian uint32 words:
 *
 *     a += w;  b += a;  c += b;  d += c;
 *
 * The checksum is (a, b, c, d) stored as four little-endian uint64, 32 bytes.
 * Because the recurrence is strictly sequential, a computation can stop after
 * any word and continue later from (a, b, c, d); we use that to feed large
 * buffers through a fixed-size WebAssembly window.
 *
 * Why WebAssembly: JavaScript has no native 64-bit integers outside BigInt,
 * and BigInt runs at a few MB/s. A wasm function with i64 locals runs this
 * loop at memory-copy speeds. The module is a few hundred bytes, assembled by
 * hand below (there is no build step and no runtime dependency). When
 * WebAssembly is unavailable (node --jitless), fletcher4Js() computes the same
 * result with 32-bit hi/lo limbs.
 *
 * The module, in WAT (memory layout: [0, 32) accumulators a, b, c, d as
 * little-endian i64 -- read on entry, written on exit; [64, 64 + n) input):
 *
 *   (module
 *     (memory (export "mem") 5)                  ;; 320 KiB >= 64 + WINDOW
 *     (func (export "f4") (param $n i32)
 *       (local $p i32) (local $end i32) (local $end16 i32)
 *       (local $a i64) (local $b i64) (local $c i64) (local $d i64)
 *       (local.set $a (i64.load offset=0  (i32.const 0)))
 *       (local.set $b (i64.load offset=8  (i32.const 0)))
 *       (local.set $c (i64.load offset=16 (i32.const 0)))
 *       (local.set $d (i64.load offset=24 (i32.const 0)))
 *       (local.set $p (i32.const 64))
 *       (local.set $end (i32.add (local.get $n) (i32.const 64)))
 *       (local.set $end16 (i32.add (i32.and (local.get $n) (i32.const -16)) (i32.const 64)))
 *       ;; four words per iteration while 16 bytes remain (less loop overhead)
 *       (block $skip16
 *         (br_if $skip16 (i32.ge_u (local.get $p) (local.get $end16)))
 *         (loop $by16
 *           WORD(0) WORD(4) WORD(8) WORD(12)
 *           (br_if $by16 (i32.lt_u (local.tee $p (i32.add (local.get $p) (i32.const 16)))
 *                                  (local.get $end16)))))
 *       ;; the remaining 0..3 words
 *       (block $skip4
 *         (br_if $skip4 (i32.ge_u (local.get $p) (local.get $end)))
 *         (loop $by4
 *           WORD(0)
 *           (br_if $by4 (i32.lt_u (local.tee $p (i32.add (local.get $p) (i32.const 4)))
 *                                 (local.get $end)))))
 *       (i64.store offset=0  (i32.const 0) (local.get $a))
 *       (i64.store offset=8  (i32.const 0) (local.get $b))
 *       (i64.store offset=16 (i32.const 0) (local.get $c))
 *       (i64.store offset=24 (i32.const 0) (local.get $d))))
 *
 *   where WORD(k) is
 *       (local.set $d (i64.add (local.get $d)
 *         (local.tee $c (i64.add (local.get $c)
 *           (local.tee $b (i64.add (local.get $b)
 *             (local.tee $a (i64.add (local.get $a)
 *               (i64.load32_u offset=k (local.get $p))))))))))
 */
import { C_LOG2_C, SAMPLE_LEN, SAMPLE_SKEW, entropyTooHigh, sampleSpan } from './sample.js';

/** Input window of the wasm module: big inputs are processed in slices of this size. */
const WINDOW = 256 * 1024;
const IN_OFF = 64;

// Opcodes and immediates used below (WebAssembly core spec, binary format).
const BLOCK = 0x02, LOOP = 0x03, END = 0x0b, BR_IF = 0x0d, VOID = 0x40;
const LGET = 0x20, LSET = 0x21, LTEE = 0x22;
const I32CONST = 0x41, I32ADD = 0x6a, I32AND = 0x71, I32LTU = 0x49, I32GEU = 0x4f;
const I64LOAD = 0x29, I64LOAD32U = 0x35, I64STORE = 0x37, I64ADD = 0x7c;
const I32 = 0x7f, I64 = 0x7e;
// Local indices: param n, then p, end, end16 (i32), then a, b, c, d (i64).
const N = 0, P = 1, E = 2, E16 = 3, A = 4, B = 5, C = 6, D = 7;

/** WORD(k): fold the uint32 at p + k into a, b, c, d (k < 128, one-byte uleb). */
const word = (k: number): number[] => [
  LGET, D, LGET, C, LGET, B, LGET, A,
  LGET, P, I64LOAD32U, 2, k, I64ADD, LTEE, A,
  I64ADD, LTEE, B,
  I64ADD, LTEE, C,
  I64ADD, LSET, D,
];

const loadAcc = (local: number, off: number): number[] => [I32CONST, 0, I64LOAD, 3, off, LSET, local];
const storeAcc = (local: number, off: number): number[] => [I32CONST, 0, LGET, local, I64STORE, 3, off];

const body: number[] = [
  // locals: 3 x i32, 4 x i64
  2, 3, I32, 4, I64,
  ...loadAcc(A, 0), ...loadAcc(B, 8), ...loadAcc(C, 16), ...loadAcc(D, 24),
  I32CONST, 0xc0, 0x00, LSET, P, // p = 64 (sleb128 of 64 is c0 00)
  LGET, N, I32CONST, 0xc0, 0x00, I32ADD, LSET, E, // end = n + 64
  LGET, N, I32CONST, 0x70, I32AND, I32CONST, 0xc0, 0x00, I32ADD, LSET, E16, // end16 = (n & -16) + 64
  BLOCK, VOID,
  LGET, P, LGET, E16, I32GEU, BR_IF, 0,
  LOOP, VOID,
  ...word(0), ...word(4), ...word(8), ...word(12),
  LGET, P, I32CONST, 16, I32ADD, LTEE, P, LGET, E16, I32LTU, BR_IF, 0,
  END,
  END,
  BLOCK, VOID,
  LGET, P, LGET, E, I32GEU, BR_IF, 0,
  LOOP, VOID,
  ...word(0),
  LGET, P, I32CONST, 4, I32ADD, LTEE, P, LGET, E, I32LTU, BR_IF, 0,
  END,
  END,
  ...storeAcc(A, 0), ...storeAcc(B, 8), ...storeAcc(C, 16), ...storeAcc(D, 24),
  END,
];

/** unsigned LEB128, for section and body sizes. */
function uleb(n: number): number[] {
  const out: number[] = [];
  do {
    let byte = n & 0x7f;
    n >>>= 7;
    if (n !== 0) byte |= 0x80;
    out.push(byte);
  } while (n !== 0);
  return out;
}

const section = (id: number, content: number[]): number[] => [id, ...uleb(content.length), ...content];
const name = (s: string): number[] => [s.length, ...Array.from(s, (ch) => ch.charCodeAt(0))];

/** The complete module binary. Exported so a test can check it validates. */
export const FLETCHER4_WASM: Uint8Array<ArrayBuffer> = Uint8Array.from([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // "\0asm", version 1
  ...section(1, [1, 0x60, 1, I32, 0]), // type 0: (i32) -> ()
  ...section(3, [1, 0]), // function 0 has type 0
  ...section(5, [1, 0x00, (IN_OFF + WINDOW + 0xffff) >>> 16]), // one memory, min pages, no max
  ...section(7, [2, ...name('mem'), 0x02, 0, ...name('f4'), 0x00, 0]), // exports
  ...section(10, [1, ...uleb(body.length), ...body]), // code
]);

interface WasmF4 {
  f4(n: number): void;
  heap: Uint8Array;
  acc: BigUint64Array;
}

/**
 * Instantiated once per process (per worker thread). The wasm memory is pure
 * scratch: every call fully initializes the accumulators and the input window
 * it reads, and runs synchronously, so no state survives between calls and
 * nothing is shared between pools.
 */
const wasm: WasmF4 | null = (() => {
  try {
    if (typeof WebAssembly !== 'object') return null;
    const inst = new WebAssembly.Instance(new WebAssembly.Module(FLETCHER4_WASM), {});
    const mem = inst.exports.mem as WebAssembly.Memory;
    // The memory never grows (fixed window), so these views stay valid.
    return {
      f4: inst.exports.f4 as (n: number) => void,
      heap: new Uint8Array(mem.buffer),
      acc: new BigUint64Array(mem.buffer, 0, 4),
    };
  } catch {
    return null; // e.g. node --jitless: use the JS path
  }
})();

export const fletcher4HasWasm = wasm !== null;

/*
 * The SIMD module: four lanes, as ZFS's fletcher_4_sse2/avx2 do. Lane j
 * (0..3) runs the recurrence over words j, j+4, j+8, ... only; the lanes are
 * independent, two per v128 (i64x2), and a 16-byte step costs two widening
 * loads and eight i64x2 adds against sixteen scalar adds. Over n = 4m words,
 * with x = m - k the distance of lane word k from its lane's end, word
 * i = j + 4k sits n - i = 4x - j words from the end, and the weights of
 * Fletcher-4 (1, y, y(y+1)/2, y(y+1)(y+2)/6 for y = n - i) rewritten in the
 * lane weights (1, x, x(x+1)/2, x(x+1)(x+2)/6) give, all mod 2^64:
 *
 *   A = sum a_j
 *   B = 4 sum b_j - (a1 + 2 a2 + 3 a3)
 *   C = 16 sum c_j - (6 b0 + 10 b1 + 14 b2 + 18 b3) + a2 + 3 a3
 *   D = 64 sum d_j - (48 c0 + 64 c1 + 80 c2 + 96 c3) + (4 b0 + 10 b1 + 20 b2 + 34 b3) - a3
 *
 * (checked against the scalar definition by test/pool/io/fletcher4.test.ts,
 * every length a multiple of 16 up to past the window, and by brute force
 * when derived). Memory: [0, 32) the result A B C D; [32, 160) the lane
 * accumulators, a b c d, each lanes 0..3 as four i64 (so two v128: lanes
 * 0-1, then 2-3), zeroed by the caller before the first window, kept between
 * windows; [SIMD_IN, SIMD_IN + n) input. run(n) folds n bytes (a multiple
 * of 16) into the lanes; fin() combines them into A B C D.
 */
const SIMD_IN = 256;
const LANES = 32;
const SIMD = 0xfd;
const V128 = 0x7b, I64CONST = 0x42, I64MUL = 0x7e;
/** SIMD opcodes (0xfd prefix, then the opcode as uleb128; WebAssembly 2.0, "Vector Instructions"). */
const V128LOAD = [SIMD, 0x00], V128LOAD32X2U = [SIMD, 0x06], V128STORE = [SIMD, 0x0b], I64X2ADD = [SIMD, ...uleb(206)];
// run's locals: param n, then p, end (i32), then a01 a23 b01 b23 c01 c23 d01 d23 (v128).
const SP = 1, SE = 2, LANE0 = 3;
/** Local index of accumulator k (0 a, 1 b, 2 c, 3 d), half h (0: lanes 0-1, 1: lanes 2-3). */
const lane = (k: number, h: number): number => LANE0 + 2 * k + h;
/** Memory offset of accumulator k's v128 half h. */
const laneAt = (k: number, h: number): number => LANES + 32 * k + 16 * h;

/** Fold the 16 bytes at p + k... into the lanes: two widening loads (words 0-1 and 2-3). */
const step: number[] = [0, 1].flatMap((h) => [
  LGET, lane(3, h), LGET, lane(2, h), LGET, lane(1, h), LGET, lane(0, h),
  LGET, SP, ...V128LOAD32X2U, 3, 8 * h, ...I64X2ADD, LTEE, lane(0, h),
  ...I64X2ADD, LTEE, lane(1, h),
  ...I64X2ADD, LTEE, lane(2, h),
  ...I64X2ADD, LSET, lane(3, h),
]);

const runBody: number[] = [
  2, 2, I32, 8, V128,
  ...[0, 1, 2, 3].flatMap((k) => [0, 1].flatMap((h) => [I32CONST, 0, ...V128LOAD, 4, ...uleb(laneAt(k, h)), LSET, lane(k, h)])),
  I32CONST, ...sleb(SIMD_IN), LSET, SP,
  LGET, N, I32CONST, ...sleb(SIMD_IN), I32ADD, LSET, SE,
  BLOCK, VOID,
  LGET, SP, LGET, SE, I32GEU, BR_IF, 0,
  LOOP, VOID,
  ...step,
  LGET, SP, I32CONST, 16, I32ADD, LTEE, SP, LGET, SE, I32LTU, BR_IF, 0,
  END,
  END,
  ...[0, 1, 2, 3].flatMap((k) => [0, 1].flatMap((h) => [I32CONST, 0, LGET, lane(k, h), ...V128STORE, 4, ...uleb(laneAt(k, h))])),
  END,
];

/** Coefficients of the lane values (accumulator k, lane j) in A, B, C, D: see above. */
const COMBINE: readonly (readonly (readonly number[])[])[] = [
  // a_j        b_j               c_j                 d_j
  [[1, 1, 1, 1], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]],
  [[0, -1, -2, -3], [4, 4, 4, 4], [0, 0, 0, 0], [0, 0, 0, 0]],
  [[0, 0, 1, 3], [-6, -10, -14, -18], [16, 16, 16, 16], [0, 0, 0, 0]],
  [[0, 0, 0, -1], [4, 10, 20, 34], [-48, -64, -80, -96], [64, 64, 64, 64]],
];

const finBody: number[] = [
  0,
  ...COMBINE.flatMap((row, out) => [
    I32CONST, 0, I64CONST, 0,
    ...row.flatMap((coefs, k) =>
      coefs.flatMap((c, j) => (c === 0 ? [] : [I32CONST, 0, I64LOAD, 3, ...uleb(LANES + 32 * k + 8 * j), I64CONST, ...sleb(c), I64MUL, I64ADD])),
    ),
    I64STORE, 3, out * 8,
  ]),
  END,
];

/** signed LEB128, for i32/i64 constants. */
function sleb(n: number): number[] {
  const out: number[] = [];
  for (;;) {
    const byte = n & 0x7f;
    n >>= 7;
    if ((n === 0 && (byte & 0x40) === 0) || (n === -1 && (byte & 0x40) !== 0)) {
      out.push(byte);
      return out;
    }
    out.push(byte | 0x80);
  }
}

/*
 * smp(stride, count) -> f64: the compressibility sample of sample.ts, run on
 * the block already copied to [SIMD_IN, ...) for its checksum. Memory: HIST
 * (256 i32, the byte histogram, zeroed by smp), CLOG (C_LOG2_C as f64,
 * written once at instantiation). Returns -1 when two samples are equal, else
 * sum(CLOG[HIST[b]]) over b = 0..255 in order (the same float additions as
 * looksIncompressible, so the same verdict bit for bit). In WAT:
 *
 *   memory.fill(HIST, 0, 1024)
 *   p = SIMD_IN + SAMPLE_SKEW
 *   for (k = 0; k < count; k++, p += stride) {
 *     HIST[p[0]]++ ... HIST[p[15]]++                      ;; unrolled, i32.load8_u offset=b
 *     plo = i64(p); phi = i64(p + 8)
 *     for (q = SIMD_IN + SAMPLE_SKEW; q < p; q += stride)  ;; every earlier sample
 *       if (i64(q) == plo) if (i64(q + 8) == phi) return -1
 *   }
 *   for (x = 0; x < 1024; x += 4) sum += f64.load(CLOG + HIST[x] * 8)
 *   return sum
 */
const HIST_AT = SIMD_IN + WINDOW;
const CLOG_AT = HIST_AT + 1024;
const SIMD_MEM_END = CLOG_AT + C_LOG2_C.length * 8;
const I32LOAD = 0x28, I32LOAD8U = 0x2d, I32STORE = 0x36, F64LOAD = 0x2b, I64EQ = 0x51, I32SHL = 0x74;
const F64ADD = 0xa0, F64CONST = 0x44, IF = 0x04, RETURN = 0x0f, BR = 0x0c, F64 = 0x7c;
const MEMORY_FILL = [0xfc, ...uleb(11), 0x00];
const f64bytes = (v: number): number[] => Array.from(new Uint8Array(new Float64Array([v]).buffer));
// smp's locals: params stride, count; then k, p, q, x (i32), sum (f64), plo, phi (i64: sample p's two halves).
const STRIDE = 0, COUNT = 1, SK = 2, SPP = 3, SQ = 4, SX = 5, SSUM = 6, PLO = 7, PHI = 8;
const FIRST = SIMD_IN + SAMPLE_SKEW;
const sampleBody: number[] = [
  3, 4, I32, 1, F64, 2, I64,
  I32CONST, ...sleb(HIST_AT), I32CONST, 0, I32CONST, ...sleb(1024), ...MEMORY_FILL,
  I32CONST, ...sleb(FIRST), LSET, SPP,
  BLOCK, VOID, LOOP, VOID,
  LGET, SK, LGET, COUNT, I32GEU, BR_IF, 1,
  ...Array.from({ length: SAMPLE_LEN }, (_, b) => [
    LGET, SPP, I32LOAD8U, 0, b, I32CONST, 2, I32SHL, LTEE, SX,
    LGET, SX, I32LOAD, 2, ...uleb(HIST_AT), I32CONST, 1, I32ADD, I32STORE, 2, ...uleb(HIST_AT),
  ]).flat(),
  LGET, SPP, I64LOAD, 0, 0, LSET, PLO,
  LGET, SPP, I64LOAD, 0, 8, LSET, PHI,
  I32CONST, ...sleb(FIRST), LSET, SQ,
  BLOCK, VOID, LOOP, VOID,
  LGET, SQ, LGET, SPP, I32GEU, BR_IF, 1,
  LGET, SQ, I64LOAD, 0, 0, LGET, PLO, I64EQ,
  IF, VOID,
  LGET, SQ, I64LOAD, 0, 8, LGET, PHI, I64EQ,
  IF, VOID, F64CONST, ...f64bytes(-1), RETURN, END,
  END,
  LGET, SQ, LGET, STRIDE, I32ADD, LSET, SQ,
  BR, 0,
  END, END,
  LGET, SPP, LGET, STRIDE, I32ADD, LSET, SPP,
  LGET, SK, I32CONST, 1, I32ADD, LSET, SK,
  BR, 0,
  END, END,
  I32CONST, 0, LSET, SX, // x held byte * 4 above
  BLOCK, VOID, LOOP, VOID,
  LGET, SX, I32CONST, ...sleb(1024), I32GEU, BR_IF, 1,
  LGET, SSUM, LGET, SX, I32LOAD, 2, ...uleb(HIST_AT), I32CONST, 3, I32SHL, F64LOAD, 3, ...uleb(CLOG_AT), F64ADD, LSET, SSUM,
  LGET, SX, I32CONST, 4, I32ADD, LSET, SX,
  BR, 0,
  END, END,
  LGET, SSUM,
  END,
];

/** The SIMD module binary (exported so a test can check it validates). */
export const FLETCHER4_SIMD_WASM: Uint8Array<ArrayBuffer> = Uint8Array.from([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
  // type 0: (i32) -> (); type 1: () -> (); type 2: (i32, i32) -> (f64)
  ...section(1, [3, 0x60, 1, I32, 0, 0x60, 0, 0, 0x60, 2, I32, I32, 1, F64]),
  ...section(3, [3, 0, 1, 2]), // run: type 0, fin: type 1, smp: type 2
  ...section(5, [1, 0x00, (SIMD_MEM_END + 0xffff) >>> 16]),
  ...section(7, [4, ...name('mem'), 0x02, 0, ...name('run'), 0x00, 0, ...name('fin'), 0x00, 1, ...name('smp'), 0x00, 2]),
  ...section(10, [3, ...uleb(runBody.length), ...runBody, ...uleb(finBody.length), ...finBody, ...uleb(sampleBody.length), ...sampleBody]),
]);

interface WasmF4Simd {
  run(n: number): void;
  fin(): void;
  smp(stride: number, count: number): number;
  heap: Uint8Array;
}

/** null where WebAssembly SIMD is unavailable (or --jitless): the scalar module does everything. */
const simd: WasmF4Simd | null = (() => {
  try {
    if (typeof WebAssembly !== 'object' || !WebAssembly.validate(FLETCHER4_SIMD_WASM)) return null;
    const inst = new WebAssembly.Instance(new WebAssembly.Module(FLETCHER4_SIMD_WASM), {});
    const mem = inst.exports.mem as WebAssembly.Memory;
    new Float64Array(mem.buffer, CLOG_AT, C_LOG2_C.length).set(C_LOG2_C);
    return {
      run: inst.exports.run as (n: number) => void,
      fin: inst.exports.fin as () => void,
      smp: inst.exports.smp as (stride: number, count: number) => number,
      heap: new Uint8Array(mem.buffer),
    };
  } catch {
    return null;
  }
})();

export const fletcher4HasSimd = simd !== null;

/**
 * Fletcher-4 via the four-lane SIMD module: lengths that are a multiple of 16
 * (every block: they are whole sectors). Throws for others or without SIMD.
 * Measured ~2x the scalar module on 16 KiB blocks, most of what remains
 * being the copy into wasm memory.
 */
export function fletcher4Simd(data: Uint8Array, out: Buffer = Buffer.allocUnsafe(32)): Buffer {
  if (simd === null) throw new Error('fletcher4: WebAssembly SIMD unavailable');
  if (data.length % 16 !== 0) throw new RangeError(`fletcher4Simd: length ${data.length} is not a multiple of 16`);
  const { run, fin, heap } = simd;
  heap.fill(0, LANES, LANES + 128);
  for (let off = 0; off < data.length; off += WINDOW) {
    const n = Math.min(WINDOW, data.length - off);
    heap.set(data.subarray(off, off + n), SIMD_IN);
    run(n);
  }
  fin();
  out.set(heap.subarray(0, 32));
  return out;
}

/**
 * The write path's fused step for a block that may not be worth compressing
 * (prepare.ts): copy it into wasm memory once, take the compressibility
 * sample there (smp above; the verdict of sample.ts looksIncompressible),
 * and only if it looks incompressible, checksum that same copy. Returns the
 * checksum of data when it looks incompressible (it will be stored as is),
 * null when it may compress, undefined when this path does not apply (no
 * SIMD, a length that is not a multiple of 16, too small to be judged, or
 * larger than one window). Saves the sample's own pass over a block that is
 * usually cold in the cache by now, and runs the sample ~5x faster than JS.
 */
export function fletcher4Sampled(data: Uint8Array, out?: Buffer): Buffer | null | undefined {
  if (simd === null || (data.length & 15) !== 0 || data.length > WINDOW) return undefined;
  const { stride, count } = sampleSpan(data.length);
  if (count === 0) return undefined;
  const { run, fin, smp, heap } = simd;
  heap.set(data, SIMD_IN);
  const sum = smp(stride, count);
  if (sum < 0 || !entropyTooHigh(sum, count)) return null;
  heap.fill(0, LANES, LANES + 128);
  run(data.length);
  fin();
  const res = out ?? Buffer.allocUnsafe(32);
  res.set(heap.subarray(0, 32));
  return res;
}

function checkLength(data: Uint8Array): void {
  // ZFS asserts the same (IS_P2ALIGNED(size, sizeof (uint32_t))).
  if (data.length % 4 !== 0) throw new RangeError(`fletcher4: length ${data.length} is not a multiple of 4`);
}

/** Fletcher-4 via WebAssembly; throws if WebAssembly is unavailable. */
export function fletcher4Wasm(data: Uint8Array, out: Buffer = Buffer.allocUnsafe(32)): Buffer {
  if (wasm === null) throw new Error('fletcher4: WebAssembly unavailable');
  checkLength(data);
  const { f4, heap, acc } = wasm;
  acc.fill(0n);
  for (let off = 0; off < data.length; off += WINDOW) {
    const n = Math.min(WINDOW, data.length - off);
    heap.set(data.subarray(off, off + n), IN_OFF);
    f4(n);
  }
  out.set(heap.subarray(0, 32)); // wasm memory is little-endian, as the on-disk format
  return out;
}

const TWO32 = 4294967296;
const LITTLE_ENDIAN_HOST = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/**
 * Fletcher-4 in plain JS. Each accumulator is a (hi, lo) pair of uint32
 * limbs; lo sums are kept as doubles below 2^33 so the carry is exact, and hi
 * wraps with >>> 0, which is exactly mod 2^64 arithmetic.
 */
export function fletcher4Js(data: Uint8Array, out: Buffer = Buffer.allocUnsafe(32)): Buffer {
  checkLength(data);
  let al = 0, ah = 0, bl = 0, bh = 0, cl = 0, ch = 0, dl = 0, dh = 0;
  const words = data.length >>> 2;
  // Aligned view when possible (little-endian hosts only); else DataView.
  const u32 = LITTLE_ENDIAN_HOST && data.byteOffset % 4 === 0 ? new Uint32Array(data.buffer, data.byteOffset, words) : null;
  const dv = u32 ? null : new DataView(data.buffer, data.byteOffset, data.length);
  for (let i = 0; i < words; i++) {
    const w = u32 ? u32[i]! : dv!.getUint32(i * 4, true);
    al += w;
    if (al >= TWO32) { al -= TWO32; ah = (ah + 1) >>> 0; }
    bl += al;
    bh = (bh + ah) >>> 0;
    if (bl >= TWO32) { bl -= TWO32; bh = (bh + 1) >>> 0; }
    cl += bl;
    ch = (ch + bh) >>> 0;
    if (cl >= TWO32) { cl -= TWO32; ch = (ch + 1) >>> 0; }
    dl += cl;
    dh = (dh + ch) >>> 0;
    if (dl >= TWO32) { dl -= TWO32; dh = (dh + 1) >>> 0; }
  }
  out.writeUInt32LE(al, 0); out.writeUInt32LE(ah, 4);
  out.writeUInt32LE(bl, 8); out.writeUInt32LE(bh, 12);
  out.writeUInt32LE(cl, 16); out.writeUInt32LE(ch, 20);
  out.writeUInt32LE(dl, 24); out.writeUInt32LE(dh, 28);
  return out;
}

/** Fletcher-4 of data (length a multiple of 4): 32 bytes, a b c d as LE uint64. The fastest path this Node has. */
export function fletcher4(data: Uint8Array, out?: Buffer): Buffer {
  if (simd !== null && (data.length & 15) === 0) return fletcher4Simd(data, out);
  return wasm !== null ? fletcher4Wasm(data, out) : fletcher4Js(data, out);
}
