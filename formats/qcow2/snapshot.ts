/**
 * Internal snapshots: create, apply (revert), delete, list — the same
 * operations and on-disk results as `qemu-img snapshot`.
 *
 * Refcount semantics (as QEMU): every L1 table (active and each snapshot)
 * counts one reference on each L2 table it points at and on each cluster
 * those tables point at, even when the L2 table itself is shared.
 *
 * Ordering, so a crash leaves at worst leaks (never a cluster referenced
 * more often than its refcount says):
 * - create: increments durable -> active tables with COPIED cleared durable
 *   -> new L1 copy and new snapshot table durable -> header; old table freed.
 * - delete: new snapshot table durable -> header -> decrements -> COPIED set
 *   where refcounts dropped to one.
 * - apply: increments for the snapshot's tables durable -> new active L1
 *   durable -> header -> decrements for the old active state -> COPIED fixed.
 */
import { err } from '../../src/errors.js';
import * as C from './constants.js';
import type { Qcow2Image } from './image.js';
import { encodeSnapshotTable, type SnapshotEntry } from './snapshot-table.js';

export interface SnapshotInfo {
  id: string;
  name: string;
  vmStateSize: number;
  dateSec: number;
  dateNsec: number;
  vmClockNsec: number;
  diskSize: number;
  icount: number | null;
}

export function listSnapshots(img: Qcow2Image): SnapshotInfo[] {
  return img.snapshots.map((s) => ({
    id: s.id,
    name: s.name,
    vmStateSize: s.vmStateSize,
    dateSec: s.dateSec,
    dateNsec: s.dateNsec,
    vmClockNsec: Number(s.vmClockNsec),
    diskSize: s.diskSize,
    icount: s.extra.length >= 24 ? Number(s.extra.readBigUInt64BE(16)) : null,
  }));
}

function find(img: Qcow2Image, nameOrId: string): SnapshotEntry {
  const s = img.snapshots.find((x) => x.id === nameOrId) ?? img.snapshots.find((x) => x.name === nameOrId);
  if (!s) throw err.noent(`snapshot '${nameOrId}' not found`);
  return s;
}

function parseL1(raw: Buffer): Float64Array {
  const l1 = new Float64Array(raw.length / 8);
  for (let i = 0; i < l1.length; i++) l1[i] = Number(raw.readBigUInt64BE(i * 8) & C.OFFSET_MASK);
  return l1;
}

/** Add `delta` (+1/-1, -1 is queued) to every L2 table and cluster reachable from `l1`. */
async function adjustReachable(img: Qcow2Image, l1: Float64Array, delta: 1 | -1): Promise<void> {
  const refs = img.refs!;
  const map = img.map;
  const cs = map.cs;
  // Increments are undone if one overflows, so a refused snapshot leaves no leak.
  const done: number[] = [];
  const touch = async (c: number) => {
    if (delta < 0) return refs.free(c);
    try {
      await refs.adjust(c, 1);
    } catch (e) {
      for (const d of done) await refs.adjust(d, -1);
      throw e;
    }
    done.push(c);
  };
  for (const l2off of l1) {
    if (!l2off) continue;
    const l2 = await map.cache.get(l2off);
    for (let j = 0; j < map.l2Entries; j++) {
      const e = map.decode(l2, j);
      if (e.compressed) {
        for (let c = Math.floor(e.host / cs); c <= Math.floor((e.host + e.csize - 1) / cs); c++) await touch(c);
      } else if (e.host) await touch(e.host / cs);
    }
    await touch(l2off / cs);
  }
}

/** Make COPIED exact in the active tables (refcount == 1). */
async function fixCopied(img: Qcow2Image): Promise<void> {
  const refs = img.refs!;
  const map = img.map;
  for (let i = 0; i < map.l1.length; i++) {
    const l2off = map.l1[i]!;
    if (!l2off) continue;
    const one = (await refs.get(l2off / map.cs)) === 1;
    if (one !== (map.l1Copied[i] === 1)) map.setL1(i, l2off, one);
    const l2 = await map.cache.get(l2off);
    let dirty = false;
    for (let j = 0; j < map.l2Entries; j++) {
      const e = map.decode(l2, j);
      if (e.compressed || !e.host) continue;
      const want = (await refs.get(e.host / map.cs)) === 1;
      if (want !== e.copied) {
        map.encode(l2, j, { ...e, copied: want });
        dirty = true;
      }
    }
    if (dirty) map.cache.markDirty(l2off, l2);
  }
}

/** Write a new snapshot table and point the header at it; the old table is freed. */
async function writeTable(img: Qcow2Image, entries: SnapshotEntry[]): Promise<void> {
  const refs = img.refs!;
  const cs = img.clusterSize;
  const oldOff = img.header.snapshotsOffset;
  const oldBytes = img.header.nbSnapshots > 0 ? img.snapshotTableBytes : 0;
  const raw = encodeSnapshotTable(entries, img.header.version);
  let off = 0;
  if (raw.length > 0) {
    off = await refs.allocate(Math.ceil(raw.length / cs));
    await img.file.write(off, raw);
  }
  await refs.flush(); // table and refcounts durable before the header points at them
  img.header.nbSnapshots = entries.length;
  img.header.snapshotsOffset = off;
  await img.writeHeader();
  img.snapshots = entries;
  img.snapshotTableBytes = raw.length;
  if (oldBytes > 0) for (let c = oldOff / cs; c < Math.ceil((oldOff + oldBytes) / cs); c++) refs.free(c);
  img.invalidateMetadata();
}

