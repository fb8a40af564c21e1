/**
 * Qcow2Image: one qcow2 file as a BlockDevice. Unallocated clusters read from
 * `backing` (another BlockDevice, set by the chain opener) or as zeroes.
 *
 * All operations are serialized by one mutex: table caches and the allocator
 * are shared state, and a request interleaving with another at an `await`
 * could otherwise observe half-updated tables. A read-only image has no
 * such state to protect (nothing changes its tables), so its reads,
 * blockStatus and segment queries run concurrently (`shared()`), and their
 * file reads overlap in the thread pool; close() waits for them. With
 * write-behind (Qcow2OpenOptions.writeBehind) a write may leave its data in
 * flight behind the lock; every other operation waits for it (`exclusive()`).
 *
 * flush() ordering (the invariant: on disk, every L1/L2 entry points at a
 * cluster whose refcount is durable and >= the number of references):
 *   1. refcount blocks (increments) written + synced;
 *   2. dirty L2 tables written + synced (data written earlier is synced too);
 *   3. L1 written + synced;
 *   4. queued refcount decrements applied, written + synced.
 */
import { readRangesEach, type BlockDevice, type BlockDeviceInfo, type Extent, type ReadRanges, type WriteOptions, type ZeroOptions } from '../../src/device/block-device.js';
import { err } from '../../src/errors.js';
import { ClusterMap, Kind, type Seg } from './cluster.js';
import { loadCodec, type ClusterCodec } from './compress.js';
import * as C from './constants.js';
import { encodeHeader, parseHeader, type Qcow2Header } from './header.js';
import { ImageFile } from './io.js';
import type { FilePiece } from '../raw/file-pieces.js';
import type { Refcounts } from './refcount.js';
import { readSnapshotTable, type SnapshotEntry } from './snapshot-table.js';

// What only writers need (refcounts, the write paths, bitmaps) is loaded by
// the first writer: a read-only open (convert's source, info, map, a
// served backing chain) does not pay for compiling it.
let writeModule: Promise<typeof import('./write.js')> | undefined;
const writeOps = () => (writeModule ??= import('./write.js'));

export interface Qcow2OpenOptions {
  readOnly?: boolean;
  /** Bytes of L2 tables to cache (refcount blocks get a quarter). Default 4 MiB. */
  cacheBytes?: number;
  /** Open even if the dirty bit is set and we are read-only (reads do not need refcounts). */
  allowDirty?: boolean;
  /**
   * cache=unsafe: flush() orders writes but never syncs, so the image is
   * consistent after a process crash but not after a power loss. For
   * throw-away conversions only (qemu-img convert's default).
   */
  unsafeNoSync?: boolean;
  /**
   * Write-behind, for a writer that streams data into fresh space (convert's
   * output): a write over blank (never allocated) whole clusters allocates
   * and links fresh clusters in the L2 cache and releases the image lock as
   * soon as their data write is issued, so the next write's allocation
   * overlaps this one's I/O. The write still resolves only once its data is
   * written; no L2 table reaches the file before the data it points at (the
   * L2 cache's beforeWrite waits for data in flight), and every other
   * operation (reads included) waits for all data in flight first, so no one
   * ever sees a linked cluster without its data. A failed data write unlinks
   * its clusters again (they leak). The cost: any other operation may wait
   * behind unrelated writes, which suits a streaming writer, not a VM disk.
   */
  writeBehind?: boolean;
  /**
   * All file I/O synchronous when the file is on a memory file system (see
   * io.ts): for batch tools whose event loop serves nothing else (convert).
   */
  syncIo?: boolean;
}

const MAX_REQUEST = 32 * 1024 * 1024;

export class Qcow2Image implements BlockDevice {
  /** @internal */ header: Qcow2Header;
  /** @internal */ map: ClusterMap;
  /** @internal */ refs: Refcounts | null = null;
  /** @internal */ snapshots: SnapshotEntry[] = [];
  /** @internal */ snapshotTableBytes = 0;
  backing: BlockDevice | null = null;
  /** @internal The image's compression codec (zlib or zstd). */
  codec!: ClusterCodec;
  private lock: Promise<unknown> = Promise.resolve();
  private lastCompressed: { host: number; data: Buffer } | null = null;
  private metaClusters: Set<number> | null = null;
  private fixedMeta: Set<number> | null = null;
  private closed = false;
  /** Write-behind (Qcow2OpenOptions.writeBehind): data writes issued but not finished. */
  private dataInFlight = new Set<Promise<void>>();
  /** @internal */ writeBehind = false;
  /** Lock-free operations in flight on a read-only image, and close()'s wake-up. */
  private readers = 0;
  private drained: (() => void) | null = null;

