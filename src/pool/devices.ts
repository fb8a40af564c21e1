/**
 * Pool-level device management (the engine half of `zpool attach | detach |
 * replace | offline | online | clear | scrub | status | iostat`); the tree
 * shape changes themselves are src/pool/vdev/tree-admin.ts.
 *
 * Rules:
 *  - A new device (attach/replace) must not belong to another pool: an
 *    active one is refused, an exported one needs force. Its old labels are
 *    wiped before it joins; the next sync writes the pool's labels on it.
 *  - Every tree change sets configDirty and commits before returning, so
 *    the labels on every device agree with the tree that is in use.
 *  - Resilver visits only blocks born after the device's last good txg
 *    (DTL by birth txg, persisted in the MOS root): recorded when a device
 *    goes offline or misses a write; for a device that comes back without a
 *    record, its own newest uberblock tells; new devices start from 0.
 *  - A FAULTED, REMOVED or UNAVAIL device is taken over by an available hot
 *    spare (checked on device errors, once a second, and at import).
 */
import { resolve, basename } from 'node:path';
import { err } from '../errors.js';
import type { Pool } from './pool.js';
import { ScanRunner } from './scan/runner.js';
import { emptyScanPersist, type ErrlogEntry, type ScanStateJson } from './scan/state.js';
import { FileLeaf } from './vdev/leaf-file.js';
import { leafConfigFor } from './vdev/layout.js';
import { leafUsable } from './vdev/leaf-base.js';
import * as admin from './vdev/tree-admin.js';
import { MirrorVdev } from './vdev/mirror.js';
import { RaidzVdev } from './vdev/raidz.js';
import { statusTree, type PoolStatusTree } from './vdev/status.js';
import { clearLabels, readLabels } from './txg/label.js';
import { ReplacingLeaf } from './vdev/replacing.js';
import { MIN_DEVICE_SIZE, type Leaf } from './vdev/types.js';
import { hostname } from 'node:os';

export interface ScanStatus extends ScanStateJson {
  rate: number;
  eta: number | null;
  running: boolean;
}

export interface PoolStatus {
  name: string;
  state: string;
  status: string | null;
  action: string | null;
  scan: ScanStatus | null;
  config: PoolStatusTree;
  errorCount: number;
  errlog?: (ErrlogEntry & { offset: number; length: number })[];
  suspended: string | null;
}

export interface IostatRow {
  name: string;
  depth: number;
  alloc: number | null;
  free: number | null;
  readOps: number;
  writeOps: number;
  readBytes: number;
  writeBytes: number;
}

export class PoolDevices {
  readonly scanner: ScanRunner;
  private timer: NodeJS.Timeout | null = null;
  private busy: Promise<void> = Promise.resolve();

  private constructor(readonly pool: Pool) {
    this.scanner = new ScanRunner(pool);
    this.scanner.onResilverDone = () => this.serial(async () => this.afterResilver());
  }

  /** Hook a freshly created or imported pool up: events, spares, resume an unfinished scan or resilver. */
  static async attach(pool: Pool): Promise<PoolDevices> {
    const d = new PoolDevices(pool);
    pool.devices = d;
    const ev = pool.vdevEvents;
    ev.onWriteMissed = (leaf) => {
      d.recordDtl(leaf);
      d.kickSpares();
    };
    ev.onChecksumError = () => d.kickSpares();
    // Devices missing at import missed everything since they left: their DTL is found when they return.
    await d.serial(async () => {
      // Devices back after being away (offline -t, missing at an earlier import) missed the
      // blocks born since their DTL: mark them stale so reads avoid them until resilvered.
      let back = false;
      for (const l of pool.leaves()) {
        if (!leafUsable(l.state) || pool.scanPersist.dtl[l.guid] === undefined || admin.locate(pool.vdevs, l).composite) continue;
        if ((await d.markReturning(l)) !== null) back = true;
      }
      if (back) {
        pool.configDirty = true;
        await pool.commit();
      }
      await d.activateSpares();
      const s = pool.scanPersist.scan;
      if (s && s.state === 'scanning' && !s.paused) d.scanner.resume();
      else if (admin.needsResilver(pool.vdevs)) d.startResilver(d.resilverFloor());
    });
    d.timer = setInterval(() => d.kickSpares(), 1000);
    d.timer.unref();
    return d;
  }

