/**
 * Pool: one imported storage pool (ZFS's spa_t). Owns the device tree, the
 * I/O pipeline, the ARC, the transaction-group engine, the dataset directory
 * and the data objects; everything above talks to a Pool.
 *
 * One instance per pool, opened in one process at a time: the labels record
 * the owning host and pid while the pool is active (see open.ts), and the
 * CLI's home directory adds a lock file.
 *
 * Every administrative change (create, destroy, rename, set) marks the
 * directory dirty and waits for its txg to commit before returning, so "the
 * command returned" means "it is on disk".
 */
import { randomBytes } from 'node:crypto';
import { hostname, totalmem } from 'node:os';
import { err } from '../errors.js';
import { Arc } from './cache/arc.js';
import { bpAsize, ObjType, type BlockPointer, type ChecksumId, type CompressId } from './blkptr.js';
import { Allocation } from './io/allocate.js';
import { BlockPipeline, type WriteProps } from './io/pipeline.js';
import type { SpaceAllocator } from './space/allocator.js';
import { Directory, type DatasetRecord, type DatasetType, type SnapshotRecord } from './dataset/directory.js';
import { IoAccount } from './io/account.js';
import { parentOf, validateDatasetName } from './dataset/names.js';
import { parseProp, PROPS, isUserProp } from './dataset/props.js';
import { dnodeFromJson, dnodeToJson, newDnode, type Dnode } from './object/dnode.js';
import { MetaTally, ObjectState } from './object/object-state.js';
import { emptyByteObject, type ByteObject } from './object/byte-object.js';
import { TxgEngine } from './txg/txg.js';
import { writeConfig, type LabelConfig, type PoolLabelState } from './txg/label.js';
import type { VdevTree } from './vdev/tree.js';
import type { Leaf } from './vdev/types.js';
import { syncTxg } from './txg/sync.js';
import { IntentLog } from './intent-log/zil.js';
import { usedByDataset, usedBySnapshots } from './dataset/snapshots.js';

export interface PoolOptions {
  /** Txg timeout (ms); default 5000. */
  txgTimeoutMs?: number;
  /** Dirty data limit in bytes; writers wait above it. Default 256 MiB. */
  dirtyMax?: number;
  /** ARC size in bytes; default a quarter of RAM, at most 4 GiB. */
  arcMaxBytes?: number;
  /** Dead-list entries one snapshot-destroy txg may process (see destroySnapshots in dataset/snapshots.ts). */
  destroyTxgBudget?: number;
}

export interface HistoryEntry {
  time: number;
  txg: number;
  command: string;
}

export interface DatasetInfo {
  name: string;
  type: DatasetType;
  used: number;
  avail: number;
  refer: number;
  volsize?: number;
  volblocksize?: number;
}

/**
 * Reserve runs for the MOS blocks a txg's sync writes whatever its size:
 * the directory's block, the tail of the space map log, history, in two
 * copies, the MOS root in three (small blocks, which a fragmented pool
 * still has holes for; runs are the worst case). Space map and dead-list
 * growth is counted per dirtied block (MetaTally).
 */
const MOS_META_RUNS = 8;
/** Indirect blocks of the write being admitted, not counted yet (two tree levels, in up to 3 copies). */
const ADMIT_META_BLOCKS = 6;
/**
 * Txg commits a write waits through in admission while data in flight stands between it and
 * room that would be there once it settles (ZFS waits for as long as it takes; a bound keeps
 * a writer that keeps losing the race from waiting forever).
 */
const ADMIT_WAITS = 16;

/** The pool's objects; each one added counts its indirect blocks into the pool's MetaTally. */
class ObjectMap extends Map<number, ObjectState> {
  constructor(private readonly tally: MetaTally) {
    super();
  }

  override set(id: number, obj: ObjectState): this {
    obj.tally = this.tally;
    return super.set(id, obj);
  }
}

/** One admission check: admitted, only what is in flight stands in the way, or it cannot fit. */
type Admission = 'yes' | 'later' | 'never';

