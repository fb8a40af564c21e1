/**
 * Dirty bit (lazy refcounts) and read-only behaviour: a dirty image is
 * repaired on a read-write open and read as is on a read-only open.
 */
import { closeSync, openSync, readSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Qcow2Image, checkImage } from '../../../formats/qcow2/index.js';
import { isStorageError } from '../../../src/errors.js';
import { qemuCheck, qemuImg, qemuIo, qemuRaw, tempDir } from './helpers.js';

const t = tempDir('qcow2-dirty');
afterAll(() => t.cleanup());

/** Make an image look like QEMU crashed with lazy refcounts: dirty bit set, a data cluster's refcount never written. */
function makeDirty(f: string): void {
  const fd = openSync(f, 'r+');
  const h = Buffer.alloc(112);
  readSync(fd, h, 0, 112, 0);
  const inc = h.readBigUInt64BE(72) | 1n;
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(inc);
  writeSync(fd, b, 0, 8, 72);
  const rt = Number(h.readBigUInt64BE(48));
  const e = Buffer.alloc(8);
  readSync(fd, e, 0, 8, rt);
  const rb = Number(e.readBigUInt64BE(0));
  // The last used cluster is data (qemu-io wrote last): refcount 0.
  const rc = Buffer.alloc(64 * 2);
  readSync(fd, rc, 0, rc.length, rb);
  let last = 0;
  for (let i = 0; i < 64; i++) if (rc.readUInt16BE(i * 2)) last = i;
  writeSync(fd, Buffer.alloc(2), 0, 2, rb + last * 2);
  closeSync(fd);
}

describe('dirty images', () => {
  it('read-only open reads a dirty image; read-write open repairs it', async () => {
    const f = join(t.dir, 'lazy.qcow2');
    qemuImg('create', '-f', 'qcow2', '-o', 'lazy_refcounts=on', f, '4M');
    qemuIo(f, ['write -P 5 0 192k']);
    const want = qemuRaw(f, t.dir);
    makeDirty(f);
    expect(qemuCheck(f).status).toBe(2);

    const ro = await Qcow2Image.open(f, { readOnly: true });
    expect((await ro.read(0, want.length)).equals(want)).toBe(true);
    const r = await ro.exclusive(() => checkImage(ro));
    expect(r.corruptions).toBeGreaterThan(0);
    await expect(ro.write(0, Buffer.alloc(512))).rejects.toSatisfy((e: unknown) => isStorageError(e) && e.code === 'EPERM');
    await ro.close();

    const rw = await Qcow2Image.open(f);
    await rw.write(4096, Buffer.alloc(4096, 9));
    await rw.close();
    want.fill(9, 4096, 8192);
    const c = qemuCheck(f);
    expect(c.status).toBe(0);
    expect(JSON.parse(qemuImg('info', '--output=json', f))['dirty-flag']).toBe(false);
    expect(qemuRaw(f, t.dir).equals(want)).toBe(true);
  });

  it('an image marked corrupt is refused for writing, readable read-only', async () => {
    const f = join(t.dir, 'corrupt-bit.qcow2');
    qemuImg('create', '-f', 'qcow2', f, '1M');
    const fd = openSync(f, 'r+');
    const b = Buffer.alloc(8);
    b.writeBigUInt64BE(2n);
    writeSync(fd, b, 0, 8, 72);
    closeSync(fd);
    await expect(Qcow2Image.open(f)).rejects.toThrow(/marked corrupt/);
    const ro = await Qcow2Image.open(f, { readOnly: true });
    expect((await ro.read(0, 512)).every((x) => x === 0)).toBe(true);
    await ro.close();
  });
});
