/**
 * A pool volume as a BlockDevice.
 *
 * Write path: split the request into volblocksize blocks; whole blocks are
 * recorded as dirty data in the open txg; partial blocks are read, merged
 * and recorded (read-modify-write) under a per-block lock so two partial
 * writes to one block cannot lose each other's bytes. Recording is
 * synchronous after the throttle resolves, so a write is wholly inside one
 * txg (see txg.ts).
 *
 * Durability: flush() and FUA wait for the txg holding every completed
 * write to commit (the intent log will shorten this path later).
 *
 * Reads and blockStatus see dirty data first, then the committed tree.
 *
 * Snapshot strategy (src/snapshot): cow and row volumes route through their
 * WritePath: every read and write enters the strategy's gate; cow copies a
 * block's old contents into the newest snapshot's store in the same tick
 * (and so the same txg) as the write that overwrites it; row reads blocks
 * the head lacks from the layer its index names, and records zeroes over
 * such blocks as data (a hole in the head would show the layer below).
 * The head object is looked up on every use: a row snapshot replaces it.
 */
import { err, StorageError } from '../errors.js';
import type { BlockDevice, BlockDeviceInfo, Extent, WriteOptions, ZeroOptions } from '../device/block-device.js';
import type { Pool } from '../pool/pool.js';
import type { DatasetRecord } from '../pool/dataset/directory.js';
import type { ObjectState } from '../pool/object/object-state.js';
import { BlockLocks } from './block-locks.js';
import { blockExtents } from '../device/extents.js';
import { strategyOf, type WritePath } from '../snapshot/index.js';
import { readBlocks, readBlocksNow, zeroBlock } from '../snapshot/layers.js';
import { rangesOf } from '../snapshot/ranges.js';
import type { IoAccount } from '../pool/io/account.js';

/** Above this many bytes of unlogged records a flush syncs the txg instead of writing the log. */
const LOG_BULK_LIMIT = 8 * 1024 * 1024;

export interface VolumeCounters {
  readOps: number;
  readBytes: number;
  writeOps: number;
  writeBytes: number;
}

/**
 * Block locks per dataset, not per Volume: two connections' partial writes
 * to one block must serialize, or one merges into a base the other's
 * just-synced write has made stale (its bytes are lost).
 */
const LOCKS = new WeakMap<DatasetRecord, BlockLocks>();

const NO_BLOCKS: (Buffer | null)[] = [];

/**
 * Times a write goes through admission before a failed hold is ENOSPC (each time after the
 * first waits for a txg to commit; admit() itself also waits while data in flight is in the way).
 */
const ROOM_ATTEMPTS = 4;
/** Blocks a cow volume's large zeroing hands modify() at once (modify() sends larger ones to zeroRange()). */
const ZERO_RUN = 64;

export class Volume implements BlockDevice {
  /** Shared by every Volume of this dataset (each NBD connection opens its own). */
  private locks: BlockLocks;
  private closed = false;
  readonly counters: VolumeCounters = { readOps: 0, readBytes: 0, writeOps: 0, writeBytes: 0 };

  private wp: WritePath | null;
  private acct: IoAccount;

  constructor(
    private pool: Pool,
    private rec: DatasetRecord,
    private opts: { readOnly?: boolean } = {},
  ) {
    this.wp = strategyOf(rec).writePath(pool, rec);
    let locks = LOCKS.get(rec);
    if (!locks) LOCKS.set(rec, (locks = new BlockLocks()));
    this.locks = locks;
    this.acct = pool.account(rec.id);
  }

  static open(pool: Pool, name: string, opts: { readOnly?: boolean } = {}): Volume {
    const { rec } = pool.objectOf(name);
    return new Volume(pool, rec, opts);
  }

  /** The head object (replaced when a row snapshot freezes it). */
  private get obj(): ObjectState {
    const o = this.pool.objects.get(this.rec.id);
    if (!o) throw err.noent('volume was destroyed');
    return o;
  }

  /** Run one I/O inside the strategy's gate, with its index ready (a native volume has none: no promise of its own). */
  private gated<T>(fn: () => Promise<T>): Promise<T> {
    const wp = this.wp;
    return wp ? this.inGate(wp, fn) : fn();
  }

  private async inGate<T>(wp: WritePath, fn: () => Promise<T>): Promise<T> {
    await wp.enter();
    try {
      await wp.ready();
      return await fn();
    } finally {
      wp.leave();
    }
  }

  private get bs(): number {
    return this.obj.blockSize;
  }

