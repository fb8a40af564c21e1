/**
 * The compressibility sample (early abort): a cheap guess, from 512 sampled
 * bytes, that lz4 or gzip cannot save 1/8 of a block, so the write path does
 * not spend 60-100 us per 16 KiB block running lz4-napi over random data.
 *
 * Two implementations of exactly the same function:
 *  - looksIncompressible() below, in JS, the reference (~1.5 us per block);
 *  - the `smp` function of fletcher4.ts's wasm module (~0.3 us), run on the
 *    copy of the block that the checksum makes anyway (fletcher4Sampled),
 *    which is why it lives there.
 * Both take the same samples, build the same histogram and sum the same
 * table in the same order, so they agree bit for bit (tested).
 */

/** Sample geometry (btrfs's compression heuristic uses the same): 16 bytes every 256 (or more). */
export const SAMPLE_LEN = 16;
const SAMPLE_STRIDE = 256;
/** At most this many samples per block: the cost stays ~constant for big blocks. */
export const MAX_SAMPLES = 32;
/** Offset of the first sample: away from 512-byte sector starts. */
export const SAMPLE_SKEW = 200;
/** Blocks smaller than this are cheap to just try. */
export const HEURISTIC_MIN = 8192;
/**
 * Order-0 entropy, in bits per byte, above which a byte-statistics coder
 * cannot save 1/8 (8 bits * 7/8 = 7). Random data samples at ~7.8.
 */
const ENTROPY_LIMIT = 7;
/** c * log2(c) for every possible histogram count (a constant table; the wasm module gets a copy). */
export const C_LOG2_C: Float64Array = (() => {
  const t = new Float64Array(SAMPLE_LEN * MAX_SAMPLES + 1);
  for (let c = 2; c < t.length; c++) t[c] = c * Math.log2(c);
  return t;
})();

/** Where the samples of a block of `len` bytes are: SAMPLE_SKEW + k * stride, k < count. count 0: not judged. */
export function sampleSpan(len: number): { stride: number; count: number } {
  if (len < HEURISTIC_MIN) return { stride: 0, count: 0 };
  const stride = SAMPLE_STRIDE * Math.max(1, Math.floor(len / (SAMPLE_STRIDE * MAX_SAMPLES)));
  const count = Math.min(MAX_SAMPLES, Math.floor((len - SAMPLE_LEN - SAMPLE_SKEW) / stride) + 1);
  return { stride, count };
}

/** The verdict from sum(c log2 c) over the histogram of `count` samples: H = log2(n) - sum / n above the limit. */
export function entropyTooHigh(sum: number, count: number): boolean {
  const n = count * SAMPLE_LEN;
  return Math.log2(n) - sum / n > ENTROPY_LIMIT;
}

/**
 * A fast guess that compression cannot save 1/8 of data (a few us per
 * block, whatever its size): true only if the sampled bytes have an order-0
 * entropy above 7 bits per byte AND no two 16-byte samples are equal (a
 * repeat, which LZ matching would exploit). Zero runs, text, and repeats at
 * multiples of the sample stride all fail the test and get compressed for
 * real. Blocks under 8 KiB are never judged.
 */
export function looksIncompressible(data: Uint8Array): boolean {
  const { stride, count } = sampleSpan(data.length);
  if (count === 0) return false;
  // Scratch tables are module-level: this runs for every block written (one JS thread, no reentrancy).
  const hist = HIST;
  hist.fill(0);
  SEEN.fill(0);
  // Samples start mid-sector: many writers put headers at sector starts (fio's
  // scrambled buffers, filesystem metadata), which would skew the estimate.
  for (let k = 0, off = SAMPLE_SKEW; k < count; k++, off += stride) {
    for (let i = off; i < off + SAMPLE_LEN; i++) hist[data[i]!]!++;
    // A fingerprint finds candidate repeats cheaply; a candidate is compared in full, so the
    // verdict is exact (as the wasm version's, which compares every pair).
    // Unsigned, as SEEN stores it: `x | 1` alone is a signed int32, which never equalled a stored
    // print with the top bit set (half of all repeats went unnoticed until the wasm cross-check).
    const print =
      ((Math.imul(word(data, off) ^ word(data, off + 8), 0x9e3779b1) ^ word(data, off + 4) ^ Math.imul(word(data, off + 12), 0x85ebca6b)) | 1) >>> 0;
    // Open addressing in a table twice the sample count: a repeat means LZ would find matches.
    let slot = (Math.imul(print, 0x27d4eb2d) >>> 25) & (SEEN.length - 1);
    while (SEEN[slot] !== 0) {
      if (SEEN[slot] === print && sameSample(data, SEEN_AT[slot]!, off)) return false;
      slot = (slot + 1) & (SEEN.length - 1);
    }
    SEEN[slot] = print;
    SEEN_AT[slot] = off;
  }
  let sum = 0;
  for (let b = 0; b < 256; b++) sum += C_LOG2_C[hist[b]!]!;
  return entropyTooHigh(sum, count);
}

const HIST = new Uint16Array(256);
const SEEN = new Uint32Array(MAX_SAMPLES * 2);
const SEEN_AT = new Int32Array(MAX_SAMPLES * 2);

function sameSample(d: Uint8Array, a: number, b: number): boolean {
  for (let i = 0; i < SAMPLE_LEN; i++) if (d[a + i] !== d[b + i]) return false;
  return true;
}

function word(d: Uint8Array, at: number): number {
  return d[at]! | (d[at + 1]! << 8) | (d[at + 2]! << 16) | (d[at + 3]! << 24);
}