export class Pool {
  readonly io: BlockPipeline;
  readonly alloc: Allocation;
  readonly arc: Arc<Buffer>;
  dir: Directory;
  /** Indirect blocks the unsynced txgs will write (object-state.ts); sizes the metadata reserve. */
  readonly metaTally = new MetaTally();
  readonly objects: Map<number, ObjectState> = new ObjectMap(this.metaTally);
  /**
   * Layer objects of cow and row volumes (src/snapshot): a snapshot's own
   * store or frozen layer, keyed by the snapshot's id, which is also its
   * key in `objects`. They sync like heads but belong to a snapshot; they
   * never share blocks with another tree, so what they drop is freed.
   */
  readonly layers = new Map<number, { rec: DatasetRecord; snap: SnapshotRecord }>();
  /** Device-level I/O per volume (dataset id), since import: write amplification is measured, not estimated. */
  readonly accounts = new Map<number, IoAccount>();
  txg!: TxgEngine;
  /** Metadata objects reached from the MOS root. */
  mos: { dir: ByteObject; sm: ByteObject; smRecords: number; history: ByteObject; rootBp: BlockPointer | null };
  /** The space map's own view: only logged (data) allocations, for condensing. */
  logged: SpaceAllocator[] = [];
  pendingHistory: HistoryEntry[] = [];
  /**
   * Destroyed datasets whose blocks the next sync frees: tree blocks and
   * dead-list entries born after `after` (the origin's txg for a clone,
   * else 0), and the dead lists' own storage. Queued by a sync task, i.e.
   * in syncing context after this txg's data objects were written, so the
   * dnode here is the final tree (a copy taken earlier could be stale while
   * a sync publishes a newer tree: freeing it double-frees and leaks).
   */
  freeQueue: { dnode: Dnode | null; after: number; deads: import('./dataset/deadlist.js').DeadlistJson[] }[] = [];
  /** Blocks killed in a txg that a snapshot still references, per dataset id (appended to its dead list at sync). */
  pendingDead = new Map<number, BlockPointer[]>();
  /** Sync tasks (ZFS's dsl_sync_task): run in syncing context of the txg they were queued in. */
  syncTasks: { txg: number; fn: (txg: number) => Promise<unknown>; result?: unknown; error?: unknown }[] = [];
  configDirty = false;
  /** Scrub/resilver state, DTLs, error log and device error counters (src/pool/scan), written into the MOS root every txg. */
  scanPersist: import('./scan/state.js').ScanPersist = { scan: null, dtl: {}, errlog: [], leafErrors: {} };
  /** While a scan reads a chunk: frees of this txg and later stay deferred (see sync.ts step 9). */
  scanHoldTxg: number | null = null;
  /** Device management and scans (src/pool/devices.ts), attached after create/import. */
  devices: { beforeClose(): Promise<void> } | null = null;
  /** Vdev event hooks shared by every top-level (filled by devices.ts). */
  vdevEvents: import('./vdev/child-io.js').VdevEvents = {};
  closed = false;
  /** Set while closing: labels then stop naming this process as the owner. */
  closing = false;
  labelState: PoolLabelState = 'active';

  constructor(
    readonly name: string,
    readonly guid: string,
    readonly vdevs: VdevTree,
    opts: PoolOptions,
    dir: Directory,
  ) {
    // Default like ZFS on Linux (a share of RAM), capped: the ARC lives outside the JS heap.
    this.arc = new Arc<Buffer>({ maxBytes: opts.arcMaxBytes ?? Math.min(Math.floor(totalmem() / 4), 4 * 1024 * 1024 * 1024) });
    const exclude = new Set(vdevs.tops.filter((t) => vdevs.isLog(t)).map((t) => t.id));
    vdevs.tops.forEach((t, i) => {
      if (t.id !== i) throw err.corrupt(`device tree: top-level ids must be 0..n-1 (found ${t.id} at ${i})`);
    });
    this.alloc = new Allocation(vdevs.tops, exclude);
    this.io = new BlockPipeline(vdevs.tops, this.alloc, this.arc);
    this.dir = dir;
    this.mos = { dir: emptyByteObject(), sm: emptyByteObject(), smRecords: 0, history: emptyByteObject(), rootBp: null };
    this.opts = opts;
  }
  readonly opts: PoolOptions;

  startTxgs(lastSynced: number): void {
    this.txg = new TxgEngine(lastSynced, (t) => syncTxg(this, t), { timeoutMs: this.opts.txgTimeoutMs, dirtyMax: this.opts.dirtyMax });
    this.zil = new IntentLog(this.vdevs.tops, this.alloc, BigInt('0x' + this.guid), () => this.txg.open);
    // What the intent log may not take: the slop for metadata plus every dirty byte at
    // the most copies a dataset can ask for (see Allocation.allocLog). Set after the
    // log's first block is placed, so even a full pool still imports.
    this.alloc.logReserve = () => this.slop() + this.txg.totalDirty() * 3;
  }

  /** The MOS root's intent-log header at import (where replay starts). */
  zilHeader: import('./intent-log/zil.js').ZilHeader | null = null;
  /** The intent log (sync writes without a txg); set once txgs run. */
  zil: IntentLog | null = null;

  leaves(): Leaf[] {
    return this.vdevs.leaves();
  }

  account(datasetId: number): IoAccount {
    let a = this.accounts.get(datasetId);
    if (!a) this.accounts.set(datasetId, (a = new IoAccount()));
    return a;
  }

  /**
   * Load the layer objects of every cow/row volume from the directory (at
   * import, and after the snapshot code adds or drops layers). Objects
   * already loaded keep their state (their dirty data).
   */
  registerLayers(): void {
    const keep = new Set<number>();
    for (const rec of this.dir.datasets.values()) {
      const mode = rec.props['snapmode'];
      if (mode !== 'cow' && mode !== 'row') continue;
      for (const snap of rec.snapshots) {
        if (!snap.object) continue;
        keep.add(snap.id);
        this.layers.set(snap.id, { rec, snap });
        if (!this.objects.has(snap.id)) this.objects.set(snap.id, new ObjectState(dnodeFromJson(snap.object), this.io));
      }
    }
    for (const id of [...this.layers.keys()]) {
      if (keep.has(id)) continue;
      this.layers.delete(id);
      this.objects.delete(id);
    }
  }

