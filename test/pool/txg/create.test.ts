/**
 * createPool's checks of the layout it is given. The CLI's parser (vdev/layout.ts) only ever
 * builds valid groups, but JavaScript callers and JSON reach createPool untyped: a group type
 * it does not know used to fall through to raidz1 ('raidz2' became a raidz1).
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { createPool, type CreateSpec } from '../../../src/pool/txg/open.js';
import { MiB, tempDir } from '../engine/helpers.js';

async function refused(spec: (dir: string) => unknown, message: RegExp): Promise<void> {
  const { dir, cleanup } = await tempDir('strata-create-');
  try {
    const s = spec(dir) as CreateSpec;
    await expect(createPool('tank', { ...s, createSize: 64 * MiB })).rejects.toMatchObject({ code: 'EINVAL', message: expect.stringMatching(message) });
    // Refused before any device was touched.
    for (const g of [...s.groups, ...(s.log ?? [])]) for (const p of g.paths) expect(existsSync(p)).toBe(false);
  } finally {
    await cleanup();
  }
}

describe('createPool refuses a layout it cannot build as asked', () => {
  const paths = (dir: string, n: number) => Array.from({ length: n }, (_, i) => join(dir, `d${i}.img`));

  it('an unknown group type', async () => {
    await refused((d) => ({ groups: [{ type: 'raidz2', paths: paths(d, 4) }] }), /unknown vdev group type 'raidz2'/);
    await refused((d) => ({ groups: [{ type: 'single', paths: paths(d, 1) }], log: [{ type: 'stripe', paths: [join(d, 'log.img')] }] }), /unknown vdev group type 'stripe'/);
  });

  it('a parity raidz cannot have', async () => {
    await refused((d) => ({ groups: [{ type: 'raidz', nparity: 4, paths: paths(d, 6) }] }), /parity must be 1, 2 or 3, not 4/);
    await refused((d) => ({ groups: [{ type: 'raidz', nparity: '2', paths: paths(d, 4) }] }), /parity must be 1, 2 or 3, not 2/);
  });

  it('still builds each valid kind', async () => {
    const { dir, cleanup } = await tempDir('strata-create-');
    try {
      const pool = await createPool('tank', {
        groups: [{ type: 'raidz', nparity: 2, paths: paths(dir, 4) }, { type: 'mirror', paths: [join(dir, 'm0.img'), join(dir, 'm1.img')] }],
        createSize: 64 * MiB,
      });
      try {
        const tops = pool.vdevs.config().children;
        expect(tops.map((t) => t.type)).toEqual(['raidz', 'mirror']);
        expect(tops[0]!.type === 'raidz' && tops[0]!.nparity).toBe(2);
      } finally {
        await pool.close();
      }
    } finally {
      await cleanup();
    }
  });
});
