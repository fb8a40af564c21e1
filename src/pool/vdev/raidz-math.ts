/**
 * RAID-Z geometry and parity, as OpenZFS defines them (vdev_raidz.c,
 * vdev_raidz_math*.c), written from the definitions:
 *
 * Geometry (vdev_raidz_map_alloc): a block of s sectors at parent sector b on
 * a raidz of dcols children and nparity parity columns occupies parent
 * sectors [b, b + asize) — the children are addressed row by row, parent
 * sector p = row * dcols + child. Column c (0 <= c < scols) lives on child
 * (b + c) % dcols at row b / dcols (plus one when it wrapped) and holds
 * q + 1 sectors for the first bc columns, q for the rest, where
 * q = s / (dcols - nparity), r = s % (dcols - nparity), bc = r ? r + nparity : 0.
 * Columns 0..nparity-1 are parity; the data fills the data columns in order.
 * asize is rounded up to a multiple of nparity + 1 sectors so that the free
 * gaps left between blocks can always hold a minimal block (the skip sectors).
 * raidz1 swaps the first two columns in every odd megabyte (ZFS's on-disk
 * quirk, kept for the same layout).
 *
 * Parity over GF(2^8) with the polynomial x^8+x^4+x^3+x^2+1 (0x11d): with the
 * data columns D_0..D_{n-1} (short columns padded with zeros),
 *   P = D_0 ^ D_1 ^ ... ^ D_{n-1}
 *   Q = sum 2^(n-1-i) * D_i      (Horner: Q = Q*2 ^ D_i, as ZFS computes it)
 *   R = sum 4^(n-1-i) * D_i
 * Any nparity missing columns are recovered by solving the linear system of
 * the surviving parity rows (a k x k Vandermonde-like matrix, inverted by
 * Gauss-Jordan elimination over GF(2^8)).
 */
import { SECTOR } from './types.js';

// ---------------------------------------------------------------- GF(2^8)

/** exp[i] = 2^i (doubled so exp[log a + log b] needs no modulo); log[a] for a != 0. Constant after load. */
export const GF_EXP = new Uint8Array(512);
export const GF_LOG = new Uint8Array(256);
(() => {
  let x = 1;
  for (let i = 0; i < 255; i++) {
    GF_EXP[i] = x;
    GF_LOG[x] = i;
    x <<= 1;
    if (x & 0x100) x ^= 0x11d;
  }
  for (let i = 255; i < 512; i++) GF_EXP[i] = GF_EXP[i - 255]!;
})();

export function gfMul(a: number, b: number): number {
  if (a === 0 || b === 0) return 0;
  return GF_EXP[GF_LOG[a]! + GF_LOG[b]!]!;
}

export function gfInv(a: number): number {
  if (a === 0) throw new RangeError('GF(2^8): inverse of 0');
  return GF_EXP[255 - GF_LOG[a]!]!;
}

export function gfPow(a: number, n: number): number {
  if (n === 0) return 1;
  if (a === 0) return 0;
  return GF_EXP[(GF_LOG[a]! * n) % 255]!;
}

/** Full 256x256 multiplication table (64 KiB): row c is c * x for every byte x. Constant after load. */
const GF_MUL = new Uint8Array(65536);
for (let a = 0; a < 256; a++) for (let b = 0; b < 256; b++) GF_MUL[a * 256 + b] = gfMul(a, b);

/** Generators of the parity rows: P, Q, R. */
export const PARITY_GEN = [1, 2, 4] as const;

/** Coefficient of data column i (of n) in parity row `row`. */
export function parityCoef(row: number, i: number, n: number): number {
  return gfPow(PARITY_GEN[row]!, n - 1 - i);
}

// ---------------------------------------------------------------- geometry

export interface RaidzColumn {
  /** Child index. */
  devidx: number;
  /** Byte offset in the child's data area. */
  offset: number;
  /** Bytes (0 for a skip column that only pads the allocation). */
  size: number;
}

export interface RaidzMap {
  nparity: number;
  /** Columns holding parity or data (acols); parity first. Skip columns follow in `cols` with size 0. */
  acols: number;
  cols: RaidzColumn[];
  /** Allocated bytes including parity and skip sectors. */
  asize: number;
  nskip: number;
}

/** vdev_raidz_asize: space allocated for a block of psize bytes. */
export function raidzAsize(psize: number, dcols: number, nparity: number): number {
  let s = Math.floor((psize - 1) / SECTOR) + 1;
  s += nparity * Math.floor((s + dcols - nparity - 1) / (dcols - nparity));
  return Math.ceil(s / (nparity + 1)) * (nparity + 1) * SECTOR;
}

