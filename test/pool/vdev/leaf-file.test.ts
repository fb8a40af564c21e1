import { open, readFile, stat, truncate, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, onTestFinished } from 'vitest';
import { StorageError } from '../../../src/errors.js';
import { createSparseFile, FileLeaf, sizeByBisection } from '../../../src/pool/vdev/leaf-file.js';
import { FaultLeaf } from '../../../src/pool/vdev/fault-leaf.js';
import { MiB, tempDir } from './helpers.js';

let dir: string;
let cleanup: () => Promise<void>;
beforeEach(async () => ({ dir, cleanup } = await tempDir()));
afterEach(async () => cleanup());

describe('createSparseFile', () => {
  it('creates a sparse file of the exact size', async () => {
    const p = join(dir, 'a');
    await createSparseFile(p, 64 * MiB);
    const st = await stat(p);
    expect(st.size).toBe(64 * MiB);
    expect(st.blocks * 512).toBeLessThan(MiB); // sparse: nothing allocated
  });
  it('refuses devices below 64 MiB and existing files', async () => {
    const p = join(dir, 'a');
    await expect(createSparseFile(p, 63 * MiB)).rejects.toMatchObject({ code: 'EINVAL' });
    await createSparseFile(p, 64 * MiB);
    await expect(createSparseFile(p, 64 * MiB)).rejects.toMatchObject({ code: 'EEXIST' });
    await createSparseFile(p, 65 * MiB, { overwrite: true });
    expect((await stat(p)).size).toBe(65 * MiB);
  });
});

describe('FileLeaf', () => {
  it('reads back what it wrote, including writev of several buffers', async () => {
    const p = join(dir, 'a');
    await createSparseFile(p, 64 * MiB);
    const leaf = await FileLeaf.open(p, '1');
    expect(leaf.size).toBe(64 * MiB);
    expect(leaf.state).toBe('ONLINE');
    const a = Buffer.alloc(4096, 1);
    const b = Buffer.alloc(8192, 2);
    await leaf.pwrite(5 * MiB, [a, b]);
    await leaf.pwrite(5 * MiB + 12288, Buffer.from('tail'));
    await leaf.fsync();
    const got = await leaf.pread(5 * MiB, 12292);
    expect(got.subarray(0, 4096).equals(a)).toBe(true);
    expect(got.subarray(4096, 12288).equals(b)).toBe(true);
    expect(got.subarray(12288).toString()).toBe('tail');
    expect(leaf.stats).toEqual({ readOps: 1, writeOps: 2, readBytes: 12292, writeBytes: 12292 });
    await leaf.close();
    // and it is really in the file
    const raw = await readFile(p);
    expect(raw.subarray(5 * MiB + 4096, 5 * MiB + 12288).equals(b)).toBe(true);
  });

  it('rejects I/O outside the device without counting an error', async () => {
    const p = join(dir, 'a');
    await createSparseFile(p, 64 * MiB);
    const leaf = await FileLeaf.open(p, '1');
    await expect(leaf.pread(64 * MiB - 10, 20)).rejects.toMatchObject({ code: 'EINVAL' });
    await expect(leaf.pwrite(-1, Buffer.alloc(1))).rejects.toMatchObject({ code: 'EINVAL' });
    expect(leaf.errors).toEqual({ read: 0, write: 0, cksum: 0 });
    await leaf.close();
  });

  it('a missing device opens as UNAVAIL with a reason; open() throws ENOENT', async () => {
    const p = join(dir, 'nope');
    const leaf = await FileLeaf.openOrUnavail(p, '9');
    expect(leaf.state).toBe('UNAVAIL');
    expect(leaf.openError?.message).toContain('nope');
    await expect(leaf.pread(0, 1)).rejects.toBeInstanceOf(StorageError);
    await expect(FileLeaf.open(p, '9')).rejects.toMatchObject({ code: 'ENOENT' });
    // reopen after the device appears
    await createSparseFile(p, 64 * MiB);
    expect(await leaf.reopen()).toBe('ONLINE');
    expect(leaf.size).toBe(64 * MiB);
    await leaf.close();
    expect(leaf.state).toBe('UNAVAIL');
  });

  it('a truncated device gives read errors (never zeroes) and is counted', async () => {
    const p = join(dir, 'a');
    await createSparseFile(p, 64 * MiB);
    const leaf = await FileLeaf.open(p, '1', { probe: false });
    await truncate(p, 32 * MiB);
    await expect(leaf.pread(40 * MiB, 4096)).rejects.toMatchObject({ code: 'EIO' });
    expect(leaf.errors.read).toBe(1);
    expect(leaf.state).toBe('ONLINE');
    await leaf.close();
  });

  it('repeated failures fault the leaf; refused I/O is not counted', async () => {
    const p = join(dir, 'a');
    await createSparseFile(p, 64 * MiB);
    const leaf = new FaultLeaf(await FileLeaf.open(p, '1'), { faultAfter: 3, probe: false });
    leaf.inject({ op: 'read', kind: 'error', offset: 8 * MiB, length: MiB });
    for (let i = 0; i < 3; i++) await expect(leaf.pread(8 * MiB, 4096)).rejects.toMatchObject({ code: 'EIO' });
    expect(leaf.state).toBe('FAULTED');
    expect(leaf.errors.read).toBe(3);
    await expect(leaf.pread(0, 4096)).rejects.toMatchObject({ code: 'ENXIO' });
    expect(leaf.errors.read).toBe(3);
    leaf.clearFaults();
    expect(await leaf.reopen()).toBe('ONLINE');
    await leaf.close();
  });

  it('a failed probe after an error faults at once; a pulled device is REMOVED', async () => {
    const p = join(dir, 'a');
    await createSparseFile(p, 64 * MiB);
    const a = new FaultLeaf(await FileLeaf.open(p, '1'));
    a.inject({ op: 'read', kind: 'error' }); // the whole device
    await expect(a.pread(8 * MiB, 4096)).rejects.toMatchObject({ code: 'EIO' });
    expect(a.state).toBe('FAULTED');
    const q = join(dir, 'b');
    await createSparseFile(q, 64 * MiB);
    const b = new FaultLeaf(await FileLeaf.open(q, '2'));
    b.inject({ op: 'write', kind: 'gone' });
    await expect(b.pwrite(8 * MiB, Buffer.alloc(4096))).rejects.toMatchObject({ code: 'EIO' });
    expect(b.state).toBe('REMOVED');
    expect(b.errors.write).toBe(1);
    await a.close();
    await b.close();
  });

  it('finds a size by bisection when sysfs is unavailable', async () => {
    const p = join(dir, 'odd');
    await createSparseFile(p, 64 * MiB);
    await truncate(p, 64 * MiB + 12345);
    const fh = await open(p, 'r');
    expect(await sizeByBisection(fh)).toBe(64 * MiB + 12345);
    await fh.close();
  });

  it('refuses something that is neither a file nor a block device', async () => {
    await expect(FileLeaf.open(dir, '1')).rejects.toMatchObject({ code: 'EINVAL' });
  });

  it('read-only leaves refuse writes', async () => {
    const p = join(dir, 'a');
    await createSparseFile(p, 64 * MiB);
    const leaf = await FileLeaf.open(p, '1', { readOnly: true, probe: false });
    await expect(leaf.pwrite(5 * MiB, Buffer.alloc(10))).rejects.toBeInstanceOf(StorageError);
    await leaf.close();
  });

  it('an unlinked-but-open file keeps working (POSIX semantics); a fresh open is UNAVAIL', async () => {
    const p = join(dir, 'a');
    await createSparseFile(p, 64 * MiB);
    const leaf = await FileLeaf.open(p, '1');
    await unlink(p);
    await leaf.pwrite(5 * MiB, Buffer.alloc(4096, 7));
    expect((await leaf.pread(5 * MiB, 4096))[0]).toBe(7);
    await leaf.close();
    expect((await FileLeaf.openOrUnavail(p, '1')).state).toBe('UNAVAIL');
  });
});