  private alive(): void {
    if (this.closed) throw err.shutdown('volume is closed');
    if (this.pool.closed) throw err.shutdown(`pool '${this.pool.name}' is not open`);
    if (!this.pool.objects.has(this.rec.id)) throw err.noent('volume was destroyed');
  }

  private get name(): string {
    return this.pool.nameOfId(this.rec.id) ?? '?';
  }

  info(): BlockDeviceInfo {
    const size = this.obj.dnode.nblocks * this.bs;
    const ro = this.opts.readOnly || this.pool.dir.propValue(this.name, 'readonly') === 'on';
    return {
      size,
      blockSize: this.bs,
      minBlockSize: 512,
      maxRequest: 32 * 1024 * 1024,
      readOnly: !!ro,
      multiConn: true,
      canTrim: true,
      canZero: true,
      canFastZero: true,
      canCache: true,
      keepsPayload: true,
    };
  }

  read(offset: number, length: number, into?: Buffer): Promise<Buffer> {
    return this.gated(() => this.readGated(offset, length, into));
  }

  private async readGated(offset: number, length: number, into?: Buffer): Promise<Buffer> {
    this.alive();
    const out = into ? into.subarray(0, length) : Buffer.allocUnsafe(length);
    const bs = this.bs;
    const first = Math.floor(offset / bs);
    const last = Math.floor((offset + length - 1) / bs);
    const need: { b: number; start: number; end: number; dst: number }[] = [];
    for (let b = first; b <= last; b++) {
      const start = Math.max(offset, b * bs);
      const end = Math.min(offset + length, (b + 1) * bs);
      const dst = start - offset;
      const dirty = this.obj.dirtyBlock(b);
      if (dirty !== undefined) {
        if (dirty) dirty.copy(out, dst, start - b * bs, end - b * bs);
        else out.fill(0, dst, dst + end - start);
        continue;
      }
      need.push({ b, start, end, dst });
    }
    if (need.length) {
      const dnode = this.obj.dnode;
      const head = this.obj;
      const got = head.tree.getBps(dnode, need.map((n) => n.b));
      const bps = Array.isArray(got) ? got : await got;
      // One device read per physically contiguous run of blocks (each still verified).
      const u = { ops: 0, bytes: 0 };
      let datas: (Buffer | null)[];
      // Cached blocks are copied into `out` in the tick they are found (never handed out:
      // a block this volume writes next may then be taken rather than copied, see readMany).
      const copied: boolean[] = new Array(need.length).fill(false);
      const copyOut = (n: (typeof need)[number], src: Buffer) => src.copy(out, n.dst, n.start - n.b * bs, n.end - n.b * bs);
      const copyHit = (i: number, data: Buffer) => {
        copyOut(need[i]!, data);
        copied[i] = true;
      };
      try {
        const got = this.pool.io.readManyNow(bps, u, undefined, copyHit);
        datas = Array.isArray(got) ? got : await got;
      } catch (e) {
        await this.logUnreadable(need.map((n) => n.b), bps);
        throw e;
      } finally {
        this.acct.deviceReadOps += u.ops;
        this.acct.deviceReadBytes += u.bytes;
      }
      // row: what the head lacks comes from the layers below.
      const wp = this.wp;
      if (wp) {
        const below = need.map((n, i) => i).filter((i) => !bps[i] && wp.hasBelow(need[i]!.b));
        if (below.length) {
          const got = await wp.readBelow(below.map((i) => need[i]!.b), false);
          below.forEach((i, k) => (datas[i] = got[k] ?? null));
        }
      }
      need.forEach((n, i) => {
        // A write may have landed while we read the tree: prefer it.
        const now = head.dirtyBlock(n.b);
        if (now === undefined && copied[i]) return;
        const src = now !== undefined ? now : datas[i];
        if (src) copyOut(n, src);
        else out.fill(0, n.dst, n.dst + n.end - n.start);
      });
    }
    this.counters.readOps++;
    this.counters.readBytes += length;
    this.acct.guestReadOps++;
    this.acct.guestReadBytes += length;
    return out;
  }

