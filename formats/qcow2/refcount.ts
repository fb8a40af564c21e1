/**
 * Refcounts: the refcount table (in memory), refcount blocks (TableCache),
 * the cluster allocator and the byte allocator for compressed clusters.
 *
 * Ordering rules enforced here:
 * - A new refcount block is written and synced before the refcount table
 *   entry that points at it is written.
 * - A grown refcount table is written, with every block it needs, and synced
 *   before the header points at it; the old table is freed only afterwards.
 * - Increments go to the cache at once; `flush()` (write + sync) runs before
 *   any L2/L1 write (the L2 cache's beforeWrite hook), so a table never
 *   points at a cluster whose refcount is not durable.
 * - Decrements are queued (`free`) and applied only by `applyFrees()`, which
 *   the image calls after the L2/L1 tables that dropped the references are
 *   durable. A crash in between leaks clusters, never corrupts.
 */
import { err } from '../../src/errors.js';
import { TableCache } from './cache.js';
import type { ImageFile } from './io.js';

/** Zero bytes to compare runs of refcount entries against. */
const ZEROS = Buffer.alloc(4096);

export interface RefcountLayout {
  clusterBits: number;
  refcountOrder: number;
  tableOffset: number;
  tableClusters: number;
}

export class Refcounts {
  readonly cs: number;
  readonly bits: number;
  /** Refcount entries per block. */
  readonly epb: number;
  readonly max: number;
  table: Float64Array;
  tableOffset: number;
  tableClusters: number;
  readonly cache: TableCache;
  private pending = new Map<number, number>();
  /** First cluster that may be free. */
  private hint = 0;
  /** One past the highest cluster handed out (may be past EOF until written). */
  private highWater = 0;
  /** Compressed-byte allocator: next free byte in a partly used cluster, or 0. */
  private byteCursor = 0;
  /** Called with the new table location once it is durable; must persist the header fields. */
  onTableMoved: (offset: number, clusters: number) => Promise<void> = async () => {};
  /** Refcount table entries that point somewhere no refcount block can be (see load()). */
  invalid = new Set<number>();
  /** Called when refcount blocks are created (they are metadata for the overlap check). */
  onBlocksCreated: () => void = () => {};

  private constructor(
    private file: ImageFile,
    layout: RefcountLayout,
    table: Float64Array,
    cacheBytes: number,
  ) {
    this.cs = 2 ** layout.clusterBits;
    this.bits = 2 ** layout.refcountOrder;
    this.epb = (this.cs * 8) / this.bits;
    this.max = this.bits >= 53 ? Number.MAX_SAFE_INTEGER : 2 ** this.bits - 1;
    this.table = table;
    this.tableOffset = layout.tableOffset;
    this.tableClusters = layout.tableClusters;
    this.cache = new TableCache(file, this.cs, cacheBytes, 'refcount block');
    this.highWater = Math.ceil(file.size / this.cs);
  }

  static async load(file: ImageFile, layout: RefcountLayout, cacheBytes: number): Promise<Refcounts> {
    const cs = 2 ** layout.clusterBits;
    const raw = await file.readExact(layout.tableOffset, layout.tableClusters * cs, 'refcount table');
    const table = new Float64Array(raw.length / 8);
    const invalid = new Set<number>();
    const tableEnd = layout.tableOffset + layout.tableClusters * cs;
    // Most of a table is unused (zero) entries: skip them 64 at a time.
    const zero = Buffer.alloc(512);
    for (let i = 0; i < table.length; i++) {
      if (i % 64 === 0 && i + 64 <= table.length && raw.subarray(i * 8, i * 8 + 512).equals(zero)) {
        i += 63;
        continue;
      }
      const hi = raw.readUInt32BE(i * 8);
      const lo = raw.readUInt32BE(i * 8 + 4);
      table[i] = (hi & 0x00ffffff) * 2 ** 32 + ((lo >>> 9) << 9 >>> 0);
      const off = table[i]!;
      // A block that is unaligned, past EOF, on the header or on the table itself is
      // never read or written: using it would read garbage or overwrite metadata.
      if (off !== 0 && (off % cs !== 0 || (lo & 0x1ff) !== 0 || off + cs > file.size || off < cs || (off >= layout.tableOffset && off < tableEnd))) {
        invalid.add(i);
      }
    }
    const r = new Refcounts(file, layout, table, cacheBytes);
    r.invalid = invalid;
    return r;
  }