describe('FileLeaf with inline (synchronous) I/O', () => {
  it("'auto' is inline exactly on memory filesystems", async () => {
    const { memoryBacked } = await import('../../../src/device/memory-backed.js');
    // STRATA_INLINE_IO overrides 'auto' (a whole run can force either path): not here.
    const env = process.env['STRATA_INLINE_IO'];
    delete process.env['STRATA_INLINE_IO'];
    onTestFinished(() => {
      if (env !== undefined) process.env['STRATA_INLINE_IO'] = env;
    });
    for (const d of [dir, '/dev/shm']) {
      const p = join(d, `strata-leaf-auto-${process.pid}`);
      try {
        await createSparseFile(p, 64 * MiB);
      } catch {
        continue; // no /dev/shm here
      }
      const leaf = await FileLeaf.open(p, '1');
      expect(leaf.inline, d).toBe(await memoryBacked(p));
      await leaf.close();
      await unlink(p);
    }
  });

  it('reads back what it wrote (writev, large and small), and a truncated device still gives EIO', async () => {
    const p = join(dir, 'a');
    await createSparseFile(p, 64 * MiB);
    const leaf = await FileLeaf.open(p, '1', { inlineIo: 'always', probe: false });
    expect(leaf.inline).toBe(true);
    const a = Buffer.alloc(4096, 1);
    const b = Buffer.alloc(8192, 2);
    const big = Buffer.alloc(5 * MiB, 3); // above INLINE_MAX: the asynchronous path
    const mid = [Buffer.alloc(MiB / 2, 4), Buffer.alloc(MiB / 2, 5)]; // written asynchronously (INLINE_WRITE_MAX), read inline
    await leaf.pwrite(5 * MiB, [a, b]);
    await leaf.pwrite(16 * MiB, big);
    await leaf.pwrite(8 * MiB, mid);
    expect((await leaf.pread(8 * MiB, MiB)).equals(Buffer.concat(mid))).toBe(true);
    const got = await leaf.pread(5 * MiB, 12288);
    expect(got.equals(Buffer.concat([a, b]))).toBe(true);
    expect((await leaf.pread(16 * MiB, 5 * MiB)).equals(big)).toBe(true);
    expect((await leaf.pread(16 * MiB + MiB, 4096)).equals(Buffer.alloc(4096, 3))).toBe(true);
    await truncate(p, 32 * MiB);
    await expect(leaf.pread(40 * MiB, 4096)).rejects.toMatchObject({ code: 'EIO' });
    expect(leaf.errors.read).toBe(1);
    await leaf.close();
  });
});
