/**
 * Prepare workers: compression and checksums of large write batches run on
 * worker threads (ZFS runs them in its zio taskqs), so a txg sync does not
 * hold the one JS thread that also serves NBD requests.
 *
 * A batch is copied into a pooled SharedArrayBuffer arena (prepare.ts
 * describes the layout; a copy costs well under a microsecond per 16 KiB,
 * the CPU it moves off costs 10-100), a worker prepares it in place, and
 * the pool reads the results back. The bytes are exactly those of
 * prepareBlock() on the main thread: same code, same module.
 *
 * Process-wide and lazy: workers start on the first large batch and are
 * unreferenced while idle, so they never keep a process alive, and
 * referenced while a job runs, so a process never exits under a sync.
 * STRATA_PREPARE_WORKERS=N sets their number (0: prepare inline). The
 * default is none below 4 CPUs, else CPUs - 2 (at most 4): on the 2-core
 * machine this was built on, a worker only moved CPU time around (the
 * copy into the arena is extra work, and the NBD client and the event
 * loop already keep both cores busy), measured at 0.8-1.0x of inline in
 * 1 MiB NBD writes. If a worker cannot start or fails, batches are
 * prepared inline from then on.
 *
 * Under vitest the sources are TypeScript, which a worker cannot load; the
 * worker then runs the built copy in dist/ (`npm test` builds first).
 */
import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { ARENA_BYTES } from './prepare.js';

/** Arenas kept for reuse (fresh memory costs page faults on every touch). */
const POOLED_ARENAS = 8;

interface Pending {
  resolve(): void;
  reject(e: Error): void;
}

class Slot {
  busy = 0;
  readonly pending = new Map<number, Pending>();
  constructor(readonly worker: Worker) {}
}

export class PrepareWorkers {
  private static instance: PrepareWorkers | null | undefined;
  private readonly slots: Slot[] = [];
  private readonly arenas: SharedArrayBuffer[] = [];
  private next = 0;
  private seq = 0;
  private broken = false;
  /** Batches the workers prepared (for tests and stats). */
  jobsDone = 0;

  /** The process's workers, or null when disabled or unavailable. */
  static shared(): PrepareWorkers | null {
    if (PrepareWorkers.instance !== undefined) return PrepareWorkers.instance;
    const env = process.env['STRATA_PREPARE_WORKERS'];
    const cpus = availableParallelism();
    const n = env !== undefined && env !== '' ? Number(env) : cpus >= 4 ? Math.min(4, cpus - 2) : 0;
    PrepareWorkers.instance = Number.isInteger(n) && n > 0 ? PrepareWorkers.start(n) : null;
    return PrepareWorkers.instance;
  }

  /** A separate set of n workers (tests, or a pool that wants its own); null if the worker entry is missing. */
  static start(n: number): PrepareWorkers | null {
    const url = workerUrl();
    return url ? new PrepareWorkers(url, n) : null;
  }

  /** Stop the workers (jobs still running fail, and their batches are prepared inline). */
  async close(): Promise<void> {
    this.broken = true;
    await Promise.all(this.slots.map((s) => s.worker.terminate()));
  }

  private constructor(url: URL, n: number) {
    try {
      for (let i = 0; i < n; i++) this.slots.push(this.spawn(url));
    } catch {
      this.broken = true;
    }
  }

  get available(): boolean {
    return !this.broken;
  }

  private spawn(url: URL): Slot {
    const w = new Worker(url);
    const slot = new Slot(w);
    w.unref();
    w.on('message', (m: { id: number; error?: string }) => {
      const p = slot.pending.get(m.id);
      if (!p) return;
      slot.pending.delete(m.id);
      if (--slot.busy === 0) w.unref();
      if (m.error) p.reject(new Error(m.error));
      else {
        this.jobsDone++;
        p.resolve();
      }
    });
    const fail = (e: Error) => {
      this.broken = true;
      for (const p of slot.pending.values()) p.reject(e);
      slot.pending.clear();
      slot.busy = 0;
    };
    w.on('error', fail);
    w.on('exit', (code) => fail(new Error(`prepare worker exited (${code})`)));
    return slot;
  }

  /** An arena to fill (return it with release()). */
  arena(): SharedArrayBuffer {
    return this.arenas.pop() ?? new SharedArrayBuffer(ARENA_BYTES);
  }

  release(sab: SharedArrayBuffer): void {
    if (this.arenas.length < POOLED_ARENAS) this.arenas.push(sab);
  }

  /** Prepare the first n blocks of a filled arena on a worker. Rejects if the worker fails. */
  run(sab: SharedArrayBuffer, n: number): Promise<void> {
    if (this.broken) return Promise.reject(new Error('prepare workers unavailable'));
    const slot = this.slots[this.next++ % this.slots.length]!;
    const id = ++this.seq;
    return new Promise<void>((resolve, reject) => {
      slot.pending.set(id, { resolve, reject });
      if (slot.busy++ === 0) slot.worker.ref();
      slot.worker.postMessage({ id, sab, n });
    });
  }
}

function workerUrl(): URL | null {
  const here = new URL('./prepare-worker.js', import.meta.url);
  if (here.protocol !== 'file:') return null;
  if (existsSync(fileURLToPath(here))) return here;
  const src = fileURLToPath(import.meta.url);
  const at = src.lastIndexOf('/src/pool/io/');
  if (at < 0) return null;
  const built = `${src.slice(0, at)}/dist/src/pool/io/prepare-worker.js`;
  return existsSync(built) ? pathToFileURL(built) : null;
}