  labelConfig(leaf: Leaf, state: PoolLabelState): LabelConfig {
    const top = this.vdevs.topOf(leaf);
    return {
      version: 1,
      name: this.name,
      poolGuid: this.guid,
      guid: leaf.guid,
      topGuid: top?.guid ?? leaf.guid,
      state,
      txg: this.txg ? this.txg.synced + 1 : 1,
      hostname: hostname(),
      pid: state === 'active' && !this.closing ? process.pid : undefined,
      tree: this.vdevs.config(),
    };
  }

  /** Rewrite every label's config (device tree or pool state changed). */
  async writeLabels(state: PoolLabelState): Promise<void> {
    this.labelState = state;
    for (const leaf of this.leaves()) {
      if (leaf.state !== 'ONLINE' && leaf.state !== 'DEGRADED') continue;
      await writeConfig(leaf, this.labelConfig(leaf, state));
    }
  }

  // ---------------------------------------------------------------- space

  /** Can the intent log take `bytes` (plus block overhead) without the txgs running short? */
  logHasRoom(bytes: number): boolean {
    const need = Math.ceil(bytes * 1.1) + 2 * 1024 * 1024; // headers, splits, the next pre-allocated block
    return this.alloc.capacity() - this.alloc.allocated() - need >= this.alloc.logReserve();
  }

  /** Space the pool keeps back so a full pool can still sync metadata and free space. */
  slop(): number {
    const cap = this.alloc.capacity();
    return Math.min(Math.max(Math.floor(cap / 32), 4 * 1024 * 1024), Math.floor(cap / 4));
  }

  /** Unused refreservation of a dataset (space promised to it but not yet used). */
  unusedReservation(rec: DatasetRecord): number {
    const r = rec.props['refreservation'];
    if (!r || r === 'none') return 0;
    const want = r === 'auto' ? this.volsizeOf(rec) : Number(r);
    return Math.max(0, want - rec.referenced);
  }

  volsizeOf(rec: DatasetRecord): number {
    return rec.type === 'volume' ? Number(rec.props['volsize'] ?? 0) : 0;
  }

  /**
   * Raw allocated bytes as usable bytes: raidz space includes parity, so
   * `list` deflates it with the ratio of a 128K block, as ZFS does (small
   * blocks' padding then shows as used). 1 for single devices and mirrors.
   */
  deflate(n: number): number {
    let raw = 0;
    let usable = 0;
    for (const t of this.vdevs.dataTops()) {
      raw += t.capacity;
      usable += t.capacity * (131072 / t.asize(131072));
    }
    return raw ? Math.round((n * usable) / raw) : n;
  }

  /** Bytes a dataset may still write (AVAIL). */
  available(name: string): number {
    const rec = this.dir.get(name);
    let reserved = 0;
    for (const r of this.dir.datasets.values()) reserved += this.unusedReservation(r);
    const base = this.alloc.capacity() - this.alloc.allocated() + this.alloc.pendingFrees() - this.slop() - reserved - this.txg.totalDirty();
    return Math.max(0, base + this.unusedReservation(rec));
  }

  /**
   * Bytes of metadata the unsynced txgs' syncs may write, as the metadata
   * reserve holds them (allocate.ts): a maximal metadata block for every
   * counted indirect block, and for each txg its MOS records (two copies)
   * and MOS_META_RUNS. `extra` adds indirect blocks not counted yet, of a
   * write about to join txg `joining` (which may have nothing counted yet).
   * 0 when nothing is pending.
   */
  metaNeed(extra = 0, joining?: number): number {
    const run = this.alloc.metaRun();
    let runs = extra;
    let txgs = 0;
    for (const e of this.metaTally.entries()) {
      runs += e.blocks + 2 * Math.ceil(e.mosBytes / run) + MOS_META_RUNS;
      txgs++;
    }
    if (joining !== undefined && !this.metaTally.has(joining)) runs += 2 + MOS_META_RUNS;
    return txgs || joining !== undefined ? runs * run : 0;
  }

  /**
   * Just before a write dirties `bytes` (in `copies`) in txg `txg`, with
   * nothing awaited in between: hold the metadata reserve it needs, and
   * check again that the data still fits beside it. Writers that passed
   * admission together, or waited in the throttle, all counted on the same
   * room; the runs a write holds here must not be space dirty data was
   * promised (that failed a data block's allocation in the sync). False
   * (ENOSPC): nothing is held for it.
   */
  holdMetaFor(txg: number, extraBlocks: number, bytes: number, copies: number): boolean {
    const held = this.alloc.holdMeta(this.metaNeed(extraBlocks, txg));
    if (held && this.dataRoom(bytes, copies) >= 0) return true;
    this.alloc.releaseMeta(this.metaNeed());
    return false;
  }

  /**
   * Allocatable bytes left once the slop, every dirty byte (at the most its
   * block may take: dirtyExcess) and `bytes` more (a bound: blockBound),
   * each in `copies`, are set aside (the metadata reserve counts as allocated).
   */
  private dataRoom(bytes: number, copies: number): number {
    let excess = 0;
    for (const v of this.dirtyExcess.values()) excess += v;
    return this.alloc.capacity() - this.alloc.allocated() - this.slop() - (this.txg.totalDirty() + excess + bytes) * copies;
  }