  /**
   * A read failed (no copy verified): find which blocks and put them in the
   * pool's persistent error log, so `pool status -v` names the volume and
   * ranges, as it does for blocks a scrub could not repair.
   */
  private async logUnreadable(blkids: number[], bps: (import('../pool/blkptr.js').BlockPointer | null)[]): Promise<void> {
    const results = await Promise.allSettled(bps.map((bp) => (bp ? this.pool.io.read(bp) : Promise.resolve(null))));
    const log = this.pool.scanPersist.errlog;
    let added = false;
    results.forEach((r, i) => {
      if (r.status !== 'rejected') return;
      const blkid = blkids[i]!;
      if (log.some((x) => x.dataset === this.name && x.blkid === blkid && x.level === 0 && !x.snapshot) || log.length >= 1000) return;
      log.push({ dataset: this.name, level: 0, blkid, span: 1, blockSize: this.bs, txg: this.pool.txg.open });
      added = true;
    });
    if (added && !this.pool.txg.suspended) this.pool.txg.markDirty(0);
  }

  async write(offset: number, data: Buffer, opts?: WriteOptions): Promise<void> {
    this.alive();
    // An owned payload is kept, not copied: whole blocks become views of it (see WriteOptions.owned).
    const keep = opts?.owned ? (from: number) => data.subarray(from, from + this.bs) : undefined;
    // The payload goes back to its owner (WriteOptions.release) when the txg holding its views
    // syncs, or now if it kept none. Not for a strategy's volume: a cow store may take the
    // head's dirty blocks into its own txg, and nothing would hand them back in time.
    const lend = opts?.owned && opts.release && !this.wp ? { data, release: opts.release } : undefined;
    await this.gated(() => this.modify(offset, data.length, (blk, at, from, n) => data.copy(blk, at, from, from + n), false, keep, lend));
    this.counters.writeOps++;
    this.counters.writeBytes += data.length;
    this.acct.guestWriteOps++;
    this.acct.guestWriteBytes += data.length;
    if (opts?.fua || this.syncAlways()) await this.flush();
  }

  async writeZeroes(offset: number, length: number, opts?: ZeroOptions): Promise<void> {
    this.alive();
    // Whole zero blocks become holes whatever NO_HOLE says: reads return zeroes either way,
    // and ZFS-style pools never store all-zero blocks (compression turns them into holes).
    await this.gated(() => this.modify(offset, length, (blk, at, _from, n) => void blk.fill(0, at, at + n), true));
    if (opts?.fua || this.syncAlways()) await this.flush();
  }

  /** Zeroes over block b: a hole, unless a row layer below holds b (then zero data). */
  private zeroed(b: number): Buffer | null {
    return this.wp?.hasBelow(b) ? zeroBlock(this.bs) : null;
  }

  /**
   * Newest contents of blocks as the volume reads them (dirty, head, row layers), counted as
   * write-path reads. `owned[i]` says the block was read from a device for this caller alone
   * (readBlocks): a strategy's volume never gets one, its store may still want the block.
   */
  private latest(ids: number[], owned?: boolean[], held?: Buffer[]): (Buffer | null)[] | Promise<(Buffer | null)[]> {
    const wp = this.wp;
    if (!wp) return readBlocksNow(this.pool, this.obj, ids, this.acct, true, owned, held);
    return this.latestLayered(wp, ids, held);
  }

  /** latest() for a cow or row volume: what the head lacks may come from the layers below. */
  private async latestLayered(wp: WritePath, ids: number[], held?: Buffer[]): Promise<(Buffer | null)[]> {
    const datas = await readBlocks(this.pool, this.obj, ids, this.acct, true, undefined, held);
    const below = ids.map((_, i) => i).filter((i) => datas[i] === null && this.obj.dirtyBlock(ids[i]!) === undefined && wp.hasBelow(ids[i]!));
    if (below.length) {
      const got = await wp.readBelow(below.map((i) => ids[i]!), true);
      below.forEach((i, k) => (datas[i] = got[k] ?? null));
    }
    return datas;
  }

  async trim(offset: number, length: number, opts?: WriteOptions): Promise<void> {
    return this.writeZeroes(offset, length, { ...opts, mayTrim: true });
  }

  private syncAlways(): boolean {
    return this.pool.dir.propValue(this.name, 'sync') === 'always';
  }