  private constructor(
    readonly path: string,
    /** @internal */ readonly file: ImageFile,
    header: Qcow2Header,
    map: ClusterMap,
    readonly readOnly: boolean,
    private cacheBytes: number,
  ) {
    this.header = header;
    this.map = map;
  }

  static async open(path: string, opts: Qcow2OpenOptions = {}): Promise<Qcow2Image> {
    const readOnly = opts.readOnly ?? false;
    const file = await ImageFile.open(path, readOnly, opts.unsafeNoSync, opts.syncIo);
    try {
      const first = await file.readZeroFill(0, Math.min(2 * 1024 * 1024, Math.max(file.size, 72)));
      const header = parseHeader(first.subarray(0, 2 ** Math.min(21, Math.max(9, first.readUInt32BE(20)))), file.size);
      if (!readOnly && header.incompatible & C.INCOMPAT_CORRUPT) {
        throw err.corrupt(`qcow2: '${path}' is marked corrupt; open it read-only or repair it`);
      }
      const cacheBytes = opts.cacheBytes ?? 4 * 1024 * 1024;
      const l1Raw = header.l1Size > 0 ? await file.readExact(header.l1TableOffset, header.l1Size * 8, 'L1 table') : Buffer.alloc(0);
      const ext = (header.incompatible & C.INCOMPAT_EXTL2) !== 0n;
      const map = new ClusterMap(file, header.clusterBits, ext, l1Raw, header.l1TableOffset, header.size, cacheBytes);
      const img = new Qcow2Image(path, file, header, map, readOnly, cacheBytes);
      img.writeBehind = !readOnly && !!opts.writeBehind;
      img.codec = await loadCodec(header.compressionType);
      if (header.nbSnapshots > 0) {
        const t = await readSnapshotTable(file, header.snapshotsOffset, header.nbSnapshots, map.cs, header.size);
        img.snapshots = t.entries;
        img.snapshotTableBytes = t.bytes;
      }
      if (!readOnly) {
        await Promise.all([img.loadRefcounts(), writeOps()]);
        if (header.incompatible & C.INCOMPAT_DIRTY) {
          // Lazy refcounts left the image dirty: rebuild refcounts before any write.
          const { checkImage } = await import('./check.js');
          await checkImage(img, { repair: 'all' });
          header.incompatible &= ~C.INCOMPAT_DIRTY;
          await img.writeHeader();
        }
        if (header.bitmaps) await img.dropBitmaps();
        if (header.autoclear !== 0n) {
          // Autoclear features we do not maintain must be cleared before writing.
          header.autoclear = 0n;
          await img.writeHeader();
        }
      } else if (header.incompatible & C.INCOMPAT_DIRTY && opts.allowDirty === false) {
        throw err.corrupt(`qcow2: '${path}' is dirty (lazy refcounts); open it read-write to repair it`);
      }
      return img;
    } catch (e) {
      await file.close();
      throw e;
    }
  }

  /** @internal */
  async loadRefcounts(): Promise<Refcounts> {
    if (this.refs) return this.refs;
    const h = this.header;
    const { Refcounts } = await import('./refcount.js');
    const refs = await Refcounts.load(
      this.file,
      { clusterBits: h.clusterBits, refcountOrder: h.refcountOrder, tableOffset: h.refcountTableOffset, tableClusters: h.refcountTableClusters },
      Math.max(this.cacheBytes / 4, 256 * 1024),
    );
    refs.onTableMoved = async (offset, clusters) => {
      this.header.refcountTableOffset = offset;
      this.header.refcountTableClusters = clusters;
      await this.writeHeader();
      this.metaClusters = null;
    };
    refs.onBlocksCreated = () => this.invalidateMetadata();
    // An L2 table reaches the disk only after the refcounts it relies on
    // (and after the data it points at, with write-behind).
    this.map.cache.beforeWrite = async () => {
      await this.drainData();
      await refs.flush();
    };
    this.refs = refs;
    return refs;
  }

