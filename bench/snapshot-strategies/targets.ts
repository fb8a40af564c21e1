/**
 * What the benchmark measures: a disk with snapshots, behind an NBD server.
 *
 * - PoolTarget: a strata volume of one snapmode (native, cow, row) served by
 *   `strata serve`; snapshots through the API (live, while served).
 * - Qcow2Target: a qcow2 image served by `strata serve` or qemu-nbd, with
 *   internal snapshots (`qemu-img snapshot -c/-d`) or external overlays
 *   (`qemu-img create -b`, deleted by `qemu-img commit` of the active
 *   overlay into its backing file). Those are offline operations: the server
 *   stops first and restarts on next use; only the qemu-img command is timed.
 *
 * Every measured write goes through fio over NBD. The small per-layer
 * writes of the depth phase are setup: pool targets write them through a
 * minimal NBD client of ours, qcow2 targets offline with qemu-io
 * (restarting a server for each of 50 layers would measure start-ups).
 */
import { copyFile, rm, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { PoolService, ImageServer } from './servers.js';
import { fio, msSince, run } from './proc.js';
import { NbdWriter } from './nbd-client.js';

export type Family = 'pool' | 'qcow2-int' | 'qcow2-ext';

export interface Space {
  /** Bytes the disk takes on its storage, snapshots included. */
  used: number;
  /** Of which held only for snapshots (pool: usedbysnapshots; qcow2-ext: the backing files). */
  snapshots: number;
  /** What the live disk references (pool: referenced; qcow2: the active file). */
  live: number;
}

export interface Target {
  readonly name: string;
  readonly family: Family;
  readonly server: 'strata' | 'qemu-nbd';
  readonly size: number;
  /** Snapshots now held (depth of the chain for row and qcow2-ext). */
  depth: number;
  uri(): Promise<string>;
  /** Take a snapshot; returns the time of the operation in ms. */
  snapshot(tag: string): Promise<number>;
  /** Delete a snapshot (qcow2-ext: only the newest: commit the active overlay); returns ms. */
  deleteSnapshot(tag: string): Promise<number>;
  /** `bytes` of 4 KiB writes at random distinct offsets (the data of one layer in the depth phase). */
  layerWrites(seed: number, bytes: number): Promise<void>;
  space(): Promise<Space>;
  destroy(): Promise<void>;
}

/** Write the whole device sequentially through NBD with fio's (incompressible) data. */
export async function fillViaNbd(t: Target): Promise<void> {
  await fio(await t.uri(), { rw: 'write', bs: 1024 * 1024, iodepth: 16, size: t.size });
}

export class PoolTarget implements Target {
  readonly family = 'pool' as const;
  readonly server = 'strata' as const;
  depth = 0;
  volblocksize = 16384;

  constructor(
    readonly name: string,
    private svc: PoolService,
    readonly vol: string,
    readonly mode: 'native' | 'cow' | 'row',
    readonly size: number,
  ) {}

  async create(): Promise<void> {
    await this.svc.api.create(this.vol, { volsize: String(this.size), sparse: true, props: { snapmode: this.mode } });
    const [row] = await this.svc.api.datasets([this.vol], false);
    this.volblocksize = Number(row?.props['volblocksize']?.value ?? 16384);
    await fillViaNbd(this);
  }

  async uri(): Promise<string> {
    return this.svc.uri(this.vol);
  }

  async snapshot(tag: string): Promise<number> {
    const t0 = process.hrtime.bigint();
    await this.svc.api.snapshot([`${this.vol}@${tag}`]);
    this.depth++;
    return msSince(t0);
  }

  async deleteSnapshot(tag: string): Promise<number> {
    const t0 = process.hrtime.bigint();
    await this.svc.api.destroySnapshots(`${this.vol}@${tag}`);
    this.depth--;
    return msSince(t0);
  }

  async layerWrites(seed: number, bytes: number): Promise<void> {
    // Setup, not a measurement: one connection of our own instead of a fio start-up per layer.
    const c = await NbdWriter.connect(await this.uri());
    try {
      await c.writeAt(distinctBlocks(seed, this.size / 4096, Math.floor(bytes / 4096)).map((b) => b * 4096), 4096);
    } finally {
      await c.close();
    }
  }

  async space(): Promise<Space> {
    const [row] = await this.svc.api.datasets([this.vol], false);
    if (!row) throw new Error(`no dataset ${this.vol}`);
    return { used: row.used, snapshots: Number(row.props['usedbysnapshots']?.value ?? 0), live: row.refer };
  }

  async destroy(): Promise<void> {
    await this.svc.api.destroy(this.vol, { recursive: true, force: true });
  }
}

/** Deterministic PRNG (mulberry32) for the offline writes. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** `count` distinct block indexes in [0, n), random. */
export function distinctBlocks(seed: number, n: number, count: number): number[] {
  const rnd = prng(seed);
  const picked = new Set<number>();
  count = Math.min(count, n);
  while (picked.size < count) picked.add(Math.floor(rnd() * n));
  return [...picked];
}

export class Qcow2Target implements Target {
  readonly server: 'strata' | 'qemu-nbd';
  depth = 0;
  /** Base first, active (served) file last. */
  private chain: string[];
  /** External snapshot tags, in order (tag i froze chain[i]). */
  private tags: string[] = [];

  constructor(
    readonly name: string,
    readonly family: 'qcow2-int' | 'qcow2-ext',
    private srv: ImageServer,
    private file: string,
    readonly size: number,
  ) {
    this.server = srv.kind;
    this.chain = [file];
  }

  /** Start from a filled qcow2 image (copied from `template`). */
  async create(template: string): Promise<void> {
    await copyFile(template, this.file);
  }

  private get top(): string {
    return this.chain[this.chain.length - 1]!;
  }

  uri(): Promise<string> {
    return this.srv.uri(this.top);
  }

  async snapshot(tag: string): Promise<number> {
    await this.srv.stop();
    const t0 = process.hrtime.bigint();
    if (this.family === 'qcow2-int') {
      await run('qemu-img', ['snapshot', '-c', tag, this.top]);
    } else {
      const next = join(dirname(this.file), `${basename(this.file, '.qcow2')}-${tag}.qcow2`);
      await run('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', basename(this.top), '-F', 'qcow2', next]);
      this.chain.push(next);
      this.tags.push(tag);
    }
    const ms = msSince(t0);
    this.depth++;
    return ms;
  }

  async deleteSnapshot(tag: string): Promise<number> {
    await this.srv.stop();
    let ms: number;
    if (this.family === 'qcow2-int') {
      const t0 = process.hrtime.bigint();
      await run('qemu-img', ['snapshot', '-d', tag, this.top]);
      ms = msSince(t0);
    } else {
      if (this.tags[this.tags.length - 1] !== tag) throw new Error(`${this.name}: only the newest external snapshot can be deleted (commit)`);
      const top = this.top;
      const t0 = process.hrtime.bigint();
      // The active overlay's data goes down into the frozen image, which becomes active again.
      await run('qemu-img', ['commit', '-q', '-d', '-f', 'qcow2', top]);
      ms = msSince(t0);
      this.chain.pop();
      this.tags.pop();
      await rm(top, { force: true });
    }
    this.depth--;
    return ms;
  }

  async layerWrites(seed: number, bytes: number): Promise<void> {
    await this.srv.stop();
    const blocks = distinctBlocks(seed, this.size / 4096, Math.floor(bytes / 4096));
    const cmds = blocks.map((b) => `write -q -P ${1 + (seed % 250)} ${b * 4096} 4k`);
    // qemu-io takes one command per -c; a couple of thousand fit in one invocation. Setup, not
    // measured: no flushes (-t unsafe), the page cache is what the servers read anyway.
    for (let i = 0; i < cmds.length; i += 2000) {
      await run('qemu-io', ['-f', 'qcow2', '-t', 'unsafe', ...cmds.slice(i, i + 2000).flatMap((c) => ['-c', c]), this.top]);
    }
  }

  async space(): Promise<Space> {
    let used = 0;
    let live = 0;
    for (const f of this.chain) {
      const s = await stat(f);
      used += s.blocks * 512;
      if (f === this.top) live = s.blocks * 512;
    }
    // Internal snapshots share the file: what they hold alone is not visible from outside.
    return { used, snapshots: this.family === 'qcow2-ext' ? used - live : 0, live: this.family === 'qcow2-ext' ? live : used };
  }

  async destroy(): Promise<void> {
    await this.srv.stop();
    for (const f of this.chain) await rm(f, { force: true });
  }
}