  /** After a sync: give back the reserve the synced txg no longer needs. */
  metaSynced(txg: number): void {
    this.metaTally.drop(txg);
    for (const t of this.dirtyExcess.keys()) if (t <= txg) this.dirtyExcess.delete(t);
    this.alloc.releaseMeta(this.metaNeed());
  }

  /**
   * Dirty data is counted in logical bytes (the txg engine's dirty limit), but a block
   * takes more on a raidz top-level (parity and padding: a 4K block on a 3-wide raidz1
   * takes 8K) or when it is smaller than a sector. Writers admitted on logical bytes
   * filled a nearly full raidz pool past what the sync could allocate, and the pool
   * suspended. So the room checks (admit, holdMetaFor) count each dirty block at the
   * most it can take: txg -> the bytes above logical its blocks may take.
   */
  private dirtyExcess = new Map<number, number>();

  /** What one block of `bs` bytes may take on the devices, at most (uncompressed, on the least efficient top-level). */
  blockBound(bs: number): number {
    return this.alloc.maxAsize(bs);
  }

  /**
   * `blocks` blocks of `bs` bytes became dirty in txg `txg` (with the logical bytes the txg
   * engine counts); `bound` is blockBound(bs), which the writer already has.
   */
  noteDirtyBlocks(txg: number, blocks: number, bs: number, bound: number): void {
    const over = blocks * (bound - bs);
    if (over > 0) this.dirtyExcess.set(txg, (this.dirtyExcess.get(txg) ?? 0) + over);
  }

  /** Write payloads lent until their txg syncs, and how to give each back (WriteOptions.release). */
  private lentPayloads = new Map<number, { data: Buffer; release: () => void }[]>();

  /**
   * `data` (a write payload whose whole blocks are views in txg `txg`'s dirty maps) goes
   * back to its owner once `txg` has synced: the sync's writes have then settled, its dirty
   * map is dropped, the ARC never cached the views (BlockPipeline.lent) and readers copy
   * them. Never given back if the pool suspends or closes first: the GC takes it then.
   */
  lendUntilSynced(txg: number, data: Buffer, release: () => void): void {
    this.io.lend(data);
    let l = this.lentPayloads.get(txg);
    if (!l) this.lentPayloads.set(txg, (l = []));
    l.push({ data, release });
  }

  /** Txg `txg` committed: give back what was lent until then (sync.ts, last step). */
  returnLent(txg: number): void {
    for (const [t, l] of this.lentPayloads) {
      if (t > txg) continue;
      this.lentPayloads.delete(t);
      for (const { data, release } of l) {
        this.io.unlend(data);
        // The txg is committed: an owner's failing callback must not fail the sync.
        try {
          release();
        } catch {
          // (the payload is then the GC's)
        }
      }
    }
  }

  /**
   * Admission check before dirtying `bytes` for dataset `rec`. Thick volumes
   * may use their reservation; everyone needs real allocatable space, and
   * the syncs need contiguous runs for their metadata (holdMeta), which a
   * fragmented, nearly full pool may no longer have. When space is only
   * waiting on deferred frees, a sync releases it. `bytes` is logical
   * (quotas, reservations); `bound` is what they may take on the devices
   * (blocks times blockBound), for the room check.
   */
  admit(rec: DatasetRecord, bytes: number, copies: number, bound = bytes): Promise<void> | undefined {
    // Undefined when admitted at once: no promise for the common case (one per 4K write was
    // measurable). Hot callers test it before awaiting; `await` takes either.
    const r = this.admitNow(rec, bytes, copies, bound);
    return r === 'yes' ? undefined : this.admitLater(rec, bytes, copies, bound, r);
  }

  private async admitLater(rec: DatasetRecord, bytes: number, copies: number, bound: number, first: 'later' | 'never'): Promise<void> {
    for (let wait = 0, r: Admission = first; ; wait++, r = this.admitNow(rec, bytes, copies, bound)) {
      if (r === 'yes') return;
      // ZFS's rule (dsl_dir_tempreserve_impl): ENOSPC at once when the write would not fit
      // even with nothing in flight; while it is data in flight that stands in the way (the
      // dirty data of writers admitted before, often overwrites that free as much as they
      // take, and the frees their syncs defer), wait for a txg to commit and look again.
      if (r === 'never') break;
      if (wait === ADMIT_WAITS || !(await this.commitInFlight())) break;
    }
    // Runs a failed hold took must not stay allocated on an idle pool.
    this.alloc.releaseMeta(this.metaNeed());
    throw err.nospc(`out of space in pool '${this.name}'`);
  }

