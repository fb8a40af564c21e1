/**
 * The block I/O pipeline (ZFS's ZIO), the only path between logical blocks
 * and devices:
 *
 *   write: zero detection (holes) -> compress -> pad to sector -> checksum
 *          -> allocate (copies) -> issue to the top-level vdev(s) -> BP
 *   read:  ARC lookup -> top-level read with checksum verification (the vdev
 *          picks a good copy or reconstruction and self-heals) -> decompress
 *          -> ARC insert
 *
 * A checksum mismatch never returns data: the vdev throws EIO when no copy
 * verifies, and that error travels up unchanged.
 */
import { err, promiseOf, settleAll, StorageError } from '../../errors.js';
import type { Arc, ArcKey } from '../cache/arc.js';
import { bpAsize, bpFirstDvaAt, dvaKey, dvaOffsetAt, dvaVdevAt, ObjType, type BlockPointer, type ChecksumId, type CompressId } from '../blkptr.js';
import { checksumEquals, computeChecksum } from './checksum.js';
import { decompressBlock } from './compress.js';
import { ARENA_BLOCKS, ARENA_INPUT, fillArena, prepareBlock, readArena, roundUp, type Prepared } from './prepare.js';
import { PrepareWorkers } from './prepare-workers.js';
import { SharedViews } from '../cache/shared-views.js';
import type { Allocation } from './allocate.js';
import { SECTOR, type TopVdev } from '../vdev/types.js';

export interface WriteProps {
  comp: CompressId;
  cksum: ChecksumId;
  type: ObjType;
  level: number;
  fill: number;
  birth: number;
  copies: number;
  /** Space-map logged (data) or claimed-by-walk (metadata). */
  logged: boolean;
  /** Store even if all zero (metadata must always exist). */
  noHole?: boolean;
  /**
   * The data buffer is the block's own and nothing but the dirty map it comes from (and
   * holders registered with hold()) refers to it: a native volume's head. Cached after its
   * write, it becomes spare once its txg has synced (settle()). The cow and row strategies'
   * heads and stores are not marked: cow copies what it keeps today, but their buffers'
   * lifetimes are theirs, and they never take (no `owned` reads).
   */
  spare?: boolean;
}

export interface PipelineStats {
  readOps: number;
  readBytes: number;
  writeOps: number;
  writeBytes: number;
  cksumErrors: number;
}

/**
 * ARC key of a block: where its first copy lives; its entry is tagged with the
 * block's birth txg (Arc tags), and every lookup gives that too. A place is
 * reused only after its block is freed and TXG_DEFER txgs pass, so (place,
 * birth) names one block forever. By place alone, a reader still walking an
 * old tree could re-insert a just-freed block after free() dropped it, and
 * once the place was reused for another data block (data is not cached on
 * write) reads of that block returned the old contents, unverified.
 *
 * A number (a fast Map key): the place in 512-byte units, the top-level vdev
 * above bit 41 -- exact below 2^53 for vdevs under 2048 and offsets under 1
 * PiB; any other place gets a string key.
 */
export function arcKey(bp: BlockPointer): ArcKey {
  const d = bp.dvas[0]!;
  return placeKey(d.vdev, d.offset);
}

/** arcKey of the pointer encoded at buf[at..] (not a hole), read in place; undefined if it has no copy. */
export function arcKeyAt(buf: Buffer, at: number): ArcKey | undefined {
  const o = bpFirstDvaAt(buf, at);
  return o < 0 ? undefined : placeKey(dvaVdevAt(buf, o), dvaOffsetAt(buf, o));
}

function placeKey(vdev: number, offset: number): ArcKey {
  return vdev < 2048 && offset < 2 ** 50 && offset % 512 === 0 ? vdev * 2 ** 41 + offset / 512 : dvaKey({ vdev, offset });
}

/** Indirect blocks and everything that is not volume data: what the metadata reserve is for (allocate.ts). */
function isMeta(p: WriteProps): boolean {
  return p.level > 0 || p.type !== ObjType.VolumeData;
}