  /** @internal Drop the bitmaps extension: header first, then free its clusters (see bitmaps.ts). */
  async dropBitmaps(): Promise<void> {
    const bm = this.header.bitmaps;
    if (!bm) return;
    const refs = await this.loadRefcounts();
    const cs = this.map.cs;
    const { bitmapRanges } = await import('./bitmaps.js');
    const ranges = await bitmapRanges(this.file, bm, cs);
    this.header.bitmaps = null;
    this.header.autoclear &= ~C.AUTOCLEAR_BITMAPS;
    await this.writeHeader();
    for (const [off, len] of ranges) for (let c = Math.floor(off / cs); c < Math.ceil((off + len) / cs); c++) refs.free(c);
    await this.flushLocked();
  }

  get clusterSize(): number {
    return this.map.cs;
  }

  get size(): number {
    return this.header.size;
  }

  /** @internal Run `fn` with the image to itself (see the header comment); data written behind is finished first. */
  exclusive<T>(fn: () => Promise<T>): Promise<T> {
    return this.locked(async () => {
      await this.drainData();
      return fn();
    });
  }

  /** The image lock alone (write() may leave data in flight behind it). */
  private locked<T>(fn: () => Promise<T>): Promise<T> {
    if (this.closed) return Promise.reject(err.shutdown('qcow2 image is closed'));
    const run = this.lock.then(fn, fn);
    this.lock = run.catch(() => undefined);
    return run;
  }

  /** @internal Track a data write issued behind the lock (write-behind). */
  trackData(io: Promise<void>): void {
    const t: Promise<void> = io.then(
      () => {
        this.dataInFlight.delete(t);
      },
      () => {
        this.dataInFlight.delete(t);
      },
    );
    this.dataInFlight.add(t);
  }

  /** @internal Wait for every data write in flight (write-behind); their errors belong to their writes. */
  async drainData(): Promise<void> {
    while (this.dataInFlight.size) await Promise.all(this.dataInFlight);
  }

  /** Run a read-only query: exclusively on a writable image, concurrently on a read-only one. */
  private shared<T>(fn: () => Promise<T>): Promise<T> {
    if (!this.readOnly) return this.exclusive(fn);
    if (this.closed) return Promise.reject(err.shutdown('qcow2 image is closed'));
    this.readers++;
    let p: Promise<T>;
    try {
      p = fn();
    } catch (e) {
      p = Promise.reject(e);
    }
    return p.finally(() => this.readerDone());
  }

  /** A lock-free read of a read-only image ended: close() waits for the last one. */
  private readerDone(): void {
    if (--this.readers === 0 && this.drained) this.drained();
  }

  /** Count file reads `io` as a reader until they settle, then answer `value` (or their failure). */
  private tracked<T>(io: Promise<unknown>, value: T): Promise<T> {
    this.readers++;
    return io.then(
      () => {
        this.readerDone();
        return value;
      },
      (e) => {
        this.readerDone();
        throw e;
      },
    );
  }

  info(): BlockDeviceInfo {
    return {
      size: this.header.size,
      blockSize: Math.max(4096, Math.min(this.map.unit, 65536)),
      minBlockSize: 1,
      maxRequest: MAX_REQUEST,
      readOnly: this.readOnly,
      multiConn: false,
      canTrim: !this.readOnly,
      canZero: !this.readOnly,
      canFastZero: !this.readOnly && (this.header.version === 3 || this.backing === null),
      canCache: false,
    };
  }

  /** @internal Write the whole header cluster (fields, extensions, backing name), synced. */
  async writeHeader(): Promise<void> {
    await this.file.write(0, encodeHeader(this.header));
    await this.file.sync();
  }

  read(offset: number, length: number, into?: Buffer): Promise<Buffer> {
    return this.readSmall(offset, length, into, true) ?? this.readCached(offset, length, into) ?? this.shared(() => this.readLocked(offset, length, into, true));
  }

  /** Read only this layer's own data (unallocated reads as zero): the chain index guarantees it is allocated here. */
  readOwn(offset: number, length: number, into?: Buffer): Promise<Buffer> {
    return this.readSmall(offset, length, into, false) ?? this.shared(() => this.readLocked(offset, length, into, false));
  }

