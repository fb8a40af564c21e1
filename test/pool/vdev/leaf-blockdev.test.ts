/**
 * FileLeaf on a real block device (a loop device). Needs root and losetup;
 * skipped otherwise.
 */
import { execFileSync } from 'node:child_process';
import { truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FileLeaf } from '../../../src/pool/vdev/leaf-file.js';
import { leafConfigFor } from '../../../src/pool/vdev/layout.js';
import { MiB, tempDir } from './helpers.js';

function canLoop(): boolean {
  if (process.getuid?.() !== 0) return false;
  try {
    execFileSync('losetup', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

describe.runIf(canLoop())('FileLeaf on a block device', () => {
  let dev = '';
  let cleanup: () => Promise<void>;
  beforeAll(async () => {
    const t = await tempDir();
    cleanup = t.cleanup;
    const img = join(t.dir, 'img');
    await writeFile(img, '');
    await truncate(img, 80 * MiB);
    dev = execFileSync('losetup', ['-f', '--show', img], { encoding: 'utf8' }).trim();
  });
  afterAll(async () => {
    if (dev) execFileSync('losetup', ['-d', dev]);
    await cleanup();
  });

  it('sizes the device from sysfs, claims it exclusively, and does I/O', async () => {
    const leaf = await FileLeaf.open(dev, '1');
    expect(leaf.isBlockDevice).toBe(true);
    expect(leaf.size).toBe(80 * MiB);
    await expect(FileLeaf.open(dev, '2')).rejects.toMatchObject({ code: 'EBUSY' });
    const d = Buffer.alloc(8192, 0x5a);
    await leaf.pwrite(80 * MiB - 8192, d);
    await leaf.fsync();
    expect((await leaf.pread(80 * MiB - 8192, 8192)).equals(d)).toBe(true);
    await leaf.close();
    expect(await leafConfigFor(dev)).toMatchObject({ type: 'disk', path: dev, whole: true });
  });
});