  /**
   * Apply `fill` to every block touched by [offset, offset+length). Whole
   * blocks of a zeroing request become holes (null) without reading.
   */
  private async modify(
    offset: number,
    length: number,
    fill: (blk: Buffer, at: number, from: number, n: number) => void,
    zeroing: boolean,
    keep?: (from: number) => Buffer,
    lend?: { data: Buffer; release: () => void },
  ): Promise<void> {
    const bs = this.bs;
    const first = Math.floor(offset / bs);
    const last = Math.floor((offset + length - 1) / bs);
    const copies = Number(this.pool.dir.propValue(this.name, 'copies'));
    // Large zeroing requests over holes must not dirty (or even visit) unallocated blocks.
    if (zeroing && last - first > 64) return this.zeroRange(offset, length, fill);
    const whole: number[] = [];
    const partial: number[] = [];
    for (let b = first; b <= last; b++) {
      const start = Math.max(offset, b * bs);
      const end = Math.min(offset + length, (b + 1) * bs);
      (end - start === bs ? whole : partial).push(b);
    }
    // Partial blocks whose latest version is not in memory are read first (outside the txg),
    // under the block lock; the merge itself happens below, synchronously, against the
    // newest version (which may have become dirty meanwhile).
    // whole and partial are each ascending; partial blocks are only the first and last.
    const lockIds = partial.length ? [...whole, ...partial].sort((x, y) => x - y) : whole;
    const unlock = this.locks.tryAcquireAll(lockIds) ?? (await this.locks.acquireAll(lockIds));
    /** Dirty bases held until merged (readBlocks): no other volume may take one meanwhile. */
    const held: Buffer[] = [];
    try {
      // Always keep a base, even for a block dirty now (that read costs nothing): if
      // it is dirty only in the syncing txg and that sync completes while we wait in
      // admit()/throttle() below, its dirty copy is gone and, without a base, the
      // merge treated the block as a hole (its other bytes were lost).
      const ownedBase: boolean[] = [];
      const got = partial.length ? this.latest(partial, ownedBase, held) : NO_BLOCKS;
      const bases = Array.isArray(got) ? got : await got;
      // (bases[i] is partial block i's; ownedBase[i] true when this write alone holds it, read
      // from a device or taken from the ARC: it may become the dirty block as it is.)
      // cow: what these blocks held, for the newest snapshot's store (recorded below, same txg).
      // (prepare takes a set of blocks; the sorted lock list is that set.)
      const prepared = this.wp ? await this.wp.prepare(lockIds) : null;
      // The copies into the store are this write's dirty data too, admitted with its own
      // (at most: another write may copy a block first). Unadmitted, they filled a cow
      // volume's raidz pool past what the sync could allocate, and the pool suspended.
      const copied = prepared ? prepared.items.length : 0;
      const own = zeroing ? 0 : whole.length + partial.length; // zeroing dirties holes
      const bytes = (own + copied) * bs;
      const blockBound = this.pool.blockBound(bs); // raidz parity and padding
      const bound = (own + copied) * blockBound;
      const dirtying = (whole.length + partial.length + copied) * bs;
      const obj = this.obj;
      let t: number;
      for (let attempt = 1; ; attempt++) {
        // (Both answer undefined when there is nothing to wait for: `await undefined` would
        // still suspend this write for a microtask.)
        const admitting = this.pool.admit(this.rec, bytes, copies, bound);
        if (admitting) await admitting;
        const throttling = this.pool.txg.throttle(dirtying);
        if (throttling) await throttling;
        // From the hold to the end nothing awaits: the whole write joins one txg.
        t = this.pool.txg.open;
        obj.metaCopies = Math.min(3, copies + 1); // what its indirect blocks will be written with (pool.writeProps)
        obj.mosBytesPerBlock = this.rec.snapshots.length ? 48 + 128 : 48; // a dead-list entry per overwritten block
        // The sync's metadata room and this write's data room, checked again now that nothing awaits
        // before the blocks are dirtied (admission counted on what was dirty then, and so did every
        // writer that passed it alongside or waited in the throttle).
        if (bytes === 0) break; // zeroing only: frees space, needs none
        const meta = obj.uncounted(t, lockIds) + (prepared ? prepared.store.uncounted(t, prepared.items.map((i) => i.b)) : 0);
        if (this.pool.holdMetaFor(t, meta, bound, copies)) break;
        // The room those writers took is only in flight (their dirty data, the frees their
        // syncs defer): it comes back as txgs commit. Failing here instead gave ENOSPC to 4K
        // writes at depth 32 into a 1 GiB volume on a 1.5 GiB pool, a third of it free.
        if (attempt === ROOM_ATTEMPTS || !(await this.pool.commitInFlight())) throw err.nospc(`out of space in pool '${this.pool.name}'`);
      }
      const recorded = this.wp ? this.wp.record(prepared, t) : 0;
      const m = obj.mapFor(t);
      const zero = zeroBlock(bs);
      let added = 0;
      let kept = false;
      for (const b of whole) {
        if (!m.has(b)) added += bs;
        if (zeroing) {
          m.set(b, this.zeroed(b));
          continue;
        }
        if (keep) {
          m.set(b, keep(b * bs - offset));
          kept = true;
          continue;
        }
        // Buffer.alloc, not allocUnsafe: blocks outlive the write (dirty data, then the ARC), and
        // retained allocUnsafe buffers measured 7x slower to fill here (bench/pool/throughput).
        const blk = Buffer.alloc(bs);
        fill(blk, 0, b * bs - offset, bs);
        m.set(b, blk);
      }
      for (let pi = 0; pi < partial.length; pi++) {
        const b = partial[pi]!;
        const start = Math.max(offset, b * bs);
        const end = Math.min(offset + length, (b + 1) * bs);
        const mine = m.get(b);
        if (mine && mine !== zero) {
          // Already dirty in this (open) txg: nothing has seen this buffer but readers and
          // pending log records of this txg, for which the newest bytes are right. Update in place.
          fill(mine, start - b * bs, start - offset, end - start);
          continue;
        }
        if (mine === undefined) added += bs;
        const dirtyNow = mine === null || mine === zero ? undefined : this.obj.dirtyBlock(b);
        const latest = mine === null ? null : mine === zero ? zero : (dirtyNow ?? bases[pi] ?? null);
        if (!latest && zeroing) {
          m.set(b, null); // zeroing part of a hole (in every layer): still a hole
          continue;
        }
        let blk: Buffer;
        if (latest && latest === bases[pi] && ownedBase[pi] === true && latest.length === bs) {
          blk = latest;
        } else {
          // The newest version is copied over the whole block, so its memory need not be zeroed
          // first (a shorter one, which no block should be, still gets a zeroed buffer).
          blk = latest && latest.length === bs ? Buffer.allocUnsafe(bs) : Buffer.alloc(bs);
          if (latest) latest.copy(blk);
        }
        fill(blk, start - b * bs, start - offset, end - start);
        m.set(b, blk);
      }
      const dirtied = (zeroing ? 0 : added / bs) + recorded;
      this.pool.txg.markDirty(dirtied * bs);
      if (dirtied) this.pool.noteDirtyBlocks(t, dirtied, bs, blockBound);
      // Intent log: records point into the block buffers (see logRange).
      this.logRange(t, offset, length, m, zeroing);
      if (lend) {
        if (kept) this.pool.lendUntilSynced(t, lend.data, lend.release);
        else lend.release(); // every block was copied out of it
      }
    } finally {
      for (const h of held) this.pool.io.unhold(h);
      unlock();
    }
  }

