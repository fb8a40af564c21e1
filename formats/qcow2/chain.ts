/**
 * Backing chains: open (with loop and depth limits) and the ChainDevice, a
 * BlockDevice over [top, backing, backing's backing, ...].
 *
 * Reads do not walk the chain: a merged index maps each unit of the guest
 * disk (the smallest allocation unit of any qcow2 layer) to the layer that
 * owns it (or to "zero"), built lazily per block of units by asking each
 * layer top-down only about units still unresolved, and kept in a bounded
 * LRU. A read then costs one index lookup and one L2 lookup in the owning
 * layer, whatever the depth. Writes go to the top layer; the index learns
 * that written units are now the top's, and forgets blocks that zeroing or
 * discard changed.
 */
import { realpath } from 'node:fs/promises';
import { dirname, isAbsolute, resolve } from 'node:path';
import type { BlockDevice, BlockDeviceInfo, Extent, WriteOptions, ZeroOptions } from '../../src/device/block-device.js';
import { err } from '../../src/errors.js';
import { Kind } from './cluster.js';
import { MAX_CHAIN_DEPTH } from './constants.js';
import { Qcow2Image, readBacking } from './image.js';

export interface Layer {
  path: string;
  format: 'qcow2' | 'raw';
  dev: BlockDevice;
  qcow2: Qcow2Image | null;
}

export type RawOpener = (path: string, readOnly: boolean) => Promise<BlockDevice>;
export type FormatProber = (path: string) => Promise<'qcow2' | 'raw'>;

const ZERO = 0xffff;
const UNRESOLVED = 0xfffe;
const UNITS_PER_BLOCK = 4096;
const MAX_INDEX_BLOCKS = 512;

/** Resolve a backing file name the way QEMU does: relative to the directory of the image naming it. */
export function resolveBacking(imagePath: string, backing: string): string {
  return isAbsolute(backing) ? backing : resolve(dirname(imagePath), backing);
}

export interface OpenChainOptions {
  readOnly?: boolean;
  format?: 'qcow2' | 'raw';
  openRaw: RawOpener;
  probe: FormatProber;
  /** Open only the top image (qemu-img -u style operations). */
  noBacking?: boolean;
  /** qcow2 layers: Qcow2OpenOptions.syncIo. */
  syncIo?: boolean;
}

/** Open an image and its whole backing chain. Only the top is writable. */
export async function openLayers(path: string, opts: OpenChainOptions): Promise<Layer[]> {
  const layers: Layer[] = [];
  const seen = new Set<string>();
  let cur: string | null = path;
  let fmt: 'qcow2' | 'raw' | undefined = opts.format;
  try {
    while (cur !== null) {
      let real: string;
      try {
        real = await realpath(cur);
      } catch {
        throw err.noent(layers.length ? `backing file '${cur}' of '${layers[layers.length - 1]!.path}' not found` : `cannot open '${cur}': no such file`);
      }
      if (seen.has(real)) throw err.corrupt(`backing chain loop: '${cur}' appears twice in the chain of '${path}'`);
      if (layers.length >= MAX_CHAIN_DEPTH) throw err.corrupt(`backing chain of '${path}' is deeper than ${MAX_CHAIN_DEPTH}`);
      seen.add(real);
      const readOnly = layers.length > 0 || !!opts.readOnly;
      const f = fmt ?? (await opts.probe(cur));
      if (f === 'raw') {
        layers.push({ path: cur, format: 'raw', dev: await opts.openRaw(cur, readOnly), qcow2: null });
        break;
      }
      const q = await Qcow2Image.open(cur, { readOnly, syncIo: opts.syncIo });
      layers.push({ path: cur, format: 'qcow2', dev: q, qcow2: q });
      if (opts.noBacking || q.header.backingFile === null) break;
      const next = resolveBacking(cur, q.header.backingFile);
      const bf = q.header.backingFormat;
      if (bf !== null && bf !== 'qcow2' && bf !== 'raw') throw err.notsup(`backing format '${bf}' of '${cur}' is not supported`);
      fmt = (bf as 'qcow2' | 'raw' | null) ?? undefined;
      cur = next;
    }
  } catch (e) {
    for (const l of layers) await l.dev.close().catch(() => undefined);
    throw e;
  }
  // Each qcow2 layer reads what it does not hold from the chain below it.
  for (let i = 0; i < layers.length - 1; i++) {
    const q = layers[i]!.qcow2;
    if (q) q.backing = layers.length - i - 1 === 1 ? layers[i + 1]!.dev : new ChainDevice(layers.slice(i + 1), false);
  }
  return layers;
}

export class ChainDevice implements BlockDevice {
  private index = new Map<number, Uint16Array>();
  /** The block most recently moved to the back of the LRU. */
  private lastBlock = -1;
  /** Reads and block-status queries in flight, and close()'s wake-up. */
  private active = 0;
  private idle: (() => void) | null = null;
  private closing = false;
  /** Bumped by every write/zero/trim: an index block built across one is not cached (it may be stale). */
  private gen = 0;
  private readonly unit: number;
  private readonly top: Layer;