  /** Restore persisted per-device error counters (import, before the first sync). */
  static restoreCounters(pool: Pool): void {
    const p = pool.scanPersist ?? emptyScanPersist();
    for (const l of [...pool.leaves(), ...pool.vdevs.spares]) {
      const e = p.leafErrors?.[l.guid];
      if (e) l.errors = { ...e };
    }
  }

  async beforeClose(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.scanner.halt();
    if (this.scanner.state?.state === 'scanning') this.pool.txg.markDirty(0);
    // Error counters are persisted by every sync; make sure one happens if they changed.
    const persisted = this.pool.scanPersist.leafErrors;
    for (const l of this.pool.leaves()) {
      const p = persisted[l.guid] ?? { read: 0, write: 0, cksum: 0 };
      if (p.read !== l.errors.read || p.write !== l.errors.write || p.cksum !== l.errors.cksum) {
        this.pool.txg.markDirty(0);
        break;
      }
    }
  }

  /** Run device changes one at a time. */
  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.busy.then(fn, fn);
    this.busy = p.then(
      () => {},
      () => {},
    );
    return p;
  }

  // ------------------------------------------------------------ lookup

  find(dev: string): Leaf {
    const tree = this.pool.vdevs;
    const all = [...tree.leaves(), ...tree.spares, ...tree.l2cache];
    const abs = resolve(dev);
    const hit =
      tree.findLeaf(dev) ??
      all.find((l) => l.path === abs) ??
      all.find((l) => l.guid === dev || (/^\d+$/.test(dev) && BigInt(dev).toString(16) === l.guid)) ??
      (() => {
        const byName = all.filter((l) => basename(l.path) === dev);
        return byName.length === 1 ? byName[0] : undefined;
      })();
    if (!hit) throw err.noent(`no such device in pool '${this.pool.name}': ${dev}`);
    return hit;
  }

  private async openNew(path: string, force: boolean, sameAs?: Leaf): Promise<{ leaf: Leaf; cfg: Awaited<ReturnType<typeof leafConfigFor>> }> {
    const cfg = await leafConfigFor(path);
    const abs = cfg.path;
    if (!sameAs && this.pool.vdevs.findLeaf(abs) && leafUsable(this.pool.vdevs.findLeaf(abs)!.state)) throw err.busy(`${abs} is part of pool '${this.pool.name}'`);
    let leaf: FileLeaf;
    try {
      leaf = await FileLeaf.open(abs, cfg.guid);
    } catch (e) {
      throw err.noent(`cannot open '${abs}': ${(e as Error).message}`);
    }
    try {
      if (leaf.size < MIN_DEVICE_SIZE) throw err.inval(`device '${abs}' is too small: ${leaf.size} bytes (minimum is 64M)`);
      const { config } = await readLabels(leaf);
      if (config && config.state !== 'destroyed') {
        const inThisPool = config.poolGuid === this.pool.guid && this.pool.leaves().some((l) => l.guid === config.guid && leafUsable(l.state));
        if (inThisPool) throw err.busy(`${abs} is part of pool '${this.pool.name}'`);
        if (config.poolGuid !== this.pool.guid) {
          if (config.state === 'active' && config.hostname === hostname() && config.pid && config.pid !== process.pid && pidAlive(config.pid)) {
            throw err.busy(`${abs} is part of active pool '${config.name}' (in use by process ${config.pid})`);
          }
          if (!force) throw err.busy(`${abs} is part of ${config.state} pool '${config.name}'; use -f to override`);
        }
      }
      await clearLabels(leaf);
      return { leaf, cfg };
    } catch (e) {
      await leaf.close();
      throw e;
    }
  }

  private async commit(command: string): Promise<void> {
    this.pool.configDirty = true;
    await this.pool.commit(command);
  }

  // ------------------------------------------------------------ admin

  async attachDevice(existing: string, neu: string, force = false): Promise<void> {
    return this.serial(async () => {
      const old = this.find(existing);
      const { leaf, cfg } = await this.openNew(neu, force);
      try {
        admin.attach(this.pool.vdevs, old, leaf, cfg);
      } catch (e) {
        await leaf.close();
        throw e;
      }
      await this.commit(`pool attach ${this.pool.name} ${old.path} ${leaf.path}`);
      this.startResilver(0);
    });
  }

  async detachDevice(dev: string): Promise<void> {
    return this.serial(async () => {
      const leaf = this.find(dev);
      await admin.detach(this.pool.vdevs, leaf);
      delete this.pool.scanPersist.dtl[leaf.guid];
      await this.commit(`pool detach ${this.pool.name} ${leaf.path}`);
      if (!admin.needsResilver(this.pool.vdevs) && this.scanner.state?.func === 'resilver' && this.scanner.state.state === 'scanning') {
        await this.scanner.halt();
        this.scanner.state.state = 'canceled';
      }
    });
  }

  async replaceDevice(oldDev: string, neu?: string, force = false): Promise<void> {
    return this.serial(async () => {
      const old = this.find(oldDev);
      if (neu === undefined && leafUsable(old.state)) {
        throw err.busy(`cannot replace ${old.path} with itself: the device is still in use (give a new device, or replace the disk first)`);
      }
      const { leaf, cfg } = await this.openNew(neu ?? old.path, force, neu === undefined || resolve(neu) === old.path ? old : undefined);
      try {
        admin.replace(this.pool.vdevs, old, leaf, cfg);
      } catch (e) {
        await leaf.close();
        throw e;
      }
      await this.commit(`pool replace ${this.pool.name} ${old.path} ${leaf.path}`);
      this.startResilver(0);
    });
  }

  async offlineDevice(dev: string, temporary = false): Promise<void> {
    return this.serial(async () => {
      const leaf = this.find(dev);
      admin.offline(this.pool.vdevs, leaf, temporary);
      this.recordDtl(leaf);
      await this.commit(`pool offline ${temporary ? '-t ' : ''}${this.pool.name} ${leaf.path}`);
    });
  }

  async onlineDevice(dev: string): Promise<void> {
    return this.serial(async () => {
      const leaf = this.find(dev);
      if (leaf.state === 'ONLINE') return;
      await admin.online(this.pool.vdevs, leaf);
      if (!leafUsable(leaf.state)) throw err.nxio(`cannot online ${leaf.path}: device is ${leaf.state}`);
      const from = await this.markReturning(leaf);
      await this.commit(`pool online ${this.pool.name} ${leaf.path}`);
      if (from !== null) this.startResilver(from);
    });
  }

  async clearDevice(dev?: string): Promise<void> {
    return this.serial(async () => {
      const leaf = dev === undefined ? undefined : this.find(dev);
      const before = new Map([...this.pool.leaves()].map((l) => [l, l.state]));
      await admin.clear(this.pool.vdevs, leaf);
      if (!leaf) this.pool.scanPersist.errlog = [];
      let from: number | null = null;
      for (const [l, s] of before) {
        if (!leafUsable(s) && leafUsable(l.state)) {
          const f = await this.markReturning(l);
          if (f !== null) from = from === null ? f : Math.min(from, f);
        }
      }
      await this.commit(`pool clear ${this.pool.name}${leaf ? ' ' + leaf.path : ''}`);
      if (from !== null) this.startResilver(from);
    });
  }

  /** A device is back: mark it stale in its top-level; resolves to the birth txg to resilver from (null: nothing to do). */
  async markReturning(leaf: Leaf): Promise<number | null> {
    const place = admin.locate(this.pool.vdevs, leaf);
    const top = place.top;
    let from = this.pool.scanPersist.dtl[leaf.guid];
    if (from === undefined) {
      // No record: the device's own newest uberblock of this pool says what it has.
      try {
        const { uberblocks } = await readLabels(leaf);
        const mine = uberblocks.filter((u) => u.poolGuid === BigInt('0x' + this.pool.guid)).map((u) => u.txg);
        from = mine.length ? Math.max(...mine) : 0;
      } catch {
        from = 0;
      }
    }
    if (from >= this.pool.txg.synced) {
      delete this.pool.scanPersist.dtl[leaf.guid];
      return null;
    }
    if (place.composite) place.composite.stale.add(leaf);
    else if ((top instanceof MirrorVdev || top instanceof RaidzVdev) && top.setResilvering) top.setResilvering(place.child, true);
    else return null; // a lone device has nothing to copy from
    this.pool.scanPersist.dtl[leaf.guid] = from;
    return from;
  }

  private recordDtl(leaf: Leaf): void {
    const cur = this.pool.scanPersist.dtl[leaf.guid];
    const t = this.pool.txg.synced;
    this.pool.scanPersist.dtl[leaf.guid] = cur === undefined ? t : Math.min(cur, t);
  }

  /** Lowest birth txg any stale device still needs (0 when a new device is waiting). */
  private resilverFloor(): number {
    let floor = Infinity;
    const staleLeaves: Leaf[] = [];
    for (const t of this.pool.vdevs.tops) {
      if (t instanceof MirrorVdev || t instanceof RaidzVdev) {
        for (const c of t.resilveringChildren()) staleLeaves.push(c);
        for (const c of t.children) if (c instanceof ReplacingLeaf) staleLeaves.push(...c.stale);
      }
    }
    for (const l of staleLeaves) floor = Math.min(floor, this.pool.scanPersist.dtl[l.guid] ?? 0);
    return floor === Infinity ? 0 : floor;
  }

  /** Start (or restart, from the lower bound) a resilver. */
  startResilver(minBirth: number): void {
    const s = this.scanner.state;
    const floor = Math.min(minBirth, this.resilverFloor());
    if (s && s.state === 'scanning' && this.scanner.running()) {
      // Restart from the start so the newly stale device gets everything (ZFS restarts too).
      void this.scanner.halt().then(() => this.scanner.start('resilver', s.func === 'resilver' ? Math.min(s.minBirth, floor) : floor));
      return;
    }
    this.scanner.start('resilver', floor);
  }

  private async afterResilver(): Promise<void> {
    if (admin.needsResilver(this.pool.vdevs)) this.startResilver(this.resilverFloor());
  }

  private kickSpares(): void {
    if (this.pool.closed || this.pool.closing) return;
    const needs = this.pool.leaves().some((l) => l.state === 'FAULTED' || l.state === 'REMOVED' || l.state === 'UNAVAIL');
    if (!needs || admin.availableSpares(this.pool.vdevs).length === 0) return;
    void this.serial(() => this.activateSpares()).catch(() => {});
  }

  /** Put available hot spares in for failed devices. */
  private async activateSpares(): Promise<void> {
    let any = false;
    for (const l of this.pool.leaves()) {
      if (!(l.state === 'FAULTED' || l.state === 'REMOVED' || l.state === 'UNAVAIL')) continue;
      if (admin.availableSpares(this.pool.vdevs).length === 0) break;
      try {
        if (admin.activateSpare(this.pool.vdevs, l)) any = true;
      } catch {
        // Not replaceable (already being replaced, lone device): skip.
      }
    }
    if (any) {
      await this.commit(`pool spare activated ${this.pool.name}`);
      this.startResilver(0);
    }
  }

  // ------------------------------------------------------------ scans

  async scrub(op: 'start' | 'pause' | 'stop' = 'start'): Promise<void> {
    return this.serial(async () => {
      if (op === 'pause') return this.scanner.pause();
      if (op === 'stop') return this.scanner.cancel();
      const s = this.scanner.state;
      if (s && s.state === 'scanning' && s.func === 'scrub' && s.paused) {
        this.scanner.resume();
        this.pool.txg.markDirty(0);
        return;
      }
      this.scanner.start('scrub', 0);
      await this.pool.txg.syncNow();
    });
  }

  /** Wait until no scan runs (finished, canceled, paused); a resilver that starts another waits for that too. */
  async wait(): Promise<void> {
    for (;;) {
      await this.scanner.wait();
      await this.busy;
      if (!this.scanner.running()) {
        // A resilver's end may start another (a device attached meanwhile).
        await new Promise((r) => setImmediate(r));
        if (!this.scanner.running()) return;
      }
    }
  }

  // ------------------------------------------------------------ reports

  status(verbose = false): PoolStatus {
    const pool = this.pool;
    const tree = pool.vdevs;
    const config = statusTree(tree, pool.name);
    const s = this.scanner.state;
    const scan: ScanStatus | null = s ? { ...s, ...this.scanner.progress(), running: this.scanner.running() } : null;
    const leaves = pool.leaves();
    let status: string | null = null;
    let action: string | null = null;
    const errlog = pool.scanPersist.errlog;
    const stale = admin.needsResilver(tree);
    if (errlog.length) {
      status = 'One or more devices has experienced an error resulting in data corruption.  Applications may be affected.';
      action = "Restore the affected volumes from backup if possible. Otherwise restore the entire pool from backup.";
    } else if (stale && s?.func === 'resilver' && s.state === 'scanning') {
      status = 'One or more devices is currently being resilvered.  The pool will continue to function, possibly in a degraded state.';
      action = 'Wait for the resilver to complete.';
    } else if (leaves.some((l) => l.state === 'UNAVAIL' || l.state === 'REMOVED' || l.state === 'FAULTED')) {
      status =
        tree.state() === 'UNAVAIL'
          ? 'One or more devices could not be opened.  There are insufficient replicas for the pool to continue functioning.'
          : 'One or more devices could not be used because the label is missing or invalid, or the device faulted.  Sufficient replicas exist for the pool to continue functioning in a degraded state.';
      action = "Replace the device using 'strata pool replace'.";
    } else if (leaves.some((l) => l.state === 'OFFLINE')) {
      status = 'One or more devices has been taken offline by the administrator.  Sufficient replicas exist for the pool to continue functioning in a degraded state.';
      action = "Online the device using 'strata pool online' or replace the device with 'strata pool replace'.";
    } else if (leaves.some((l) => l.errors.read || l.errors.write || l.errors.cksum)) {
      status = 'One or more devices has experienced an unrecoverable error.  An attempt was made to correct the error.  Applications are unaffected.';
      action = "Determine if the device needs to be replaced, and clear the errors using 'strata pool clear' or replace the device with 'strata pool replace'.";
    }
    const out: PoolStatus = {
      name: pool.name,
      state: tree.state(),
      status,
      action,
      scan,
      config,
      errorCount: errlog.length,
      suspended: pool.txg.suspended?.message ?? null,
    };
    if (verbose) out.errlog = errlog.map((e) => ({ ...e, offset: e.blkid * e.blockSize, length: e.span * e.blockSize }));
    return out;
  }

  /** SIZE/ALLOC/FREE in usable bytes: raidz parity deflated with the ratio of a 128K block, so padding of small blocks shows as used space. */
  space(): { size: number; alloc: number; free: number } {
    const pool = this.pool;
    let size = 0;
    let alloc = 0;
    let rawCap = 0;
    for (const t of pool.vdevs.dataTops()) {
      const ratio = 131072 / t.asize(131072);
      const a = pool.alloc.allocators[t.id];
      size += Math.floor(t.capacity * ratio);
      rawCap += t.capacity;
      if (a) alloc += a.allocatedBytes() * ratio;
    }
    const avgRatio = rawCap ? size / rawCap : 1;
    // Deferred frees and the metadata reserve (space held for the next syncs, io/allocate.ts) are not data.
    alloc = Math.max(0, Math.round(alloc - (pool.alloc.pendingFrees() + pool.alloc.heldForMeta()) * avgRatio));
    return { size, alloc, free: Math.max(0, size - alloc) };
  }

  iostat(): IostatRow[] {
    const pool = this.pool;
    const rows: IostatRow[] = [];
    const sum = (ls: Leaf[]) => {
      const r = { readOps: 0, writeOps: 0, readBytes: 0, writeBytes: 0 };
      for (const l of ls) {
        const st = l.stats;
        if (!st) continue;
        r.readOps += st.readOps;
        r.writeOps += st.writeOps;
        r.readBytes += st.readBytes;
        r.writeBytes += st.writeBytes;
      }
      return r;
    };
    const sp = this.space();
    rows.push({ name: pool.name, depth: 0, alloc: sp.alloc, free: sp.free, ...sum(pool.leaves()) });
    const cfg = statusTree(pool.vdevs, pool.name);
    const visit = (row: PoolStatusTree['pool'], depth: number, topId?: number): void => {
      const leaves = collectLeaves(pool, row);
      let alloc: number | null = null;
      let free: number | null = null;
      if (topId !== undefined) {
        const t = pool.vdevs.tops.find((x) => x.id === topId);
        const a = pool.alloc.allocators[topId];
        if (t && a) {
          alloc = a.allocatedBytes();
          free = t.capacity - alloc;
        }
      }
      rows.push({ name: row.name, depth, alloc, free, ...sum(leaves) });
      for (const c of row.children) visit(c, depth + 1);
    };
    cfg.pool.children.forEach((c, i) => visit(c, 1, pool.vdevs.dataTops()[i]?.id));
    return rows;
  }
}

function collectLeaves(pool: Pool, row: PoolStatusTree['pool']): Leaf[] {
  if (row.path !== undefined) {
    const l = pool.vdevs.findLeaf(row.guid);
    return l ? [l] : [];
  }
  return row.children.flatMap((c) => collectLeaves(pool, c));
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}