  /**
   * admit()'s check, once: 'yes' (admitted), 'later' (only what is in flight stands in the
   * way) or 'never' (would not fit even with nothing in flight).
   */
  private admitNow(rec: DatasetRecord, bytes: number, copies: number, bound: number): Admission {
    const need = bytes * copies;
    // Metadata first: the reserve it holds is no longer allocatable for data.
    const metaHeld = this.alloc.holdMeta(this.metaNeed(ADMIT_META_BLOCKS, this.txg.open));
    const room = this.dataRoom(bound, copies);
    let reserved = 0;
    for (const r of this.dir.datasets.values()) if (r !== rec) reserved += this.unusedReservation(r);
    const own = this.unusedReservation(rec);
    // Free once every deferred free is back, before what the dirty data in flight will take.
    const settled = this.alloc.capacity() - this.alloc.allocated() + this.alloc.pendingFrees() - this.slop();
    const logical = settled - reserved - this.txg.totalDirty();
    // Zeroing (need 0) frees space: it must not fail for want of a reserve it tried to hold.
    if ((metaHeld || need === 0) && room >= 0 && (own >= need || logical >= need)) return 'yes';
    return (own < need && settled - reserved < need) || settled < bound * copies ? 'never' : 'later';
  }

  /**
   * Space held by what is in flight (dirty data, frees deferred by TXG_DEFER) comes back
   * only as txgs commit: commit the open txg and return true, or return false at once when
   * nothing is in flight, so waiting cannot make room.
   */
  async commitInFlight(): Promise<boolean> {
    if (this.alloc.pendingFrees() === 0 && this.txg.totalDirty() === 0) return false;
    // With nothing dirty, syncNow() would have nothing to do and the writer got ENOSPC until
    // something else made a txg: make sure the open txg has something to commit, as commit() does.
    this.txg.markDirty(0);
    await this.txg.syncNow();
    return true;
  }

  // ------------------------------------------------------------ datasets

  private mustBeOpen(): void {
    if (this.closed) throw err.shutdown(`pool '${this.name}' is not open`);
    if (this.txg.suspended) throw this.txg.suspended;
  }

  /** Commit a directory change and wait until it is durable. */
  async commit(command?: string): Promise<void> {
    this.dir.dirty = true;
    if (command) this.pendingHistory.push({ time: Date.now(), txg: this.txg.open, command });
    this.txg.markDirty(0);
    await this.txg.syncNow();
  }

  /**
   * Run `fn` in syncing context of the open txg (after its data is written,
   * before its directory is captured) and wait until that txg commits.
   * `fn` must validate before it mutates: a StorageError it throws (other
   * than EIO) fails only this task; anything else suspends the pool.
   */
  async syncTask<T>(fn: (txg: number) => Promise<T>, command?: string): Promise<T> {
    this.mustBeOpen();
    const task: { txg: number; fn: (txg: number) => Promise<unknown>; result?: unknown; error?: unknown } = { txg: this.txg.open, fn };
    this.syncTasks.push(task);
    if (command) this.pendingHistory.push({ time: Date.now(), txg: this.txg.open, command });
    this.dir.dirty = true;
    this.txg.markDirty(0);
    await this.txg.syncNow();
    if (task.error) throw task.error;
    return task.result as T;
  }

  async createDataset(name: string, type: DatasetType, props: Record<string, string>, opts: { sparse?: boolean; command?: string } = {}): Promise<void> {
    this.mustBeOpen();
    validateDatasetName(name);
    if (!name.startsWith(this.name + '/')) throw err.inval(`dataset '${name}' is not in pool '${this.name}'`);
    const parent = parentOf(name)!;
    if (!this.dir.has(parent)) throw err.noent(`cannot create '${name}': parent '${parent}' does not exist`);
    const local: Record<string, string> = {};
    for (const [k, v] of Object.entries(props)) local[k] = parseProp(k, v, { creating: true, isVolume: type === 'volume' });
    let object = null;
    if (type === 'volume') {
      const bs = Number(local['volblocksize'] ?? PROPS['volblocksize']!.default);
      local['volblocksize'] = String(bs);
      const size = Number(local['volsize'] ?? 0);
      if (!size) throw err.inval(`cannot create '${name}': a volume needs a size (-V)`);
      if (size % bs !== 0) throw err.inval(`cannot create '${name}': volsize ${size} is not a multiple of volblocksize ${bs}`);
      if (!opts.sparse && !('refreservation' in local)) local['refreservation'] = String(size);
      object = dnodeToJson(newDnode(bs, size / bs));
      // The snapshot strategy is fixed for a volume's life: pin an inherited one.
      if (!('snapmode' in local)) local['snapmode'] = this.dir.propValue(parent, 'snapmode');
    } else if ('volsize' in local || 'volblocksize' in local) {
      throw err.inval(`cannot create '${name}': volsize and volblocksize apply only to volumes`);
    }
    // A thick volume must fit: its reservation is a promise.
    const rr = local['refreservation'];
    if (rr && rr !== 'none') {
      const want = rr === 'auto' ? Number(local['volsize']) : Number(rr);
      if (want > this.available(parent)) throw err.nospc(`cannot create '${name}': out of space (needs ${want} bytes reserved, ${this.available(parent)} available)`);
    }
    const rec = this.dir.add(name, type, this.txg.open, local, object);
    if (object) this.objects.set(rec.id, new ObjectState(dnodeFromJson(object), this.io));
    await this.commit(opts.command ?? `create ${name}`);
  }

