/**
 * Syncing one transaction group (ZFS's spa_sync), in this order:
 *
 *  1. Data objects: dirty blocks, then their indirect blocks bottom-up;
 *     old blocks are freed (deferred) in this txg.
 *  2. The directory document and the frees of datasets destroyed in this
 *     txg, captured together in one synchronous step so they agree.
 *  3. Pool history.
 *  4. The space map log: this txg's data allocs and frees (or a condensed
 *     rewrite when the log has grown past twice its condensed size).
 *  5. The MOS root block naming the directory, space map and history.
 *  6. Flush every device: everything the new uberblock reaches is durable.
 *  7. Labels, if the device tree or pool state changed.
 *  8. The uberblock, into slot txg % 128 of every label on every device,
 *     then flush again. Only now is the txg committed.
 *  9. Frees deferred from txg - TXG_DEFER become allocatable.
 *
 * Metadata blocks (directory, space map, history, MOS root) are not logged in
 * the space map: import claims them by walking from the MOS root.
 */
import { err, isStorageError } from '../../errors.js';
import { appendDeadlist, emptyDeadlist, killDeadlistStorage, readDeadlist } from '../dataset/deadlist.js';
import type { DatasetRecord } from '../dataset/directory.js';
import { bpAsize, ObjType, type BlockPointer } from '../blkptr.js';
import { dnodeToJson } from '../object/dnode.js';
import { BlockTree } from '../object/tree.js';
import { appendByteObject, byteObjectToJson, rewriteByteObject, type MetaWriter } from '../object/byte-object.js';
import { condense, encodeSpaceMapBlock, type SpaceRecord } from '../space/space-map.js';
import type { Pool } from '../pool.js';
import { FORMAT_VERSION } from './uberblock.js';
import { writeConfig, writeUberblock } from './label.js';
import type { Leaf } from '../vdev/types.js';
import type { ZilHeader } from '../intent-log/zil.js';
import type { ScanPersist } from '../scan/state.js';
import { TXG_DEFER } from '../io/allocate.js';

export interface MosRootJson {
  version: number;
  txg: number;
  name: string;
  guid: string;
  dir: ReturnType<typeof byteObjectToJson>;
  sm: ReturnType<typeof byteObjectToJson>;
  smRecords: number;
  history: ReturnType<typeof byteObjectToJson>;
  /** Where intent-log replay starts (records of txgs after this one). */
  zil?: ZilHeader | null;
  /** Scrub/resilver state, DTLs, error log, device error counters (src/pool/scan/state.ts). */
  scan?: ScanPersist;
}

