/**
 * Scan reads: every copy (DVA) of a block, each with mode 'scrub' or
 * 'resilver' so the top-level reads every mirror child / raidz column and
 * repairs what disagrees with the verified data. A DVA that cannot be
 * reconstructed at all while another copy verified is rewritten from that
 * copy (ditto blocks heal each other).
 */
import type { BlockPointer } from '../blkptr.js';
import { checksumEquals, computeChecksum } from '../io/checksum.js';
import type { Leaf, TopVdev } from '../vdev/types.js';
import { leafUsable } from '../vdev/leaf-base.js';

export interface ScanReadResult {
  ok: boolean;
  /** Physical bytes read (all copies). */
  issued: number;
  /** Bytes rewritten on devices. */
  repaired: number;
  error?: unknown;
}

export async function scanRead(tops: TopVdev[], bp: BlockPointer, mode: 'scrub' | 'resilver'): Promise<ScanReadResult> {
  const verify = (b: Buffer): boolean => checksumEquals(computeChecksum(bp.cksumType, b.subarray(0, bp.psize)), bp.cksum);
  let repaired = 0;
  let issued = 0;
  const onRepair = (_leaf: Leaf, _offset: number, length: number): void => {
    repaired += length;
  };
  let good: Buffer | null = null;
  let lastErr: unknown;
  const failed: number[] = [];
  for (let i = 0; i < bp.dvas.length; i++) {
    const d = bp.dvas[i]!;
    const top = tops[d.vdev];
    if (!top) {
      failed.push(i);
      continue;
    }
    try {
      const phys = await top.read(d.offset, bp.psize, verify, { mode, onRepair });
      issued += bp.psize;
      if (!good) good = phys;
    } catch (e) {
      lastErr = e;
      failed.push(i);
    }
  }
  if (!good) return { ok: false, issued, repaired, error: lastErr };
  for (const i of failed) {
    const d = bp.dvas[i]!;
    const top = tops[d.vdev];
    if (!top || !top.leaves().some((l) => leafUsable(l.state))) continue;
    try {
      await top.write(d.offset, good);
      repaired += bp.psize;
    } catch {
      // This copy stays bad; the next scrub tries again.
    }
  }
  return { ok: true, issued, repaired };
}