  async destroyDataset(name: string, opts: { recursive?: boolean; command?: string } = {}): Promise<string[]> {
    this.mustBeOpen();
    if (name === this.name) throw err.inval(`cannot destroy '${name}': operation does not apply to the pool's root dataset; use 'pool destroy'`);
    const rec = this.dir.get(name);
    const kids = this.dir.descendants(name);
    if (kids.length && !opts.recursive) throw err.busy(`cannot destroy '${name}': filesystem has children; use -r to destroy them too (${kids.join(', ')})`);
    if (rec.snapshots.length && !opts.recursive) throw err.busy(`cannot destroy '${name}': volume has snapshots; use -r`);
    const gone = [...kids.reverse(), name];
    for (const n of gone) {
      const r = this.dir.get(n);
      const clones = r.snapshots.flatMap((s) => s.clones ?? []).filter((c) => !gone.includes(c));
      if (clones.length) throw err.busy(`cannot destroy '${n}': its snapshots have dependent clones (${clones.join(', ')}); destroy or promote them first`);
      const held = r.snapshots.filter((s) => Object.keys(s.holds ?? {}).length);
      if (held.length) throw err.busy(`cannot destroy '${n}': snapshot '${n}@${held[0]!.name}' is held`);
    }
    await this.syncTask(async () => {
      for (const n of gone) {
        const r = this.dir.get(n);
        const obj = this.objects.get(r.id);
        // Everything this dataset owns: the head's tree and every dead list (see deadlist.ts).
        const deads = [r.dead, ...r.snapshots.map((s) => s.dead)].filter((d): d is NonNullable<typeof d> => !!d);
        if (obj) {
          obj.clearDirty();
          this.objects.delete(r.id);
        }
        this.freeQueue.push({ dnode: obj ? obj.dnode : null, after: r.originTxg ?? 0, deads });
        // cow/row snapshot layers own every block in them.
        for (const s of r.snapshots) {
          const layer = this.layers.has(s.id) ? this.objects.get(s.id) : undefined;
          if (!layer) continue;
          layer.clearDirty();
          this.freeQueue.push({ dnode: layer.dnode, after: 0, deads: [] });
          this.objects.delete(s.id);
          this.layers.delete(s.id);
        }
        this.accounts.delete(r.id);
        this.pendingDead.delete(r.id);
        if (r.origin) {
          const at = r.origin.indexOf('@');
          const s = this.dir.datasets.get(r.origin.slice(0, at))?.snapshots.find((x) => x.name === r.origin!.slice(at + 1));
          if (s) s.clones = (s.clones ?? []).filter((c) => c !== n);
        }
        this.dir.datasets.delete(n);
      }
    }, opts.command ?? `destroy ${name}`);
    return gone;
  }

  async renameDataset(from: string, to: string, command?: string): Promise<void> {
    this.mustBeOpen();
    validateDatasetName(to);
    if (from === this.name) throw err.inval(`cannot rename the pool's root dataset`);
    this.dir.get(from);
    if (to.split('/')[0] !== this.name) throw err.inval(`cannot rename to '${to}': datasets cannot move between pools`);
    if (this.dir.has(to)) throw err.exist(`cannot rename to '${to}': dataset already exists`);
    if (to.startsWith(from + '/')) throw err.inval(`cannot rename '${from}' to a descendant of itself`);
    const parent = parentOf(to)!;
    const p = this.dir.datasets.get(parent);
    if (!p) throw err.noent(`cannot rename to '${to}': parent '${parent}' does not exist`);
    if (p.type === 'volume') throw err.inval(`cannot rename to '${to}': parent is a volume`);
    this.dir.rename(from, to);
    await this.commit(command ?? `rename ${from} ${to}`);
  }

  async setProps(name: string, props: Record<string, string>, command?: string): Promise<void> {
    this.mustBeOpen();
    const rec = this.dir.get(name);
    const parsed: Record<string, string> = {};
    for (const [k, v] of Object.entries(props)) parsed[k] = parseProp(k, v, { creating: false, isVolume: rec.type === 'volume' });
    if ('volsize' in parsed) await this.resize(name, rec, Number(parsed['volsize']));
    for (const [k, v] of Object.entries(parsed)) if (k !== 'volsize') rec.props[k] = v;
    await this.commit(command ?? `set ${Object.entries(props).map(([k, v]) => `${k}=${v}`).join(' ')} ${name}`);
  }

  async inheritProp(name: string, prop: string, command?: string): Promise<void> {
    this.mustBeOpen();
    const rec = this.dir.get(name);
    if (!isUserProp(prop)) {
      const def = PROPS[prop];
      if (!def) throw err.inval(`invalid property '${prop}'`);
      if (!def.inherit && prop !== 'refreservation' && prop !== 'reservation' && prop !== 'quota') throw err.inval(`property '${prop}' cannot be inherited`);
    }
    delete rec.props[prop];
    await this.commit(command ?? `inherit ${prop} ${name}`);
  }

  /** Size in bytes of snapshot `full`'s volume (its tree's, or its layer's). */
  private originSize(full: string): number {
    const at = full.indexOf('@');
    const snap = this.dir.get(full.slice(0, at)).snapshots.find((s) => s.name === full.slice(at + 1));
    if (!snap?.object) throw err.noent(`snapshot '${full}' does not exist`);
    return snap.object.n * snap.object.bs;
  }

