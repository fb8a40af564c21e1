/**
 * The in-memory model of snapshots (every snapmode), shared by the property-based
 * test (model.test.ts, in-process) and the crash child (crash-child.mjs, a
 * separate process that is SIGKILLed).
 *
 * Ops are plain JSON with indices (`v`, `s`) that resolve against the
 * model's current state, so a random op list always means something. A
 * resolved *action* names concrete datasets; the model says what it
 * expects (null = success, else the error code) and applies it on success;
 * the engine runs the same action through PoolManager.
 *
 * Expected semantics are ZFS's:
 *  - snapshot: duplicate -> EEXIST, bad name -> EINVAL.
 *  - rollback to a snapshot with later ones: EEXIST without -r; with -r the
 *    later ones go, unless one is held or cloned (EBUSY).
 *  - destroy snapshot: held -> EBUSY; cloned -> EBUSY unless -R, which
 *    destroys every dependent clone (transitively); held anywhere -> EBUSY.
 *  - destroy volume: with snapshots -> EBUSY unless -r; cloned or held
 *    snapshots -> EBUSY.
 *  - promote: not a clone -> EINVAL; snapshot name clash -> EEXIST.
 *  - rename: target exists -> EEXIST; bad name -> EINVAL.
 *  - hold: tag exists -> EEXIST; release: no such tag -> ENOENT.
 *  - reset to origin: not a clone -> EINVAL; the clone has snapshots -> EBUSY.
 *
 * The model takes the run's snapshot strategy (`snapmode`, src/snapshot);
 * every volume of a run is created with it, and clones inherit it. On top
 * of the rules above:
 *  - cow: clone -> ENOTSUP (so there are no clones; promote and reset to
 *    origin are EINVAL, "not a clone").
 *  - row: promote of a clone -> ENOTSUP (of a non-clone EINVAL, as native).
 *  - cow and row: resize of a volume that has snapshots -> ENOTSUP; row:
 *    shrinking a clone below its origin's size -> ENOTSUP.
 */

export const POOL = 'tank';
export const MAX_VOLUMES = 6;
export const SNAP_NAMES = ['a', 'b', 'c', 'd', 'e', 'f'];
export const BAD_SNAP_NAMES = ['has space', 'x/y', ''];

/** Deterministic bytes for a write (xorshift32 from the seed). */
export function opData(seed, length) {
  const b = Buffer.allocUnsafe(length);
  let x = seed >>> 0 || 1;
  let i = 0;
  for (; i + 4 <= length; i += 4) {
    x ^= x << 13; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    b.writeUInt32LE(x, i);
  }
  for (; i < length; i++) {
    x ^= x << 13; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    b[i] = x & 0xff;
  }
  return b;
}

let snapIds = 0;

export const MODES = ['native', 'cow', 'row'];

export class Model {
  /** @param {'native'|'cow'|'row'} mode the snapmode of every volume of the run */
  constructor(mode = 'native') {
    if (!MODES.includes(mode)) throw new Error(`model: unknown snapmode ${mode}`);
    this.mode = mode;
    /** name -> { bs, size, data, snaps: Snap[], origin: Snap | null } ; Snap = { id, name, data, holds: Set } */
    this.vols = new Map();
    this.counter = 0;
  }

  clone() {
    const m = new Model(this.mode);
    m.counter = this.counter;
    const snapMap = new Map();
    const cs = (s) => {
      if (!snapMap.has(s)) snapMap.set(s, { id: s.id, name: s.name, data: s.data, holds: new Set(s.holds) });
      return snapMap.get(s);
    };
    for (const [n, v] of this.vols) m.vols.set(n, { bs: v.bs, size: v.size, data: Buffer.from(v.data), snaps: v.snaps.map(cs), origin: null });
    for (const [n, v] of this.vols) if (v.origin) m.vols.get(n).origin = cs(v.origin);
    return m;
  }

  volNames() {
    return [...this.vols.keys()].sort();
  }

  /** Every snapshot as [full name, snap, dataset name], sorted by name. */
  snapList() {
    const out = [];
    for (const [n, v] of this.vols) for (const s of v.snaps) out.push([`${n}@${s.name}`, s, n]);
    return out.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  }