  /** `owns`: close() closes every layer (the top-level chain); sub-chains used as backing do not. */
  constructor(
    readonly layers: Layer[],
    private owns = true,
  ) {
    if (layers.length === 0) throw err.inval('empty chain');
    this.top = layers[0]!;
    let u = Infinity;
    for (const l of layers) if (l.qcow2) u = Math.min(u, l.qcow2.map.unit);
    this.unit = Number.isFinite(u) ? Math.max(512, u) : 65536;
  }

  info(): BlockDeviceInfo {
    return this.top.dev.info();
  }

  private get size(): number {
    return this.top.dev.info().size;
  }

  private async block(b: number): Promise<Uint16Array> {
    const hit = this.index.get(b);
    if (hit) {
      if (b !== this.lastBlock) {
        // LRU: move to the back (skipped while the same block is hit again and again).
        this.index.delete(b);
        this.index.set(b, hit);
        this.lastBlock = b;
      }
      return hit;
    }
    const gen0 = this.gen;
    const own = new Uint16Array(UNITS_PER_BLOCK).fill(UNRESOLVED);
    const start = b * UNITS_PER_BLOCK * this.unit;
    const end = Math.min(this.size, start + UNITS_PER_BLOCK * this.unit);
    let open = Math.ceil((end - start) / this.unit);
    for (let u = open; u < UNITS_PER_BLOCK; u++) own[u] = ZERO;
    for (let k = 0; k < this.layers.length && open > 0; k++) {
      const l = this.layers[k]!;
      const lsize = l.dev.info().size;
      const firstBeyond = Math.max(0, Math.ceil((lsize - start) / this.unit));
      // Past the end of a layer everything unresolved reads as zeroes.
      for (let u = firstBeyond; u < UNITS_PER_BLOCK; u++) {
        if (own[u] === UNRESOLVED) {
          own[u] = ZERO;
          open--;
        }
      }
      if (start >= lsize) break;
      if (!l.qcow2) {
        for (let u = 0; u < Math.min(firstBeyond, UNITS_PER_BLOCK); u++) if (own[u] === UNRESOLVED) ((own[u] = k), open--);
        continue;
      }
      for (const s of await l.qcow2.ownSegments(start, Math.min(end, lsize) - start)) {
        if (s.kind === Kind.Unalloc) continue;
        const v = s.kind === Kind.Zero ? ZERO : k;
        const u0 = Math.floor((s.offset - start) / this.unit);
        const u1 = Math.ceil((s.offset + s.length - start) / this.unit);
        for (let u = u0; u < u1; u++) if (own[u] === UNRESOLVED) ((own[u] = v), open--);
      }
    }
    for (let u = 0; u < UNITS_PER_BLOCK; u++) if (own[u] === UNRESOLVED) own[u] = ZERO;
    if (gen0 !== this.gen) return own;
    if (this.index.size >= MAX_INDEX_BLOCKS) this.index.delete(this.index.keys().next().value as number);
    this.index.set(b, own);
    this.lastBlock = b;
    return own;
  }

  /** Runs of [offset, length, owner] covering the range. */
  private async runs(offset: number, length: number): Promise<Array<[number, number, number]>> {
    const out: Array<[number, number, number]> = [];
    const end = offset + length;
    let pos = offset;
    while (pos < end) {
      const u = Math.floor(pos / this.unit);
      const b = Math.floor(u / UNITS_PER_BLOCK);
      const own = await this.block(b);
      const blockEnd = Math.min(end, (b + 1) * UNITS_PER_BLOCK * this.unit);
      while (pos < blockEnd) {
        const uu = Math.floor(pos / this.unit);
        const o = own[uu % UNITS_PER_BLOCK]!;
        const stop = Math.min(blockEnd, (uu + 1) * this.unit);
        const last = out[out.length - 1];
        if (last && last[2] === o) last[1] += stop - pos;
        else out.push([pos, stop - pos, o]);
        pos = stop;
      }
    }
    return out;
  }

  /** Track a read-side operation so close() waits for it (layers read without a lock when read-only). */
  private async tracked<T>(fn: () => Promise<T>): Promise<T> {
    if (this.closing) throw err.shutdown('image chain is closed');
    this.active++;
    try {
      return await fn();
    } finally {
      if (--this.active === 0 && this.idle) this.idle();
    }
  }