export function createSnapshot(img: Qcow2Image, name: string): Promise<SnapshotInfo> {
  return img.exclusive(async () => {
    if (img.readOnly) throw err.perm('cannot create a snapshot: image is open read-only');
    if (img.snapshots.some((s) => s.name === name)) throw err.exist(`snapshot '${name}' already exists`);
    if (!name || Buffer.byteLength(name) > 65535) throw err.inval('invalid snapshot name');
    const refs = await img.loadRefcounts();
    const map = img.map;
    const cs = map.cs;
    await img.flushLocked();
    await adjustReachable(img, map.l1, 1);
    await fixCopied(img); // every reachable cluster is now shared: COPIED off
    await img.flushLocked(); // increments, then the L2/L1 tables with COPIED cleared
    const l1Bytes = map.l1.length * 8;
    const l1Off = l1Bytes > 0 ? await refs.allocate(Math.max(1, Math.ceil(l1Bytes / cs))) : 0;
    if (l1Bytes > 0) await img.file.write(l1Off, map.l1Buffer());
    const now = Date.now();
    const ids = img.snapshots.map((s) => Number(s.id)).filter((n) => Number.isInteger(n));
    const extra = Buffer.alloc(24);
    const entry: SnapshotEntry = {
      l1Offset: l1Off,
      l1Size: map.l1.length,
      id: String((ids.length ? Math.max(...ids) : 0) + 1),
      name,
      dateSec: Math.floor(now / 1000),
      dateNsec: (now % 1000) * 1e6,
      vmClockNsec: 0n,
      vmStateSize: 0,
      extra,
      diskSize: img.size,
    };
    await writeTable(img, [...img.snapshots, entry]);
    await img.flushLocked();
    return listSnapshots(img).find((s) => s.id === entry.id)!;
  });
}

export function deleteSnapshot(img: Qcow2Image, nameOrId: string): Promise<void> {
  return img.exclusive(async () => {
    if (img.readOnly) throw err.perm('cannot delete a snapshot: image is open read-only');
    await img.loadRefcounts();
    const sn = find(img, nameOrId);
    await img.flushLocked();
    const l1 = parseL1(await img.file.readExact(sn.l1Offset, sn.l1Size * 8, 'snapshot L1 table'));
    await writeTable(img, img.snapshots.filter((s) => s !== sn));
    await adjustReachable(img, l1, -1);
    const cs = img.clusterSize;
    for (let c = sn.l1Offset / cs; c < Math.ceil((sn.l1Offset + sn.l1Size * 8) / cs); c++) if (sn.l1Size) img.refs!.free(c);
    await img.flushLocked(); // applies the decrements
    await fixCopied(img);
    await img.flushLocked();
  });
}

export function applySnapshot(img: Qcow2Image, nameOrId: string): Promise<void> {
  return img.exclusive(async () => {
    if (img.readOnly) throw err.perm('cannot apply a snapshot: image is open read-only');
    const refs = await img.loadRefcounts();
    const map = img.map;
    const cs = map.cs;
    const sn = find(img, nameOrId);
    await img.flushLocked();
    const snL1 = parseL1(await img.file.readExact(sn.l1Offset, sn.l1Size * 8, 'snapshot L1 table'));
    await adjustReachable(img, snL1, 1);
    const l2Span = map.l2Entries * cs;
    if (Math.ceil(sn.diskSize / l2Span) > snL1.length) throw err.corrupt(`qcow2: snapshot '${sn.name}' L1 table is too small for its disk size`);
    const size = sn.diskSize;
    const newL1 = snL1;
    const copied = new Uint8Array(newL1.length);
    const l1Off = newL1.length > 0 ? await refs.allocate(Math.max(1, Math.ceil((newL1.length * 8) / cs))) : 0;
    const oldL1 = map.l1;
    const oldOff = map.l1Offset;
    map.replaceL1(newL1, copied, l1Off);
    if (newL1.length > 0) await img.file.write(l1Off, map.l1Buffer());
    await refs.flush(); // increments and the new L1 durable before the header switches
    img.header.l1TableOffset = l1Off;
    img.header.l1Size = newL1.length;
    img.header.size = size;
    map.size = size;
    await img.writeHeader();
    await adjustReachable(img, oldL1, -1);
    for (let c = oldOff / cs; c < Math.ceil((oldOff + oldL1.length * 8) / cs); c++) if (oldL1.length) refs.free(c);
    img.invalidateMetadata();
    await img.flushLocked();
    await fixCopied(img);
    await img.flushLocked();
  });
}

/**
 * A read-only view of an internal snapshot (convert -l): a second read-only
 * handle on the file whose active L1 is the snapshot's. `backing` is the
 * chain below the image, if any.
 */
export async function openSnapshotView(path: string, nameOrId: string, backing: import('../../src/device/block-device.js').BlockDevice | null): Promise<Qcow2Image> {
  const { Qcow2Image: Img } = await import('./image.js');
  const img = await Img.open(path, { readOnly: true });
  try {
    const sn = find(img, nameOrId);
    const l1 = parseL1(await img.file.readExact(sn.l1Offset, sn.l1Size * 8, 'snapshot L1 table'));
    if (Math.ceil(sn.diskSize / img.map.l2Span) > l1.length) throw err.corrupt(`qcow2: snapshot '${sn.name}' L1 table is too small`);
    img.map.replaceL1(l1, new Uint8Array(l1.length), sn.l1Offset);
    img.header.size = sn.diskSize;
    img.map.size = sn.diskSize;
    img.backing = backing;
    return img;
  } catch (e) {
    await img.close();
    throw e;
  }
}
