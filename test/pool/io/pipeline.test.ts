/**
 * BlockPipeline.writeMany's compression odds (CompressionHope): after a
 * streak of blocks lz4 cannot shrink enough, most blocks skip lz4 until one
 * shrinks again; every block still reads back exactly.
 */
import { describe, expect, it } from 'vitest';
import { Arc } from '../../../src/pool/cache/arc.js';
import { ObjType } from '../../../src/pool/blkptr.js';
import { Allocation } from '../../../src/pool/io/allocate.js';
import { arcKey, BlockPipeline } from '../../../src/pool/io/pipeline.js';
import { looksIncompressible } from '../../../src/pool/io/sample.js';
import { MemoryLeaf } from '../../../src/pool/vdev/leaf-memory.js';
import { SingleVdev } from '../../../src/pool/vdev/single.js';

const BS = 16384;

function pipeline(): BlockPipeline {
  const leaf = new MemoryLeaf('aa', 'mem0', 80 * 1024 * 1024);
  const top = new SingleVdev(leaf, { id: 0, config: { type: 'file', guid: 'aa', path: 'mem0' } });
  const io = new BlockPipeline([top], new Allocation([top]), new Arc<Buffer>({ maxBytes: 16 << 20 }));
  io.workers = null; // the odds apply to batches prepared on the writing thread
  return io;
}

/**
 * 32-bit values in 64-bit slots: half zero bytes, so the entropy sample lets
 * lz4 try, but lz4 saves under a quarter, and a 16K block needs a quarter to
 * save a 4K sector. `seed` makes each block different.
 */
function halfZero(seed: number): Buffer {
  const b = Buffer.alloc(BS);
  for (let i = 0; i < BS; i += 8) b.writeUInt32LE(Math.imul(i + seed * BS, 2654435761) >>> 0, i);
  return b;
}

function text(seed: number): Buffer {
  return Buffer.from(`block ${seed}: the quick brown fox jumps over the lazy dog. `.repeat(400)).subarray(0, BS);
}

const props = { comp: 'lz4' as const, cksum: 'fletcher4' as const, type: ObjType.VolumeData, level: 0, fill: 1, birth: 4, copies: 1, logged: true };

async function writeAll(io: BlockPipeline, datas: Buffer[]) {
  const bps = await io.writeMany(datas.map((data) => ({ data, p: props })));
  // Every block reads back exactly, from the device.
  for (const [i, bp] of bps.entries()) {
    io.arc.delete(arcKey(bp!));
    expect((await io.read(bp!)).equals(datas[i]!)).toBe(true);
  }
  return bps.map((bp) => bp!.comp);
}

describe('writeMany compression odds', () => {
  it('the fixture is what the test needs: lz4 runs on it and fails', async () => {
    expect(looksIncompressible(halfZero(1))).toBe(false);
    expect(await writeAll(pipeline(), [halfZero(1)])).toEqual(['off']);
    expect(await writeAll(pipeline(), [text(1)])).toEqual(['lz4']);
  });

  it('after a streak of blocks that do not shrink, lz4 is first tried on one block in 8 until one shrinks', async () => {
    const io = pipeline();
    const datas = [...Array.from({ length: 20 }, (_, i) => halfZero(i)), ...Array.from({ length: 30 }, (_, i) => text(i))];
    const comps = await writeAll(io, datas);
    expect(comps.slice(0, 20).every((c) => c === 'off')).toBe(true);
    const textComps = comps.slice(20);
    // Blocks 16..19 of the streak were skipped (16 failures), so the first retry falls on
    // text block 3 (the 8th since the last try): three text blocks are stored as they are.
    expect(textComps.slice(0, 3)).toEqual(['off', 'off', 'off']);
    expect(textComps.slice(3).every((c) => c === 'lz4')).toBe(true);
  });

  it('each retry that fails doubles the gap to the next, up to one in 128', async () => {
    const io = pipeline();
    const datas = [...Array.from({ length: 300 }, (_, i) => halfZero(i)), ...Array.from({ length: 200 }, (_, i) => text(i))];
    const comps = await writeAll(io, datas);
    expect(comps.slice(0, 300).every((c) => c === 'off')).toBe(true);
    // Tried: blocks 0..15, then 23, 39, 71, 135, 263 (gaps 8, 16, 32, 64, 128), and next
    // 391 = text block 91 (the gap stays at 128): text blocks 0..90 are stored as they are.
    const textComps = comps.slice(300);
    expect(textComps.slice(0, 91).every((c) => c === 'off')).toBe(true);
    expect(textComps.slice(91).every((c) => c === 'lz4')).toBe(true);
  });

  it('blocks that compress, or short streaks between them, are always tried', async () => {
    const io = pipeline();
    const datas: Buffer[] = [];
    for (let i = 0; i < 60; i++) datas.push(i % 10 < 8 ? halfZero(i) : text(i)); // streaks of 8
    const comps = await writeAll(io, datas);
    comps.forEach((c, i) => expect(c).toBe(i % 10 < 8 ? 'off' : 'lz4'));
  });
});