  ownerOf(snap) {
    for (const [n, v] of this.vols) if (v.snaps.includes(snap)) return n;
    throw new Error('model: orphan snapshot');
  }

  fullName(snap) {
    return `${this.ownerOf(snap)}@${snap.name}`;
  }

  clonesOf(snap) {
    return [...this.vols.entries()].filter(([, v]) => v.origin === snap).map(([n]) => n).sort();
  }

  /** Resolve an abstract op to a concrete action, or null when it cannot apply (nothing to act on). */
  resolve(op) {
    const vols = this.volNames();
    const snaps = this.snapList();
    const vol = () => (vols.length ? vols[op.v % vols.length] : null);
    const snap = () => (snaps.length ? snaps[op.s % snaps.length][0] : null);
    switch (op.t) {
      case 'create': {
        if (this.vols.size >= MAX_VOLUMES) return null;
        const a = { k: 'create', name: `${POOL}/v${this.counter}`, size: op.size, bs: op.bs };
        if (this.mode !== 'native') a.mode = this.mode;
        return a;
      }
      case 'write': {
        const n = vol();
        if (!n) return null;
        const size = this.vols.get(n).size;
        const len = Math.min(op.len, size);
        const off = Math.min(Math.floor(op.off * size), size - len);
        return { k: op.z ? (op.trim ? 'trim' : 'zero') : 'write', name: n, off, len, seed: op.seed };
      }
      case 'snap': {
        const n = vol();
        if (!n) return null;
        return { k: 'snap', name: `${n}@${op.bad !== undefined ? BAD_SNAP_NAMES[op.bad % BAD_SNAP_NAMES.length] : SNAP_NAMES[op.n % SNAP_NAMES.length]}` };
      }
      case 'clone': {
        const s = snap();
        if (!s || this.vols.size >= MAX_VOLUMES) return null;
        return { k: 'clone', snap: s, name: `${POOL}/c${this.counter}` };
      }
      case 'promote': {
        const n = vol();
        return n ? { k: 'promote', name: n } : null;
      }
      case 'reset': {
        const n = vol();
        return n ? { k: 'reset', name: n } : null;
      }
      case 'resize': {
        const n = vol();
        if (!n) return null;
        const v = this.vols.get(n);
        const size = Math.max(v.bs, Math.min(4 << 20, Math.round((v.size * op.f) / v.bs) * v.bs));
        return { k: 'resize', name: n, size };
      }
      case 'rollback': {
        const s = snap();
        return s ? { k: 'rollback', snap: s, r: !!op.r } : null;
      }
      case 'dsnap': {
        const s = snap();
        if (!s) return null;
        if (!op.span) return { k: 'dsnap', snap: s, R: !!op.R };
        // A range `ds@a%b` of neighbours (one pass over their dead lists in the engine).
        const owner = this.ownerOf(this.findSnap(s));
        const list = this.vols.get(owner).snaps;
        const i = list.indexOf(this.findSnap(s));
        const j = Math.min(list.length - 1, i + op.span);
        return { k: 'dsnap', snap: `${owner}@${list[i].name}%${list[j].name}`, R: !!op.R };
      }
      case 'dvol': {
        const n = vol();
        return n ? { k: 'dvol', name: n, r: !!op.r } : null;
      }
      case 'rsnap': {
        const s = snap();
        return s ? { k: 'rsnap', snap: s, to: op.bad !== undefined ? BAD_SNAP_NAMES[op.bad % BAD_SNAP_NAMES.length] : SNAP_NAMES[op.n % SNAP_NAMES.length] } : null;
      }
      case 'rvol': {
        const n = vol();
        return n ? { k: 'rvol', name: n, to: `${POOL}/r${op.n % 4}` } : null;
      }
      case 'hold':
      case 'release': {
        const s = snap();
        return s ? { k: op.t, snap: s, tag: op.tag } : null;
      }
      case 'reopen':
        return { k: 'reopen', how: op.how ?? 'close' };
      case 'check':
        return { k: 'check' };
      default:
        throw new Error(`model: unknown op ${op.t}`);
    }
  }

  /** `ds@a` or the inclusive range `ds@a%b`. */
  expand(spec) {
    const at = spec.indexOf('@');
    const v = this.vols.get(spec.slice(0, at));
    const [a, b] = spec.slice(at + 1).split('%');
    const i = v.snaps.findIndex((s) => s.name === a);
    const j = b === undefined ? i : v.snaps.findIndex((s) => s.name === b);
    return v.snaps.slice(i, j + 1);
  }