/**
 * Compression's odds within one batch of blocks (btrfs gives up on a file's
 * compression the same way, for good): after STREAK blocks in a row that
 * compression could not shrink enough, only one block in `gap` is tried,
 * the rest stored as they are, until one shrinks again. The gap starts at
 * FIRST_GAP and doubles with each retry that fails, up to MAX_GAP. A batch
 * is written in blkid order, so a streak is a stretch of the object where
 * lz4 keeps failing, and the next stretch that compresses loses at most
 * MAX_GAP - 1 blocks (2 MiB of 16K blocks), once per batch. Blocks the
 * entropy sample already rules out cost nothing either way; this is for the
 * ones it cannot: 4K random writes into a 16K block of half-compressible
 * data ran lz4 on every block for nothing (6% of the writing thread), and
 * still 8% at a fixed gap of 8 once a txg held 12,000 such blocks.
 */
class CompressionHope {
  static readonly STREAK = 16;
  static readonly FIRST_GAP = 8;
  static readonly MAX_GAP = 128;
  private failures = 0;
  private skipped = 0;
  private gap = CompressionHope.FIRST_GAP;

  worthTrying(): boolean {
    if (this.failures < CompressionHope.STREAK) return true;
    if (++this.skipped < this.gap) return false;
    this.skipped = 0;
    return true;
  }

  tried(shrank: boolean): void {
    if (shrank) {
      this.failures = 0;
      this.gap = CompressionHope.FIRST_GAP;
    } else if (++this.failures > CompressionHope.STREAK) {
      this.gap = Math.min(2 * this.gap, CompressionHope.MAX_GAP);
    }
  }
}

/** Batches smaller than this are prepared inline (a worker round trip costs ~50-100 us). */
const WORKER_MIN_BYTES = 256 * 1024;
/** Arenas sent to the workers ahead of the one being placed. */
const AHEAD = 2;
/** Arenas whose device writes may still be running before placing waits for the oldest. */
const MAX_WRITING_ARENAS = 4;

export class BlockPipeline {
  readonly stats: PipelineStats = { readOps: 0, readBytes: 0, writeOps: 0, writeBytes: 0, cksumErrors: 0 };

  /** Cached views of larger buffers (coalesced reads; write payloads within its budget), bounded (shared-views.ts). */
  readonly views: SharedViews;

  /** Put a block's logical data in the ARC (views of larger buffers tracked). */
  private cache(key: ArcKey, data: Buffer, birth: number): void {
    this.arc.set(key, data, data.length, birth);
    if (data.byteLength !== data.buffer.byteLength) this.views.added(key, data);
  }

  /**
   * Write payloads lent to the pool until their txg syncs (Pool.lendUntilSynced): their
   * owners reuse them after that, so nothing may keep a view of one past the sync. The
   * ARC never caches one, and readBlocks copies one rather than hand it out.
   */
  private lent = new WeakSet<ArrayBufferLike>();
  lend(data: Buffer): void {
    this.lent.add(data.buffer);
  }
  unlend(data: Buffer): void {
    this.lent.delete(data.buffer);
  }
  isLent(data: Buffer): boolean {
    return this.lent.has(data.buffer);
  }

  /**
   * Txg `txg` has synced (sync.ts, last step): the data blocks it cached with `spare` are now
   * held by the ARC alone, and a read-modify-write may take one as its dirty block instead
   * of copying it (readMany's `owned`, Arc.take), unless a reader got it from the ARC since.
   */
  settle(txg: number): void {
    this.arc.settle(txg);
  }

  /**
   * Dirty buffers a read-modify-write holds as its base across awaits (readBlocks, with
   * counts): the base's txg may sync meanwhile and cache it as spare, and another volume
   * sharing the block (a clone of a snapshot taken meanwhile) must not take it and write
   * its bytes into it before this write copies it.
   */
  private held = new Map<ArrayBufferLike, number>();
  private readonly isHeld = (v: Buffer) => this.held.has(v.buffer);
  hold(data: Buffer): void {
    this.held.set(data.buffer, (this.held.get(data.buffer) ?? 0) + 1);
  }
  unhold(data: Buffer): void {
    const n = this.held.get(data.buffer) ?? 0;
    if (n <= 1) this.held.delete(data.buffer);
    else this.held.set(data.buffer, n - 1);
  }

