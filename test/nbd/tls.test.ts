/**
 * STARTTLS with x509 certificates made by openssl: qemu-img/qemu-io with
 * tls-creds-x509, nbdinfo with nbds:// and tls-certificates, TLS-only
 * exports, and client-certificate verification.
 */
import { copyFile, mkdir } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MemoryDevice } from '../../src/device/memory-device.js';
import { makeCerts, ok, run, serve, tempDir, type Served } from './helpers.js';

const MiB = 1024 * 1024;

describe('NBD over TLS', () => {
  let tmp: Awaited<ReturnType<typeof tempDir>>;
  let certs: Awaited<ReturnType<typeof makeCerts>>;
  let caOnly: string;
  let s: Served;
  let mtls: Served;
  let plain: Served;
  const dev = new MemoryDevice(8 * MiB);

  beforeAll(async () => {
    tmp = await tempDir('nbd-tls');
    certs = await makeCerts(tmp.dir);
    caOnly = path.join(tmp.dir, 'ca-only');
    await mkdir(caOnly);
    await copyFile(path.join(tmp.dir, 'ca-cert.pem'), path.join(caOnly, 'ca-cert.pem'));
    await dev.write(0, Buffer.alloc(MiB, 0x42));
    const exports = { open: { device: dev }, secret: { device: dev, requireTls: true, description: 'tls only' } };
    s = await serve({ exports, tls: { key: certs.key, cert: certs.cert } });
    mtls = await serve({ exports, tls: { key: certs.key, cert: certs.cert, ca: certs.ca, requestCert: true } });
    plain = await serve({ exports });
  });
  afterAll(async () => {
    await Promise.all([s.server.close(), mtls.server.close(), plain.server.close()]);
    await tmp.cleanup();
  });

  const nbds = (sv: Served, name: string, dir = tmp.dir) => `${sv.uri(name, 'nbds')}?tls-certificates=${dir}`;

  it('nbdinfo upgrades with STARTTLS and sees the TLS-only export', async () => {
    const out = JSON.parse(await ok('nbdinfo', ['--json', nbds(s, 'secret')]));
    expect(out.TLS).toBe(true);
    expect(out.exports[0]['export-size']).toBe(8 * MiB);
    const list = JSON.parse(await ok('nbdinfo', ['--list', '--json', nbds(s, '')]));
    expect(list.exports.map((e: { 'export-name': string }) => e['export-name']).sort()).toEqual(['open', 'secret']);
  });

  it('a TLS-only export is refused (and not listed) without TLS', async () => {
    const r = await run('nbdinfo', [s.uri('secret')]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/requires TLS|Operation not supported/);
    const list = JSON.parse(await ok('nbdinfo', ['--list', '--json', s.uri('')]));
    expect(list.exports.map((e: { 'export-name': string }) => e['export-name'])).toEqual(['open']);
  });

  it('qemu-img and qemu-io work through tls-creds-x509', async () => {
    const obj = `tls-creds-x509,id=tls0,endpoint=client,dir=${tmp.dir}`;
    const opts = `driver=nbd,host=127.0.0.1,port=${s.port},export=secret,tls-creds=tls0`;
    const info = JSON.parse(await ok('qemu-img', ['info', '--output=json', '--object', obj, '--image-opts', opts]));
    expect(info['virtual-size']).toBe(8 * MiB);
    await ok('qemu-io', ['--object', obj, '--image-opts', opts, '-c', 'write -P 0x77 1M 256k', '-c', 'read -P 0x77 1M 256k', '-c', 'read -P 0x42 0 1M', '-c', 'flush']);
    expect((await dev.read(MiB, 4)).equals(Buffer.alloc(4, 0x77))).toBe(true);
  });

  it('a client that does not trust the server certificate cannot connect', async () => {
    const other = await tempDir('nbd-tls-other');
    try {
      await makeCerts(other.dir);
      const r = await run('nbdinfo', [nbds(s, 'secret', other.dir)]);
      expect(r.code).not.toBe(0);
    } finally {
      await other.cleanup();
    }
  });

  it('with requestCert, a client certificate signed by the CA is required', async () => {
    const good = JSON.parse(await ok('nbdinfo', ['--json', nbds(mtls, 'open')]));
    expect(good.TLS).toBe(true);
    const bad = await run('nbdinfo', [nbds(mtls, 'open', caOnly)]);
    expect(bad.code).not.toBe(0);
    // A client certificate from another CA is refused too.
    const other = await tempDir('nbd-tls-foreign');
    try {
      await makeCerts(other.dir);
      await copyFile(path.join(tmp.dir, 'ca-cert.pem'), path.join(other.dir, 'ca-cert.pem'));
      const foreign = await run('nbdinfo', [nbds(mtls, 'open', other.dir)]);
      expect(foreign.code).not.toBe(0);
    } finally {
      await other.cleanup();
    }
    // The server survived the failed handshake.
    expect(JSON.parse(await ok('nbdinfo', ['--json', nbds(mtls, 'secret')])).TLS).toBe(true);
  });

  it('a server without TLS refuses STARTTLS and still serves plain clients', async () => {
    const r = await run('nbdinfo', [nbds(plain, 'open')]);
    expect(r.code).not.toBe(0);
    expect(JSON.parse(await ok('nbdinfo', ['--json', plain.uri('open')])).TLS).toBe(false);
  });
});