  blockOf(cluster: number): number {
    return Math.floor(cluster / this.epb);
  }

  private readEntry(buf: Buffer, i: number): number {
    switch (this.bits) {
      case 8:
        return buf[i]!;
      case 16:
        return (buf[i * 2]! << 8) | buf[i * 2 + 1]!;
      case 32:
        return ((buf[i * 4]! << 24) | (buf[i * 4 + 1]! << 16) | (buf[i * 4 + 2]! << 8) | buf[i * 4 + 3]!) >>> 0;
      case 64: {
        const v = buf.readBigUInt64BE(i * 8);
        return v > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(v);
      }
      default: {
        const bit = i * this.bits;
        return (buf[bit >> 3]! >> (bit & 7)) & ((1 << this.bits) - 1);
      }
    }
  }

  private writeEntry(buf: Buffer, i: number, v: number): void {
    switch (this.bits) {
      case 8:
        buf[i] = v;
        return;
      case 16:
        buf[i * 2] = v >>> 8;
        buf[i * 2 + 1] = v;
        return;
      case 32:
        buf[i * 4] = v >>> 24;
        buf[i * 4 + 1] = v >>> 16;
        buf[i * 4 + 2] = v >>> 8;
        buf[i * 4 + 3] = v;
        return;
      case 64:
        buf.writeBigUInt64BE(BigInt(v), i * 8);
        return;
      default: {
        // Sub-byte widths: bit 0 is the least significant bit of the byte.
        const bit = i * this.bits;
        const mask = ((1 << this.bits) - 1) << (bit & 7);
        buf[bit >> 3] = (buf[bit >> 3]! & ~mask) | ((v << (bit & 7)) & mask);
      }
    }
  }

  /** Refcount of a cluster (0 when its block does not exist). */
  async get(cluster: number): Promise<number> {
    const b = this.blockOf(cluster);
    const off = b < this.table.length ? this.table[b]! : 0;
    if (off === 0) return 0;
    if (this.invalid.has(b)) throw err.corrupt(`qcow2: refcount table entry ${b} (${off}) is invalid`);
    const buf = this.cache.peek(off) ?? (await this.cache.get(off));
    return this.readEntry(buf, cluster % this.epb);
  }

  /** Add `delta` to a cluster's refcount (its block must exist). */
  async adjust(cluster: number, delta: number): Promise<number> {
    const b = this.blockOf(cluster);
    const off = b < this.table.length ? this.table[b]! : 0;
    if (off === 0) throw err.corrupt(`qcow2: no refcount block for cluster ${cluster}`);
    if (this.invalid.has(b)) throw err.corrupt(`qcow2: refcount table entry ${b} (${off}) is invalid`);
    const buf = this.cache.peek(off) ?? (await this.cache.get(off));
    const i = cluster % this.epb;
    const v = this.readEntry(buf, i) + delta;
    if (v < 0) throw err.corrupt(`qcow2: refcount of cluster ${cluster} would drop below zero`);
    if (v > this.max) throw err.notsup(`qcow2: refcount overflow on cluster ${cluster} (refcount_bits=${this.bits})`);
    this.writeEntry(buf, i, v);
    this.cache.markDirty(off, buf);
    return v;
  }

