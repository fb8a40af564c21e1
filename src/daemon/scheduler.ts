/**
 * The daemon's snapshot scheduler: once a minute (on the minute), apply
 * every dataset's `snapshot:policy` (see src/pool/dataset/retention.ts) by
 * calling the same service as `strata snapshot --auto`.
 *
 * Invariants: runs never overlap (a slow run delays the next tick, it does
 * not stack another); a failing run is logged and the schedule goes on;
 * stop() cancels the timer and waits for a run in progress. The clock is
 * injectable so tests drive time by hand.
 */
import type { AutoSnapshotResult } from '../pool/dataset/snapshots.js';

export interface SchedulerClock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const systemClock: SchedulerClock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => {
    const t = setTimeout(fn, ms);
    t.unref?.();
    return t;
  },
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
};

export interface SchedulerTarget {
  autoSnapshot(datasets?: string[], o?: { now?: number }): Promise<AutoSnapshotResult>;
}

export interface SchedulerOptions {
  clock?: SchedulerClock;
  /** Default 60 s; runs are aligned to multiples of it. */
  intervalMs?: number;
  log?: (msg: string) => void;
}

export class Scheduler {
  private readonly clock: SchedulerClock;
  private readonly intervalMs: number;
  private readonly log: (msg: string) => void;
  private timer: unknown = null;
  private running: Promise<void> | null = null;
  private stopped = true;
  /** Completed runs (for status and tests). */
  runs = 0;
  lastResult: AutoSnapshotResult | null = null;
  lastError: unknown = null;

  constructor(
    private readonly target: SchedulerTarget,
    opts: SchedulerOptions = {},
  ) {
    this.clock = opts.clock ?? systemClock;
    this.intervalMs = opts.intervalMs ?? 60_000;
    this.log = opts.log ?? (() => {});
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.arm();
  }

  /** Cancel the timer and wait for a run in progress. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer !== null) this.clock.clearTimeout(this.timer);
    this.timer = null;
    if (this.running) await this.running;
  }

  /** Run the policy once now (also what each tick does). */
  async runOnce(): Promise<AutoSnapshotResult | null> {
    if (this.running) {
      await this.running;
      return this.lastResult;
    }
    const now = this.clock.now();
    this.running = (async () => {
      try {
        const r = await this.target.autoSnapshot([], { now });
        this.lastResult = r;
        this.lastError = null;
        if (r.taken.length || r.destroyed.length) this.log(`snapshot schedule: took ${r.taken.length}, destroyed ${r.destroyed.length}${r.kept.length ? `, kept ${r.kept.length} expired (held or cloned)` : ''}`);
      } catch (e) {
        this.lastError = e;
        this.log(`snapshot schedule failed: ${(e as Error)?.message ?? String(e)}`);
      } finally {
        this.runs++;
      }
    })();
    try {
      await this.running;
    } finally {
      this.running = null;
    }
    return this.lastResult;
  }

  /** Next tick at the next multiple of the interval (so runs land on the minute). */
  private arm(): void {
    if (this.stopped) return;
    const now = this.clock.now();
    const delay = this.intervalMs - (now % this.intervalMs) || this.intervalMs;
    this.timer = this.clock.setTimeout(() => {
      this.timer = null;
      void this.runOnce().finally(() => this.arm());
    }, delay);
  }
}
