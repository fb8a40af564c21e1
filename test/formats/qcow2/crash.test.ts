/**
 * Crash safety: a child process writes into a qcow2 image (with periodic
 * flushes) and is SIGKILLed mid-workload. `qemu-img check` must find no
 * corruption (leaks are allowed) and every block must hold what the last
 * flushed write put there, or what a later, unflushed write put there.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildProject, qemuCheck, qemuImg, qemuRaw, tempDir } from './helpers.js';

const t = tempDir('qcow2-crash');
let build: ReturnType<typeof buildProject>;
beforeAll(() => {
  build = buildProject('crash');
});
afterAll(() => {
  build?.cleanup();
  t.cleanup();
});

const BS = 4096;
function blockData(id: number, block: number): Buffer {
  const b = Buffer.alloc(BS);
  let x = (Math.imul(id, 2654435761) ^ Math.imul(block, 40503)) >>> 0 || 7;
  for (let i = 0; i < BS; i += 4) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    b.writeUInt32LE(x, i);
  }
  return b;
}

interface Req {
  id: number;
  first: number;
  n: number;
  kind: string;
}

/** Run the worker until it has flushed `flushes` times, then kill it. */
function runAndKill(image: string, seed: number, flushes: number, mode = ''): Promise<{ reqs: Req[]; lastFlush: number }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(__dirname, 'crash-worker.mjs'), build.root, image, String(seed), mode], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    let seen = 0;
    let killed = false;
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      seen = (out.match(/^F /gm) ?? []).length;
      if (!killed && seen >= flushes) {
        killed = true;
        // Let a few more unflushed requests start, then kill at an arbitrary point.
        setImmediate(() => child.kill('SIGKILL'));
      }
    });
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('exit', (code, sig) => {
      if (sig !== 'SIGKILL') return reject(new Error(`worker exited early (${code}): ${err}`));
      const reqs: Req[] = [];
      let lastFlush = 0;
      for (const line of out.split('\n')) {
        const p = line.split(' ');
        if (p[0] === 'W') reqs.push({ id: Number(p[1]), first: Number(p[2]), n: Number(p[3]), kind: p[4]! });
        if (p[0] === 'F') lastFlush = Number(p[1]);
      }
      resolve({ reqs, lastFlush });
    });
  });
}

describe('SIGKILL during writes leaves a consistent image', () => {
  // The last field: '' = one request at a time; 'behind' = write-behind, four requests in flight.
  const configs: Array<[string, string, string, number, string]> = [
    ['64k clusters', 'cluster_size=65536', '64M', 65536, ''],
    ['512 B clusters, 64-bit refcounts (refcount table growth)', 'cluster_size=512,refcount_bits=64', '8M', 512, ''],
    ['extended L2', 'cluster_size=65536,extended_l2=on', '32M', 65536, ''],
    ['write-behind, 64k clusters', 'cluster_size=65536', '64M', 65536, 'behind'],
    ['write-behind, 4k clusters, L2 cache evictions', 'cluster_size=4096', '64M', 4096, 'behind'],
  ];
  configs.forEach(([name, opts, size, clusterSize, mode], i) => {
    it(name, async () => {
      const f = join(t.dir, `crash-${i}.qcow2`);
      qemuImg('create', '-f', 'qcow2', '-o', opts, f, size);
      const { reqs, lastFlush } = await runAndKill(f, 1234 + i, 6, mode);
      expect(lastFlush).toBeGreaterThan(0);
      const c = qemuCheck(f);
      expect(c['check-errors']).toBe(0);
      expect(c.corruptions ?? 0).toBe(0);
      expect([0, 3]).toContain(c.status);
      const disk = qemuRaw(f, t.dir);
      const nBlocks = disk.length / BS;
      // Per block: the value of the last flushed request, plus anything a later request wrote.
      const flushed = new Int32Array(nBlocks); // request id, 0 = never written
      const later = new Map<number, number[]>();
      for (const r of reqs) {
        for (let b = r.first; b < r.first + r.n; b++) {
          const v = r.kind === 'd' ? r.id : -r.id; // negative: zeroes
          if (r.id <= lastFlush) flushed[b] = v;
          else (later.get(b) ?? later.set(b, []).get(b)!).push(v);
        }
      }
      // An unflushed request is not atomic: with clusters smaller than a block,
      // its clusters land independently, so judge each cluster-sized piece.
      const g = Math.min(BS, clusterSize);
      let bad = 0;
      const zero = Buffer.alloc(BS);
      for (let b = 0; b < nBlocks; b++) {
        const cands = [flushed[b]!, ...(later.get(b) ?? [])].map((v) => (v > 0 ? blockData(v, b) : zero));
        for (let o = 0; o < BS; o += g) {
          const got = disk.subarray(b * BS + o, b * BS + o + g);
          if (!cands.some((c) => got.equals(c.subarray(o, o + g)))) bad++;
        }
      }
      expect(bad).toBe(0);
    });
  });
});