  /** Set a refcount outright (check/repair). Creates the block if needed (at the end of the file). */
  async set(cluster: number, v: number): Promise<void> {
    for (;;) {
      const b = this.blockOf(cluster);
      if (b < this.table.length && this.table[b]! !== 0) break;
      if (b >= this.table.length) {
        await this.growTable(b + 1);
        continue;
      }
      // Past everything in use: the only place known to be free in a damaged image.
      const at = this.endCluster();
      const need = this.missingFixedPoint(at, 0, [b]);
      const max = need[need.length - 1] ?? 0;
      if (max >= this.table.length) {
        await this.growTable(max + 1);
        continue;
      }
      await this.placeBlocks(need, at);
    }
    const cur = await this.get(cluster);
    if (cur !== v) await this.adjust(cluster, v - cur);
  }

  private isMissing(b: number): boolean {
    return b >= this.table.length || this.table[b] === 0;
  }

  /**
   * Blocks that must be created so that [from, from+len) is covered, when the
   * new blocks themselves go right after that range (they must be covered
   * too). Blocks past the table are included; the caller grows the table.
   */
  private missingFixedPoint(from: number, len: number, extra: number[] = []): number[] {
    let k = 0;
    for (;;) {
      const set = new Set(extra);
      for (let b = this.blockOf(from); len + k > 0 && b <= this.blockOf(from + len + k - 1); b++) if (this.isMissing(b)) set.add(b);
      const missing = [...set].sort((x, y) => x - y);
      if (missing.length <= k) return missing;
      k = missing.length;
    }
  }

  /**
   * Create refcount blocks `blocks` at clusters [at, at+blocks.length). Each
   * new block is written and synced before the table entry pointing at it.
   */
  private async placeBlocks(blocks: number[], at: number): Promise<void> {
    const max = blocks[blocks.length - 1]!;
    if (max >= this.table.length) throw new Error('placeBlocks: table too small');
    const fresh = new Map<number, Buffer>();
    for (const b of blocks) fresh.set(b, Buffer.alloc(this.cs));
    // The new blocks' own clusters are counted, in a new block or an existing one.
    for (let i = 0; i < blocks.length; i++) {
      const c = at + i;
      const nb = fresh.get(this.blockOf(c));
      if (nb) this.writeEntry(nb, c % this.epb, 1);
    }
    for (let i = 0; i < blocks.length; i++) {
      const off = (at + i) * this.cs;
      await this.file.write(off, fresh.get(blocks[i]!)!);
    }
    for (let i = 0; i < blocks.length; i++) {
      const c = at + i;
      if (!fresh.has(this.blockOf(c))) await this.adjust(c, 1);
    }
    await this.flush();
    await this.file.sync();
    const ent = Buffer.alloc(8);
    for (let i = 0; i < blocks.length; i++) {
      const off = (at + i) * this.cs;
      this.table[blocks[i]!] = off;
      ent.writeBigUInt64BE(BigInt(off));
      await this.file.write(this.tableOffset + blocks[i]! * 8, ent);
    }
    this.highWater = Math.max(this.highWater, at + blocks.length);
    this.onBlocksCreated();
  }

  /**
   * The cached block holding `cluster`'s refcount, null when the block does
   * not exist, undefined when it exists but is not cached (or is invalid).
   * No I/O: the allocator's fast path.
   */
  private cachedBlock(cluster: number): Buffer | null | undefined {
    const b = this.blockOf(cluster);
    const off = b < this.table.length ? this.table[b]! : 0;
    if (off === 0) return null;
    if (this.invalid.has(b)) return undefined;
    return this.cache.peek(off);
  }

