/**
 * Labels: four 256 KiB copies per leaf device, two at the front and two at
 * the end, so a device survives damage at either end (ZFS's L0..L3).
 *
 *   [0, 4 KiB)       reserved (zero)
 *   [4 KiB, 128 KiB) config: u64 magic, u32 json length, 32-byte sha256, JSON
 *   [128 KiB, 256 KiB) uberblock ring: 128 slots of 1 KiB
 *
 * The config is the pool's identity and device tree (LabelConfig). It is
 * rewritten only when the tree or the pool state changes, label by label
 * (front pair first, flushed, then the back pair) so a crash leaves at least
 * one pair intact.
 */
import { createHash } from 'node:crypto';
import { err } from '../../errors.js';
import { LABEL_SIZE, type Leaf, type VdevRootConfig } from '../vdev/types.js';
import { decodeUberblock, UB_RING, UB_SLOT, type Uberblock, encodeUberblock } from './uberblock.js';

const CONFIG_MAGIC = 0x5354524154414c31n; // "STRATAL1"
const CONFIG_OFFSET = 4096;
const CONFIG_MAX = 128 * 1024 - CONFIG_OFFSET;
const RING_OFFSET = 128 * 1024;

export type PoolLabelState = 'active' | 'exported' | 'destroyed' | 'spare';

export interface LabelConfig {
  version: number;
  name: string;
  poolGuid: string;
  /** This leaf's guid. */
  guid: string;
  /** Guid of the top-level vdev this leaf belongs to. */
  topGuid: string;
  state: PoolLabelState;
  /** Txg at which this config was written. */
  txg: number;
  hostname: string;
  pid?: number;
  /** The whole device tree (root's children are the top-level vdevs; spares and caches beside them). */
  tree: VdevRootConfig;
}

export function labelOffsets(size: number): number[] {
  return [0, LABEL_SIZE, size - 2 * LABEL_SIZE, size - LABEL_SIZE];
}

export function encodeConfig(cfg: LabelConfig): Buffer {
  const json = Buffer.from(JSON.stringify(cfg), 'utf8');
  if (json.length + 44 > CONFIG_MAX) throw err.inval('pool configuration too large for a label');
  const b = Buffer.alloc(CONFIG_MAX);
  b.writeBigUInt64LE(CONFIG_MAGIC, 0);
  b.writeUInt32LE(json.length, 8);
  createHash('sha256').update(json).digest().copy(b, 12);
  json.copy(b, 44);
  return b;
}

export function decodeConfig(b: Buffer): LabelConfig | null {
  if (b.length < 44 || b.readBigUInt64LE(0) !== CONFIG_MAGIC) return null;
  const len = b.readUInt32LE(8);
  if (len > b.length - 44) return null;
  const json = b.subarray(44, 44 + len);
  if (!createHash('sha256').update(json).digest().equals(b.subarray(12, 44))) return null;
  try {
    return JSON.parse(json.toString('utf8')) as LabelConfig;
  } catch {
    return null;
  }
}

export interface LabelRead {
  config: LabelConfig | null;
  /** Best (highest txg, valid) uberblock found in any of the rings. */
  best: Uberblock | null;
  /** All valid uberblocks by txg (deduplicated), newest first. */
  uberblocks: Uberblock[];
}

/** Read all four labels of a leaf; tolerant of damage (returns what verifies). */
export async function readLabels(leaf: Leaf): Promise<LabelRead> {
  let config: LabelConfig | null = null;
  const ubs = new Map<number, Uberblock>();
  for (const off of labelOffsets(leaf.size)) {
    let buf: Buffer;
    try {
      buf = await leaf.pread(off, LABEL_SIZE);
    } catch {
      continue;
    }
    const c = decodeConfig(buf.subarray(CONFIG_OFFSET, CONFIG_OFFSET + CONFIG_MAX));
    if (c && (!config || c.txg > config.txg)) config = c;
    for (let i = 0; i < UB_RING; i++) {
      const ub = decodeUberblock(buf.subarray(RING_OFFSET + i * UB_SLOT, RING_OFFSET + (i + 1) * UB_SLOT));
      if (ub && !ubs.has(ub.txg)) ubs.set(ub.txg, ub);
    }
  }
  const uberblocks = [...ubs.values()].sort((a, b) => b.txg - a.txg);
  return { config, best: uberblocks[0] ?? null, uberblocks };
}

/** Write the config into all four labels: front pair, flush, back pair, flush. */
export async function writeConfig(leaf: Leaf, cfg: LabelConfig): Promise<void> {
  const enc = encodeConfig(cfg);
  const offs = labelOffsets(leaf.size);
  for (const pair of [offs.slice(0, 2), offs.slice(2)]) {
    for (const off of pair) await leaf.pwrite(off + CONFIG_OFFSET, enc);
    await leaf.fsync();
  }
}

/** Write an uberblock into its ring slot in all four labels (caller flushes). */
export async function writeUberblock(leaf: Leaf, ub: Uberblock): Promise<void> {
  const enc = encodeUberblock(ub);
  const slot = ub.txg % UB_RING;
  await Promise.all(labelOffsets(leaf.size).map((off) => leaf.pwrite(off + RING_OFFSET + slot * UB_SLOT, enc)));
}

/** Wipe all labels (pool destroy / labelclear): the device is no longer a pool member. */
export async function clearLabels(leaf: Leaf): Promise<void> {
  const zero = Buffer.alloc(LABEL_SIZE);
  for (const off of labelOffsets(leaf.size)) await leaf.pwrite(off, zero);
  await leaf.fsync();
}

/**
 * After importing from an older uberblock than the newest one that verifies
 * (its MOS root was unreadable), wipe the newer slots, so a later import
 * cannot pick an uberblock from the abandoned timeline.
 */
export async function invalidateNewer(leaf: Leaf, txg: number): Promise<void> {
  const empty = Buffer.alloc(UB_SLOT);
  for (const off of labelOffsets(leaf.size)) {
    const ring = await leaf.pread(off + RING_OFFSET, UB_RING * UB_SLOT);
    for (let i = 0; i < UB_RING; i++) {
      const ub = decodeUberblock(ring.subarray(i * UB_SLOT, (i + 1) * UB_SLOT));
      if (ub && ub.txg > txg) await leaf.pwrite(off + RING_OFFSET + i * UB_SLOT, empty);
    }
  }
  await leaf.fsync();
}
