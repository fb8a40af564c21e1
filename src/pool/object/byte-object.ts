/**
 * Byte objects: a byte string stored in a block tree of 128 KiB blocks. Used
 * for metadata kept as documents (the dataset directory, space map logs,
 * pool history). Readers get the whole content; writers replace it or append.
 */
import { ObjType, type BlockPointer } from '../blkptr.js';
import type { BlockPipeline } from '../io/pipeline.js';
import { newDnode, type Dnode, type DnodeJson, dnodeFromJson, dnodeToJson } from './dnode.js';
import { BlockTree, type DirtyMap } from './tree.js';

export const BYTE_BLOCK = 128 * 1024;

export interface ByteObject {
  dnode: Dnode;
  bytes: number;
}

export interface ByteObjectJson {
  d: DnodeJson;
  bytes: number;
}

export function emptyByteObject(): ByteObject {
  return { dnode: newDnode(BYTE_BLOCK, 1), bytes: 0 };
}

export const byteObjectToJson = (o: ByteObject): ByteObjectJson => ({ d: dnodeToJson(o.dnode), bytes: o.bytes });
export const byteObjectFromJson = (j: ByteObjectJson): ByteObject => ({ dnode: dnodeFromJson(j.d), bytes: j.bytes });

export interface MetaWriter {
  io: BlockPipeline;
  txg: number;
  type: ObjType;
  /** Old metadata blocks to free (deferred, not space-map logged). */
  kill(bp: BlockPointer): void;
  born?(bp: BlockPointer): void;
}

export async function readByteObject(io: BlockPipeline, o: ByteObject): Promise<Buffer> {
  const out = Buffer.alloc(o.bytes);
  const tree = new BlockTree(io);
  const n = Math.ceil(o.bytes / BYTE_BLOCK);
  for (let b = 0; b < n; b++) {
    const blk = await tree.readBlock(o.dnode, b);
    if (blk) blk.copy(out, b * BYTE_BLOCK, 0, Math.min(BYTE_BLOCK, o.bytes - b * BYTE_BLOCK));
  }
  return out;
}

function hooks(w: MetaWriter) {
  return {
    props: (level: number) => ({
      comp: 'lz4' as const,
      cksum: 'fletcher4' as const,
      type: level === 0 ? w.type : ObjType.Indirect,
      level,
      fill: 1,
      birth: w.txg,
      copies: 2, // metadata keeps two copies (ZFS's ditto blocks)
      logged: false,
      noHole: true,
    }),
    kill: (bp: BlockPointer) => w.kill(bp),
    born: (bp: BlockPointer) => w.born?.(bp),
  };
}

/** Replace the whole content. */
export async function rewriteByteObject(w: MetaWriter, o: ByteObject, content: Buffer): Promise<ByteObject> {
  const n = Math.max(1, Math.ceil(content.length / BYTE_BLOCK));
  const oldN = Math.max(1, Math.ceil(o.bytes / BYTE_BLOCK));
  const dirty: DirtyMap = new Map();
  for (let b = 0; b < Math.max(n, oldN); b++) {
    if (b < n) {
      const blk = Buffer.alloc(BYTE_BLOCK);
      content.copy(blk, 0, b * BYTE_BLOCK, Math.min(content.length, (b + 1) * BYTE_BLOCK));
      dirty.set(b, blk);
    } else dirty.set(b, null);
  }
  const d = { ...o.dnode, nblocks: Math.max(n, oldN) };
  let nd = await new BlockTree(w.io).sync(d, dirty, hooks(w));
  nd = { ...nd, nblocks: n };
  return { dnode: nd, bytes: content.length };
}

/** Append bytes (only the last partial block and new blocks are rewritten). */
export async function appendByteObject(w: MetaWriter, o: ByteObject, more: Buffer): Promise<ByteObject> {
  if (more.length === 0) return o;
  const tree = new BlockTree(w.io);
  const total = o.bytes + more.length;
  const first = Math.floor(o.bytes / BYTE_BLOCK);
  const last = Math.ceil(total / BYTE_BLOCK) - 1;
  const dirty: DirtyMap = new Map();
  let src = 0;
  for (let b = first; b <= last; b++) {
    const blk = Buffer.alloc(BYTE_BLOCK);
    const start = b * BYTE_BLOCK;
    if (start < o.bytes) {
      const old = await tree.readBlock(o.dnode, b);
      if (old) old.copy(blk, 0, 0, o.bytes - start);
    }
    const at = Math.max(0, o.bytes - start);
    const n = Math.min(BYTE_BLOCK - at, more.length - src);
    more.copy(blk, at, src, src + n);
    src += n;
    dirty.set(b, blk);
  }
  const d = { ...o.dnode, nblocks: Math.max(o.dnode.nblocks, last + 1) };
  const nd = await tree.sync(d, dirty, hooks(w));
  return { dnode: nd, bytes: total };
}
