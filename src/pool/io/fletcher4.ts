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

/** Fletcher-4 of data (length a multiple of 4): 32 bytes, a b c d as LE uint64. */
export const fletcher4: (data: Uint8Array, out?: Buffer) => Buffer = wasm ? fletcher4Wasm : fletcher4Js;