  /**
   * A read-only image's small read (inside one allocation unit) whose L2
   * table is cached: no lock, no async frames, one file read at most. Null
   * when the general path is needed (writable image, table not cached,
   * compressed data, a backing file to fall through to).
   */
  private readSmall(offset: number, length: number, into: Buffer | undefined, fallThrough: boolean): Promise<Buffer> | null {
    const unit = this.map.unit;
    if (!this.readOnly || this.closed || length <= 0 || offset + length > this.header.size) return null;
    if (Math.floor(offset / unit) !== Math.floor((offset + length - 1) / unit)) return null;
    const s = this.map.unitAtCached(offset, length);
    if (!s) return null;
    const buf = into ?? Buffer.allocUnsafe(length);
    if (s.kind === Kind.Zero || (s.kind === Kind.Unalloc && (!fallThrough || !this.backing))) {
      buf.fill(0, 0, length);
      return Promise.resolve(buf);
    }
    if (s.kind !== Kind.Data) return null;
    return this.tracked(this.file.readZeroFill(s.host, length, buf.subarray(0, length)), buf);
  }

  /**
   * BlockDevice.readRanges. A read-only image whose L2 tables for the
   * ranges are cached and that needs neither decompression nor the backing
   * file maps every range at once and reads its data clusters as file
   * pieces, so clusters that follow each other in the file share one system
   * call even when the guest ranges between them are holes (qemu-img writes
   * the data of a sparse disk contiguously). Anything else: range by range.
   */
  readRanges(ranges: ReadRanges, into: Buffer): Promise<void> {
    let pieces: FilePiece[] | null;
    try {
      pieces = this.readOnly && !this.closed ? this.piecesCached(ranges, into) : null;
    } catch (e) {
      return Promise.reject(e); // a corrupt L2 entry
    }
    if (!pieces) return readRangesEach(this, ranges, into);
    if (pieces.length === 0) return Promise.resolve();
    return this.tracked(this.file.readPieces(pieces), undefined);
  }

  /** The file pieces of `ranges` packed into `into` (zero segments filled here): readRanges' and readCached's; null when a range needs the general path. */
  private piecesCached(ranges: ReadRanges, into: Buffer): FilePiece[] | null {
    const pieces: FilePiece[] = [];
    let at = 0;
    for (const [offset, length] of ranges) {
      if (length <= 0) continue;
      if (offset + length > this.header.size) return null;
      const segs = this.map.mapRangeCached(offset, length);
      if (!segs) return null;
      for (const s of segs) {
        if (s.kind === Kind.Compressed || (s.kind === Kind.Unalloc && this.backing)) return null;
        const dst = into.subarray(at + s.offset - offset, at + s.offset - offset + s.length);
        if (s.kind === Kind.Data) pieces.push({ pos: s.host, buf: dst });
        else dst.fill(0);
      }
      at += length;
    }
    // Ascending file order (a disk written out of order maps its clusters anywhere).
    for (let i = 1; i < pieces.length; i++) {
      if (pieces[i]!.pos < pieces[i - 1]!.pos) {
        pieces.sort((a, b) => a.pos - b.pos);
        break;
      }
    }
    return pieces;
  }

  /**
   * A read-only image's larger read whose L2 tables are all cached and that
   * needs neither decompression nor the backing file (convert's pieces):
   * readRanges' path for one range, so the segments are mapped
   * synchronously and the file reads issued at once (neighbours in the file
   * by one call), no lock and no async frames in between. Null when the
   * general path is needed.
   */
  private readCached(offset: number, length: number, into: Buffer | undefined): Promise<Buffer> | null {
    if (!this.readOnly || this.closed || length <= 0) return null;
    const buf = into ?? Buffer.allocUnsafe(length);
    const pieces = this.piecesCached([[offset, length]], buf);
    if (!pieces) return null;
    // Every read settles before the image may close (readPieces settles all its groups), even when one fails.
    return pieces.length ? this.tracked(this.file.readPieces(pieces), buf) : Promise.resolve(buf);
  }

  /** @internal */
  async readLocked(offset: number, length: number, into: Buffer | undefined, fallThrough: boolean): Promise<Buffer> {
    const buf = into ?? Buffer.allocUnsafe(length);
    const unit = this.map.unit;
    const segs =
      length > 0 && offset + length <= this.header.size && Math.floor(offset / unit) === Math.floor((offset + length - 1) / unit)
        ? [await this.map.unitAt(offset, length)] // a small read inside one allocation unit
        : await this.map.mapRange(offset, length);
    let covered = 0;
    for (const s of segs) {
      const dst = buf.subarray(s.offset - offset, s.offset - offset + s.length);
      covered = s.offset + s.length - offset;
      switch (s.kind) {
        case Kind.Data:
          await this.file.readZeroFill(s.host, s.length, dst);
          break;
        case Kind.Zero:
          dst.fill(0);
          break;
        case Kind.Compressed:
          await this.readCompressed(s, dst);
          break;
        default:
          if (fallThrough && this.backing) await readBacking(this.backing, s.offset, dst);
          else dst.fill(0);
      }
    }
    if (covered < length) buf.fill(0, covered, length);
    return buf;
  }