export async function syncTxg(pool: Pool, txg: number): Promise<void> {
  const io = pool.io;
  const meta = (type: ObjType): MetaWriter => ({ io, txg, type, kill: (bp) => void io.free(bp, txg, false) });

  // 1. Data objects: volume heads, then (same loop) cow/row snapshot layers.
  for (const [id, obj] of pool.objects) {
    const dm = obj.dirty.get(txg);
    if (!dm) continue;
    const layer = pool.layers.get(id);
    const rec = layer ? layer.rec : datasetOf(pool, id);
    const name = rec ? pool.nameOfId(rec.id) : undefined;
    if (!rec || name === undefined) {
      obj.dropTxg(txg);
      continue;
    }
    const acct = pool.account(rec.id);
    // Layers and row heads keep all-zero blocks as data: a hole there means "look below".
    const keepZeros = !!layer || rec.props['snapmode'] === 'row';
    // A native head's dirty buffers are its own (WriteProps.spare); strategies manage theirs.
    const spare = !layer && rec.props['snapmode'] !== 'cow' && rec.props['snapmode'] !== 'row';
    const nd = await obj.tree.sync(obj.dnode, dm, {
      props: pool.writeProps(name, txg, keepZeros, spare),
      born: (bp) => {
        acct.deviceWriteOps++;
        acct.deviceWriteBytes += bpAsize(bp);
        if (layer) {
          layer.snap.layerUsed = (layer.snap.layerUsed ?? 0) + bpAsize(bp);
          return;
        }
        rec.referenced += bpAsize(bp);
        rec.written = (rec.written ?? 0) + bpAsize(bp);
        if (bp.level === 0) rec.logical += bp.lsize;
      },
      kill: (bp) => {
        if (!layer) return killBlock(pool, rec, bp, txg);
        layer.snap.layerUsed = Math.max(0, (layer.snap.layerUsed ?? 0) - bpAsize(bp));
        pool.io.free(bp, txg, true);
      },
    });
    // Publish the new tree and drop the synced dirty map in the same tick.
    obj.dnode = { ...nd, nblocks: obj.dnode.nblocks };
    obj.dropTxg(txg);
    if (layer) layer.snap.object = dnodeToJson(obj.dnode);
    else rec.object = dnodeToJson(obj.dnode);
    pool.dir.dirty = true;
  }

  // 1b. Dead lists: blocks the heads stopped referencing that snapshots still hold.
  for (const [id, bps] of pool.pendingDead) {
    pool.pendingDead.delete(id);
    const name = pool.nameOfId(id);
    const rec = name !== undefined ? pool.dir.datasets.get(name) : undefined;
    if (!rec) continue;
    rec.dead = await appendDeadlist({ io, txg, type: ObjType.DeadList, kill: (bp) => void io.free(bp, txg, false) }, rec.dead ?? emptyDeadlist(), bps);
    pool.dir.dirty = true;
  }

  // 1c. Sync tasks (snapshots, clones, rollbacks, destroys) queued for this txg.
  for (const task of pool.syncTasks.filter((t) => t.txg <= txg)) {
    pool.syncTasks.splice(pool.syncTasks.indexOf(task), 1);
    try {
      task.result = await task.fn(txg);
    } catch (e) {
      // A refusal found in syncing context fails that task alone; anything else is fatal.
      if (isStorageError(e) && e.code !== 'EIO') task.error = e;
      else throw e;
    }
    pool.dir.dirty = true;
  }

  // 2. Directory and destroyed datasets, captured atomically.
  let dirDoc: Buffer | null = null;
  if (pool.dir.dirty) {
    pool.dir.dirty = false;
    dirDoc = Buffer.from(JSON.stringify(pool.dir.toJson()), 'utf8');
  }
  const destroyed = pool.freeQueue.splice(0);
  const hist = pool.pendingHistory.filter((h) => h.txg <= txg);
  pool.pendingHistory = pool.pendingHistory.filter((h) => h.txg > txg);
  for (const d of destroyed) {
    // Tree blocks and dead-list entries born after the origin are this dataset's own.
    if (d.dnode) await new BlockTree(io).walkBorn(d.dnode, d.after, (bp) => void io.free(bp, txg, true));
    for (const dl of d.deads) {
      for (const bp of await readDeadlist(io, dl)) if (bp.birth > d.after) io.free(bp, txg, true);
      await killDeadlistStorage(io, dl, (bp) => void io.free(bp, txg, false));
    }
  }
  if (dirDoc) pool.mos.dir = await rewriteByteObject(meta(ObjType.Directory), pool.mos.dir, dirDoc);

  // 3. History.
  if (hist.length) {
    const lines = Buffer.from(hist.map((h) => JSON.stringify({ ...h, txg }) + '\n').join(''), 'utf8');
    pool.mos.history = await appendByteObject(meta(ObjType.History), pool.mos.history, lines);
  }

  // 4. Space map log.
  const records = pool.alloc.takeRecords(txg);
  if (records.length) {
    applyToLogged(pool, records);
    if (shouldCondenseAll(pool, pool.mos.smRecords + records.length)) {
      const all: SpaceRecord[] = [];
      pool.logged.forEach((a, v) => all.push(...condense(a, txg, v)));
      pool.mos.sm = await rewriteByteObject(meta(ObjType.SpaceMap), pool.mos.sm, frame(encodeSpaceMapBlock(all)));
      pool.mos.smRecords = all.length;
    } else {
      pool.mos.sm = await appendByteObject(meta(ObjType.SpaceMap), pool.mos.sm, frame(encodeSpaceMapBlock(records)));
      pool.mos.smRecords += records.length;
    }
  }

  // 5. MOS root.
  const root: MosRootJson = {
    version: FORMAT_VERSION,
    txg,
    name: pool.name,
    guid: pool.guid,
    dir: byteObjectToJson(pool.mos.dir),
    sm: byteObjectToJson(pool.mos.sm),
    smRecords: pool.mos.smRecords,
    history: byteObjectToJson(pool.mos.history),
    zil: pool.zil ? pool.zil.header(txg) : null,
    scan: { ...pool.scanPersist, leafErrors: leafErrors(pool) },
  };
  const rootBp = await io.write(Buffer.from(JSON.stringify(root), 'utf8'), {
    comp: 'lz4',
    cksum: 'sha256',
    type: ObjType.MosRoot,
    level: 0,
    fill: 1,
    birth: txg,
    copies: 3,
    logged: false,
    noHole: true,
  });
  if (!rootBp) throw err.io('MOS root write produced no block');

  // 6. Everything the uberblock will reach is durable before it is written.
  await pool.vdevs.flush();

  // 7. Labels (device tree or state changed).
  if (pool.configDirty) {
    pool.configDirty = false;
    for (const leaf of usableLeaves(pool)) await writeConfig(leaf, { ...pool.labelConfig(leaf, pool.labelState), txg });
    // Idle hot spares carry the pool's label too, so import can tell them from strangers.
    for (const leaf of pool.vdevs.spares) {
      if ((leaf.state === 'ONLINE' || leaf.state === 'DEGRADED') && !pool.leaves().includes(leaf)) await writeConfig(leaf, { ...pool.labelConfig(leaf, pool.labelState), txg }).catch(() => {});
    }
  }

  // 8. The uberblock, then flush: the txg is committed.
  const ub = { version: FORMAT_VERSION, txg, poolGuid: BigInt('0x' + pool.guid), timestamp: Date.now(), rootBp, guidSum: guidSum(pool) };
  const leaves = usableLeaves(pool);
  const results = await Promise.allSettled(leaves.map((l) => writeUberblock(l, ub)));
  if (results.every((r) => r.status === 'rejected')) throw err.io(`txg ${txg}: no device accepted the uberblock`);
  await pool.vdevs.flush();

  if (pool.mos.rootBp) io.free(pool.mos.rootBp, txg, false);
  pool.mos.rootBp = rootBp;
  // 9. Deferred frees; log blocks holding only this txg's records are obsolete.
  // A scan reading blocks a concurrent txg may free holds those frees back (scan/runner.ts).
  pool.alloc.synced(pool.scanHoldTxg === null ? txg : Math.min(txg, pool.scanHoldTxg - 1 + TXG_DEFER));
  pool.metaSynced(txg);
  pool.zil?.synced(txg);
  // Last, and after zil.synced (which drops the records that view them): nothing of this txg refers to the payloads its writes lent any more.
  pool.returnLent(txg);
  // Likewise for the data blocks this txg cached (spare): nothing but the ARC holds them now.
  io.settle(txg);
}

