/**
 * Guest-to-host cluster mapping: the active L1 table (in memory), L2 tables
 * (TableCache), entry decoding for standard and extended L2 entries, and the
 * segment map every reader (read, blockStatus, map, chain index) uses.
 *
 * Ordering: an L2 table is written (and synced) before the L1 entry that
 * points at it; the L2 cache flushes refcounts first (see cache.ts). The L1
 * table is written only by `writeL1()`, which the image calls from flush().
 */
import { err } from '../../src/errors.js';
import { TableCache } from './cache.js';
import * as C from './constants.js';
import type { ImageFile } from './io.js';
import type { Refcounts } from './refcount.js';

export const enum Kind {
  Unalloc = 0,
  Zero = 1,
  Data = 2,
  Compressed = 3,
}

/** A run of guest bytes with one state. `host` is the host offset of `offset` (Data), or the compressed descriptor's offset. */
export interface Seg {
  offset: number;
  length: number;
  kind: Kind;
  host: number;
  /** Compressed: byte length of the compressed data span. */
  csize: number;
}

export interface L2Entry {
  /** Host offset of a standard cluster (0 = none), or of compressed data. */
  host: number;
  copied: boolean;
  compressed: boolean;
  /** Standard (non-extended) zero flag. */
  zeroFlag: boolean;
  /** Extended L2: allocation and zero bitmaps. */
  alloc: number;
  zero: number;
  csize: number;
}

const TWO32 = 2 ** 32;
/**
 * Largest host offset a data cluster may start at: L2 entries hold 56-bit
 * offsets, but past 2^53 a JS number is no longer exact and Node's
 * positional I/O reads at the file's current position instead (preadv with
 * -1). No real image gets near 8 PiB, so readers treat such entries as corrupt.
 */
const MAX_HOST = 2 ** 53 - 2 ** 21;

/** A data cluster's host offset, checked for the reader (see MAX_HOST). */
function dataHost(host: number, cs: number): number {
  if (host % cs !== 0) throw err.corrupt(`qcow2: unaligned data cluster offset ${host}`);
  if (host > MAX_HOST) throw err.corrupt(`qcow2: data cluster offset ${host} is beyond what an image can hold`);
  return host;
}
/** Zero bytes to compare runs of L2 entries against (32 extended or 64 standard entries). */
const BLANK = Buffer.alloc(512);

