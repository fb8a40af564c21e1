/**
 * Transaction groups.
 *
 * Theory: every change joins the *open* txg. A sync closes it (the next txg
 * opens at once, so writers never wait for a sync unless they are over the
 * dirty limit), quiesces it, and writes it out. In Node a change is
 * recorded synchronously once a writer has passed throttle(), so closing is
 * a single step: nothing can still be "in" a closed txg, and quiescing is
 * free. At most one txg syncs at a time; txgs commit in order.
 *
 * Triggers: the txg timeout (default 5 s) after the first change, dirty data
 * passing three quarters of the limit (SYNC_SHARE), or an explicit syncNow() (flush, FUA,
 * administrative commands that must be durable when they return).
 *
 * Throttle: writers wait while dirty data (open + syncing) is above
 * dirtyMax, so memory stays bounded under any write load.
 *
 * Failure: if a sync throws, the pool is suspended: the error is kept and
 * every later syncNow()/throttle() rejects with it (EIO), and nothing more
 * is written. The last committed txg stays intact on disk.
 */
import { err, StorageError } from '../../errors.js';

/**
 * The open txg syncs once its dirty data passes this share of dirtyMax. Every sync rewrites
 * each indirect block the txg touched, so small random writes spread over a volume cost a
 * whole level of indirect blocks per txg: fewer, larger txgs cost less per write (4K random
 * writes to a 1 GiB pool volume over NBD: +8% at a half against a quarter, +9% again at
 * three quarters against a half, 1 MiB writes unchanged; bench/README.md). The last quarter
 * is the writers' room while a txg syncs; the limit itself (memory, and the space admission
 * counts) is unchanged (ZFS syncs at 20% of a dirty limit about ten times larger here).
 */
const SYNC_SHARE = 0.75;

export interface TxgOptions {
  timeoutMs?: number;
  dirtyMax?: number;
}

export class TxgEngine {
  open: number;
  synced: number;
  private dirtyBytes = new Map<number, number>();
  private changed = new Set<number>();
  private running: Promise<void> | null = null;
  private timer: NodeJS.Timeout | null = null;
  private waiters: { txg: number; resolve: () => void; reject: (e: unknown) => void }[] = [];
  private roomWaiters: (() => void)[] = [];
  suspended: StorageError | null = null;
  readonly timeoutMs: number;
  readonly dirtyMax: number;
  private closed = false;

  constructor(
    lastSynced: number,
    private doSync: (txg: number) => Promise<void>,
    opts: TxgOptions = {},
  ) {
    this.synced = lastSynced;
    this.open = lastSynced + 1;
    this.timeoutMs = opts.timeoutMs ?? 5000;
    this.dirtyMax = opts.dirtyMax ?? 256 * 1024 * 1024;
  }

  totalDirty(): number {
    let n = 0;
    for (const v of this.dirtyBytes.values()) n += v;
    return n;
  }

  /**
   * Wait until a write of `bytes` fits under the dirty limit. Call markDirty() synchronously
   * after it resolves. Undefined when it fits now: no promise for the common case (one per
   * 4K write was measurable). Hot callers test it before awaiting; `await` takes either.
   */
  throttle(bytes: number): Promise<void> | undefined {
    if (this.suspended) return Promise.reject(this.suspended);
    if (this.closed) return Promise.reject(err.shutdown('pool is closing'));
    return this.overLimit(bytes) ? this.waitForRoom(bytes) : undefined;
  }

  private overLimit(bytes: number): boolean {
    const dirty = this.totalDirty();
    return dirty > 0 && dirty + bytes > this.dirtyMax;
  }

  private async waitForRoom(bytes: number): Promise<void> {
    while (this.overLimit(bytes)) {
      this.kick();
      await new Promise<void>((r) => this.roomWaiters.push(r));
      if (this.suspended) throw this.suspended;
    }
  }

  /** Record a change in the open txg. Returns that txg. */
  markDirty(bytes: number): number {
    const t = this.open;
    this.changed.add(t);
    if (bytes) this.dirtyBytes.set(t, (this.dirtyBytes.get(t) ?? 0) + bytes);
    // Kick from a microtask, never synchronously: kick() starts the sync at once, which
    // closes txg t and snapshots its dirty blocks before our caller has recorded the
    // change it is about to make in t (that change was then dropped with the synced
    // dirty map: acknowledged writes lost). Callers record synchronously after markDirty.
    if ((this.dirtyBytes.get(t) ?? 0) > this.dirtyMax * SYNC_SHARE) queueMicrotask(() => this.kick());
    else if (!this.timer && !this.running) this.timer = setTimeout(() => this.kick(), this.timeoutMs);
    return t;
  }

  /** Make every change recorded so far durable. */
  async syncNow(): Promise<void> {
    if (this.suspended) throw this.suspended;
    const target = this.changed.has(this.open) ? this.open : this.open - 1;
    if (target <= this.synced) return;
    const p = new Promise<void>((resolve, reject) => this.waiters.push({ txg: target, resolve, reject }));
    this.kick();
    return p;
  }

  private kick(): void {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    if (this.running || this.suspended) return;
    this.running = this.loop().finally(() => {
      this.running = null;
      // Changes that arrived during the last sync get their own timer.
      if (this.changed.has(this.open) && !this.suspended && !this.closed) {
        if ((this.dirtyBytes.get(this.open) ?? 0) > this.dirtyMax * SYNC_SHARE || this.waiters.length) this.kick();
        else if (!this.timer) this.timer = setTimeout(() => this.kick(), this.timeoutMs);
      }
    });
  }

  private async loop(): Promise<void> {
    while (this.changed.has(this.open) && !this.suspended) {
      // Close the open txg; the next one opens immediately.
      const txg = this.open;
      this.open++;
      try {
        await this.doSync(txg);
      } catch (e) {
        this.suspended = e instanceof StorageError ? e : err.io(`txg ${txg} sync failed: ${(e as Error).message}`, e);
        if (this.suspended.code !== 'EIO') this.suspended = err.io(`pool suspended: txg ${txg} sync failed: ${this.suspended.message}`, e);
        for (const w of this.waiters.splice(0)) w.reject(this.suspended);
        for (const r of this.roomWaiters.splice(0)) r();
        return;
      }
      this.synced = txg;
      this.changed.delete(txg);
      this.dirtyBytes.delete(txg);
      const keep: typeof this.waiters = [];
      for (const w of this.waiters) (w.txg <= txg ? w.resolve() : keep.push(w));
      this.waiters = keep;
      for (const r of this.roomWaiters.splice(0)) r();
      // Keep going while someone waits for a later txg or the new open txg is already heavy.
      const pending = this.waiters.length > 0 || (this.dirtyBytes.get(this.open) ?? 0) > this.dirtyMax * SYNC_SHARE || this.roomWaiters.length > 0;
      if (!pending) break;
    }
  }

  /** Sync everything and stop timers. */
  async close(): Promise<void> {
    if (!this.suspended) await this.syncNow();
    if (this.running) await this.running;
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }
}
