/**
 * A dnode describes one object: a sparse array of fixed-size blocks reached
 * through a tree of 128 KiB indirect blocks (1024 block pointers each).
 * Level 0 holds data; the root block pointer sits at level `levels`.
 */
import { bpFromHex, bpToHex, type BlockPointer } from '../blkptr.js';

export const IND_SHIFT = 10;
export const IND_FANOUT = 1 << IND_SHIFT;
export const IND_SIZE = IND_FANOUT * 128;

export interface Dnode {
  blockSize: number;
  /** Number of addressable blocks (object size / blockSize, rounded up). */
  nblocks: number;
  /** Height of the tree; the root is an indirect block when levels >= 1. */
  levels: number;
  root: BlockPointer | null;
}

export interface DnodeJson {
  bs: number;
  n: number;
  lv: number;
  root: string | null;
}

export function levelsFor(nblocks: number): number {
  let l = 1;
  let span = IND_FANOUT;
  while (span < nblocks) {
    span *= IND_FANOUT;
    l++;
  }
  return l;
}

export function newDnode(blockSize: number, nblocks: number): Dnode {
  return { blockSize, nblocks, levels: levelsFor(nblocks), root: null };
}

export function dnodeToJson(d: Dnode): DnodeJson {
  return { bs: d.blockSize, n: d.nblocks, lv: d.levels, root: bpToHex(d.root) };
}

export function dnodeFromJson(j: DnodeJson): Dnode {
  return { blockSize: j.bs, nblocks: j.n, levels: j.lv, root: bpFromHex(j.root) };
}