  /** Where large write batches are prepared (prepare-workers.ts); null: on this thread. Replaceable (tests). */
  workers: PrepareWorkers | null = PrepareWorkers.shared();

  constructor(
    private tops: TopVdev[],
    readonly alloc: Allocation,
    readonly arc: Arc<Buffer>,
  ) {
    this.views = new SharedViews(arc);
  }

  /**
   * Prepare a block: compress, pad and checksum (prepare.ts). Returns null for a hole.
   * Split from issue so callers can batch allocations (sequential layout).
   */
  prepare(data: Buffer, p: WriteProps): Prepared | null {
    return prepareBlock(data, p.comp, p.cksum, p.noHole);
  }

  /** Write one logical block; returns its BP, or null when it is a hole. */
  async write(data: Buffer, p: WriteProps): Promise<BlockPointer | null> {
    const prep = this.prepare(data, p);
    if (!prep) return null;
    const dvas = this.alloc.alloc(prep.psize, p.copies, p.birth, p.logged, isMeta(p));
    try {
      await Promise.all(dvas.map((d) => this.tops[d.vdev]!.write(d.offset, prep.phys)));
    } catch (e) {
      this.alloc.unalloc(dvas);
      throw e instanceof StorageError ? e : err.io('write failed', e);
    }
    this.stats.writeOps++;
    this.stats.writeBytes += prep.psize * dvas.length;
    const bp: BlockPointer = {
      dvas,
      lsize: data.length,
      psize: prep.psize,
      comp: prep.comp,
      cksumType: p.cksum,
      type: p.type,
      level: p.level,
      fill: p.fill,
      birth: p.birth,
      cksum: prep.cksum,
    };
    // The logical data is what readers want; caching it saves a read+decompress right after a sync.
    if (p.level > 0 || p.type !== 1) this.cache(arcKey(bp), data, bp.birth);
    return bp;
  }

