/**
 * ScanRunner: scrub and resilver in the background of an open pool
 * (ZFS's dsl_scan).
 *
 *  - The traversal (traverse.ts) yields chunks of block pointers; each block
 *    is read with every copy and column ('scrub' or 'resilver' mode), which
 *    verifies and repairs (read.ts). Reads of one chunk run with bounded
 *    concurrency.
 *  - Ordering rule: while a chunk's blocks are being read, frees of the txgs
 *    that may free them are held back (Pool.scanHoldTxg, applied in sync.ts),
 *    so a block the scan is reading is never reused, and a repair never
 *    writes old contents over a new block.
 *  - Foreground I/O keeps most of its speed: when the pool served reads or
 *    writes since the last chunk, the runner sleeps (ZFS's scrub delay) and
 *    lowers its concurrency; an optional rate limit caps scan bandwidth.
 *  - The state (bookmark, counters) lives in Pool.scanPersist and is written
 *    into the MOS root by every txg; the runner dirties a txg about once a
 *    second. After a crash or export, import resumes from the bookmark
 *    (blocks between the last persisted bookmark and the crash are scanned
 *    again: harmless).
 *  - A resilver, when it ends, marks the stale devices current
 *    (tree-admin resilverDone), drops their DTLs and commits the new config.
 */
import { err } from '../../errors.js';
import type { Pool } from '../pool.js';
import { resilverDone } from '../vdev/tree-admin.js';
import { leafUsable } from '../vdev/leaf-base.js';
import { scanRead } from './read.js';
import { HEAD_PART, ERRLOG_MAX, type ErrlogEntry, type ScanFunc, type ScanStateJson } from './state.js';
import { nextChunk, type ScanItem } from './traverse.js';