  /** Zero a large range: only allocated or dirty blocks are touched; edges merge. */
  private async zeroRange(offset: number, length: number, fill: (blk: Buffer, at: number, from: number, n: number) => void): Promise<void> {
    const bs = this.bs;
    const firstWhole = Math.ceil(offset / bs);
    const endWhole = Math.floor((offset + length) / bs);
    if (offset % bs) await this.modify(offset, Math.min(length, firstWhole * bs - offset), fill, true);
    if ((offset + length) % bs && endWhole >= firstWhole) await this.modify(endWhole * bs, offset + length - endWhole * bs, fill, true);
    if (endWhole <= firstWhole) return;
    const targets = new Set<number>();
    const head = this.obj;
    for (const m of head.dirty.values()) for (const b of m.keys()) if (b >= firstWhole && b < endWhole) targets.add(b);
    await head.tree.walk(head.dnode, firstWhole, endWhole, (b) => void targets.add(b));
    // row: blocks of the layers below must be covered too.
    if (this.wp) for (let b = firstWhole; b < endWhole; b++) if (this.wp.hasBelow(b)) targets.add(b);
    if (targets.size === 0) return;
    if (this.wp?.copiesOut) {
      // cow: zeroing copies what it overwrites into the store, as much dirty data as
      // writing the blocks would be. modify() admits it, ZERO_RUN blocks at a time.
      for (const r of rangesOf([...targets], bs)) {
        for (let o = r.offset, end = r.offset + r.length; o < end; o += ZERO_RUN * bs) await this.modify(o, Math.min(ZERO_RUN * bs, end - o), fill, true);
      }
      return;
    }
    const prepared = this.wp ? await this.wp.prepare([...targets].filter((b) => !this.locks.held(b))) : null;
    await this.pool.txg.throttle(0);
    const t = this.pool.txg.markDirty(0);
    this.wp?.record(prepared, t);
    const m = this.obj.mapFor(t);
    for (const b of targets) if (!this.locks.held(b)) m.set(b, this.zeroed(b));
    this.pool.zil?.log({ op: 'zero', dataset: this.rec.id, txg: t, offset: firstWhole * bs, length: (endWhole - firstWhole) * bs });
    // Blocks under a concurrent partial write get zeroed after it finishes.
    const held = [...targets].filter((b) => this.locks.held(b));
    for (const b of held) {
      const r = await this.locks.acquire(b);
      try {
        const p = this.wp ? await this.wp.prepare([b]) : null;
        await this.pool.txg.throttle(0);
        const tb = this.pool.txg.markDirty(0);
        this.wp?.record(p, tb);
        this.obj.mapFor(tb).set(b, this.zeroed(b));
      } finally {
        r();
      }
    }
  }