  /**
   * Write several blocks whose DVAs are allocated now in order, coalescing
   * physically adjacent ones into a single device write where the layout
   * is linear (single devices and mirrors). Large batches are prepared
   * (compressed, checksummed) on the prepare workers, a few arenas ahead of
   * allocation, so this thread stays free for I/O and requests meanwhile;
   * allocation and issue stay here, in order, so the layout is the same.
   */
  async writeMany(items: { data: Buffer; p: WriteProps }[]): Promise<(BlockPointer | null)[]> {
    const out: (BlockPointer | null)[] = new Array(items.length).fill(null);
    const allocated: BlockPointer['dvas'][] = [];
    const issued: Promise<void>[] = [];
    // Runs being assembled, one per top-level (copies may land on several).
    const open = new Map<number, { offset: number; bufs: Buffer[]; len: number }>();
    const issue = (top: number) => {
      const w = open.get(top);
      if (!w) return;
      open.delete(top);
      const t = this.tops[top]!;
      issued.push(w.bufs.length === 1 ? t.write(w.offset, w.bufs[0]!) : t.writev ? t.writev(w.offset, w.bufs) : t.write(w.offset, Buffer.concat(w.bufs, w.len)));
    };
    const place = (i: number, prep: Prepared | null) => {
      if (!prep) return;
      const { data, p } = items[i]!;
      const dvas = this.alloc.alloc(prep.psize, p.copies, p.birth, p.logged, isMeta(p));
      allocated.push(dvas);
      out[i] = { dvas, lsize: data.length, psize: prep.psize, comp: prep.comp, cksumType: p.cksum, type: p.type, level: p.level, fill: p.fill, birth: p.birth, cksum: prep.cksum };
      // Keep what was just written cached (ZFS keeps its dbufs): the next partial write of this
      // block (read-modify-write) and reads right after a sync hit memory. Dirty buffers are
      // immutable, so sharing them with the ARC is safe. Data blocks that are views of a
      // larger buffer -- a guest's write payload kept whole (WriteOptions.owned: streams,
      // copies, restores) -- only while the payloads that cached views keep alive stay under
      // the views' budget (shared-views.ts, 1/16 of the ARC). Caching all of them kept every
      // payload alive while the ARC (a quarter of RAM) had room: the heap grew, each new
      // payload took memory the kernel had to fault in and zero (clear_page was a quarter of
      // the server's samples), and the GC marked ever more. 1 MiB writes to a pool volume ran
      // at 170-240 MB/s after a random-write phase, 440-690 with none cached; random reads
      // right after them 58-70K IOPS with all cached, 38-55K with none (bench/README.md).
      // Past the budget the device's page cache holds them; a read verifies them from there.
      // Lent payloads (see lent) are never cached: their owners reuse them once this txg syncs.
      if (p.level > 0 || p.type !== ObjType.VolumeData || ((data.byteLength === data.buffer.byteLength || this.views.hasRoom()) && !this.lent.has(data.buffer))) {
        const key = arcKey(out[i]!);
        this.cache(key, data, p.birth);
        // Spare once this txg has synced, if it is a whole buffer of its own (not a view).
        if (p.spare && p.level === 0 && data.byteOffset === 0 && data.byteLength === data.buffer.byteLength) {
          this.arc.markSpare(key, data, p.birth);
        }
      }
      for (const d of dvas) {
        const w = open.get(d.vdev);
        if (w && this.isLinear(d.vdev) && w.offset + w.len === d.offset && w.len < 4 * 1024 * 1024) {
          w.bufs.push(prep.phys);
          w.len += prep.phys.length;
        } else {
          issue(d.vdev);
          open.set(d.vdev, { offset: d.offset, bufs: [prep.phys], len: prep.phys.length });
        }
        this.stats.writeBytes += prep.psize;
      }
      this.stats.writeOps++;
    };
    try {
      const workers = this.workersFor(items);
      if (workers) await this.placeFromWorkers(workers, items, place, () => {
        for (const top of [...open.keys()]) issue(top);
        return issued.length;
      }, issued);
      else {
        const hope = new CompressionHope();
        for (let i = 0; i < items.length; i++) {
          const { data, p } = items[i]!;
          const tryIt = p.comp === 'off' || hope.worthTrying();
          const prep = prepareBlock(data, tryIt ? p.comp : 'off', p.cksum, p.noHole);
          if (tryIt && p.comp !== 'off' && prep) hope.tried(prep.comp !== 'off');
          place(i, prep);
          // Let device writes already issued proceed while we keep compressing and checksumming.
          if ((i & 255) === 255) await new Promise<void>((r) => setImmediate(r));
        }
      }
      for (const top of [...open.keys()]) issue(top);
      await Promise.all(issued);
    } catch (e) {
      await Promise.allSettled(issued);
      // What this batch cached names places given back now: forget it (spare marks too).
      for (const bp of out) if (bp) this.arc.delete(arcKey(bp), bp.birth);
      for (const dvas of allocated) this.alloc.unalloc(dvas);
      throw e instanceof StorageError ? e : err.io('write failed', e);
    }
    return out;
  }

  /** The prepare workers, if this batch is worth sending them (large, and every block fits an arena). */
  private workersFor(items: readonly { data: Buffer }[]): PrepareWorkers | null {
    let bytes = 0;
    for (const it of items) {
      if (it.data.length > ARENA_INPUT) return null;
      bytes += it.data.length;
    }
    if (bytes < WORKER_MIN_BYTES) return null;
    const w = this.workers;
    return w?.available ? w : null;
  }

