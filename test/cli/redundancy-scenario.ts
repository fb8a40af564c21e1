/**
 * Issue 3, "What must hold", through the real `strata` binary, for every
 * layout: silent corruption of up to the redundancy in device files is
 * returned correctly, repaired by scrub and counted on the right devices;
 * devices missing up to the redundancy import DEGRADED and are replaced and
 * resilvered; one more missing device refuses the import and writes nothing.
 */
import { mkdirSync, rmSync, truncateSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'vitest';
import { tmp } from '../helpers/cli.js';
import { corrupt, createArgs, makeDevices, md5, MiB, ok, poolState, readVolume, scanText, statusRows, strata, tolerance, writeVolume, type Layout } from './redundancy-helpers.js';

/** The whole issue-3 scenario for one layout (see the test files that call it). */
export function redundancyScenario(layout: Layout): void {
  const root = tmp('strata-redund-');
  const home = join(root, 'home');
  const devDir = join(root, 'devs');
  mkdirSync(devDir);
  try {
    const devs = makeDevices(devDir, layout);
    ok(strata(home, ['pool', 'create', 'tank', ...createArgs(layout, devs)]));
    const data = writeVolume(home, root, 'tank/vol', 3 * MiB);

    // --- silent corruption inside up to `tolerance` device files of each group.
    const hit = new Set<string>();
    layout.groups.forEach((g, gi) => {
      for (let i = 0; i < tolerance(g); i++) {
        // 24 ranges, not 12: a used 64K extent may hold only a little live data (the rest
        // is freed or log blocks, which a scrub does not read), and with 12 a "two raidz2 groups" run
        // once hit no live byte on a device (CKSUM 0 where errors were expected).
        corrupt(devs[gi]![i]!, 24);
        hit.add(devs[gi]![i]!);
      }
    });
    expect(readVolume(home, root, 'tank/vol').equals(data)).toBe(true);
    ok(strata(home, ['pool', 'scrub', 'tank']));
    const st1 = ok(strata(home, ['pool', 'status', 'tank'])).stdout;
    expect(scanText(st1)).toMatch(/^scrub repaired \S+ in .* with 0 errors/);
    const rows = statusRows(st1);
    for (const d of devs.flat()) {
      const row = rows.find((r) => r.name === d)!;
      expect(row, d).toBeDefined();
      if (hit.has(d)) expect(row.cksum, `${d} should have CKSUM errors`).toBeGreaterThan(0);
      else expect(row.cksum, `${d} was not corrupted`).toBe(0);
      expect(row.read + row.write).toBe(0);
    }
    // A second scrub finds nothing more.
    ok(strata(home, ['pool', 'scrub', 'tank']));
    const st2 = ok(strata(home, ['pool', 'status', 'tank'])).stdout;
    expect(scanText(st2)).toMatch(/^scrub repaired 0B in .* with 0 errors/);
    for (const r of statusRows(st2)) expect(r.cksum).toBe(rows.find((x) => x.name === r.name)!.cksum);
    ok(strata(home, ['pool', 'clear', 'tank']));

    // --- remove (delete or truncate) up to the redundancy of each group with the pool exported.
    ok(strata(home, ['pool', 'export', 'tank']));
    const gone: string[] = [];
    layout.groups.forEach((g, gi) => {
      for (let i = 0; i < tolerance(g); i++) {
        const p = devs[gi]![g.n - 1 - i]!;
        if (i % 2 === 0) unlinkSync(p);
        else truncateSync(p, 0);
        gone.push(p);
      }
    });
    ok(strata(home, ['pool', 'import', '-d', devDir, 'tank']));
    const st3 = ok(strata(home, ['pool', 'status', 'tank'])).stdout;
    expect(poolState(st3)).toBe('DEGRADED');
    for (const p of gone) expect(statusRows(st3).find((r) => r.name === p)?.state).toBe('UNAVAIL');
    expect(readVolume(home, root, 'tank/vol').equals(data)).toBe(true);
    // Replace each: half with a new file at a new path, half in place.
    gone.forEach((p, i) => {
      if (i % 2 === 0) {
        const neu = `${p}-new`;
        writeFileSync(neu, '');
        truncateSync(neu, 64 * MiB);
        ok(strata(home, ['pool', 'replace', 'tank', p, neu]));
      } else {
        rmSync(p, { force: true });
        writeFileSync(p, '');
        truncateSync(p, 64 * MiB);
        ok(strata(home, ['pool', 'replace', 'tank', p]));
      }
    });
    const st4 = ok(strata(home, ['pool', 'status', 'tank'])).stdout;
    expect(poolState(st4)).toBe('ONLINE');
    expect(scanText(st4)).toMatch(/^resilvered \S+ in .* with 0 errors/);
    expect(st4).not.toMatch(/replacing|UNAVAIL/);
    ok(strata(home, ['pool', 'scrub', 'tank']));
    const st5 = ok(strata(home, ['pool', 'status', 'tank'])).stdout;
    expect(scanText(st5)).toMatch(/^scrub repaired 0B in .* with 0 errors/);
    // Counters were cleared before the devices went away: nothing new was found since.
    expect(statusRows(st5).every((r) => r.cksum === 0 && r.read === 0 && r.write === 0)).toBe(true);
    expect(readVolume(home, root, 'tank/vol').equals(data)).toBe(true);

    // --- one device beyond the redundancy of the first group: import refuses, nothing written.
    ok(strata(home, ['pool', 'export', 'tank']));
    const current = statusRows(st5).filter((r) => r.name.startsWith('/')).map((r) => r.name);
    const g0 = current.slice(0, layout.groups[0]!.n);
    const lost = g0.slice(0, tolerance(layout.groups[0]!) + 1);
    for (const p of lost) unlinkSync(p);
    const kept = current.filter((p) => !lost.includes(p));
    const before = kept.map(md5);
    const r = strata(home, ['pool', 'import', '-d', devDir, 'tank']);
    expect(r.code).not.toBe(0);
    if (kept.length === 0) {
      // A mirror that lost every copy leaves no label to find the pool by.
      expect(r.stderr).toMatch(/no such pool/);
    } else {
      expect(r.stderr).toMatch(/not enough devices/);
      for (const p of lost) expect(r.stderr).toContain(p);
    }
    expect(kept.map(md5)).toEqual(before);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}
