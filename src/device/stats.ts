/**
 * StatsDevice: a filter that counts what passes through a BlockDevice: ops
 * and errors per kind, bytes read and written, and a latency histogram per
 * kind (log2 buckets in microseconds). One instance per export, shared by
 * every connection to it; snapshot() is cheap and safe to call any time
 * (the API and metrics read it).
 */
import type { BlockDevice, BlockDeviceInfo, Extent, WriteOptions, ZeroOptions } from './block-device.js';

export type OpKind = 'read' | 'write' | 'writeZeroes' | 'trim' | 'flush' | 'blockStatus' | 'cache';
export const OP_KINDS: readonly OpKind[] = ['read', 'write', 'writeZeroes', 'trim', 'flush', 'blockStatus', 'cache'];

/** Bucket i counts ops that took < 2^i microseconds (the last bucket is open-ended). */
export const LATENCY_BUCKETS = 28;

export interface OpStats {
  ops: number;
  errors: number;
  /** Bytes moved (read, write) or affected (writeZeroes, trim, cache, blockStatus queried). */
  bytes: number;
  /** Sum of latencies in microseconds, for averages. */
  totalUs: number;
  /** counts[i]: ops that finished in [2^(i-1), 2^i) µs; counts[0] is < 1 µs. */
  latencyUs: number[];
}

export interface DeviceStatsSnapshot {
  ops: number;
  errors: number;
  bytesRead: number;
  bytesWritten: number;
  byOp: Record<OpKind, OpStats>;
}

function emptyOp(): OpStats {
  return { ops: 0, errors: 0, bytes: 0, totalUs: 0, latencyUs: new Array(LATENCY_BUCKETS).fill(0) };
}

/** The mutable counters behind a StatsDevice; several devices may share one (same export, reopened volume). */
export type StatsCounters = Record<OpKind, OpStats>;

export function newStatsCounters(): StatsCounters {
  return Object.fromEntries(OP_KINDS.map((k) => [k, emptyOp()])) as StatsCounters;
}

/** f()'s promise; a synchronous throw becomes a rejection (counted as an error like any other). */
function call<T>(f: () => Promise<T>): Promise<T> {
  try {
    return f();
  } catch (e) {
    return Promise.reject(e);
  }
}

export class StatsDevice implements BlockDevice {
  private readonly byOp: StatsCounters;

  /** Pass `counters` to keep counting into an existing set (e.g. per export name across reopenings). */
  constructor(
    private readonly inner: BlockDevice,
    counters?: StatsCounters,
  ) {
    this.byOp = counters ?? newStatsCounters();
  }

  private record(kind: OpKind, bytes: number, start: number, ok: boolean): void {
    const s = this.byOp[kind];
    const us = (performance.now() - start) * 1000;
    s.ops++;
    if (!ok) s.errors++;
    else s.bytes += bytes;
    s.totalUs += us;
    const b = us < 1 ? 0 : Math.min(LATENCY_BUCKETS - 1, Math.floor(Math.log2(us)) + 1);
    s.latencyUs[b]!++;
  }

  /**
   * Count `p`, the promise of an operation that started at `start`. Takes
   * the promise rather than a closure that makes it: no allocation per
   * call beyond the one await (this wraps every NBD request).
   */
  private async track<T>(kind: OpKind, bytes: number, start: number, p: Promise<T>): Promise<T> {
    try {
      const r = await p;
      this.record(kind, bytes, start, true);
      return r;
    } catch (e) {
      this.record(kind, bytes, start, false);
      throw e;
    }
  }

  info(): BlockDeviceInfo {
    return this.inner.info();
  }
  // read and write are the hot path: no closure, the try/catch is inline.
  read(offset: number, length: number, into?: Buffer): Promise<Buffer> {
    const start = performance.now();
    let p: Promise<Buffer>;
    try {
      p = this.inner.read(offset, length, into);
    } catch (e) {
      p = Promise.reject(e);
    }
    return this.track('read', length, start, p);
  }
  write(offset: number, data: Buffer, opts?: WriteOptions): Promise<void> {
    const start = performance.now();
    let p: Promise<void>;
    try {
      p = this.inner.write(offset, data, opts);
    } catch (e) {
      p = Promise.reject(e);
    }
    return this.track('write', data.length, start, p);
  }
  writeZeroes(offset: number, length: number, opts?: ZeroOptions): Promise<void> {
    const start = performance.now();
    return this.track('writeZeroes', length, start, call(() => this.inner.writeZeroes(offset, length, opts)));
  }
  trim(offset: number, length: number, opts?: WriteOptions): Promise<void> {
    const start = performance.now();
    return this.track('trim', length, start, call(() => this.inner.trim(offset, length, opts)));
  }
  flush(): Promise<void> {
    const start = performance.now();
    return this.track('flush', 0, start, call(() => this.inner.flush()));
  }
  blockStatus(offset: number, length: number): Promise<Extent[]> {
    const start = performance.now();
    return this.track('blockStatus', length, start, call(() => this.inner.blockStatus(offset, length)));
  }
  cache(offset: number, length: number): Promise<void> {
    const start = performance.now();
    return this.track('cache', length, start, call(async () => {
      if (this.inner.cache) await this.inner.cache(offset, length);
    }));
  }
  close(): Promise<void> {
    return this.inner.close();
  }

  snapshot(): DeviceStatsSnapshot {
    const byOp = Object.fromEntries(
      OP_KINDS.map((k) => [k, { ...this.byOp[k], latencyUs: [...this.byOp[k].latencyUs] }]),
    ) as Record<OpKind, OpStats>;
    let ops = 0;
    let errors = 0;
    for (const k of OP_KINDS) {
      ops += byOp[k].ops;
      errors += byOp[k].errors;
    }
    return { ops, errors, bytesRead: byOp.read.bytes, bytesWritten: byOp.write.bytes, byOp };
  }
}