function datasetOf(pool: Pool, id: number): DatasetRecord | undefined {
  const name = pool.nameOfId(id);
  return name !== undefined ? pool.dir.datasets.get(name) : undefined;
}

/**
 * A block the head no longer references: free it if no snapshot has seen it
 * (born after the latest snapshot), else it goes on the head's dead list.
 */
function killBlock(pool: Pool, rec: DatasetRecord, bp: BlockPointer, txg: number): void {
  rec.referenced -= bpAsize(bp);
  if (bp.level === 0) rec.logical -= bp.lsize;
  if (rec.originShared && bp.birth <= (rec.originTxg ?? 0)) rec.originShared = Math.max(0, rec.originShared - bpAsize(bp));
  if (bp.birth > (rec.prevSnapTxg ?? 0)) {
    rec.written = Math.max(0, (rec.written ?? 0) - bpAsize(bp));
    pool.io.free(bp, txg, true);
    return;
  }
  let list = pool.pendingDead.get(rec.id);
  if (!list) pool.pendingDead.set(rec.id, (list = []));
  list.push(bp);
}

/** Error counters of every device, persisted until `pool clear` (ZFS keeps them in memory only; we survive CLI processes). */
function leafErrors(pool: Pool): ScanPersist['leafErrors'] {
  const out: ScanPersist['leafErrors'] = {};
  for (const l of [...pool.leaves(), ...pool.vdevs.spares]) {
    if (l.errors.read || l.errors.write || l.errors.cksum) out[l.guid] = { ...l.errors };
  }
  return out;
}

function usableLeaves(pool: Pool): Leaf[] {
  return pool.leaves().filter((l) => l.state === 'ONLINE' || l.state === 'DEGRADED');
}

export function guidSum(pool: Pool): bigint {
  let s = 0n;
  for (const l of pool.leaves()) s = (s + BigInt('0x' + l.guid.replace(/[^0-9a-f]/gi, '').slice(0, 16).padEnd(1, '0'))) & 0xffffffffffffffffn;
  return s;
}

/** Space map log framing: u32 length + encoded block, repeated. */
export function frame(block: Buffer): Buffer {
  const h = Buffer.alloc(4);
  h.writeUInt32LE(block.length, 0);
  return Buffer.concat([h, block]);
}

function applyToLogged(pool: Pool, records: SpaceRecord[]): void {
  for (const r of records) {
    const a = pool.logged[r.vdev ?? 0];
    if (!a) continue;
    if (r.op === 'alloc') a.claim(r.offset, r.length);
    else a.free(r.offset, r.length);
  }
}

function shouldCondenseAll(pool: Pool, logRecords: number): boolean {
  let extents = 0;
  for (const a of pool.logged) extents += a.freeSegmentCount() + 1;
  return logRecords > 2 * extents + 1024;
}
