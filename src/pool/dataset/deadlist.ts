/**
 * Dead lists (ZFS's dsl_deadlist), the bookkeeping that makes native
 * snapshots O(1) to take and exact to destroy.
 *
 * Theory. A block born in txg b is referenced by the head and by every
 * snapshot taken at or after b, until the head stops referencing it (an
 * overwrite, trim or shrink) in some txg k. At that moment:
 *  - if b > prevSnapTxg (no snapshot has seen it), nobody else has it: free;
 *  - otherwise the previous snapshot still references it: it goes on the
 *    head's dead list.
 * Taking a snapshot moves the head's dead list to the snapshot and starts an
 * empty one. So a dataset's (or snapshot's) dead list holds exactly the
 * blocks the previous snapshot referenced and this one does not, and every
 * block is either live in the head or on exactly one dead list.
 *
 * Destroying snapshot S (previous P, next N): blocks on N's dead list born
 * after P were referenced by S alone: free them. The rest stay on N's list,
 * and S's own list is merged into N's (those blocks are still P's).
 *
 * Storage: a byte object of 128-byte block pointers (appended per txg), plus
 * a summary of allocated bytes by birth txg so USED of any snapshot comes
 * from the summary without reading the list.
 */
import { BP_SIZE, decodeBp, encodeBp, bpAsize, ObjType, type BlockPointer } from '../blkptr.js';
import type { BlockPipeline } from '../io/pipeline.js';
import { appendByteObject, byteObjectFromJson, byteObjectToJson, emptyByteObject, readByteObject, rewriteByteObject, type ByteObjectJson, type MetaWriter } from '../object/byte-object.js';
import { BlockTree } from '../object/tree.js';

export interface DeadlistJson {
  obj: ByteObjectJson;
  count: number;
  /** Allocated bytes by birth txg (as strings, JSON keys). */
  byBirth: Record<string, number>;
}

export function emptyDeadlist(): DeadlistJson {
  return { obj: byteObjectToJson(emptyByteObject()), count: 0, byBirth: {} };
}

/** Bytes on the list with birth > after (and <= upTo). */
export function deadBytes(d: DeadlistJson | undefined, after: number, upTo = Infinity): number {
  if (!d) return 0;
  let n = 0;
  for (const [k, v] of Object.entries(d.byBirth)) {
    const b = Number(k);
    if (b > after && b <= upTo) n += v;
  }
  return n;
}

export async function readDeadlist(io: BlockPipeline, d: DeadlistJson): Promise<BlockPointer[]> {
  if (d.count === 0) return [];
  const buf = await readByteObject(io, byteObjectFromJson(d.obj));
  const out: BlockPointer[] = [];
  for (let at = 0; at + BP_SIZE <= buf.length; at += BP_SIZE) {
    const bp = decodeBp(buf, at);
    if (bp) out.push(bp);
  }
  return out;
}

function encodeAll(bps: BlockPointer[]): Buffer {
  const b = Buffer.alloc(bps.length * BP_SIZE);
  bps.forEach((bp, i) => encodeBp(bp, b, i * BP_SIZE));
  return b;
}

function summarize(into: Record<string, number>, bps: BlockPointer[], sign = 1): void {
  for (const bp of bps) {
    const k = String(bp.birth);
    const v = (into[k] ?? 0) + sign * bpAsize(bp);
    if (v === 0) delete into[k];
    else into[k] = v;
  }
}

export async function appendDeadlist(w: MetaWriter, d: DeadlistJson, bps: BlockPointer[]): Promise<DeadlistJson> {
  if (bps.length === 0) return d;
  const obj = await appendByteObject({ ...w, type: ObjType.DeadList }, byteObjectFromJson(d.obj), encodeAll(bps));
  const byBirth = { ...d.byBirth };
  summarize(byBirth, bps);
  return { obj: byteObjectToJson(obj), count: d.count + bps.length, byBirth };
}

export async function rewriteDeadlist(w: MetaWriter, d: DeadlistJson, bps: BlockPointer[]): Promise<DeadlistJson> {
  const obj = await rewriteByteObject({ ...w, type: ObjType.DeadList }, byteObjectFromJson(d.obj), encodeAll(bps));
  const byBirth: Record<string, number> = {};
  summarize(byBirth, bps);
  return { obj: byteObjectToJson(obj), count: bps.length, byBirth };
}

/** Free a dead list's own metadata blocks (the list is going away). */
export async function killDeadlistStorage(io: BlockPipeline, d: DeadlistJson, kill: (bp: BlockPointer) => void): Promise<void> {
  await new BlockTree(io).walkAll(byteObjectFromJson(d.obj).dnode, kill);
}

/** Every metadata block of a dead list (for import's space claims). */
export async function walkDeadlistStorage(io: BlockPipeline, d: DeadlistJson, visit: (bp: BlockPointer) => void): Promise<void> {
  await new BlockTree(io).walkAll(byteObjectFromJson(d.obj).dnode, visit);
}
