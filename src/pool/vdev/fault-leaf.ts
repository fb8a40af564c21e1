/**
 * FaultLeaf: a Leaf wrapper that injects failures, for tests (and a future
 * `fault` device filter). It behaves as a real leaf with its own counters and
 * state policy (AbstractLeaf), delegating good I/O to the wrapped leaf.
 *
 * Faults are rules matched against each I/O:
 *  - 'error': the I/O fails (EIO) — a media error;
 *  - 'gone':  the I/O fails with ENXIO — the device was pulled (-> REMOVED);
 *  - 'lie':   reads succeed but return wrong bytes inside the rule's range
 *             (the wrapped device is untouched: a lying disk / bit rot in
 *             flight); writes succeed but are silently dropped (a phantom
 *             write: the old contents stay).
 * A rule matches I/O overlapping [offset, offset+length) (whole device by
 * default), with a probability drawn from a seeded PRNG so failing tests
 * replay, and optionally only `count` times.
 */
import { AbstractLeaf, type LeafPolicy } from './leaf-base.js';
import type { Leaf, VdevState } from './types.js';

export interface FaultRule {
  op: 'read' | 'write' | 'sync';
  kind: 'error' | 'gone' | 'lie';
  offset?: number;
  length?: number;
  /** Chance that a matching I/O is hit (default 1). */
  probability?: number;
  /** Stop after this many hits (default unlimited). */
  count?: number;
}

export interface FaultLeafOptions extends LeafPolicy {
  /** PRNG seed (default 1). */
  seed?: number;
}

export class FaultLeaf extends AbstractLeaf {
  private rules: (FaultRule & { hits: number })[] = [];
  private rng: () => number;
  /** How many I/Os each kind of fault hit. */
  readonly injected = { error: 0, gone: 0, lie: 0 };

  constructor(
    readonly inner: Leaf,
    opts: FaultLeafOptions = {},
  ) {
    super(inner.guid, inner.path, inner.size, inner.state, opts);
    this.rng = mulberry32(opts.seed ?? 1);
  }

  inject(rule: FaultRule): this {
    this.rules.push({ ...rule, hits: 0 });
    return this;
  }

  clearFaults(): void {
    this.rules = [];
  }

  /** The first rule that fires for this I/O (consuming one of its hits). */
  private fire(op: FaultRule['op'], offset: number, length: number): FaultRule | undefined {
    for (const r of this.rules) {
      if (r.op !== op) continue;
      if (r.count !== undefined && r.hits >= r.count) continue;
      const lo = r.offset ?? 0;
      const hi = r.length === undefined ? Infinity : lo + r.length;
      if (op !== 'sync' && (offset + length <= lo || offset >= hi)) continue;
      if (r.probability !== undefined && this.rng() >= r.probability) continue;
      r.hits++;
      this.injected[r.kind]++;
      return r;
    }
    return undefined;
  }

  private static fail(kind: 'error' | 'gone', what: string): never {
    throw Object.assign(new Error(`injected ${kind === 'gone' ? 'ENXIO' : 'EIO'} on ${what}`), { code: kind === 'gone' ? 'ENXIO' : 'EIO' });
  }

  protected async doRead(offset: number, length: number): Promise<Buffer> {
    const r = this.fire('read', offset, length);
    if (r && r.kind !== 'lie') FaultLeaf.fail(r.kind, `read at ${offset}`);
    const data = await this.inner.pread(offset, length);
    if (r?.kind === 'lie') {
      // Corrupt a copy, within the rule's range, a few bytes at random.
      const out = Buffer.from(data);
      const lo = Math.max(offset, r.offset ?? 0) - offset;
      const hi = Math.min(offset + length, r.length === undefined ? Infinity : (r.offset ?? 0) + r.length) - offset;
      const flips = 1 + Math.floor(this.rng() * 8);
      for (let i = 0; i < flips; i++) {
        const at = lo + Math.floor(this.rng() * (hi - lo));
        out[at] = out[at]! ^ (1 + Math.floor(this.rng() * 255));
      }
      return out;
    }
    return data;
  }

  protected async doWrite(offset: number, data: Buffer[]): Promise<void> {
    let length = 0;
    for (const b of data) length += b.length;
    const r = this.fire('write', offset, length);
    if (r?.kind === 'lie') return; // phantom write
    if (r) FaultLeaf.fail(r.kind, `write at ${offset}`);
    await this.inner.pwrite(offset, data);
  }

  protected async doSync(): Promise<void> {
    const r = this.fire('sync', 0, 0);
    if (r?.kind === 'lie') return; // a flush that flushes nothing
    if (r) FaultLeaf.fail(r.kind, 'fsync');
    await this.inner.fsync();
  }

  async reopen(): Promise<VdevState> {
    if (this.state === 'OFFLINE') return this.state;
    const s = this.inner.reopen ? await this.inner.reopen() : this.inner.state;
    this.resetFailures();
    this.state = s;
    return s;
  }

  async close(): Promise<void> {
    // Closing is not a failure: nobody is told the device went away.
    this.onStateChange = undefined;
    if (this.state !== 'OFFLINE') this.state = 'UNAVAIL';
    await this.inner.close();
  }
}

/** Small seeded PRNG (mulberry32): deterministic fault patterns. */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