  private async readCompressed(s: Seg, dst: Buffer): Promise<void> {
    const cs = this.map.cs;
    const clusterStart = Math.floor(s.offset / cs) * cs;
    let data = this.lastCompressed?.host === s.host ? this.lastCompressed.data : null;
    if (!data) {
      const raw = await this.file.readZeroFill(s.host, Math.min(s.csize, Math.max(0, this.file.size - s.host)));
      data = this.codec.decompress(raw, cs);
      this.lastCompressed = { host: s.host, data };
    }
    data.copy(dst, 0, s.offset - clusterStart, s.offset - clusterStart + s.length);
  }

  /** @internal Decompressed contents of a compressed cluster (for COW). */
  async compressedCluster(host: number, csize: number): Promise<Buffer> {
    const raw = await this.file.readZeroFill(host, Math.min(csize, Math.max(0, this.file.size - host)));
    return this.codec.decompress(raw, this.map.cs);
  }

  async write(offset: number, data: Buffer, opts?: WriteOptions): Promise<void> {
    if (!this.writeBehind) {
      return this.exclusive(async () => {
        this.lastCompressed = null;
        await (await writeOps()).writeData(this, offset, data, false);
        if (opts?.fua) await this.flushLocked();
      });
    }
    const behind: Array<Promise<void>> = [];
    try {
      await this.locked(async () => {
        this.lastCompressed = null;
        await (await writeOps()).writeData(this, offset, data, false, behind);
      });
    } finally {
      // Resolve only once the data is written (a failed data write has unlinked its clusters).
      await Promise.all(behind);
    }
    if (opts?.fua) await this.flush();
  }

  /** Write whole clusters compressed (convert -c); partial clusters are written normally. */
  writeCompressed(offset: number, data: Buffer): Promise<void> {
    return this.exclusive(async () => {
      this.lastCompressed = null;
      await (await writeOps()).writeData(this, offset, data, true);
    });
  }

  writeZeroes(offset: number, length: number, opts?: ZeroOptions): Promise<void> {
    return this.exclusive(async () => {
      this.lastCompressed = null;
      if (opts?.fastZero && !this.info().canFastZero) throw err.notsup('qcow2: fast zero needs a v3 image or no backing file');
      await (await writeOps()).writeZeroRange(this, offset, length, false);
      if (opts?.fua) await this.flushLocked();
    });
  }

  trim(offset: number, length: number, opts?: WriteOptions): Promise<void> {
    return this.exclusive(async () => {
      this.lastCompressed = null;
      await (await writeOps()).writeZeroRange(this, offset, length, true);
      if (opts?.fua) await this.flushLocked();
    });
  }

  flush(): Promise<void> {
    return this.exclusive(() => this.flushLocked());
  }

  /** @internal */
  async flushLocked(): Promise<void> {
    if (this.readOnly || !this.refs) return;
    const refs = this.refs;
    await refs.flush();
    const wroteL2 = await this.map.cache.writeDirty();
    if (this.map.isL1Dirty) {
      if (wroteL2) await this.file.sync();
      await this.map.writeL1();
    }
    await this.file.sync();
    if (refs.hasPendingFrees) {
      for (const c of await refs.applyFrees()) {
        this.map.cache.discard(c * this.map.cs);
        refs.cache.discard(c * this.map.cs);
      }
      await refs.flush();
    }
  }

  /** @internal The clusters holding metadata (overlap check). Rebuilt after metadata moves. */
  metadataClusters(): Set<number> {
    if (this.metaClusters) return this.metaClusters;
    const cs = this.map.cs;
    const set = new Set<number>([0]);
    const addRange = (off: number, bytes: number) => {
      for (let c = Math.floor(off / cs); c < Math.ceil((off + bytes) / cs); c++) set.add(c);
    };
    addRange(this.map.l1Offset, this.map.l1.length * 8);
    if (this.refs) {
      addRange(this.refs.tableOffset, this.refs.tableClusters * cs);
      for (const o of this.refs.table) if (o) set.add(o / cs);
    }
    if (this.header.nbSnapshots) addRange(this.header.snapshotsOffset, this.snapshotTableBytes);
    for (const s of this.snapshots) addRange(s.l1Offset, s.l1Size * 8);
    // L2 tables last: `fixedMeta` is everything that must never be taken for an L2 table.
    this.fixedMeta = new Set(set);
    for (const o of this.map.l1) if (o) set.add(o / cs);
    this.metaClusters = set;
    return set;
  }