  /**
   * Prepare items on the workers arena by arena, up to AHEAD arenas in
   * flight, and place each block in order as its arena comes back. An
   * arena is reused only once the device writes of its blocks (views into
   * it) have settled: `flushRuns` issues every open run at an arena's end
   * and returns how many writes are in `issued`.
   */
  private async placeFromWorkers(
    workers: PrepareWorkers,
    items: readonly { data: Buffer; p: WriteProps }[],
    place: (i: number, prep: Prepared | null) => void,
    flushRuns: () => number,
    issued: Promise<void>[],
  ): Promise<void> {
    const batches: [number, number][] = [];
    for (let s = 0, bytes = 0, i = 0; i <= items.length; i++) {
      if (i === items.length || i - s === ARENA_BLOCKS || bytes + items[i]!.data.length > ARENA_INPUT) {
        if (i > s) batches.push([s, i]);
        s = i;
        bytes = 0;
        if (i === items.length) break;
      }
      bytes += items[i]!.data.length;
    }
    const start = ([s, e]: [number, number]) => {
      const sab = workers.arena();
      const part = items.slice(s, e);
      fillArena(sab, part.map((it) => ({ data: it.data, comp: it.p.comp, cksum: it.p.cksum, noHole: it.p.noHole })));
      return workers.run(sab, e - s).then(
        () => ({ sab, preps: readArena(sab, part.map((it) => it.data)) as (Prepared | null)[] }),
        () => {
          // A failed worker: prepare this batch here (same bytes), and give the arena back.
          workers.release(sab);
          return { sab: null, preps: part.map((it) => this.prepare(it.data, it.p)) };
        },
      );
    };
    const jobs = batches.slice(0, AHEAD).map(start);
    let writesFrom = issued.length;
    // Arenas whose blocks' writes are still running; bounded so a slow device bounds memory too.
    const writing: Promise<unknown>[] = [];
    for (let k = 0; k < batches.length; k++) {
      const { sab, preps } = await jobs[k]!;
      if (k + AHEAD < batches.length) jobs.push(start(batches[k + AHEAD]!));
      const [s] = batches[k]!;
      preps.forEach((prep, j) => place(s + j, prep));
      const upTo = flushRuns();
      const mine = issued.slice(writesFrom, upTo);
      writesFrom = upTo;
      if (sab) {
        const done = Promise.allSettled(mine).then(() => workers.release(sab));
        writing.push(done);
        if (writing.length > MAX_WRITING_ARENAS) await writing.shift();
      }
    }
  }

  private linearCache = new Map<number, boolean>();
  private isLinear(v: number): boolean {
    let l = this.linearCache.get(v);
    if (l === undefined) {
      const t = this.tops[v]!.config().type;
      l = t === 'file' || t === 'disk' || t === 'mirror';
      this.linearCache.set(v, l);
    }
    return l;
  }

  /**
   * The block's logical contents if the ARC holds them (shared: do not mutate), without
   * counting a reference: a caller that uses them calls `touch` next, in the same tick,
   * so the ARC counts and promotes exactly as read() would have.
   */
  peek(bp: BlockPointer): Buffer | undefined {
    return this.arc.peek(arcKey(bp), bp.birth);
  }

  /** Count a reference to a block peek() found (a hit, as read() counts one). */
  touch(bp: BlockPointer): void {
    this.arc.get(arcKey(bp), bp.birth);
  }

  /** peek() by ARC key and birth (arcKeyAt: a pointer not decoded). */
  peekKey(key: ArcKey, birth: number): Buffer | undefined {
    return this.arc.peek(key, birth);
  }

  /** touch() by ARC key and birth. */
  touchKey(key: ArcKey, birth: number): void {
    this.arc.get(key, birth);
  }

  /** Read and verify a block; returns the logical contents (shared: do not mutate). */
  async read(bp: BlockPointer): Promise<Buffer> {
    const key = arcKey(bp);
    const hit = this.arc.get(key, bp.birth);
    if (hit) return hit;
    return this.readMiss(bp, key);
  }

  /**
   * read() after an ARC miss on `key` (arcKey(bp)) in this same tick. With `copy`, the
   * caller's copy of the block is made here, the moment it arrives; and if no other reader
   * joined this device read, the cached block then has no holder but the ARC, which marks it
   * spare (Arc.markSpare): a read-modify-write may take it, as it takes a block its txg wrote.
   */
  private async readMiss(bp: BlockPointer, key: ArcKey, copy?: (data: Buffer) => void): Promise<Buffer> {
    // One device read per block at a time: a volume read of N blocks under one
    // uncached indirect block used to issue N reads of that indirect (and count N
    // checksum errors for one bad copy). Keyed by checksum too, so a stale reader's
    // freed block never shares a read with the block that reuses its place.
    const fkey = `${key}@${bp.birth}:${bp.cksum.toString('hex')}`;
    const pending = this.inflight.get(fkey);
    if (pending) {
      pending.joins++;
      const data = await pending.p;
      copy?.(data);
      return data;
    }
    const entry = {
      p: this.readUncached(bp).then((data) => {
        this.cache(key, data, bp.birth);
        return data;
      }),
      joins: 0,
    };
    this.inflight.set(fkey, entry);
    let data: Buffer;
    try {
      data = await entry.p;
    } finally {
      this.inflight.delete(fkey);
    }
    if (copy) {
      copy(data);
      // (An ARC hit since the insert handed it out, and take() then refuses it.)
      if (entry.joins === 0 && data.byteOffset === 0 && data.byteLength === data.buffer.byteLength) this.arc.markSpare(key, data, -Infinity);
    }
    return data;
  }
  private inflight = new Map<string, { p: Promise<Buffer>; joins: number }>();

