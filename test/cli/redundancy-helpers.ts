/** Shared helpers for the redundancy CLI tests (issue 3). */
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, openSync, readFileSync, readSync, statSync, truncateSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'vitest';
import { spawnSync } from 'node:child_process';
import { strata as strataDefault, type RunResult } from '../helpers/cli.js';

/**
 * Run the CLI. STRATA_TEST_BIN points at another build of main.js (a private
 * build, so concurrent rebuilds of dist/ cannot race a long test run).
 */
export function strata(home: string, args: string[], opts: { env?: Record<string, string> } = {}): RunResult {
  const bin = process.env['STRATA_TEST_BIN'];
  if (!bin) return strataDefault(home, args, opts);
  const r = spawnSync(process.execPath, [bin, '--home', home, ...args], { encoding: 'utf8', env: { ...process.env, ...opts.env }, timeout: 120_000 });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

export const MiB = 1024 * 1024;
export const DATA_START = 4 * MiB;

export interface Layout {
  name: string;
  /** Groups of device counts with their keyword. */
  groups: { kind: 'mirror' | 'raidz1' | 'raidz2' | 'raidz3'; n: number }[];
}

export const LAYOUTS: Layout[] = [
  { name: 'mirror-2', groups: [{ kind: 'mirror', n: 2 }] },
  { name: 'mirror-3', groups: [{ kind: 'mirror', n: 3 }] },
  { name: 'raidz1 of 3', groups: [{ kind: 'raidz1', n: 3 }] },
  { name: 'raidz1 of 5', groups: [{ kind: 'raidz1', n: 5 }] },
  { name: 'raidz2 of 4', groups: [{ kind: 'raidz2', n: 4 }] },
  { name: 'raidz2 of 6', groups: [{ kind: 'raidz2', n: 6 }] },
  { name: 'raidz3 of 8', groups: [{ kind: 'raidz3', n: 8 }] },
  { name: 'two raidz2 groups', groups: [{ kind: 'raidz2', n: 4 }, { kind: 'raidz2', n: 4 }] },
];

/** Devices a group can lose. */
export function tolerance(g: Layout['groups'][number]): number {
  return g.kind === 'mirror' ? g.n - 1 : Number(g.kind.slice(5));
}

/** Device files per group, created sparse. */
export function makeDevices(dir: string, layout: Layout, size = 64 * MiB): string[][] {
  return layout.groups.map((g, gi) =>
    Array.from({ length: g.n }, (_, i) => {
      const p = join(dir, `g${gi}d${i}`);
      writeFileSync(p, '');
      truncateSync(p, size);
      return p;
    }),
  );
}

export function createArgs(layout: Layout, devs: string[][]): string[] {
  return layout.groups.flatMap((g, i) => [g.kind, ...devs[i]!]);
}

export function ok(r: RunResult): RunResult {
  if (r.code !== 0) throw new Error(`exit ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  return r;
}

export function md5(path: string): string {
  return createHash('md5').update(readFileSync(path)).digest('hex');
}

/** Nonzero 64K extents of a device's data area (where blocks live in a fresh sparse file). */
export function usedExtents(path: string): number[] {
  const size = statSync(path).size;
  const fd = openSync(path, 'r');
  const out: number[] = [];
  const buf = Buffer.alloc(65536);
  try {
    for (let off = DATA_START; off + 65536 <= size - MiB; off += 65536) {
      readSync(fd, buf, 0, 65536, off);
      if (buf.some((b) => b !== 0)) out.push(off);
    }
  } finally {
    closeSync(fd);
  }
  return out;
}

/** Overwrite `count` random byte ranges inside the used part of a device file. */
export function corrupt(path: string, count: number, rng: () => number = Math.random): number {
  const ext = usedExtents(path);
  expect(ext.length).toBeGreaterThan(0);
  const fd = openSync(path, 'r+');
  let bytes = 0;
  try {
    for (let i = 0; i < count; i++) {
      const base = ext[Math.floor(rng() * ext.length)]!;
      const len = 512 + Math.floor(rng() * 16384);
      const off = base + Math.floor(rng() * (65536 - 512));
      const n = Math.min(len, 65536 - (off - base));
      writeSync(fd, randomBytes(n), 0, n, off);
      bytes += n;
    }
  } finally {
    closeSync(fd);
  }
  return bytes;
}

export interface DevRow {
  name: string;
  state: string;
  read: number;
  write: number;
  cksum: number;
}

/** Device rows of `pool status` as printed (leaves and interior vdevs). */
export function statusRows(out: string): DevRow[] {
  const rows: DevRow[] = [];
  for (const line of out.split('\n')) {
    const m = /^\t\s*(\S+)\s+(ONLINE|DEGRADED|FAULTED|OFFLINE|UNAVAIL|REMOVED)\s+(\d+)\s+(\d+)\s+(\d+)/.exec(line);
    if (m) rows.push({ name: m[1]!, state: m[2]!, read: Number(m[3]), write: Number(m[4]), cksum: Number(m[5]) });
  }
  return rows;
}

export function poolState(out: string): string {
  return /^ state: (\S+)/m.exec(out)?.[1] ?? '?';
}

export function scanText(out: string): string {
  return /^  scan: (.*)$/m.exec(out)?.[1] ?? '';
}

/** Write `bytes` of random data to a new volume through the CLI (`strata import`), returning the data. */
export function writeVolume(home: string, dir: string, vol: string, bytes: number): Buffer {
  const data = randomBytes(bytes);
  const src = join(dir, `src-${vol.replace(/\W/g, '_')}.raw`);
  writeFileSync(src, data);
  ok(strata(home, ['import', src, vol]));
  return data;
}

export function readVolume(home: string, dir: string, vol: string): Buffer {
  const dst = join(dir, `out-${vol.replace(/\W/g, '_')}-${Date.now()}.raw`);
  ok(strata(home, ['export', vol, dst]));
  return readFileSync(dst);
}
