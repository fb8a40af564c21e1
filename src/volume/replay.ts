/**
 * Intent-log replay through the volume write path: records are applied in
 * log order, so the result is the state every acknowledged sync write left.
 * The import's txg then makes them durable (pool/txg/open.ts).
 */
import type { Pool } from '../pool/pool.js';
import type { LogRecord } from '../pool/intent-log/log-block.js';
import { Volume } from './volume.js';

export async function replayIntentLog(pool: Pool, records: LogRecord[]): Promise<void> {
  const vols = new Map<number, Volume | null>();
  for (const r of records) {
    let v = vols.get(r.dataset);
    if (v === undefined) {
      const name = pool.nameOfId(r.dataset);
      v = name !== undefined && pool.objects.has(r.dataset) ? Volume.open(pool, name) : null;
      vols.set(r.dataset, v);
    }
    if (!v) continue; // destroyed since: nothing to replay into
    const size = v.info().size;
    if (r.offset >= size) continue;
    const len = Math.min(r.length, size - r.offset);
    if (r.op === 'write') await v.write(r.offset, r.data!.subarray(0, len));
    else await v.writeZeroes(r.offset, len, { mayTrim: true });
  }
}
