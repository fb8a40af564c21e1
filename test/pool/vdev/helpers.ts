import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createSparseFile } from '../../../src/pool/vdev/leaf-file.js';
import { SECTOR, type Verify } from '../../../src/pool/vdev/types.js';

export const MiB = 1024 * 1024;

export async function tempDir(): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'strata-vdev-'));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

/** Create `n` sparse device files of `size` bytes in dir; returns their paths. */
export async function makeFiles(dir: string, n: number, size = 64 * MiB, prefix = 'd'): Promise<string[]> {
  const paths: string[] = [];
  for (let i = 0; i < n; i++) {
    const p = join(dir, `${prefix}${i}`);
    await createSparseFile(p, size);
    paths.push(p);
  }
  return paths;
}

export function sha(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}

/** A verify callback accepting exactly `data` (as a block pointer checksum would). */
export function verifierFor(data: Buffer): Verify {
  const want = sha(data);
  return (b) => b.length === data.length && sha(b) === want;
}

export function randomBlock(sectors: number): Buffer {
  return randomBytes(sectors * SECTOR);
}
