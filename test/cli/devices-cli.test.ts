/**
 * CLI surface of issue 3: `status -v` lists unrecoverable blocks with their
 * volume and byte range; without a daemon `scrub` runs to completion;
 * `iostat -v` prints per-device rows, and repeats with an interval.
 */
import { openSync, writeSync, closeSync, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { ensureBuilt, tmp } from '../helpers/cli.js';
import { createArgs, makeDevices, MiB, ok, scanText, strata, usedExtents, writeVolume, type Layout } from './redundancy-helpers.js';

beforeAll(() => {
  if (!process.env['STRATA_TEST_BIN']) ensureBuilt();
});

const MIRROR: Layout = { name: 'mirror-2', groups: [{ kind: 'mirror', n: 2 }] };

describe('pool device commands', () => {
  it('status -v names the volume and byte range of blocks no copy can repair', () => {
    const root = tmp('strata-errlog-');
    const home = join(root, 'home');
    const devDir = join(root, 'devs');
    mkdirSync(devDir);
    try {
      const devs = makeDevices(devDir, MIRROR)[0]!;
      ok(strata(home, ['pool', 'create', 'tank', ...createArgs(MIRROR, [devs])]));
      writeVolume(home, root, 'tank/vol', 2 * MiB);
      // The same bytes on both sides of the mirror: the block is lost.
      const ext = usedExtents(devs[0]!);
      for (const q of [0.25, 0.5, 0.75]) {
        const at = ext[Math.floor(ext.length * q)]! + 16384;
        for (const d of devs) {
          const fd = openSync(d, 'r+');
          writeSync(fd, Buffer.alloc(4096, 0xa5), 0, 4096, at);
          closeSync(fd);
        }
      }
      ok(strata(home, ['pool', 'scrub', 'tank']));
      const st = ok(strata(home, ['pool', 'status', '-v', 'tank'])).stdout;
      expect(scanText(st)).toMatch(/with [1-9]\d* errors/);
      expect(st).toMatch(/status: One or more devices has experienced an error resulting in data corruption/);
      expect(st).toMatch(/tank\/vol: bytes \d+-\d+ \(block \d+\)/);
      const short = ok(strata(home, ['pool', 'status', 'tank'])).stdout;
      expect(short).toMatch(/errors: \d+ data errors, use '-v' for a list/);
      // Both devices were blamed.
      for (const d of devs) expect(short).toMatch(new RegExp(`${d.replace(/[/.]/g, '\\$&')}\\s+ONLINE\\s+0\\s+0\\s+[1-9]`));
      ok(strata(home, ['pool', 'clear', 'tank']));
      expect(ok(strata(home, ['pool', 'status', 'tank'])).stdout).toMatch(/errors: No known data errors/);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });

  it('scrub runs to completion without a daemon (-p needs an active scrub); iostat -v and intervals', () => {
    const root = tmp('strata-pause-');
    const home = join(root, 'home');
    const devDir = join(root, 'devs');
    mkdirSync(devDir);
    try {
      const devs = makeDevices(devDir, MIRROR)[0]!;
      ok(strata(home, ['pool', 'create', 'tank', ...createArgs(MIRROR, [devs])]));
      writeVolume(home, root, 'tank/vol', 4 * MiB);
      // Without a daemon the scrub runs in the command; -p/-s need a scan to act on.
      const none = strata(home, ['pool', 'scrub', '-p', 'tank']);
      expect(none.code).not.toBe(0);
      expect(none.stderr).toMatch(/no active scrub/);
      ok(strata(home, ['pool', 'scrub', 'tank']));
      expect(scanText(ok(strata(home, ['pool', 'status', 'tank'])).stdout)).toMatch(/^scrub repaired 0B/);
      const io = ok(strata(home, ['pool', 'iostat', '-v', 'tank'])).stdout;
      expect(io).toMatch(/capacity\s+operations\s+bandwidth/);
      expect(io).toMatch(/mirror-0/);
      for (const d of devs) expect(io).toContain(d);
      const twice = ok(strata(home, ['pool', 'iostat', 'tank', '0.2', '2'])).stdout;
      expect(twice.match(/^tank /gm)?.length).toBe(2);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});