/** vdev_raidz_map_alloc: the column layout of the block at top-level `offset` of `psize` bytes. */
export function raidzMap(offset: number, psize: number, dcols: number, nparity: number): RaidzMap {
  const b = Math.floor(offset / SECTOR);
  const s = Math.floor(psize / SECTOR);
  const f = b % dcols;
  const o = Math.floor(b / dcols) * SECTOR;
  const q = Math.floor(s / (dcols - nparity));
  const r = s - q * (dcols - nparity);
  const bc = r === 0 ? 0 : r + nparity;
  const tot = s + nparity * (q + (r === 0 ? 0 : 1));
  let acols: number;
  let scols: number;
  if (q === 0) {
    acols = bc;
    scols = Math.min(dcols, Math.ceil(bc / (nparity + 1)) * (nparity + 1));
  } else {
    acols = dcols;
    scols = dcols;
  }
  const cols: RaidzColumn[] = [];
  for (let c = 0; c < scols; c++) {
    let col = f + c;
    let coff = o;
    if (col >= dcols) {
      col -= dcols;
      coff += SECTOR;
    }
    const size = c >= acols ? 0 : c < bc ? (q + 1) * SECTOR : q * SECTOR;
    cols.push({ devidx: col, offset: coff, size });
  }
  const nskip = Math.ceil(tot / (nparity + 1)) * (nparity + 1) - tot;
  // raidz1 only: parity and first data column trade places every other MiB.
  if (nparity === 1 && Math.floor(offset / (1 << 20)) % 2 === 1) {
    const c0 = cols[0]!;
    const c1 = cols[1]!;
    [c0.devidx, c1.devidx] = [c1.devidx, c0.devidx];
    [c0.offset, c1.offset] = [c1.offset, c0.offset];
  }
  return { nparity, acols, cols, asize: (tot + nskip) * SECTOR, nskip };
}

/** Split block data into the data columns of a map (views, no copies). */
export function splitData(map: RaidzMap, data: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let off = 0;
  for (let c = map.nparity; c < map.acols; c++) {
    const n = map.cols[c]!.size;
    out.push(data.subarray(off, off + n));
    off += n;
  }
  return out;
}

// ---------------------------------------------------------------- parity

/** A Uint32 view of a buffer (copying into an aligned one only when the buffer is misaligned). */
function words(b: Buffer): Uint32Array {
  if (b.byteOffset % 4 === 0) return new Uint32Array(b.buffer, b.byteOffset, b.length >>> 2);
  const copy = new Uint32Array(b.length >>> 2);
  new Uint8Array(copy.buffer).set(b);
  return copy;
}

/** Multiply four GF(2^8) bytes packed in a word by 2 (ZFS's VDEV_RAIDZ_64MUL_2, 32 bits wide). */
function mul2w(x: number): number {
  const m = x & 0x80808080;
  return ((x << 1) & 0xfefefefe) ^ (((m << 1) - (m >>> 7)) & 0x1d1d1d1d);
}

/**
 * Compute `nparity` parity columns of length `plen` over the data columns
 * (shorter ones count as zero-padded; `undefined` columns count as all zero,
 * which is how reconstruction computes syndromes).
 */
export function generateParity(dataCols: (Buffer | undefined)[], plen: number, nparity: number): Buffer[] {
  const bufs: Buffer[] = [];
  const ws: Uint32Array[] = [];
  for (let j = 0; j < nparity; j++) {
    const b = Buffer.alloc(plen);
    bufs.push(b);
    ws.push(new Uint32Array(b.buffer, b.byteOffset, plen >>> 2));
  }
  const pw = ws[0]!;
  const qw = ws[1]!;
  const rw = ws[2]!;
  const nw = plen >>> 2;
  // One fused pass per column (P by XOR; Q and R by Horner's rule: shift the
  // accumulated syndrome, add the column), so each word is loaded once.
  for (const d of dataCols) {
    const dw = d === undefined ? undefined : words(d);
    const dn = dw === undefined ? 0 : dw.length;
    if (nparity === 1) {
      for (let i = 0; i < dn; i++) pw[i] ^= dw![i]!;
    } else if (nparity === 2) {
      for (let i = 0; i < dn; i++) {
        const x = dw![i]!;
        pw[i] ^= x;
        const q = qw[i]!;
        const mq = q & 0x80808080;
        qw[i] = ((q << 1) & 0xfefefefe) ^ (((mq << 1) - (mq >>> 7)) & 0x1d1d1d1d) ^ x;
      }
      for (let i = dn; i < nw; i++) qw[i] = mul2w(qw[i]!);
    } else {
      for (let i = 0; i < dn; i++) {
        const x = dw![i]!;
        pw[i] ^= x;
        const q = qw[i]!;
        const mq = q & 0x80808080;
        qw[i] = ((q << 1) & 0xfefefefe) ^ (((mq << 1) - (mq >>> 7)) & 0x1d1d1d1d) ^ x;
        let r = rw[i]!;
        let mr = r & 0x80808080;
        r = ((r << 1) & 0xfefefefe) ^ (((mr << 1) - (mr >>> 7)) & 0x1d1d1d1d);
        mr = r & 0x80808080;
        rw[i] = ((r << 1) & 0xfefefefe) ^ (((mr << 1) - (mr >>> 7)) & 0x1d1d1d1d) ^ x;
      }
      for (let i = dn; i < nw; i++) {
        qw[i] = mul2w(qw[i]!);
        rw[i] = mul2w(mul2w(rw[i]!));
      }
    }
  }
  return bufs;
}