  findSnap(full) {
    const at = full.indexOf('@');
    const v = this.vols.get(full.slice(0, at));
    return v?.snaps.find((s) => s.name === full.slice(at + 1));
  }

  /** Apply an action: returns null (success) or the expected error code (and then changes nothing). */
  apply(a) {
    const validSnap = (n) => /^[A-Za-z0-9_.:-]+$/.test(n);
    switch (a.k) {
      case 'create':
        this.counter++;
        this.vols.set(a.name, { bs: a.bs, size: a.size, data: Buffer.alloc(a.size), snaps: [], origin: null });
        return null;
      case 'write':
        opData(a.seed, a.len).copy(this.vols.get(a.name).data, a.off);
        return null;
      case 'zero':
      case 'trim':
        this.vols.get(a.name).data.fill(0, a.off, a.off + a.len);
        return null;
      case 'snap': {
        const at = a.name.indexOf('@');
        const v = this.vols.get(a.name.slice(0, at));
        const sn = a.name.slice(at + 1);
        if (!validSnap(sn)) return 'EINVAL';
        if (v.snaps.some((s) => s.name === sn)) return 'EEXIST';
        v.snaps.push({ id: ++snapIds, name: sn, data: Buffer.from(v.data), holds: new Set() });
        return null;
      }
      case 'clone': {
        if (this.mode === 'cow') return 'ENOTSUP';
        const s = this.findSnap(a.snap);
        this.counter++;
        this.vols.set(a.name, { bs: this.vols.get(this.ownerOf(s)).bs, size: s.data.length, data: Buffer.from(s.data), snaps: [], origin: s });
        return null;
      }
      case 'clones': {
        // One `clone SNAP T1 T2 ...` call (a template batch): all or nothing.
        if (this.mode === 'cow') return 'ENOTSUP';
        const s = this.findSnap(a.snap);
        if (!s) return 'ENOENT';
        if (a.names.some((n) => this.vols.has(n)) || new Set(a.names).size !== a.names.length) return 'EEXIST';
        const bs = this.vols.get(this.ownerOf(s)).bs;
        for (const n of a.names) this.vols.set(n, { bs, size: s.data.length, data: Buffer.from(s.data), snaps: [], origin: s });
        return null;
      }
      case 'resize': {
        const v = this.vols.get(a.name);
        if (this.mode !== 'native' && v.snaps.length) return 'ENOTSUP';
        // A row clone reads its origin's layers: it may grow, not shrink below the origin's size.
        if (this.mode === 'row' && v.origin && a.size < v.origin.data.length) return 'ENOTSUP';
        const d = Buffer.alloc(a.size);
        v.data.copy(d, 0, 0, Math.min(a.size, v.data.length));
        v.data = d;
        v.size = a.size;
        return null;
      }
      case 'promote': {
        const c = this.vols.get(a.name);
        if (!c.origin) return 'EINVAL';
        if (this.mode === 'row') return 'ENOTSUP';
        const oName = this.ownerOf(c.origin);
        const o = this.vols.get(oName);
        const i = o.snaps.indexOf(c.origin);
        const moved = o.snaps.slice(0, i + 1);
        if (moved.some((s) => c.snaps.some((x) => x.name === s.name))) return 'EEXIST';
        const S = c.origin;
        o.snaps = o.snaps.slice(i + 1);
        c.snaps = moved.concat(c.snaps);
        c.origin = o.origin;
        o.origin = S;
        return null;
      }
      case 'reset': {
        const v = this.vols.get(a.name);
        if (!v.origin) return 'EINVAL';
        if (v.snaps.length) return 'EBUSY';
        v.data = Buffer.from(v.origin.data);
        v.size = v.data.length;
        return null;
      }
      case 'rollback': {
        const s = this.findSnap(a.snap);
        const v = this.vols.get(this.ownerOf(s));
        const later = v.snaps.slice(v.snaps.indexOf(s) + 1);
        if (later.length && !a.r) return 'EEXIST';
        if (later.some((x) => x.holds.size || this.clonesOf(x).length)) return 'EBUSY';
        v.snaps = v.snaps.slice(0, v.snaps.indexOf(s) + 1);
        v.data = Buffer.from(s.data);
        v.size = s.data.length;
        return null;
      }
      case 'dsnap': {
        const targets = this.expand(a.snap);
        if (targets.some((s) => s.holds.size)) return 'EBUSY';
        const direct = targets.flatMap((s) => this.clonesOf(s));
        if (direct.length && !a.R) return 'EBUSY';
        // Every dependent clone, transitively (clones of the clones' snapshots too).
        const gone = new Set();
        const visit = (n) => {
          if (gone.has(n)) return;
          gone.add(n);
          for (const x of this.vols.get(n).snaps) for (const c of this.clonesOf(x)) visit(c);
        };
        for (const c of direct) visit(c);
        for (const n of gone) if (this.vols.get(n).snaps.some((x) => x.holds.size)) return 'EBUSY';
        for (const n of gone) this.vols.delete(n);
        const v = this.vols.get(this.ownerOf(targets[0]));
        v.snaps = v.snaps.filter((x) => !targets.includes(x));
        return null;
      }
      case 'dvol': {
        const v = this.vols.get(a.name);
        if (v.snaps.length && !a.r) return 'EBUSY';
        if (v.snaps.some((x) => x.holds.size || this.clonesOf(x).length)) return 'EBUSY';
        this.vols.delete(a.name);
        return null;
      }
      case 'rsnap': {
        const s = this.findSnap(a.snap);
        const v = this.vols.get(this.ownerOf(s));
        if (!validSnap(a.to)) return 'EINVAL';
        if (v.snaps.some((x) => x.name === a.to)) return 'EEXIST';
        s.name = a.to;
        return null;
      }
      case 'rvol': {
        if (this.vols.has(a.to)) return 'EEXIST';
        const v = this.vols.get(a.name);
        this.vols.delete(a.name);
        this.vols.set(a.to, v);
        return null;
      }
      case 'hold': {
        const s = this.findSnap(a.snap);
        if (s.holds.has(a.tag)) return 'EEXIST';
        s.holds.add(a.tag);
        return null;
      }
      case 'release': {
        const s = this.findSnap(a.snap);
        if (!s.holds.has(a.tag)) return 'ENOENT';
        s.holds.delete(a.tag);
        return null;
      }
      case 'reopen':
      case 'check':
        return null;
      default:
        throw new Error(`model: unknown action ${a.k}`);
    }
  }
}