export interface ScanOptions {
  /** Cap on scan bandwidth (bytes/s); default unlimited (env STRATA_SCAN_RATE). */
  rate?: number;
  /** Concurrent block reads when the pool is otherwise idle (default 16). */
  concurrency?: number;
  /** Level-0 blocks per chunk (default 128). */
  chunkBlocks?: number;
  /** Pause between chunks while foreground I/O is active (ms, default 20). */
  busyDelayMs?: number;
  /** Scan bandwidth cap while foreground I/O is active (bytes/s, default 32 MiB/s). */
  busyRate?: number;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export class ScanRunner {
  private loop: Promise<void> | null = null;
  private stopping = false;
  private sessionStart = 0;
  private sessionExamined = 0;
  private lastPersist = 0;
  private waiters: { resolve: () => void; reject: (e: unknown) => void }[] = [];
  /** Called after a resilver finished and its config committed (the device layer may start another). */
  onResilverDone: (() => Promise<void>) | null = null;
  readonly opts: Required<Omit<ScanOptions, 'rate'>> & { rate: number };
  private fgOps = -1;
  private fgAt = 0;

  constructor(
    private pool: Pool,
    opts: ScanOptions = {},
  ) {
    const envRate = Number(process.env['STRATA_SCAN_RATE'] ?? 0);
    this.opts = {
      rate: opts.rate ?? (envRate > 0 ? envRate : 0),
      concurrency: opts.concurrency ?? 16,
      chunkBlocks: opts.chunkBlocks ?? 128,
      busyDelayMs: opts.busyDelayMs ?? 20,
      busyRate: opts.busyRate ?? 32 * 1024 * 1024,
    };
  }

  get state(): ScanStateJson | null {
    return this.pool.scanPersist.scan;
  }

  running(): boolean {
    return this.loop !== null;
  }

  /** Start a new scan (replacing a finished/canceled one) and run it in the background. */
  start(func: ScanFunc, minBirth = 0): void {
    const cur = this.state;
    if (cur && cur.state === 'scanning') {
      if (cur.func === 'resilver' && func === 'scrub') throw err.busy(`cannot scrub '${this.pool.name}': currently resilvering`);
      if (cur.func === 'scrub' && func === 'scrub' && !cur.paused) throw err.busy(`cannot scrub '${this.pool.name}': a scrub is already in progress`);
    }
    const now = Date.now();
    this.pool.scanPersist.scan = {
      func,
      state: 'scanning',
      paused: false,
      minBirth,
      maxTxg: this.pool.txg.open,
      startTime: now,
      endTime: null,
      toExamine: this.pool.alloc.allocated() - this.pool.alloc.pendingFrees(),
      examined: 0,
      issued: 0,
      repaired: 0,
      errors: 0,
      bookmark: { ds: 0, part: 0, blkid: 0 },
      activeMs: 0,
    };
    // A new scrub re-establishes the error log (a block it finds healthy is no longer listed).
    if (func === 'scrub') this.pool.scanPersist.errlog = [];
    this.persistSoon(true);
    this.resume();
  }

  /** Run the persisted scan if it is unfinished and not paused (import, `scrub` after `-p`). */
  resume(): void {
    const s = this.state;
    if (!s || s.state !== 'scanning') return;
    s.paused = false;
    if (this.loop) return;
    this.stopping = false;
    this.loop = this.run().finally(() => {
      this.loop = null;
      const e = this.failure;
      this.failure = null;
      this.settle(e ?? undefined);
      if (this.resilvered && this.onResilverDone) {
        this.resilvered = false;
        this.onResilverDone().catch(() => {});
      }
    });
  }

  /** `scrub -p`: stop where we are; `scrub` resumes. */
  async pause(): Promise<void> {
    const s = this.state;
    if (!s || s.state !== 'scanning' || s.func !== 'scrub') throw err.inval(`cannot pause scrubbing '${this.pool.name}': there is no active scrub`);
    s.paused = true;
    await this.halt();
    this.persistSoon(true);
    await this.pool.txg.syncNow();
  }

  /** `scrub -s`: cancel. */
  async cancel(): Promise<void> {
    const s = this.state;
    if (!s || s.state !== 'scanning' || s.func !== 'scrub') throw err.inval(`cannot cancel scrubbing '${this.pool.name}': there is no active scrub`);
    await this.halt();
    s.state = 'canceled';
    s.endTime = Date.now();
    this.settle();
    this.persistSoon(true);
    await this.pool.txg.syncNow();
  }

  /** Stop the loop without changing the persisted state (pool close). */
  async halt(): Promise<void> {
    this.stopping = true;
    if (this.loop) await this.loop;
    this.stopping = false;
  }

  /** Resolve when no scan is running (finished, canceled or paused). */
  wait(): Promise<void> {
    if (!this.loop) return Promise.resolve();
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  /** Rate in bytes/s over this session, and ETA in seconds. */
  progress(): { rate: number; eta: number | null } {
    const s = this.state;
    const ms = this.sessionStart ? Date.now() - this.sessionStart : 0;
    const rate = ms > 0 ? (this.sessionExamined * 1000) / ms : 0;
    if (!s || s.state !== 'scanning' || rate <= 0) return { rate, eta: null };
    return { rate, eta: Math.max(0, (s.toExamine - s.examined) / rate) };
  }

  private settle(e?: unknown): void {
    for (const w of this.waiters.splice(0)) (e ? w.reject(e) : w.resolve());
  }

  private persistSoon(now = false): void {
    const t = Date.now();
    if (!now && t - this.lastPersist < 1000) return;
    this.lastPersist = t;
    if (!this.pool.closed && !this.pool.txg.suspended) this.pool.txg.markDirty(0);
  }

  /** Did the pool serve foreground I/O in the last 100 ms? (Scan reads bypass the pipeline's counters.) */
  private foregroundBusy(): boolean {
    const st = this.pool.io.stats;
    const ops = st.readOps + st.writeOps + this.pool.txg.totalDirty();
    if (ops !== this.fgOps) {
      if (this.fgOps >= 0) this.fgAt = Date.now();
      this.fgOps = ops;
    }
    return Date.now() - this.fgAt < 100;
  }

  private async run(): Promise<void> {
    const s = this.state!;
    this.sessionStart = Date.now();
    this.sessionExamined = 0;
    let tick = Date.now();
    try {
      while (!this.stopping && s.state === 'scanning' && !s.paused) {
        if (this.pool.closed || this.pool.txg.suspended) break;
        // Hold frees of every txg that could free a block of this chunk (see sync.ts).
        this.pool.scanHoldTxg = this.pool.txg.synced;
        let chunk;
        const chunkStart = Date.now();
        const examinedBefore = s.examined;
        try {
          const errors: { item: ScanItem; e: unknown }[] = [];
          chunk = await nextChunk(this.pool, s.bookmark, s.minBirth, this.opts.chunkBlocks, (item, e) => errors.push({ item, e }));
          for (const x of errors) this.recordError(s, x.item);
          await this.readAll(s, chunk.items);
        } finally {
          this.pool.scanHoldTxg = null;
        }
        const now = Date.now();
        s.activeMs += now - tick;
        tick = now;
        if (chunk.next === null) {
          await this.finish(s);
          break;
        }
        s.bookmark = chunk.next;
        this.persistSoon();
        // Yield to foreground I/O (ZFS's scrub delay): while it is active, scan at most busyRate.
        if (this.foregroundBusy()) {
          const due = ((s.examined - examinedBefore) * 1000) / this.opts.busyRate - (Date.now() - chunkStart);
          await sleep(Math.min(1000, Math.max(this.opts.busyDelayMs, due)));
        } else await new Promise<void>((r) => setImmediate(r));
        if (this.opts.rate > 0) {
          const ahead = (this.sessionExamined * 1000) / this.opts.rate - (Date.now() - this.sessionStart);
          if (ahead > 0) await sleep(Math.min(ahead, 1000));
        }
      }
    } catch (e) {
      this.failure = e;
    }
  }
  private failure: unknown = null;
  private resilvered = false;

  private async readAll(s: ScanStateJson, items: ScanItem[]): Promise<void> {
    const mode = s.func === 'resilver' ? 'resilver' : 'scrub';
    const tops = this.pool.vdevs.tops;
    const limit = this.foregroundBusy() ? Math.max(1, this.opts.concurrency >> 2) : this.opts.concurrency;
    let i = 0;
    const worker = async (): Promise<void> => {
      while (i < items.length) {
        const item = items[i++]!;
        let asize = 0;
        for (const d of item.bp.dvas) asize += d.asize;
        const r = await scanRead(tops, item.bp, mode);
        s.examined += asize;
        this.sessionExamined += asize;
        s.issued += r.issued;
        s.repaired += r.repaired;
        if (!r.ok) this.recordError(s, item);
      }
    };
    await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  }

  private recordError(s: ScanStateJson, item: ScanItem): void {
    s.errors++;
    const name = item.ds === 0 ? '<metadata>' : (this.pool.nameOfId(item.ds) ?? `<dataset ${item.ds}>`);
    const rec = item.ds === 0 ? undefined : this.pool.dir.datasets.get(name);
    const e: ErrlogEntry = {
      dataset: name,
      level: item.level,
      blkid: item.blkid,
      span: item.span,
      blockSize: Number(rec?.props['volblocksize'] ?? 0),
      txg: this.pool.txg.open,
    };
    if (rec && item.part !== HEAD_PART) {
      const snap = rec.snapshots.find((x) => x.createTxg === item.part);
      if (snap) e.snapshot = snap.name;
    }
    const log = this.pool.scanPersist.errlog;
    if (!log.some((x) => x.dataset === e.dataset && x.blkid === e.blkid && x.level === e.level && x.snapshot === e.snapshot) && log.length < ERRLOG_MAX) log.push(e);
  }

  private async finish(s: ScanStateJson): Promise<void> {
    s.state = 'finished';
    s.endTime = Date.now();
    if (s.func === 'resilver') {
      await resilverDone(this.pool.vdevs);
      for (const l of this.pool.vdevs.leaves()) if (leafUsable(l.state)) delete this.pool.scanPersist.dtl[l.guid];
      this.pool.configDirty = true;
    }
    this.persistSoon(true);
    await this.pool.txg.syncNow();
    if (s.func === 'resilver') this.resilvered = true;
  }
}