/** dst ^= c * src over GF(2^8), for the first min(len) bytes. */
function mulAcc(dst: Buffer, src: Buffer, c: number): void {
  const n = Math.min(dst.length, src.length);
  if (c === 0) return;
  if (c === 1) {
    if (dst.byteOffset % 4 === 0 && src.byteOffset % 4 === 0 && n % 4 === 0) {
      const d = new Uint32Array(dst.buffer, dst.byteOffset, n >>> 2);
      const s = new Uint32Array(src.buffer, src.byteOffset, n >>> 2);
      for (let i = 0; i < d.length; i++) d[i]! ^= s[i]!;
    } else for (let i = 0; i < n; i++) dst[i]! ^= src[i]!;
    return;
  }
  const row = GF_MUL.subarray(c * 256, c * 256 + 256);
  if (dst.byteOffset % 4 === 0 && src.byteOffset % 4 === 0 && n % 4 === 0) {
    // Four table lookups per 32-bit word: fewer loads and stores than bytewise.
    const d = new Uint32Array(dst.buffer, dst.byteOffset, n >>> 2);
    const s = new Uint32Array(src.buffer, src.byteOffset, n >>> 2);
    for (let i = 0; i < d.length; i++) {
      const x = s[i]!;
      d[i] ^= row[x & 255]! | (row[(x >>> 8) & 255]! << 8) | (row[(x >>> 16) & 255]! << 16) | (row[x >>> 24]! << 24);
    }
    return;
  }
  for (let i = 0; i < n; i++) dst[i] ^= row[src[i]!]!;
}

/** Invert a k x k matrix over GF(2^8) (Gauss-Jordan). Throws if singular (cannot happen for distinct columns). */
export function gfInvertMatrix(m: number[][]): number[][] {
  const k = m.length;
  const a = m.map((row, i) => [...row, ...Array.from({ length: k }, (_, j) => (i === j ? 1 : 0))]);
  for (let col = 0; col < k; col++) {
    let piv = col;
    while (piv < k && a[piv]![col] === 0) piv++;
    if (piv === k) throw new RangeError('GF(2^8): singular matrix');
    [a[col], a[piv]] = [a[piv]!, a[col]!];
    const inv = gfInv(a[col]![col]!);
    for (let j = 0; j < 2 * k; j++) a[col]![j] = gfMul(a[col]![j]!, inv);
    for (let i = 0; i < k; i++) {
      if (i === col || a[i]![col] === 0) continue;
      const f = a[i]![col]!;
      for (let j = 0; j < 2 * k; j++) a[i]![j]! ^= gfMul(f, a[col]![j]!);
    }
  }
  return a.map((row) => row.slice(k));
}

/**
 * Recover the columns listed in `missing` (indices into the map's columns,
 * parity first) from the others, in place. `cols[c]` must hold every column
 * not in `missing`, with the map's sizes. At most `nparity` may be missing.
 */
export function reconstruct(map: RaidzMap, cols: (Buffer | undefined)[], missing: number[]): void {
  const np = map.nparity;
  if (missing.length > np) throw new RangeError(`raidz${np}: cannot reconstruct ${missing.length} columns`);
  const miss = new Set(missing);
  const plen = map.cols[0]!.size;
  const n = map.acols - np;
  const lostData = missing.filter((c) => c >= np).sort((x, y) => x - y);
  if (lostData.length > 0) {
    const rows: number[] = [];
    for (let j = 0; j < np && rows.length < lostData.length; j++) if (!miss.has(j)) rows.push(j);
    // Syndromes: stored parity minus the parity of the data we still have.
    const present = cols.slice(np, map.acols).map((b, i) => (miss.has(i + np) ? undefined : b));
    const partial = generateParity(present, plen, Math.max(...rows) + 1);
    const syn = rows.map((j) => {
      const s = partial[j]!;
      mulAcc(s, cols[j]!, 1);
      return s;
    });
    const inv = gfInvertMatrix(rows.map((j) => lostData.map((c) => parityCoef(j, c - np, n))));
    lostData.forEach((c, x) => {
      const out = Buffer.alloc(map.cols[c]!.size);
      rows.forEach((_, r) => mulAcc(out, syn[r]!, inv[x]![r]!));
      cols[c] = out;
    });
  }
  const lostParity = missing.filter((c) => c < np);
  if (lostParity.length > 0) {
    const par = generateParity(cols.slice(np, map.acols), plen, Math.max(...lostParity) + 1);
    for (const j of lostParity) cols[j] = par[j]!;
  }
}