  /**
   * Allocation without I/O or awaits, for the common case: the `n` clusters
   * from the hint on are free and their refcount blocks exist and are cached.
   * Returns the first cluster, or -1 to take the general path.
   */
  private allocateCached(n: number): number {
    const start = this.hint;
    // Free means refcount 0 and no queued decrement.
    if (this.pending.size) for (let c = start; c < start + n; c++) if (this.pending.has(c)) return -1;
    for (let c = start; c < start + n; ) {
      const buf = this.cachedBlock(c);
      if (!buf) return -1;
      const i = c % this.epb;
      const k = Math.min(n - (c - start), this.epb - i); // entries of this block in the run
      if (this.bits >= 8) {
        // Byte-aligned entries: the whole stretch is zero, in one comparison per 4 KiB.
        const w = this.bits / 8;
        for (let p = i * w; p < (i + k) * w; p += ZEROS.length) {
          const q = Math.min((i + k) * w, p + ZEROS.length);
          if (buf.compare(ZEROS, 0, q - p, p, q) !== 0) return -1;
        }
      } else {
        for (let j = 0; j < k; j++) if (this.readEntry(buf, i + j) !== 0) return -1;
      }
      c += k;
    }
    let buf: Buffer | null | undefined = null;
    let block = -1;
    for (let c = start; c < start + n; c++) {
      const b = this.blockOf(c);
      if (b !== block) {
        buf = this.cachedBlock(c)!;
        this.cache.markDirty(this.table[b]!, buf);
        block = b;
      }
      this.writeEntry(buf!, c % this.epb, 1);
    }
    this.hint = start + n;
    this.highWater = Math.max(this.highWater, start + n);
    return start;
  }

  /** Allocate `n` contiguous clusters with refcount 1; returns the host offset. */
  async allocate(n: number): Promise<number> {
    const fast = this.allocateCached(n);
    if (fast >= 0) return fast * this.cs;
    // `k` clusters after the run are reserved for refcount blocks the run needs.
    let k = 0;
    for (;;) {
      const start = await this.findFree(n + k);
      const missing = this.missingFixedPoint(start, n);
      if (missing.length && missing[missing.length - 1]! >= this.table.length) {
        await this.growTable(missing[missing.length - 1]! + 1);
        continue;
      }
      if (missing.length > k) {
        k = missing.length;
        continue;
      }
      if (missing.length) await this.placeBlocks(missing, start + n);
      for (let c = start; c < start + n; c++) await this.adjust(c, 1);
      this.hint = start + n;
      this.highWater = Math.max(this.highWater, start + n);
      return start * this.cs;
    }
  }

  private async findFree(n: number): Promise<number> {
    let c = this.hint;
    let run = 0;
    let runStart = c;
    for (;;) {
      const b = this.blockOf(c);
      if (this.isMissing(b) && c % this.epb === 0 && run === 0 && n <= this.epb) {
        return c; // a whole block's range with no block: all free
      }
      if ((await this.get(c)) === 0 && !this.pending.has(c)) {
        if (run === 0) runStart = c;
        if (++run === n) return runStart;
      } else {
        run = 0;
      }
      c++;
    }
  }

  private endCluster(): number {
    return Math.max(this.highWater, Math.ceil(this.file.size / this.cs));
  }

  /** Move the refcount table to the end of the file with room for `minEntries` blocks. */
  private async growTable(minEntries: number): Promise<void> {
    const perCluster = this.cs / 8;
    const roundUp = (n: number) => Math.ceil(n / perCluster) * perCluster;
    let entries = roundUp(Math.max(minEntries, Math.ceil(this.table.length * 1.5)));
    const start = this.endCluster();
    let tClusters = 0;
    let missing: number[] = [];
    for (;;) {
      tClusters = entries / perCluster;
      let k = 0;
      for (;;) {
        missing = [];
        for (let b = this.blockOf(start); b <= this.blockOf(start + tClusters + k - 1); b++) {
          if (b >= this.table.length || this.table[b] === 0) missing.push(b);
        }
        if (missing.length === k) break;
        k = missing.length;
      }
      const last = start + tClusters + k - 1;
      if (this.blockOf(last) < entries) break;
      entries = roundUp(this.blockOf(last) + 1);
    }
    if (entries * 8 > 8 * 1024 * 1024) throw err.nospc('qcow2: refcount table would exceed 8 MiB');
    const table = new Float64Array(entries);
    table.set(this.table);
    const fresh = new Map<number, Buffer>();
    missing.forEach((b, i) => {
      table[b] = (start + tClusters + i) * this.cs;
      fresh.set(b, Buffer.alloc(this.cs));
    });
    const endNew = start + tClusters + missing.length;
    for (let c = start; c < endNew; c++) {
      const b = this.blockOf(c);
      const nb = fresh.get(b);
      if (nb) this.writeEntry(nb, c % this.epb, 1);
      else await this.adjust(c, 1);
    }
    for (const [b, buf] of fresh) await this.file.write(table[b]!, buf);
    const raw = Buffer.alloc(tClusters * this.cs);
    for (let i = 0; i < entries; i++) raw.writeBigUInt64BE(BigInt(table[i]!), i * 8);
    await this.file.write(start * this.cs, raw);
    await this.flush();
    // Only now may the header point at the new table.
    await this.onTableMoved(start * this.cs, tClusters);
    const oldOff = this.tableOffset;
    const oldClusters = this.tableClusters;
    this.table = table;
    this.tableOffset = start * this.cs;
    this.tableClusters = tClusters;
    this.highWater = Math.max(this.highWater, endNew);
    for (let i = 0; i < oldClusters; i++) this.free(oldOff / this.cs + i);
  }