/**
 * Run an action against the engine through a PoolManager. Returns the
 * StorageError code it failed with, or null. Non-storage errors propagate.
 * `ctx` = { mgr, Volume } (Volume from dist or src).
 */
export async function execute(ctx, a) {
  const { mgr } = ctx;
  try {
    switch (a.k) {
      case 'create':
        await mgr.create(a.name, { volsize: String(a.size), blocksize: String(a.bs), sparse: true, ...(a.mode ? { props: { snapmode: a.mode } } : {}) });
        break;
      case 'write':
      case 'zero':
      case 'trim': {
        const { volume, release } = await mgr.openVolume(a.name);
        try {
          if (a.k === 'write') await volume.write(a.off, opData(a.seed, a.len));
          else if (a.k === 'zero') await volume.writeZeroes(a.off, a.len);
          else await volume.trim(a.off, a.len);
          if (ctx.flushWrites) await volume.flush();
        } finally {
          release();
        }
        break;
      }
      case 'snap':
        await mgr.snapshot([a.name]);
        break;
      case 'clone':
        await mgr.clone(a.snap, [a.name]);
        break;
      case 'clones':
        await mgr.clone(a.snap, a.names);
        break;
      case 'promote':
        await mgr.promote(a.name);
        break;
      case 'reset':
        await mgr.rollbackToOrigin(a.name, { force: true });
        break;
      case 'resize':
        await mgr.set(a.name, { volsize: String(a.size) });
        break;
      case 'rollback':
        await mgr.rollback(a.snap, { recursive: a.r, force: true });
        break;
      case 'dsnap':
        await mgr.destroySnapshots(a.snap, { recursiveClones: a.R, force: true });
        break;
      case 'dvol':
        await mgr.destroy(a.name, { recursive: a.r, force: true });
        break;
      case 'rsnap':
        await mgr.rename(a.snap, a.to);
        break;
      case 'rvol':
        await mgr.rename(a.name, a.to);
        break;
      case 'hold':
        await mgr.hold(a.tag, [a.snap]);
        break;
      case 'release':
        await mgr.release(a.tag, [a.snap]);
        break;
      case 'reopen':
      case 'check':
        break; // handled by the caller
      default:
        throw new Error(`unknown action ${a.k}`);
    }
    return null;
  } catch (e) {
    if (e && typeof e === 'object' && e.name === 'StorageError' && typeof e.code === 'string') {
      if (e.code === 'EIO' || e.code === 'EFAULT') throw e;
      return e.code;
    }
    throw e;
  }
}