  read(offset: number, length: number, into?: Buffer): Promise<Buffer> {
    // Within one unit (a 4 KiB guest read) whose index block is cached: one
    // owner, handed straight to it (which counts the read itself for close()).
    const u = Math.floor(offset / this.unit);
    if (!this.closing && length > 0 && Math.floor((offset + length - 1) / this.unit) === u) {
      const b = Math.floor(u / UNITS_PER_BLOCK);
      const own = this.index.get(b);
      if (own && b !== this.lastBlock) {
        this.index.delete(b); // LRU, as block() does
        this.index.set(b, own);
        this.lastBlock = b;
      }
      const o = own?.[u % UNITS_PER_BLOCK];
      if (o === ZERO) {
        const buf = into ?? Buffer.allocUnsafe(length);
        buf.fill(0, 0, length);
        return Promise.resolve(buf);
      }
      const q = o === undefined ? null : this.layers[o]!.qcow2;
      if (q) return q.readOwn(offset, length, into);
    }
    return this.tracked(() => this.readUntracked(offset, length, into));
  }

  private async readUntracked(offset: number, length: number, into?: Buffer): Promise<Buffer> {
    const buf = into ?? Buffer.allocUnsafe(length);
    for (const [off, len, o] of await this.runs(offset, length)) {
      await this.readFrom(o, off, buf.subarray(off - offset, off - offset + len));
    }
    return buf;
  }

  /** Read `dst.length` bytes at `off` from the layer owning them (`o`), or zeroes. */
  private async readFrom(o: number, off: number, dst: Buffer): Promise<void> {
    if (o === ZERO) dst.fill(0);
    else {
      const l = this.layers[o]!;
      if (l.qcow2) await l.qcow2.readOwn(off, dst.length, dst);
      else await readBacking(l.dev, off, dst);
    }
  }

  /** Mark units the top layer now owns after a write (its allocation unit rounds outward). */
  private learnWrite(offset: number, length: number): void {
    this.gen++;
    const tu = this.top.qcow2 ? this.top.qcow2.map.unit : this.unit;
    const a = Math.floor(offset / tu) * tu;
    const z = Math.min(this.size, Math.ceil((offset + length) / tu) * tu);
    for (let u = Math.floor(a / this.unit); u < Math.ceil(z / this.unit); u++) {
      const own = this.index.get(Math.floor(u / UNITS_PER_BLOCK));
      if (own) own[u % UNITS_PER_BLOCK] = 0;
    }
  }

  private forget(offset: number, length: number): void {
    this.gen++;
    const span = UNITS_PER_BLOCK * this.unit;
    for (let b = Math.floor(offset / span); b <= Math.floor((offset + length - 1) / span); b++) this.index.delete(b);
  }

  async write(offset: number, data: Buffer, opts?: WriteOptions): Promise<void> {
    await this.top.dev.write(offset, data, opts);
    this.learnWrite(offset, data.length);
  }

  async writeCompressed(offset: number, data: Buffer): Promise<void> {
    if (!this.top.qcow2) throw err.notsup('compressed writes need a qcow2 image');
    await this.top.qcow2.writeCompressed(offset, data);
    this.learnWrite(offset, data.length);
  }

  async writeZeroes(offset: number, length: number, opts?: ZeroOptions): Promise<void> {
    try {
      await this.top.dev.writeZeroes(offset, length, opts);
    } finally {
      this.forget(offset, length);
    }
  }

  async trim(offset: number, length: number, opts?: WriteOptions): Promise<void> {
    try {
      await this.top.dev.trim(offset, length, opts);
    } finally {
      this.forget(offset, length);
    }
  }

  flush(): Promise<void> {
    return this.top.dev.flush();
  }

  blockStatus(offset: number, length: number): Promise<Extent[]> {
    return this.tracked(() => this.blockStatusUntracked(offset, length));
  }

  private async blockStatusUntracked(offset: number, length: number): Promise<Extent[]> {
    const out: Extent[] = [];
    for (const [off, len, o] of await this.runs(offset, Math.min(length, UNITS_PER_BLOCK * this.unit * 16))) {
      if (o === ZERO) out.push({ offset: off, length: len, hole: true, zero: true });
      else if (this.layers[o]!.qcow2) out.push({ offset: off, length: len, hole: false, zero: false });
      else {
        for (const e of await this.layers[o]!.dev.blockStatus(off, Math.min(len, this.layers[o]!.dev.info().size - off))) out.push(e);
      }
    }
    return out;
  }

  /** Which layer (depth) holds each run: for `map`. */
  async owners(offset: number, length: number): Promise<Array<{ offset: number; length: number; depth: number | null }>> {
    return (await this.runs(offset, length)).map(([o, l, d]) => ({ offset: o, length: l, depth: d === ZERO ? null : d }));
  }

  /** Drop every cached index block (after changing a lower layer, e.g. commit). */
  invalidate(): void {
    this.index.clear();
  }

  async close(): Promise<void> {
    if (!this.owns) return;
    this.closing = true;
    if (this.active > 0) await new Promise<void>((r) => (this.idle = r));
    let first: unknown = null;
    for (const l of this.layers) {
      try {
        await l.dev.close();
      } catch (e) {
        first ??= e;
      }
    }
    if (first) throw first;
  }
}
