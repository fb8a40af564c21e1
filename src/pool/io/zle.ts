/**
 * ZLE, ZFS's zero-length encoding (module/zfs/zle.c), with ZFS's parameter
 * n = 64. It removes runs of zeros and nothing else, so it is nearly free and
 * suits mostly-empty blocks (fresh file systems inside a VM disk).
 *
 * The encoded stream is a sequence of chunks, each starting with a byte b:
 *  - b <  n: b + 1 literal bytes follow (1..64 literals);
 *  - b >= n: stands for b - n + 1 zero bytes (1..192 zeros), nothing follows.
 *
 * The encoder keeps isolated zeros inside literal runs and starts a zero run
 * only at two or more zeros, since a one-byte zero run costs as much as the
 * zero itself and splits the literal run.
 */

const N = 64;
const MAX_LITERALS = N; // b = 0..n-1
const MAX_ZEROS = 256 - N; // b = n..255

/**
 * Encode src into dst. Returns the encoded length, or -1 if the encoding
 * does not fit in dst (the caller then stores the block uncompressed; giving
 * up early is the point, as in zle.c).
 */
export function zleEncode(src: Uint8Array, dst: Uint8Array): number {
  const sEnd = src.length;
  const dEnd = dst.length;
  let s = 0;
  let d = 0;
  while (s < sEnd) {
    if (d >= dEnd) return -1;
    if (src[s] === 0) {
      const first = s;
      const last = Math.min(sEnd, s + MAX_ZEROS);
      while (s < last && src[s] === 0) s++;
      dst[d++] = s - first - 1 + N;
    } else {
      const first = s;
      const last = Math.min(sEnd, s + MAX_LITERALS);
      // Extend while the next two bytes are not both zero; a lone zero stays a literal.
      while (s < last && (src[s] !== 0 || (s + 1 < last && src[s + 1] !== 0))) s++;
      const count = s - first;
      if (d + 1 + count > dEnd) return -1;
      dst[d++] = count - 1;
      dst.set(src.subarray(first, s), d);
      d += count;
    }
  }
  return d;
}

/**
 * Decode src into dst, which must be filled exactly. Returns false if the
 * stream is malformed: a chunk runs past either end, or the output is short.
 * Never writes outside dst, whatever src holds.
 */
export function zleDecode(src: Uint8Array, dst: Uint8Array): boolean {
  const sEnd = src.length;
  const dEnd = dst.length;
  let s = 0;
  let d = 0;
  while (s < sEnd && d < dEnd) {
    const b = src[s++]!;
    if (b < N) {
      const count = b + 1;
      if (s + count > sEnd || d + count > dEnd) return false;
      dst.set(src.subarray(s, s + count), d);
      s += count;
      d += count;
    } else {
      const count = b - N + 1;
      if (d + count > dEnd) return false;
      dst.fill(0, d, d + count);
      d += count;
    }
  }
  // Strict: the caller passes the exact encoded length (the payload header
  // excludes sector padding), so leftover input means corruption.
  return d === dEnd && s === sEnd;
}