  /**
   * Read many blocks, coalescing physically adjacent ones on linear
   * top-levels (single devices, mirrors) into one device read. Each block is
   * still verified on its own; one that fails goes through the ordinary
   * read path, which tries other copies and self-heals. `misses`, when
   * given, counts the blocks not in the ARC and their physical bytes (the
   * device reads this costs, for I/O accounting), from the same one ARC
   * lookup per block that decides what to read.
   *
   * `owned`, when given, asks for the misses to be the caller's own: read
   * past the in-flight table and not cached, so nothing else ever holds
   * them, and `owned[i]` is set true for each such block (false for ARC
   * hits, which are shared). A read-modify-write takes those as its dirty
   * blocks instead of copying them: that copy, the fresh 16K buffer under
   * it and the ARC entry that the next sync frees again were ~10% of 4K
   * random writes to a pool volume (after a sequential fill, most bases
   * are not cached). An ARC hit is taken the same way (removed from the ARC,
   * `owned[i]` true) when it is spare: a block written by a txg that has
   * synced, which no reader has been handed since (see settle). Other hits
   * are shared: `owned[i]` false, the caller copies.
   *
   * `copyHit`, when given, is called with each ARC hit at once, in the tick of
   * the lookup, and must copy it out before it returns; that block's `out[i]`
   * is null. A hit copied so is not handed out (Arc.get's `handOut`): a volume
   * reading blocks it may write next leaves them spare. It is called the same
   * way for a block read alone from a device, which then becomes spare if no
   * other reader shared the read (readMiss).
   */
  readMany(
    bps: (BlockPointer | null)[],
    misses?: { ops: number; bytes: number },
    owned?: boolean[],
    copyHit?: (i: number, data: Buffer) => void,
  ): Promise<(Buffer | null)[]> {
    return promiseOf(() => this.readManyNow(bps, misses, owned, copyHit));
  }

  /**
   * readMany, answering at once (no promise, no await) when every block is a hole or
   * in the ARC: the common case of a read-modify-write or a read of cached data,
   * where the promise, the run bookkeeping and the await were a few percent of a
   * 4K write to a pool volume.
   */
  readManyNow(
    bps: (BlockPointer | null)[],
    misses?: { ops: number; bytes: number },
    owned?: boolean[],
    copyHit?: (i: number, data: Buffer) => void,
  ): (Buffer | null)[] | Promise<(Buffer | null)[]> {
    const out: (Buffer | null)[] = new Array(bps.length).fill(null);
    /** ARC keys of the blocks that missed (their runs read them). */
    const keys: (ArcKey | undefined)[] = new Array(bps.length);
    const runs: number[][] = [];
    let run: number[] = [];
    let runEnd = -1;
    let runTop = -1;
    const flush = () => {
      if (run.length) runs.push(run);
      run = [];
      runEnd = -1;
    };
    for (let i = 0; i < bps.length; i++) {
      const bp = bps[i];
      if (!bp) continue;
      const d = bp.dvas[0]!;
      const key = arcKey(bp);
      // A spare block is taken: out of the cache, the caller's alone (see settle).
      const taken = owned ? this.arc.take(key, bp.birth, this.held.size ? this.isHeld : undefined) : undefined;
      if (taken) {
        out[i] = taken;
        owned![i] = true;
        continue;
      }
      const hit = this.arc.get(key, bp.birth, !copyHit);
      if (hit) {
        if (copyHit) copyHit(i, hit); // copied now: the ARC's buffer is not handed out
        else out[i] = hit;
        if (owned) owned[i] = false;
        continue;
      }
      keys[i] = key;
      if (owned) owned[i] = true;
      if (misses) {
        misses.ops++;
        misses.bytes += bp.psize;
      }
      if (!this.isLinear(d.vdev) || d.vdev !== runTop || d.offset !== runEnd || runEnd - (bps[run[0]!]!.dvas[0]!.offset) >= 4 * 1024 * 1024) flush();
      run.push(i);
      runTop = d.vdev;
      runEnd = d.offset + d.asize;
    }
    flush();
    return runs.length === 0 ? out : this.readRuns(bps, runs, keys, out, owned, copyHit);
  }