  /**
   * Log records for a range just recorded in txg `t`, one per block, pointing
   * into the block buffers. A later write in the same txg may update a buffer
   * in place; a commit then logs newer bytes for an older record, which replay
   * overwrites with the newer record anyway (records replay in order).
   */
  private logRange(t: number, offset: number, length: number, m: Map<number, Buffer | null>, zeroing: boolean): void {
    const zil = this.pool.zil;
    if (!zil) return;
    if (zeroing) {
      zil.log({ op: 'zero', dataset: this.rec.id, txg: t, offset, length });
      return;
    }
    const bs = this.bs;
    for (let b = Math.floor(offset / bs); b <= Math.floor((offset + length - 1) / bs); b++) {
      const start = Math.max(offset, b * bs);
      const end = Math.min(offset + length, (b + 1) * bs);
      const blk = m.get(b);
      // A whole block is its own record's data (no view of a view per block of a large write).
      const data = blk && (end - start === bs ? blk : blk.subarray(start - b * bs, end - b * bs));
      if (data) zil.log({ op: 'write', dataset: this.rec.id, txg: t, offset: start, length: end - start, data });
      else zil.log({ op: 'zero', dataset: this.rec.id, txg: t, offset: start, length: end - start });
    }
  }

  /**
   * Make every completed write durable: through the intent log (one log
   * write and a device flush), not a whole txg. sync=disabled ignores
   * flushes, as ZFS does.
   */
  async flush(): Promise<void> {
    this.alive();
    const mode = this.pool.dir.propValue(this.name, 'sync');
    if (mode === 'disabled') return;
    // Bulk data is cheaper to commit with the txg than to write twice (log, then pool):
    // ZFS makes the same trade with logbias and immediate-write thresholds.
    const zil = this.pool.zil;
    // A nearly full pool has no room for log blocks: the txg is the only safe way
    // then (log blocks taking the txg's space made its sync fail and the pool suspend).
    if (zil && zil.pendingBytes() <= LOG_BULK_LIMIT && this.pool.logHasRoom(zil.pendingBytes())) {
      try {
        await zil.commit();
        return;
      } catch (e) {
        if (!(e instanceof StorageError) || e.code !== 'ENOSPC') throw e;
        // Every record is still in its txg's dirty data: syncing it covers them.
      }
    }
    await this.pool.txg.syncNow();
  }

  blockStatus(offset: number, length: number): Promise<Extent[]> {
    return this.gated(() => this.blockStatusGated(offset, length));
  }

  private async blockStatusGated(offset: number, length: number): Promise<Extent[]> {
    this.alive();
    const bs = this.bs;
    const first = Math.floor(offset / bs);
    // Answer at most 2^20 blocks per call (callers ask again for the rest), so memory stays bounded.
    const end = Math.min(Math.ceil((offset + length) / bs), this.obj.dnode.nblocks, first + (1 << 20));
    const state = new Map<number, boolean>();
    if (this.wp) for (let b = first; b < end; b++) if (this.wp.hasBelow(b)) state.set(b, true);
    await this.obj.tree.walk(this.obj.dnode, first, end, (b) => void state.set(b, true));
    for (const [, m] of [...this.obj.dirty].sort((a, b) => a[0] - b[0])) {
      for (const [b, d] of m) if (b >= first && b < end) state.set(b, d !== null);
    }
    const known = [...state.keys()].sort((x, y) => x - y).map((b): [number, boolean] => [b, state.get(b)!]);
    return blockExtents(offset, length, bs, first, end, known);
  }

  async cache(offset: number, length: number): Promise<void> {
    await this.read(offset, Math.min(length, 32 * 1024 * 1024));
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}
