/**
 * Codec for the internal snapshot table (a contiguous run of variable-length
 * entries). VM state is kept opaque: we never read or write it, but its
 * clusters are reachable through the snapshot's L1 table and are counted.
 */
import { err } from '../../src/errors.js';
import type { ImageFile } from './io.js';

export interface SnapshotEntry {
  l1Offset: number;
  l1Size: number;
  id: string;
  name: string;
  dateSec: number;
  dateNsec: number;
  vmClockNsec: bigint;
  vmStateSize: number;
  /** Extra data verbatim (vm_state_size_large, disk_size, icount, ...). */
  extra: Buffer;
  /** Virtual disk size when the snapshot was taken (from extra data, else the image size). */
  diskSize: number;
}

const MAX_TABLE_BYTES = 64 * 1024 * 1024;

export async function readSnapshotTable(
  file: ImageFile,
  offset: number,
  count: number,
  clusterSize: number,
  imageSize: number,
): Promise<{ entries: SnapshotEntry[]; bytes: number }> {
  const entries: SnapshotEntry[] = [];
  let pos = offset;
  // Read in chunks; an entry is at most 40 + 64 KiB extra + 2 * 64 KiB strings.
  let buf: Buffer = Buffer.alloc(0);
  let bufStart = offset;
  const need = async (n: number) => {
    if (pos + n - offset > MAX_TABLE_BYTES) throw err.corrupt('qcow2: snapshot table is absurdly large');
    if (pos + n <= bufStart + buf.length) return;
    const len = Math.max(n, 64 * 1024);
    const avail = Math.min(len, file.size - pos);
    if (avail < n) throw err.corrupt('qcow2: snapshot table is past the end of the file');
    buf = await file.readExact(pos, avail, 'snapshot table');
    bufStart = pos;
  };
  for (let i = 0; i < count; i++) {
    await need(40);
    let o = pos - bufStart;
    const l1Offset = Number(buf.readBigUInt64BE(o));
    const l1Size = buf.readUInt32BE(o + 8);
    const idLen = buf.readUInt16BE(o + 12);
    const nameLen = buf.readUInt16BE(o + 14);
    const dateSec = buf.readUInt32BE(o + 16);
    const dateNsec = buf.readUInt32BE(o + 20);
    const vmClockNsec = buf.readBigUInt64BE(o + 24);
    let vmStateSize = buf.readUInt32BE(o + 32);
    const extraLen = buf.readUInt32BE(o + 36);
    if (extraLen > 1024) throw err.corrupt(`qcow2: snapshot ${i} has ${extraLen} bytes of extra data`);
    const total = 40 + extraLen + idLen + nameLen;
    await need(total);
    o = pos - bufStart;
    const extra = Buffer.from(buf.subarray(o + 40, o + 40 + extraLen));
    let diskSize = imageSize;
    if (extraLen >= 8) vmStateSize = Number(extra.readBigUInt64BE(0));
    if (extraLen >= 16) diskSize = Number(extra.readBigUInt64BE(8));
    const id = buf.toString('utf8', o + 40 + extraLen, o + 40 + extraLen + idLen);
    const name = buf.toString('utf8', o + 40 + extraLen + idLen, o + total);
    if (l1Offset % clusterSize !== 0) throw err.corrupt(`qcow2: snapshot '${name}' has an unaligned L1 table`);
    if (l1Size * 8 > 32 * 1024 * 1024 || l1Offset + l1Size * 8 > file.size) {
      throw err.corrupt(`qcow2: snapshot '${name}' L1 table is invalid or past the end of the file`);
    }
    entries.push({ l1Offset, l1Size, id, name, dateSec, dateNsec, vmClockNsec, vmStateSize, extra, diskSize });
    pos += Math.ceil(total / 8) * 8;
  }
  return { entries, bytes: pos - offset };
}

export function encodeSnapshotTable(entries: SnapshotEntry[], version: number): Buffer {
  const parts: Buffer[] = [];
  for (const s of entries) {
    let extra = s.extra;
    // Version 3 requires extra data up to the disk size field.
    if (version >= 3 && extra.length < 16) {
      extra = Buffer.concat([extra, Buffer.alloc(16 - extra.length)]);
    }
    if (extra.length >= 8) extra.writeBigUInt64BE(BigInt(s.vmStateSize), 0);
    if (extra.length >= 16) extra.writeBigUInt64BE(BigInt(s.diskSize), 8);
    const id = Buffer.from(s.id);
    const name = Buffer.from(s.name);
    const total = 40 + extra.length + id.length + name.length;
    const b = Buffer.alloc(Math.ceil(total / 8) * 8);
    b.writeBigUInt64BE(BigInt(s.l1Offset), 0);
    b.writeUInt32BE(s.l1Size, 8);
    b.writeUInt16BE(id.length, 12);
    b.writeUInt16BE(name.length, 14);
    b.writeUInt32BE(s.dateSec, 16);
    b.writeUInt32BE(s.dateNsec, 20);
    b.writeBigUInt64BE(s.vmClockNsec, 24);
    b.writeUInt32BE(Math.min(s.vmStateSize, 0xffffffff), 32);
    b.writeUInt32BE(extra.length, 36);
    extra.copy(b, 40);
    id.copy(b, 40 + extra.length);
    name.copy(b, 40 + extra.length + id.length);
    parts.push(b);
  }
  return Buffer.concat(parts);
}