  /**
   * Allocate `len` bytes for compressed data, packing several compressed
   * clusters per host cluster as QEMU does. Every host cluster the range
   * touches gets one more reference.
   */
  async allocateBytes(len: number): Promise<number> {
    let pos = this.byteCursor;
    if (pos !== 0 && pos % this.cs + len > this.cs) {
      // Spill into the next cluster only if it is free and we can take it.
      const next = Math.floor(pos / this.cs) + 1;
      const nextFree = (await this.get(next)) === 0 && !this.pending.has(next) && this.table[this.blockOf(next)]! > 0;
      if (!nextFree) pos = 0;
    }
    if (pos === 0) {
      pos = await this.allocate(Math.ceil(len / this.cs));
      // allocate() already counted these clusters once; count the rest below.
      const first = pos / this.cs;
      const last = Math.floor((pos + len - 1) / this.cs);
      for (let c = first + Math.ceil(len / this.cs); c <= last; c++) await this.adjust(c, 1);
    } else {
      const first = Math.floor(pos / this.cs);
      const last = Math.floor((pos + len - 1) / this.cs);
      for (let c = first; c <= last; c++) await this.adjust(c, 1);
      this.highWater = Math.max(this.highWater, last + 1);
    }
    const end = pos + len;
    this.byteCursor = end % this.cs === 0 ? 0 : end;
    return pos;
  }

  /** Queue one reference drop on a cluster; applied by applyFrees(). */
  free(cluster: number, count = 1): void {
    this.pending.set(cluster, (this.pending.get(cluster) ?? 0) + count);
  }

  get hasPendingFrees(): boolean {
    return this.pending.size > 0;
  }

  /** Apply queued drops. Call only once the tables that dropped the references are durable. */
  async applyFrees(): Promise<number[]> {
    const freed: number[] = [];
    const list = [...this.pending.entries()].sort((a, b) => a[0] - b[0]);
    this.pending.clear();
    for (const [c, n] of list) {
      const v = await this.adjust(c, -n);
      if (v === 0) {
        freed.push(c);
        if (c < this.hint) this.hint = c;
        if (this.byteCursor !== 0 && Math.floor(this.byteCursor / this.cs) === c) this.byteCursor = 0;
      }
    }
    return freed;
  }

  /** Write dirty blocks and sync: every increment made so far is durable. */
  async flush(): Promise<void> {
    if (await this.cache.writeDirty()) await this.file.sync();
  }

  /** Highest cluster index with a non-zero refcount, plus one (for truncation and check). */
  async usedEnd(): Promise<number> {
    for (let b = this.table.length - 1; b >= 0; b--) {
      if (this.table[b] === 0) continue;
      for (let i = this.epb - 1; i >= 0; i--) {
        if ((await this.get(b * this.epb + i)) !== 0) return b * this.epb + i + 1;
      }
    }
    return 0;
  }

  resetHint(): void {
    this.hint = 0;
  }
}