  private async resize(name: string, rec: DatasetRecord, size: number): Promise<void> {
    const obj = this.objects.get(rec.id);
    if (!obj) throw err.inval(`'${name}' is not a volume`);
    const bs = obj.blockSize;
    const mode = rec.props['snapmode'];
    // Their stores and layers are sized to the volume (src/snapshot).
    if ((mode === 'cow' || mode === 'row') && rec.snapshots.length) throw err.notsup(`cannot resize '${name}': snapmode=${mode} volumes cannot change size while they have snapshots`);
    // A row clone reads what its head lacks from its origin's layers: cut below their size, the
    // blocks past the cut would show the origin's data again if the clone grew back.
    if (mode === 'row' && rec.origin && size < this.originSize(rec.origin)) {
      throw err.notsup(`cannot shrink '${name}' below ${this.originSize(rec.origin)} bytes: snapmode=row clones read their origin's layers (${rec.origin}); growing is allowed`);
    }
    if (size <= 0 || size % bs !== 0) throw err.inval(`volsize ${size} must be a positive multiple of volblocksize ${bs}`);
    const old = Number(rec.props['volsize']);
    const thick = rec.props['refreservation'] && rec.props['refreservation'] !== 'none' && Number(rec.props['refreservation']) === old;
    if (size > old && thick && size - old > this.available(name) - this.unusedReservation(rec)) {
      throw err.nospc(`cannot grow '${name}': out of space for its reservation`);
    }
    const n = size / bs;
    if (n < obj.dnode.nblocks) {
      // Shrink: everything past the new end becomes a hole in the open txg.
      // Collect the allocated blocks first: the walk awaits, and a txg that closes
      // meanwhile would sync (and drop) a dirty map we were still adding to.
      const cut: number[] = [];
      await obj.tree.walk(obj.dnode, n, obj.dnode.nblocks, (b) => void cut.push(b));
      await this.txg.throttle(0);
      const t = this.txg.markDirty(0);
      const m = obj.mapFor(t);
      for (const [txg, dm] of obj.dirty) if (txg !== t) for (const b of dm.keys()) if (b >= n) m.set(b, null);
      for (const b of [...m.keys()]) if (b >= n) m.set(b, null);
      for (const b of cut) m.set(b, null);
      // Sync while the old size is still in the dnode so the holes are written, then shrink.
      await this.txg.syncNow();
    }
    obj.dnode = { ...obj.dnode, nblocks: n };
    // The directory's copy of the dnode is only refreshed when the object has dirty
    // blocks; without this a grow or shrink is lost on the next import.
    rec.object = dnodeToJson(obj.dnode);
    rec.props['volsize'] = String(size);
    if (thick) rec.props['refreservation'] = String(size);
  }

  // ------------------------------------------------------------- queries

  /** Effective compression/checksum/copies for writes of a dataset. */
  writePolicy(name: string): { comp: CompressId; cksum: ChecksumId; copies: number } {
    return {
      comp: this.dir.propValue(name, 'compression') as CompressId,
      cksum: this.dir.propValue(name, 'checksum') as ChecksumId,
      copies: Number(this.dir.propValue(name, 'copies')),
    };
  }

  /**
   * Properties of the blocks of dataset `name`'s volume tree (or of a
   * snapshot layer it owns) written in txg `txg`, per tree level: its
   * compression and checksum; indirect blocks get one more copy than data
   * (ZFS's ditto rule: losing one loses many). `keepZeros`: all-zero data
   * blocks stay data (layers and row heads, where a hole means "look below").
   * `spare`: the data buffers are the head's own (WriteProps.spare).
   */
  writeProps(name: string, txg: number, keepZeros = false, spare = false): (level: number) => WriteProps {
    const pol = this.writePolicy(name);
    return (level) => ({
      comp: pol.comp,
      cksum: pol.cksum,
      type: level === 0 ? ObjType.VolumeData : ObjType.Indirect,
      level,
      fill: 1,
      birth: txg,
      copies: level === 0 ? pol.copies : Math.min(3, pol.copies + 1),
      logged: true,
      ...(keepZeros && level === 0 ? { noHole: true } : {}),
      ...(spare && level === 0 ? { spare: true } : {}),
    });
  }

  /**
   * The current name of dataset `id`. O(1) while names stay put: a cached
   * index, checked against the directory on every hit (renames, destroys
   * and re-creations make it miss), rebuilt on a miss. Volumes ask on every
   * request (info(), properties), with hundreds of clones in a pool.
   */
  nameOfId(id: number): string | undefined {
    const cached = this.idNames.get(id);
    if (cached !== undefined && this.dir.datasets.get(cached)?.id === id) return cached;
    this.idNames.clear();
    for (const [n, r] of this.dir.datasets) this.idNames.set(r.id, n);
    return this.idNames.get(id);
  }
  private idNames = new Map<number, string>();

  usedBy(name: string): number {
    const rec = this.dir.get(name);
    let used = usedByDataset(rec) + usedBySnapshots(rec) + this.unusedReservation(rec);
    for (const k of this.dir.children(name)) used += this.usedBy(k);
    return used;
  }

