/**
 * Shared helpers for the NBD interop tests: start an NbdServer on a free
 * port, run real peers (qemu-img, qemu-io, nbdinfo, nbdcopy, python3-libnbd,
 * fio), make throwaway directories and TLS certificates.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Duplex } from 'node:stream';
import { NbdServer, type NbdServerOptions } from '../../src/nbd/index.js';
import { Transmission } from '../../src/nbd/transmission.js';
import { BufferPool } from '../../src/nbd/buffer-pool.js';
import * as C from '../../src/nbd/constants.js';
import type { BlockDevice } from '../../src/device/block-device.js';

export interface Served {
  server: NbdServer;
  port: number;
  uri(name: string, scheme?: string): string;
}

export async function serve(opts: NbdServerOptions): Promise<Served> {
  const server = new NbdServer(opts);
  const addr = await server.listen(0, '127.0.0.1');
  if (typeof addr === 'string') throw new Error('expected a TCP address');
  return {
    server,
    port: addr.port,
    uri: (name, scheme = 'nbd') => `${scheme}://127.0.0.1:${addr.port}/${name}`,
  };
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Run a peer; never throws on a non-zero exit (tests assert on code/output). */
export function run(cmd: string, args: string[], opts: { input?: string; timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<RunResult> {
  return new Promise((resolve) => {
    const child = execFile(
      cmd,
      args,
      { timeout: opts.timeoutMs ?? 60_000, maxBuffer: 64 * 1024 * 1024, env: opts.env ?? process.env },
      (e, stdout, stderr) => {
        const code = e ? (typeof (e as { code?: unknown }).code === 'number' ? ((e as { code: number }).code) : 1) : 0;
        resolve({ code, stdout: String(stdout), stderr: String(stderr) });
      },
    );
    if (opts.input !== undefined) child.stdin!.end(opts.input);
  });
}

/** Run and require success, with the peer's stderr in the failure message. */
export async function ok(cmd: string, args: string[], opts: { input?: string; timeoutMs?: number } = {}): Promise<string> {
  const r = await run(cmd, args, opts);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.code}\n${r.stderr}\n${r.stdout}`);
  return r.stdout;
}

/** /usr/bin/python3 has the python3-libnbd module (a pyenv python3 on PATH may not). */
export function python(script: string): Promise<RunResult> {
  return run('/usr/bin/python3', ['-c', script], { timeoutMs: 60_000 });
}

/** The 28 bytes of an NBD request header. */
export function requestHeader(type: number, handle: number, offset: number, length: number, flags = 0): Buffer {
  const b = Buffer.alloc(C.REQUEST_SIZE);
  b.writeUInt32BE(C.REQUEST_MAGIC, 0);
  b.writeUInt16BE(flags, 4);
  b.writeUInt16BE(type, 6);
  b.writeUInt32BE(handle, 12);
  b.writeUInt32BE(Math.floor(offset / 2 ** 32), 16);
  b.writeUInt32BE(offset % 2 ** 32, 20);
  b.writeUInt32BE(length, 24);
  return b;
}

/**
 * A Transmission (the per-connection request loop) over `stream`, started, as the
 * server would run it after the handshake: 32 MiB requests, 256 MiB in flight, no logging.
 */
export function startTransmission(stream: Duplex, device: BlockDevice, structured: boolean): Transmission {
  const nop = () => {};
  const t = new Transmission(stream, {
    device,
    info: device.info(),
    structured,
    metaContext: false,
    transmissionFlags: 0,
    maxRequest: 32 * 1024 * 1024,
    maxInflight: 256 * 1024 * 1024,
    pool: new BufferPool(),
    log: { debug: nop, info: nop, warn: nop, error: nop },
    logContext: {},
  });
  t.start(Buffer.alloc(0), null);
  return t;
}

export async function tempDir(prefix: string): Promise<{ dir: string; cleanup(): Promise<void> }> {
  const dir = await mkdtemp(path.join(tmpdir(), `strata-${prefix}-`));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

export function pattern(len: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(len);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < len; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    b[i] = x & 0xff;
  }
  return b;
}

/**
 * A CA, a server certificate for 127.0.0.1/localhost and a client
 * certificate, laid out for both consumers:
 * - qemu's tls-creds-x509 dir: ca-cert.pem, server-cert.pem/server-key.pem,
 *   client-cert.pem/client-key.pem;
 * - libnbd's tls-certificates dir: the same names (ca-cert.pem,
 *   client-cert.pem, client-key.pem), see nbd_set_tls_certificates(3).
 */
export async function makeCerts(dir: string): Promise<{ ca: string; key: string; cert: string; dir: string }> {
  const o = (args: string[]) => ok('openssl', args);
  const p = (f: string) => path.join(dir, f);
  await o(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', p('ca-key.pem'), '-out', p('ca-cert.pem'), '-days', '2', '-subj', '/CN=strata test CA']);
  const ext = p('server.ext');
  await writeFile(ext, 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\nkeyUsage=digitalSignature,keyEncipherment\n');
  await o(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', p('server-key.pem'), '-out', p('server.csr'), '-subj', '/CN=localhost']);
  await o(['x509', '-req', '-in', p('server.csr'), '-CA', p('ca-cert.pem'), '-CAkey', p('ca-key.pem'), '-CAcreateserial', '-out', p('server-cert.pem'), '-days', '2', '-extfile', ext]);
  const cext = p('client.ext');
  await writeFile(cext, 'extendedKeyUsage=clientAuth\nkeyUsage=digitalSignature,keyEncipherment\n');
  await o(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', p('client-key.pem'), '-out', p('client.csr'), '-subj', '/CN=strata test client']);
  await o(['x509', '-req', '-in', p('client.csr'), '-CA', p('ca-cert.pem'), '-CAkey', p('ca-key.pem'), '-CAcreateserial', '-out', p('client-cert.pem'), '-days', '2', '-extfile', cext]);
  const { readFile } = await import('node:fs/promises');
  return {
    ca: await readFile(p('ca-cert.pem'), 'utf8'),
    key: await readFile(p('server-key.pem'), 'utf8'),
    cert: await readFile(p('server-cert.pem'), 'utf8'),
    dir,
  };
}