  /** readManyNow's device reads: one per run of physically adjacent blocks that missed. */
  private async readRuns(
    bps: (BlockPointer | null)[],
    runs: number[][],
    keys: (ArcKey | undefined)[],
    out: (Buffer | null)[],
    owned?: boolean[],
    copyHit?: (i: number, data: Buffer) => void,
  ): Promise<(Buffer | null)[]> {
    // Every run settles before this returns or throws: with copyHit, a late run would
    // otherwise still copy into the caller's buffer after the caller gave up on it.
    await settleAll(
      runs.map(async (r) => {
        if (r.length === 1) {
          const i = r[0]!;
          if (owned) out[i] = await this.readUncached(bps[i]!);
          else if (copyHit) await this.readMiss(bps[i]!, keys[i]!, (data) => copyHit(i, data));
          else out[i] = await this.readMiss(bps[i]!, keys[i]!);
          return;
        }
        const first = bps[r[0]!]!.dvas[0]!;
        const last = bps[r[r.length - 1]!]!.dvas[0]!;
        const len = last.offset + last.asize - first.offset;
        let raw: Buffer | null = null;
        try {
          raw = await this.tops[first.vdev]!.read(first.offset, len, () => true);
        } catch {
          raw = null; // fall back to block-by-block reads below
        }
        await Promise.all(
          r.map(async (i) => {
            const bp = bps[i]!;
            const at = bp.dvas[0]!.offset - first.offset;
            const phys = raw?.subarray(at, at + bp.psize);
            if (phys && checksumEquals(computeChecksum(bp.cksumType, phys), bp.cksum)) {
              const data = bp.comp === 'off' ? (bp.lsize === phys.length ? phys : phys.subarray(0, bp.lsize)) : decompressBlock(bp.comp, phys, bp.lsize);
              this.stats.readOps++;
              this.stats.readBytes += bp.psize;
              if (!owned) this.cache(arcKey(bp), data, bp.birth);
              out[i] = data;
            } else {
              out[i] = owned ? await this.readUncached(bp) : await this.read(bp);
            }
          }),
        );
      }),
    );
    return out;
  }

  /** Read bypassing the cache (scrub, and verification after import). */
  async readUncached(bp: BlockPointer): Promise<Buffer> {
    const verify = (b: Buffer) => checksumEquals(computeChecksum(bp.cksumType, b.subarray(0, bp.psize)), bp.cksum);
    let lastErr: unknown;
    // Each DVA is a full copy (copies=N); try them in order, the vdev handles its own redundancy.
    for (const d of bp.dvas) {
      const top = this.tops[d.vdev];
      if (!top) {
        lastErr = err.corrupt(`block pointer names missing vdev ${d.vdev}`);
        continue;
      }
      try {
        const phys = await top.read(d.offset, bp.psize, verify);
        this.stats.readOps++;
        this.stats.readBytes += bp.psize;
        if (bp.comp === 'off') return bp.lsize === phys.length ? phys : phys.subarray(0, bp.lsize);
        return decompressBlock(bp.comp, phys, bp.lsize);
      } catch (e) {
        lastErr = e;
      }
    }
    this.stats.cksumErrors++;
    if (lastErr instanceof StorageError && lastErr.code === 'EIO') throw lastErr;
    throw err.io(`unrecoverable read error (checksum or device) at vdev ${bp.dvas[0]!.vdev} offset ${bp.dvas[0]!.offset}`, lastErr);
  }

  /** Free a block in txg (deferred) and drop it from the cache. */
  free(bp: BlockPointer, txg: number, logged: boolean): number {
    this.arc.delete(arcKey(bp), bp.birth);
    this.alloc.freeDvas(bp.dvas, txg, logged);
    return bpAsize(bp);
  }
}
