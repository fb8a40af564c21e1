/**
 * Property: random sequences of volume writes, device failures within the
 * redundancy (offline, silent corruption), replacements, onlines and scrubs
 * never change what the volume reads, compared with an in-memory model.
 * Runs in-process through PoolManager (the CLI's services).
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { PoolManager } from '../../../src/daemon/services.js';
import { corrupt } from '../../cli/redundancy-helpers.js';

const MiB = 1024 * 1024;
const BS = 16384;
const NBLK = 96;

type Cmd =
  | { t: 'write'; blk: number; n: number }
  | { t: 'offline'; dev: number }
  | { t: 'corrupt'; dev: number }
  | { t: 'replace'; dev: number }
  | { t: 'online'; dev: number }
  | { t: 'scrub' };

const cmdArb: fc.Arbitrary<Cmd> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ t: fc.constant('write' as const), blk: fc.nat(NBLK - 1), n: fc.integer({ min: 1, max: 8 }) }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('offline' as const), dev: fc.nat(5) }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('corrupt' as const), dev: fc.nat(5) }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('replace' as const), dev: fc.nat(5) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('online' as const), dev: fc.nat(5) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('scrub' as const) }) },
);

const LAYOUTS = [
  { kind: 'mirror' as const, n: 3, tolerance: 2 },
  { kind: 'raidz' as const, nparity: 2 as const, n: 4, tolerance: 2 },
  { kind: 'raidz' as const, nparity: 1 as const, n: 3, tolerance: 1 },
];

describe('scan: model-based redundancy', () => {
  it('reads always match the model under failures, replacements and scrubs', async () => {
    await fc.assert(
      fc.asyncProperty(fc.nat(LAYOUTS.length - 1), fc.array(cmdArb, { minLength: 4, maxLength: 14 }), async (li, cmds) => {
        const layout = LAYOUTS[li]!;
        const dir = mkdtempSync(join(tmpdir(), 'strata-scan-model-'));
        const mgr = new PoolManager(join(dir, 'home'), { txgTimeoutMs: 200 });
        let serial = 0;
        const newFile = () => {
          const p = join(dir, `d${serial++}`);
          writeFileSync(p, '');
          truncateSync(p, 64 * MiB);
          return p;
        };
        try {
          const devs = Array.from({ length: layout.n }, newFile);
          const group = layout.kind === 'mirror' ? { type: 'mirror' as const, paths: devs } : { type: 'raidz' as const, nparity: layout.nparity, paths: devs };
          await mgr.poolCreate('tank', { groups: [group] });
          await mgr.create('tank/vol', { volsize: String(NBLK * BS), blocksize: String(BS), sparse: true });
          const model = Buffer.alloc(NBLK * BS);
          const { volume, release } = await mgr.openVolume('tank/vol');
          const offline = new Set<string>();
          const corrupted = new Set<string>();
          const damaged = () => new Set([...offline, ...corrupted]).size;
          const check = async () => expect((await volume.read(0, model.length)).equals(model)).toBe(true);
          try {
            for (const c of cmds) {
              if (c.t === 'write') {
                const n = Math.min(c.n, NBLK - c.blk);
                const data = randomBytes(n * BS);
                await volume.write(c.blk * BS, data);
                data.copy(model, c.blk * BS);
                await volume.flush();
                const pool = await mgr.pool('tank');
                await pool.txg.syncNow();
              } else if (c.t === 'offline') {
                const d = devs[c.dev % devs.length]!;
                if (offline.has(d) || damaged() >= layout.tolerance) continue;
                await mgr.poolOffline('tank', d);
                offline.add(d);
              } else if (c.t === 'corrupt') {
                const d = devs[c.dev % devs.length]!;
                if (offline.has(d) || corrupted.has(d) || damaged() >= layout.tolerance) continue;
                const pool = await mgr.pool('tank');
                await pool.txg.syncNow();
                corrupt(d, 6);
                corrupted.add(d);
              } else if (c.t === 'replace') {
                const i = c.dev % devs.length;
                const d = devs[i]!;
                if (!offline.has(d)) continue;
                const neu = newFile();
                await mgr.poolReplace('tank', d, neu, { wait: true });
                devs[i] = neu;
                offline.delete(d);
              } else if (c.t === 'online') {
                const d = devs[c.dev % devs.length]!;
                if (!offline.has(d)) continue;
                await mgr.poolOnline('tank', d, { wait: true });
                offline.delete(d);
              } else {
                await mgr.poolScrub('tank', { wait: true });
                const [st] = await mgr.poolStatus('tank');
                expect(st!.scan!.errors).toBe(0);
                // Devices that are online are repaired now.
                corrupted.clear();
              }
              await check();
            }
            // Bring everything back, scrub, and the pool is healthy and clean.
            for (const d of [...offline]) await mgr.poolOnline('tank', d, { wait: true });
            await mgr.poolScrub('tank', { wait: true });
            await mgr.poolScrub('tank', { wait: true });
            const [st] = await mgr.poolStatus('tank');
            expect(st!.state).toBe('ONLINE');
            expect(st!.scan!.errors).toBe(0);
            expect(st!.scan!.repaired).toBe(0);
            await check();
          } finally {
            release();
          }
        } finally {
          await mgr.close().catch(() => {});
          rmSync(dir, { recursive: true, force: true });
        }
      }),
      { numRuns: 12 },
    );
  });
});
