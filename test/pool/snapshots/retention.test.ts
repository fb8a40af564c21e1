/**
 * Scheduled snapshots: the pure retention module, the pool-level run
 * (`snapshot --auto`), the property (validated, inherited) and the
 * daemon's Scheduler driven by a fake clock.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { autoName, formatPolicy, parseAutoName, parsePolicy, plan, slotStart } from '../../../src/pool/dataset/retention.js';
import { Scheduler, type SchedulerClock } from '../../../src/daemon/scheduler.js';
import { PoolManager } from '../../../src/daemon/services.js';
import { MiB, tempDir } from '../engine/helpers.js';

const H = 3600_000;
const D = 24 * H;
const T0 = Date.UTC(2026, 10, 23, 12, 7); // Monday 2026-11-23 12:07 UTC

describe('retention (pure)', () => {
  it('parses and normalizes policies, refuses bad ones with one clear reason', () => {
    expect(parsePolicy('hourly=24,daily=7,weekly=4')).toEqual({ hourly: 24, daily: 7, weekly: 4 });
    expect(formatPolicy(parsePolicy(' weekly=4, hourly=24 '))).toBe('hourly=24,weekly=4');
    expect(parsePolicy('off')).toBe(null);
    expect(parsePolicy('none')).toBe(null);
    expect(() => parsePolicy('hourly')).toThrow(/expected GENERATION=COUNT/);
    expect(() => parsePolicy('yearly=2')).toThrow(/unknown generation 'yearly'/);
    expect(() => parsePolicy('hourly=1,hourly=2')).toThrow(/given twice/);
    expect(() => parsePolicy('hourly=-1')).toThrow();
  });

  it('names snapshots after the UTC start of their period and parses them back', () => {
    expect(autoName('hourly', slotStart('hourly', T0))).toBe('auto-hourly-2026-11-23-1200');
    expect(autoName('frequent', slotStart('frequent', T0))).toBe('auto-frequent-2026-11-23-1200');
    expect(autoName('daily', slotStart('daily', T0))).toBe('auto-daily-2026-11-23-0000');
    expect(autoName('weekly', slotStart('weekly', T0 + 3 * D))).toBe('auto-weekly-2026-11-23-0000'); // Thursday -> Monday
    expect(autoName('weekly', slotStart('weekly', Date.UTC(2026, 10, 22, 23)))).toBe('auto-weekly-2026-11-16-0000'); // Sunday
    expect(autoName('monthly', slotStart('monthly', T0))).toBe('auto-monthly-2026-11-01-0000');
    expect(parseAutoName('auto-hourly-2026-11-23-1200')).toEqual({ gen: 'hourly', time: Date.UTC(2026, 10, 23, 12) });
    expect(parseAutoName('auto-hourly-2026-13-23-1200')).toBe(null);
    expect(parseAutoName('mine')).toBe(null);
    expect(parseAutoName('auto-yearly-2026-11-23-1200')).toBe(null);
  });

  it('keeps the newest N of each generation; held and cloned ones stay; other names are never touched', () => {
    // Simulate 60 hours of hourly runs with hourly=24,daily=3.
    const policy = parsePolicy('hourly=24,daily=3')!;
    let snaps: { name: string; held: boolean; cloned: boolean }[] = [{ name: 'manual', held: false, cloned: false }];
    for (let h = 0; h < 60; h++) {
      const p = plan(policy, snaps, T0 + h * H);
      snaps = snaps.filter((s) => !p.destroy.includes(s.name)).concat(p.take.map((name) => ({ name, held: false, cloned: false })));
      // A second run in the same period takes nothing and destroys nothing.
      const again = plan(policy, snaps, T0 + h * H + 30_000);
      expect(again.take).toEqual([]);
      expect(again.destroy).toEqual([]);
    }
    const hourly = snaps.filter((s) => s.name.startsWith('auto-hourly-'));
    const daily = snaps.filter((s) => s.name.startsWith('auto-daily-'));
    expect(hourly).toHaveLength(24);
    expect(daily.map((s) => s.name)).toEqual(['auto-daily-2026-11-23-0000', 'auto-daily-2026-11-24-0000', 'auto-daily-2026-11-25-0000']);
    expect(hourly[hourly.length - 1]!.name).toBe(autoName('hourly', slotStart('hourly', T0 + 59 * H)));
    expect(snaps.some((s) => s.name === 'manual')).toBe(true);

    // The oldest hourly is held, the next cloned: both expire but stay, and are reported.
    hourly[0]!.held = true;
    hourly[1]!.cloned = true;
    const p = plan(parsePolicy('hourly=22,daily=3'), snaps, T0 + 60 * H);
    expect(p.take).toEqual([autoName('hourly', slotStart('hourly', T0 + 60 * H)), 'auto-daily-2026-11-26-0000']);
    expect(p.destroy).toEqual([hourly[2]!.name, 'auto-daily-2026-11-23-0000']);
    expect(p.kept).toEqual([
      { name: hourly[1]!.name, why: 'cloned' },
      { name: hourly[0]!.name, why: 'held' },
    ]);
    // =0 removes a generation; a generation not named is left alone; off does nothing.
    expect(plan(parsePolicy('daily=0'), snaps, T0).destroy.sort()).toEqual(daily.map((s) => s.name).sort());
    expect(plan(parsePolicy('weekly=1'), snaps, T0 + 60 * H).destroy).toEqual([]);
    expect(plan(null, snaps, T0)).toEqual({ take: [], destroy: [], kept: [] });
  });
});

/** A clock tests move by hand: timers fire in order as time advances. */
class FakeClock implements SchedulerClock {
  t: number;
  private timers: { at: number; fn: () => void; id: number }[] = [];
  private ids = 0;
  constructor(t: number) {
    this.t = t;
  }
  now(): number {
    return this.t;
  }
  setTimeout(fn: () => void, ms: number): unknown {
    const id = ++this.ids;
    this.timers.push({ at: this.t + ms, fn, id });
    return id;
  }
  clearTimeout(h: unknown): void {
    this.timers = this.timers.filter((x) => x.id !== h);
  }
  pending(): number {
    return this.timers.length;
  }
  /** Advance to `to`, firing due timers one at a time and letting each run finish (settle) before the next. */
  async advanceTo(to: number, settle: () => Promise<void>): Promise<void> {
    for (;;) {
      this.timers.sort((a, b) => a.at - b.at);
      const next = this.timers[0];
      if (!next || next.at > to) break;
      this.timers.shift();
      this.t = next.at;
      next.fn();
      await settle();
    }
    this.t = to;
  }
}