  datasetInfo(name: string): DatasetInfo {
    const rec = this.dir.get(name);
    const info: DatasetInfo = { name, type: rec.type, used: this.deflate(this.usedBy(name)), avail: this.deflate(this.available(name)), refer: this.deflate(rec.referenced) };
    if (rec.type === 'volume') {
      info.volsize = Number(rec.props['volsize']);
      info.volblocksize = Number(rec.props['volblocksize']);
    }
    return info;
  }

  list(): string[] {
    return [...this.dir.datasets.keys()].sort();
  }

  /** Every property of a dataset with value and source, like `zfs get all`. */
  getAll(name: string): { property: string; value: string; source: string }[] {
    const rec = this.dir.get(name);
    const out: { property: string; value: string; source: string }[] = [];
    const stat = (property: string, value: string | number) => out.push({ property, value: String(value), source: '-' });
    const sz = (n: number) => this.deflate(n);
    stat('type', rec.type);
    stat('creation', Math.floor(rec.creation / 1000));
    stat('used', sz(this.usedBy(name)));
    stat('available', sz(this.available(name)));
    stat('referenced', sz(rec.referenced));
    stat('logicalused', rec.logical);
    stat('logicalreferenced', rec.logical);
    stat('compressratio', rec.referenced ? (rec.logical / rec.referenced).toFixed(2) + 'x' : '1.00x');
    stat('usedbydataset', sz(usedByDataset(rec)));
    stat('usedbychildren', sz(this.usedBy(name) - usedByDataset(rec) - usedBySnapshots(rec) - this.unusedReservation(rec)));
    stat('usedbyrefreservation', sz(this.unusedReservation(rec)));
    stat('usedbysnapshots', sz(usedBySnapshots(rec)));
    stat('written', rec.written ?? rec.referenced);
    stat('origin', rec.origin ?? '-');
    stat('snapshot_count', rec.snapshots.length);
    if (rec.type === 'volume') {
      // Measured since import (src/pool/io/account.ts): device bytes per guest byte written.
      const acct = this.accounts.get(rec.id)?.toJson();
      stat('amplification', acct && acct.guestWriteBytes ? acct.amplification.toFixed(2) + 'x' : '-');
    }
    stat('guid', BigInt('0x' + rec.guid).toString());
    stat('createtxg', rec.createTxg);
    for (const def of Object.values(PROPS)) {
      if (def.volumeOnly && rec.type !== 'volume') continue;
      if (def.name === 'volsize' || def.name === 'volblocksize') {
        out.push({ property: def.name, value: rec.props[def.name] ?? def.default, source: def.name === 'volsize' ? 'local' : 'default' });
        continue;
      }
      const r = this.dir.resolve(name, def.name);
      out.push({ property: def.name, value: r.value, source: r.source });
    }
    // User properties, inherited like ZFS's.
    const seen = new Set<string>();
    for (let cur: string | null = name; cur; cur = parentOf(cur)) {
      const r = this.dir.datasets.get(cur);
      if (!r) continue;
      for (const [k, v] of Object.entries(r.props)) {
        if (!isUserProp(k) || seen.has(k)) continue;
        seen.add(k);
        out.push({ property: k, value: v, source: cur === name ? 'local' : `inherited from ${cur}` });
      }
    }
    return out;
  }

  objectOf(name: string): { rec: DatasetRecord; obj: ObjectState } {
    const rec = this.dir.get(name);
    const obj = this.objects.get(rec.id);
    if (!obj) throw err.inval(`'${name}' is not a volume`);
    return { rec, obj };
  }

  stats() {
    const cap = this.alloc.capacity();
    // The metadata reserve is space held for the next syncs, not data: ALLOC does not count it.
    const allocated = this.alloc.allocated() - this.alloc.pendingFrees() - this.alloc.heldForMeta();
    return { size: cap, alloc: allocated, free: cap - allocated, state: this.vdevs.state(), txg: this.txg.synced, arc: this.arc.stats() };
  }

  async history(): Promise<HistoryEntry[]> {
    const { readByteObject } = await import('./object/byte-object.js');
    const raw = (await readByteObject(this.io, this.mos.history)).toString('utf8');
    const out: HistoryEntry[] = [];
    for (const line of raw.split('\n')) if (line.trim()) out.push(JSON.parse(line) as HistoryEntry);
    return out.concat(this.pendingHistory);
  }

  // ------------------------------------------------------------ lifecycle

  /** Sync everything, mark the labels (exported or still active), close devices. */
  async close(state: PoolLabelState = 'exported'): Promise<void> {
    if (this.closed) return;
    this.closing = true;
    let failure: unknown;
    try {
      // Stop a running scan first; its state is persisted by the final sync.
      if (this.devices && !this.txg.suspended) await this.devices.beforeClose();
      await this.txg.close();
      if (!this.txg.suspended) await this.writeLabels(state);
    } catch (e) {
      failure = e;
    }
    this.closed = true;
    await this.vdevs.close();
    if (failure) throw failure;
  }

  static newGuid(): string {
    return randomBytes(8).toString('hex');
  }
}

export { ObjType, bpAsize };