  /**
   * @internal Refuse to modify an L2 table that sits on other metadata (a
   * crafted or damaged L1 entry pointing at the header, a refcount block...).
   */
  checkL2Placement(off: number): void {
    this.metadataClusters();
    if (this.fixedMeta!.has(off / this.map.cs)) {
      throw err.corrupt(`qcow2: an L1 entry points at other metadata (cluster ${off / this.map.cs}); refusing to write`);
    }
  }

  /** @internal */
  invalidateMetadata(): void {
    this.metaClusters = null;
  }

  /** @internal Refuse a data write that would land on metadata (QEMU's overlap check). */
  checkOverlap(host: number, length: number): void {
    const cs = this.map.cs;
    const meta = this.metadataClusters();
    const first = Math.floor(host / cs);
    const end = Math.ceil((host + length) / cs);
    // A long run is checked against the (small) set, a short one cluster by cluster.
    let hit = false;
    if (end - first > meta.size) {
      for (const c of meta) if (c >= first && c < end) hit = true;
    } else {
      for (let c = first; c < end && !hit; c++) hit = meta.has(c);
    }
    if (hit) {
      // Mark the image corrupt as QEMU does, so nothing writes to it until repaired.
      this.header.incompatible |= C.INCOMPAT_CORRUPT;
      void this.writeHeader().catch(() => undefined);
      throw err.corrupt(`qcow2: refusing a data write at ${host} that overlaps metadata (image marked corrupt)`);
    }
  }

  blockStatus(offset: number, length: number): Promise<Extent[]> {
    return this.shared(async () => {
      const segs = await this.map.mapRange(offset, Math.min(length, 64 * this.map.l2Span));
      const out: Extent[] = [];
      const push = (o: number, l: number, hole: boolean, zero: boolean) => {
        const last = out[out.length - 1];
        if (last && last.hole === hole && last.zero === zero && last.offset + last.length === o) last.length += l;
        else out.push({ offset: o, length: l, hole, zero });
      };
      for (const s of segs) {
        if (s.kind === Kind.Data || s.kind === Kind.Compressed) push(s.offset, s.length, false, false);
        else if (s.kind === Kind.Zero || !this.backing) push(s.offset, s.length, true, true);
        else {
          const bsize = this.backing.info().size;
          let pos = s.offset;
          const end = s.offset + s.length;
          while (pos < end && pos < bsize) {
            const ext = await this.backing.blockStatus(pos, Math.min(end, bsize) - pos);
            for (const e of ext) push(e.offset, Math.min(e.length, end - e.offset), e.hole, e.zero);
            pos = ext.length ? ext[ext.length - 1]!.offset + ext[ext.length - 1]!.length : end;
          }
          if (pos < end) push(pos, end - pos, true, true);
        }
      }
      return out;
    });
  }

  /** This layer's own segments (no fall-through), for map and the chain index. */
  ownSegments(offset: number, length: number): Promise<Seg[]> {
    return this.shared(() => this.map.mapRange(offset, length));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    try {
      await this.flush();
    } finally {
      this.closed = true;
      if (this.readers > 0) await new Promise<void>((r) => (this.drained = r));
      await this.file.close();
    }
  }
}

/** Read from a backing device, zero-filling past its end (a backing file may be shorter). */
export async function readBacking(backing: BlockDevice, offset: number, dst: Buffer): Promise<void> {
  const bsize = backing.info().size;
  const n = Math.max(0, Math.min(dst.length, bsize - offset));
  if (n > 0) {
    const max = backing.info().maxRequest;
    for (let p = 0; p < n; p += max) {
      const sub = dst.subarray(p, Math.min(n, p + max));
      const got = await backing.read(offset + p, sub.length, sub);
      // An implementation may return its own buffer instead of filling ours.
      if (got.buffer !== sub.buffer || got.byteOffset !== sub.byteOffset) got.copy(sub, 0, 0, sub.length);
    }
  }
  if (n < dst.length) dst.fill(0, n);
}