function be32(b: Buffer, o: number): number {
  return ((b[o]! << 24) | (b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!) >>> 0;
}

function put32(b: Buffer, o: number, v: number): void {
  b[o] = v >>> 24;
  b[o + 1] = v >>> 16;
  b[o + 2] = v >>> 8;
  b[o + 3] = v;
}

export class ClusterMap {
  readonly cs: number;
  readonly ext: boolean;
  readonly entryBytes: number;
  readonly l2Entries: number;
  /** Allocation unit inside a cluster: subcluster size (extended L2) or the cluster. */
  readonly unit: number;
  private readonly xShift: number;
  l1: Float64Array;
  l1Copied: Uint8Array;
  l1Offset: number;
  private l1Dirty = false;
  readonly cache: TableCache;
  /** Set by the image: how many bytes the virtual disk has. */
  size: number;

  constructor(
    private file: ImageFile,
    readonly clusterBits: number,
    ext: boolean,
    l1Raw: Buffer,
    l1Offset: number,
    size: number,
    cacheBytes: number,
  ) {
    this.cs = 2 ** clusterBits;
    this.ext = ext;
    this.entryBytes = ext ? 16 : 8;
    this.l2Entries = this.cs / this.entryBytes;
    this.unit = ext ? this.cs / C.SUBCLUSTERS : this.cs;
    this.xShift = 62 - (clusterBits - 8);
    this.size = size;
    this.l1Offset = l1Offset;
    const n = l1Raw.length / 8;
    this.l1 = new Float64Array(n);
    this.l1Copied = new Uint8Array(n);
    for (let i = 0; i < n; i++) {
      const hi = l1Raw.readUInt32BE(i * 8);
      const lo = l1Raw.readUInt32BE(i * 8 + 4);
      this.l1[i] = (hi & 0x00ffffff) * TWO32 + (((lo >>> 9) << 9) >>> 0);
      this.l1Copied[i] = hi >>> 31;
    }
    this.cache = new TableCache(file, this.cs, cacheBytes, 'L2 table');
  }

  /** Guest bytes covered by one L2 table. */
  get l2Span(): number {
    return this.l2Entries * this.cs;
  }

  // Entries are read and written with plain byte arithmetic: these run once
  // per cluster on every path, and Buffer's accessors (JS functions with
  // argument checks) would be hot code for the optimizing compiler to chase.

  decode(l2: Buffer, idx: number): L2Entry {
    const o = idx * this.entryBytes;
    const hi = be32(l2, o);
    const lo = be32(l2, o + 4);
    const e: L2Entry = { host: 0, copied: hi >>> 31 === 1, compressed: (hi & 0x40000000) !== 0, zeroFlag: false, alloc: 0, zero: 0, csize: 0 };
    if (e.compressed) {
      const xs = this.xShift - 32;
      e.host = (hi & ((1 << xs) - 1)) * TWO32 + lo;
      const nsec = ((hi & 0x3fffffff) >>> xs) + 1;
      e.csize = nsec * 512 - (e.host % 512);
      return e;
    }
    e.host = (hi & 0x00ffffff) * TWO32 + (((lo >>> 9) << 9) >>> 0);
    if (this.ext) {
      e.alloc = be32(l2, o + 12);
      e.zero = be32(l2, o + 8);
    } else {
      e.zeroFlag = (lo & 1) === 1;
    }
    return e;
  }

  /** True when the entry is all zero: unallocated, no flags, nothing to free (no decoding). */
  isBlank(l2: Buffer, idx: number): boolean {
    return this.blankRun(l2, idx, 1) === 1;
  }

  /** How many entries from `idx` (at most `max`) are blank; one comparison when they all are. */
  blankRun(l2: Buffer, idx: number, max: number): number {
    const eb = this.entryBytes;
    const per = BLANK.length / eb;
    let n = 0;
    while (n < max) {
      const k = Math.min(per, max - n);
      const o = (idx + n) * eb;
      if (l2.compare(BLANK, 0, k * eb, o, o + k * eb) === 0) {
        n += k;
        continue;
      }
      for (let p = o; ; n++, p += eb) {
        for (let q = 0; q < eb; q++) if (l2[p + q] !== 0) return n;
      }
    }
    return n;
  }

  encode(l2: Buffer, idx: number, e: L2Entry): void {
    const o = idx * this.entryBytes;
    if (e.compressed) {
      const xs = this.xShift - 32;
      const nsec = Math.ceil((e.host % 512 + e.csize) / 512) - 1;
      const hi = 0x40000000 | (nsec << xs) | Math.floor(e.host / TWO32);
      put32(l2, o, hi >>> 0);
      put32(l2, o + 4, e.host % TWO32);
      if (this.ext) l2.fill(0, o + 8, o + 16);
      return;
    }
    const hi = (e.copied ? 0x80000000 : 0) | Math.floor(e.host / TWO32);
    const lo = (e.host % TWO32) | (e.zeroFlag ? 1 : 0);
    put32(l2, o, hi >>> 0);
    put32(l2, o + 4, lo >>> 0);
    if (this.ext) {
      put32(l2, o + 8, e.zero >>> 0);
      put32(l2, o + 12, e.alloc >>> 0);
    }
  }

  /**
   * Point entries [idx, idx+n) at the fresh clusters host, host+cs, ... with
   * COPIED set (refcount 1), all subclusters allocated when extended: the
   * streaming writer's encode, one loop and no entry objects.
   */
  encodeFreshRun(l2: Buffer, idx: number, n: number, host: number): void {
    const eb = this.entryBytes;
    for (let k = 0, o = idx * eb, h = host; k < n; k++, o += eb, h += this.cs) {
      put32(l2, o, (0x80000000 | Math.floor(h / TWO32)) >>> 0);
      put32(l2, o + 4, h % TWO32);
      if (this.ext) {
        put32(l2, o + 8, 0);
        put32(l2, o + 12, C.ALL_SUBCLUSTERS);
      }
    }
  }

  /** Validate an L2 table offset from the L1 before reading it. */
  private checkL2Offset(off: number, l1i: number): void {
    if (off % this.cs !== 0) throw err.corrupt(`qcow2: L1 entry ${l1i} points at an unaligned L2 table`);
    if (off + this.cs > this.file.size) throw err.corrupt(`qcow2: L1 entry ${l1i} points past the end of the file`);
  }

  async l2ForRead(l1i: number): Promise<Buffer | null> {
    const off = this.l1[l1i] ?? 0;
    if (off === 0) return null;
    const hit = this.cache.peek(off);
    if (hit) return hit;
    this.checkL2Offset(off, l1i);
    return this.cache.get(off);
  }

  /**
   * The L2 table for `l1i`, ready to be modified: allocated if missing, copied
   * if shared with a snapshot (COW of the table itself).
   */
  async l2ForWrite(l1i: number, refs: Refcounts): Promise<{ buf: Buffer; off: number }> {
    const old = this.l1[l1i]!;
    if (old === 0) {
      const off = await refs.allocate(1);
      const buf = await this.cache.create(off);
      this.setL1(l1i, off, true);
      return { buf, off };
    }
    if (!this.l1Copied[l1i]) this.checkL2Offset(old, l1i);
    const cur = await this.cache.get(old);
    if (this.l1Copied[l1i] && (await refs.get(old / this.cs)) === 1) return { buf: cur, off: old };
    if ((await refs.get(old / this.cs)) === 1) {
      this.setL1(l1i, old, true); // flag was stale; it is exact from now on
      return { buf: cur, off: old };
    }
    // Shared with a snapshot: copy. Data clusters keep their refcounts (each
    // snapshot counts its own references), the old table loses one.
    const off = await refs.allocate(1);
    const buf = await this.cache.create(off, cur);
    this.setL1(l1i, off, true);
    refs.free(old / this.cs);
    return { buf, off };
  }

  setL1(i: number, off: number, copied: boolean): void {
    this.l1[i] = off;
    this.l1Copied[i] = copied ? 1 : 0;
    this.l1Dirty = true;
  }

  get isL1Dirty(): boolean {
    return this.l1Dirty;
  }

  l1Buffer(): Buffer {
    const b = Buffer.alloc(this.l1.length * 8);
    for (let i = 0; i < this.l1.length; i++) {
      const off = this.l1[i]!;
      b.writeUInt32BE(((this.l1Copied[i] && off ? 0x80000000 : 0) | Math.floor(off / TWO32)) >>> 0, i * 8);
      b.writeUInt32BE(off % TWO32, i * 8 + 4);
    }
    return b;
  }

  /** Write the L1 table in place. Callers sync the L2 tables it points at first. */
  async writeL1(): Promise<void> {
    if (!this.l1Dirty) return;
    await this.file.write(this.l1Offset, this.l1Buffer());
    this.l1Dirty = false;
  }

  /** Replace the in-memory L1 (snapshot apply, resize); the caller persists it. */
  replaceL1(l1: Float64Array, copied: Uint8Array, offset: number): void {
    this.l1 = l1;
    this.l1Copied = copied;
    this.l1Offset = offset;
    this.l1Dirty = false;
  }

  /** Kind of subcluster/cluster `sub` of an entry. */
  subKind(e: L2Entry, sub: number): Kind {
    if (e.compressed) return Kind.Compressed;
    if (this.ext) {
      if ((e.alloc >>> sub) & 1) return Kind.Data;
      if ((e.zero >>> sub) & 1) return Kind.Zero;
      return Kind.Unalloc;
    }
    if (e.zeroFlag) return Kind.Zero;
    return e.host !== 0 ? Kind.Data : Kind.Unalloc;
  }

  /** unitAt without I/O: null when the L2 table it needs is not cached (or the L1 entry needs checking). */
  unitAtCached(pos: number, length: number): Seg | null {
    const cluster = Math.floor(pos / this.cs);
    const l1i = Math.floor(cluster / this.l2Entries);
    const off = l1i < this.l1.length ? this.l1[l1i]! : 0;
    if (off === 0) return { offset: pos, length, kind: Kind.Unalloc, host: 0, csize: 0 };
    const l2 = this.cache.peek(off);
    return l2 ? this.entrySeg(l2, cluster, pos, length) : null;
  }

  /**
   * The state of the one allocation unit holding guest byte `pos` (which must
   * be inside the disk), as a segment of `length` bytes from `pos` (the caller
   * keeps it inside the unit): mapRange's answer for a small read, without
   * building a list.
   */
  async unitAt(pos: number, length: number): Promise<Seg> {
    const cluster = Math.floor(pos / this.cs);
    const l1i = Math.floor(cluster / this.l2Entries);
    const l2 = l1i < this.l1.length ? await this.l2ForRead(l1i) : null;
    if (!l2) return { offset: pos, length, kind: Kind.Unalloc, host: 0, csize: 0 };
    return this.entrySeg(l2, cluster, pos, length);
  }

  private entrySeg(l2: Buffer, cluster: number, pos: number, length: number): Seg {
    const e = this.decode(l2, cluster % this.l2Entries);
    if (e.compressed) return { offset: pos, length, kind: Kind.Compressed, host: e.host, csize: e.csize };
    const inC = pos - cluster * this.cs;
    const k = this.subKind(e, Math.floor(inC / this.unit));
    if (k !== Kind.Data) return { offset: pos, length, kind: k, host: 0, csize: 0 };
    return { offset: pos, length, kind: k, host: dataHost(e.host, this.cs) + inC, csize: 0 };
  }

  /**
   * Segments covering [offset, offset+length) (clamped to the disk size),
   * merged where state and host contiguity allow.
   */
  async mapRange(offset: number, length: number): Promise<Seg[]> {
    const out: Seg[] = [];
    const end = Math.min(offset + length, this.size);
    let pos = offset;
    while (pos < end) {
      const l1i = Math.floor(pos / this.l2Span);
      const tableEnd = Math.min(end, (l1i + 1) * this.l2Span);
      const l2 = l1i < this.l1.length ? await this.l2ForRead(l1i) : null;
      if (l2) this.mapTable(l2, pos, tableEnd, out);
      else pushSeg(out, pos, tableEnd - pos, Kind.Unalloc, 0, 0);
      pos = tableEnd;
    }
    return out;
  }

  /**
   * mapRange without I/O: null when an L2 table it needs is not cached.
   * The caller keeps [offset, offset+length) inside the disk.
   */
  mapRangeCached(offset: number, length: number): Seg[] | null {
    const out: Seg[] = [];
    const end = offset + length;
    for (let pos = offset; pos < end; ) {
      const l1i = Math.floor(pos / this.l2Span);
      const tableEnd = Math.min(end, (l1i + 1) * this.l2Span);
      const off = l1i < this.l1.length ? this.l1[l1i]! : 0;
      if (off === 0) pushSeg(out, pos, tableEnd - pos, Kind.Unalloc, 0, 0);
      else {
        const l2 = this.cache.peek(off);
        if (!l2) return null;
        this.mapTable(l2, pos, tableEnd, out);
      }
      pos = tableEnd;
    }
    return out;
  }

  /** mapRange's work inside one L2 table (synchronous: the loop that runs per cluster). */
  private mapTable(l2: Buffer, pos: number, tableEnd: number, out: Seg[]): void {
    const cs = this.cs;
    if (!this.ext) {
      // Standard entries (one allocation unit per cluster), decoded in place:
      // this loop runs for every cluster a read or a block status query
      // covers, and an entry object per cluster is most of its garbage.
      for (let c = Math.floor(pos / cs); pos < tableEnd; c++) {
        const o = (c % this.l2Entries) * 8;
        const hi = be32(l2, o);
        const lo = be32(l2, o + 4);
        const cEnd = Math.min(tableEnd, (c + 1) * cs);
        if ((hi & 0x40000000) !== 0) {
          const e = this.decode(l2, c % this.l2Entries);
          pushSeg(out, pos, cEnd - pos, Kind.Compressed, e.host, e.csize);
        } else if ((lo & 1) === 1) {
          pushSeg(out, pos, cEnd - pos, Kind.Zero, 0, 0);
        } else {
          const host = (hi & 0x00ffffff) * TWO32 + (((lo >>> 9) << 9) >>> 0);
          if (host === 0) pushSeg(out, pos, cEnd - pos, Kind.Unalloc, 0, 0);
          else pushSeg(out, pos, cEnd - pos, Kind.Data, dataHost(host, cs) + (pos - c * cs), 0);
        }
        pos = cEnd;
      }
      return;
    }
    while (pos < tableEnd) {
      const c = Math.floor(pos / cs);
      const e = this.decode(l2, c % this.l2Entries);
      const cEnd = Math.min(tableEnd, (c + 1) * cs);
      if (e.compressed) {
        pushSeg(out, pos, cEnd - pos, Kind.Compressed, e.host, e.csize);
        pos = cEnd;
        continue;
      }
      while (pos < cEnd) {
        const inC = pos - c * cs;
        const sub = Math.floor(inC / this.unit);
        const uEnd = Math.min(cEnd, c * cs + (sub + 1) * this.unit);
        const k = this.subKind(e, sub);
        if (k === Kind.Data) pushSeg(out, pos, uEnd - pos, k, dataHost(e.host, cs) + inC, 0);
        else pushSeg(out, pos, uEnd - pos, k, 0, 0);
        pos = uEnd;
      }
    }
  }
}

/** Append a segment, merging it into the previous one when state (and, for data, host contiguity) allows. */
function pushSeg(out: Seg[], pos: number, len: number, kind: Kind, host: number, csize: number): void {
  const last = out[out.length - 1];
  if (last && last.kind === kind && kind !== Kind.Compressed && (kind !== Kind.Data || last.host + last.length === host)) last.length += len;
  else out.push({ offset: pos, length: len, kind, host, csize });
}