/** A seeded random op (for the crash child; the in-process test uses fast-check arbitraries of the same shape). */
export function randomOp(r, opts = {}) {
  const kinds = opts.kinds ?? ['create', 'write', 'write', 'write', 'write', 'snap', 'snap', 'clone', 'promote', 'rollback', 'dsnap', 'dvol', 'rsnap', 'rvol', 'hold', 'release'];
  const t = kinds[r.below(kinds.length)];
  const v = r.below(16);
  const s = r.below(64);
  switch (t) {
    case 'create':
      return { t, size: [1, 2][r.below(2)] << 20, bs: [4096, 8192, 16384][r.below(3)] };
    case 'write':
      return { t, v, off: r.below(1000) / 1000, len: 1 + r.below(96 * 1024), seed: r.next(), z: r.below(5) === 0, trim: r.below(2) === 0 };
    case 'snap':
      return r.below(12) === 0 ? { t, v, bad: r.below(3) } : { t, v, n: r.below(6) };
    case 'rsnap':
      return { t, s, n: r.below(6) };
    case 'rvol':
      return { t, v, n: r.below(4) };
    case 'rollback':
      return { t, s, r: r.below(2) === 0 };
    case 'dsnap':
      return { t, s, R: opts.noRecursiveClones ? false : r.below(3) === 0, span: r.below(3) === 0 ? 1 + r.below(4) : 0 };
    case 'dvol':
      return { t, v, r: r.below(3) !== 0 };
    case 'hold':
    case 'release':
      return { t, s, tag: ['keep', 'backup'][r.below(2)] };
    default:
      return { t, v, s };
  }
}

export function rng(seed) {
  let x = seed >>> 0 || 1;
  const next = () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>>= 0);
  };
  return { next, below: (n) => next() % n };
}

/**
 * What both crash children (this folder's and test/snapshot's) run on:
 * PoolManager on pool `tank` of `home`, from the build in `dist`, a model of
 * `mode`, and act(a, tag): journal `B <tag><action>` durably, run the action
 * with flushed writes, check the engine's answer against the model (exit 3
 * on a mismatch), journal `D <tag><answer>` durably and print `done N`. A
 * `D` line therefore means the action is durable; a `B` without its `D` may
 * or may not have happened.
 */
export async function crashRunner({ dist, home, journal, mode }) {
  const { closeSync, fsyncSync, openSync, writeSync } = await import('node:fs');
  const { join } = await import('node:path');
  const { pathToFileURL } = await import('node:url');
  const { PoolManager } = await import(pathToFileURL(join(dist, 'src/daemon/services.js')).href);
  const fd = openSync(journal, 'a');
  const log = (line) => {
    writeSync(fd, line + '\n');
    fsyncSync(fd);
  };
  const mgr = new PoolManager(home, { txgTimeoutMs: 60_000 });
  await mgr.pool(POOL);
  const model = new Model(mode);
  let done = 0;
  return {
    mgr,
    model,
    /** Actions completed so far. */
    get done() {
      return done;
    },
    async act(a, tag = '') {
      log(`B ${tag}${JSON.stringify(a)}`);
      const expected = model.apply(a);
      const got = await execute({ mgr, flushWrites: true }, a);
      if (got !== expected) {
        process.stderr.write(`model mismatch at ${JSON.stringify(a)}: engine ${got}, model ${expected}\n`);
        process.exit(3);
      }
      log(`D ${tag}${JSON.stringify(got)}`);
      process.stdout.write(`done ${++done}\n`);
      return got;
    },
    closeJournal: () => closeSync(fd),
  };
}