describe('snapshot --auto and the scheduler on a real pool', () => {
  it('the property is validated and inherited; runs take and expire snapshots; held and cloned ones stay', async () => {
    const { dir, cleanup } = await tempDir('strata-retention-');
    try {
      const mgr = new PoolManager(join(dir, 'home'), { txgTimeoutMs: 60_000 });
      await mgr.poolCreate('tank', { groups: [{ type: 'single', paths: [join(dir, 'd1.img')] }], createSize: 128 * MiB });
      await mgr.create('tank/vms', {});
      await mgr.create('tank/vms/a', { volsize: '1M', sparse: true });
      await mgr.create('tank/vms/b', { volsize: '1M', sparse: true });
      await mgr.create('tank/other', { volsize: '1M', sparse: true });
      await expect(mgr.set('tank/vms', { 'snapshot:policy': 'hourly=x' })).rejects.toThrow(/invalid snapshot policy/);
      await mgr.set('tank/vms', { 'snapshot:policy': 'daily=2, hourly=3' });
      await mgr.set('tank/vms/b', { 'snapshot:policy': 'off' });
      const rows = await mgr.datasets(['tank/vms/a'], false);
      expect(rows[0]!.props['snapshot:policy']).toEqual({ value: 'hourly=3,daily=2', source: 'inherited from tank/vms' });

      const clock = new FakeClock(T0);
      const logs: string[] = [];
      const sched = new Scheduler(mgr, { clock, log: (m) => logs.push(m) });
      const settle = async () => {
        // Let the scheduler's run (a chain of pool syncs) finish and re-arm before the next timer fires.
        while (sched['running']) await sched['running'];
        await new Promise((r) => setImmediate(r));
      };
      sched.start();
      expect(clock.pending()).toBe(1);
      // 5 hours of minutes.
      await clock.advanceTo(T0 + 5 * H, settle);
      await sched.stop();
      expect(clock.pending()).toBe(0);
      expect(sched.runs).toBe(5 * 60);
      const names = (ds: string) => (mgr as unknown as { pools: Map<string, { pool: import('../../../src/pool/pool.js').Pool }> }).pools.get('tank')!.pool.dir.get(ds).snapshots.map((s) => s.name);
      expect(names('tank/vms/a')).toEqual(['auto-daily-2026-11-23-0000', 'auto-hourly-2026-11-23-1500', 'auto-hourly-2026-11-23-1600', 'auto-hourly-2026-11-23-1700']);
      expect(names('tank/vms')).toEqual(names('tank/vms/a'));
      expect(names('tank/vms/b')).toEqual([]);
      expect(names('tank/other')).toEqual([]);
      expect(logs.some((l) => /took 2, destroyed 0/.test(l))).toBe(true);

      // Hold the oldest hourly, clone the next: a day later both are still there, the rest rotated.
      await mgr.hold('keep', ['tank/vms/a@auto-hourly-2026-11-23-1500']);
      await mgr.clone('tank/vms/a@auto-hourly-2026-11-23-1600', ['tank/vms/clone']);
      await mgr.set('tank/vms/clone', { 'snapshot:policy': 'off' });
      await mgr.set('tank/vms/a', { 'snapshot:policy': 'hourly=1,daily=2' });
      const r = await mgr.autoSnapshot(['tank/vms/a'], { now: T0 + D });
      expect(r.taken).toEqual(['tank/vms/a@auto-hourly-2026-11-24-1200', 'tank/vms/a@auto-daily-2026-11-24-0000']);
      expect(r.destroyed).toEqual(['tank/vms/a@auto-hourly-2026-11-23-1700']);
      expect(r.kept.map((k) => k.why).sort()).toEqual(['cloned', 'held']);
      expect(names('tank/vms/a')).toEqual([
        'auto-daily-2026-11-23-0000',
        'auto-hourly-2026-11-23-1500',
        'auto-hourly-2026-11-23-1600',
        'auto-hourly-2026-11-24-1200',
        'auto-daily-2026-11-24-0000',
      ]);
      // Dry run changes nothing.
      const dry = await mgr.autoSnapshot([], { now: T0 + 2 * D, dryRun: true });
      expect(dry.taken.length).toBeGreaterThan(0);
      expect(names('tank/vms/a')).toHaveLength(5);
      await mgr.close();
    } finally {
      await cleanup();
    }
  }, 300_000);

  it('a failing run is logged and the schedule goes on; runs never overlap', async () => {
    const clock = new FakeClock(T0);
    let calls = 0;
    let active = 0;
    let maxActive = 0;
    const release: (() => void)[] = [];
    const target = {
      autoSnapshot: async () => {
        calls++;
        active++;
        maxActive = Math.max(maxActive, active);
        if (calls === 1) {
          active--;
          throw new Error('disk on fire');
        }
        await new Promise<void>((r) => release.push(r));
        active--;
        return { taken: [], destroyed: [], kept: [] };
      },
    };
    const logs: string[] = [];
    const sched = new Scheduler(target, { clock, log: (m) => logs.push(m) });
    sched.start();
    await clock.advanceTo(T0 + 60_000, async () => {});
    await new Promise((r) => setImmediate(r));
    expect(logs).toEqual(['snapshot schedule failed: disk on fire']);
    // Second run starts and hangs; time passes, but no tick is armed until it finishes.
    await clock.advanceTo(T0 + 120_000, async () => {});
    await new Promise((r) => setImmediate(r));
    await clock.advanceTo(T0 + 600_000, async () => {});
    expect(calls).toBe(2);
    expect(clock.pending()).toBe(0);
    release.shift()!();
    await new Promise((r) => setImmediate(r));
    await new Promise((r) => setImmediate(r));
    expect(clock.pending()).toBe(1);
    expect(maxActive).toBe(1);
    await sched.stop();
    expect(clock.pending()).toBe(0);
  });
});
