/** `strata image info` and the snapshot table printer shared with `snapshot -l`. */
import { stat } from 'node:fs/promises';
import { dirname, isAbsolute, join } from 'node:path';
import { openImageLayers, probeFormat } from '../../../formats/image-format.js';
import { compatName, listSnapshots, type Layer, type Qcow2Image, type SnapshotInfo, constants as C } from '../../../formats/qcow2/index.js';
import { checkFormatName, humanSize } from './common.js';

export interface InfoJson {
  [k: string]: unknown;
}

function snapshotJson(s: SnapshotInfo): InfoJson {
  const o: InfoJson = {};
  if (s.icount !== null && s.icount !== 2 ** 64 - 1) o['icount'] = s.icount;
  Object.assign(o, {
    'vm-clock-nsec': s.vmClockNsec % 1e9,
    name: s.name,
    'date-sec': s.dateSec,
    'date-nsec': s.dateNsec,
    'vm-clock-sec': Math.floor(s.vmClockNsec / 1e9),
    id: s.id,
    'vm-state-size': s.vmStateSize,
  });
  return o;
}

export function qcow2Specific(q: Qcow2Image): InfoJson {
  const h = q.header;
  const data: InfoJson = { compat: compatName(h), 'compression-type': h.compressionType === 1 ? 'zstd' : 'zlib' };
  if (h.version === 3) data['lazy-refcounts'] = (h.compatible & C.COMPAT_LAZY_REFCOUNTS) !== 0n;
  data['refcount-bits'] = 2 ** h.refcountOrder;
  if (h.version === 3) {
    data['corrupt'] = (h.incompatible & C.INCOMPAT_CORRUPT) !== 0n;
    data['extended-l2'] = (h.incompatible & C.INCOMPAT_EXTL2) !== 0n;
  }
  return { type: 'qcow2', data };
}

export async function layerInfo(l: Layer): Promise<InfoJson> {
  const st = await stat(l.path);
  const o: InfoJson = {};
  const q = l.qcow2;
  if (q?.header.backingFile) o['backing-filename-format'] = q.header.backingFormat ?? undefined;
  if (q && q.snapshots.length) o['snapshots'] = listSnapshots(q).map(snapshotJson);
  o['virtual-size'] = l.dev.info().size;
  o['filename'] = l.path;
  if (q) o['cluster-size'] = q.clusterSize;
  o['format'] = l.format;
  o['actual-size'] = st.blocks * 512;
  if (q) o['format-specific'] = qcow2Specific(q);
  if (q?.header.backingFile) {
    const b = q.header.backingFile;
    o['full-backing-filename'] = isAbsolute(b) ? b : join(dirname(l.path), b);
    o['backing-filename'] = b;
  }
  o['dirty-flag'] = q ? (q.header.incompatible & C.INCOMPAT_DIRTY) !== 0n : false;
  for (const k of Object.keys(o)) if (o[k] === undefined) delete o[k];
  return o;
}

function pad(s: string, n: number, left = false): string {
  return left ? s.padStart(n) : s.padEnd(n);
}

export function snapshotTable(snaps: SnapshotInfo[]): string {
  const two = (n: number) => String(n).padStart(2, '0');
  let out = `${pad('ID', 9)} ${pad('TAG', 17)} ${pad('VM SIZE', 7, true)}${pad('DATE', 20, true)}${pad('VM CLOCK', 13, true)}${pad('ICOUNT', 11, true)}\n`;
  for (const s of snaps) {
    const d = new Date(s.dateSec * 1000);
    const date = `${d.getFullYear()}-${two(d.getMonth() + 1)}-${two(d.getDate())} ${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}`;
    const ns = s.vmClockNsec;
    const secs = Math.floor(ns / 1e9);
    const clock = `${two(Math.floor(secs / 3600))}:${two(Math.floor(secs / 60) % 60)}:${two(secs % 60)}.${String(Math.floor((ns % 1e9) / 1e6)).padStart(3, '0')}`;
    const icount = s.icount === null || s.icount === 2 ** 64 - 1 ? '' : String(s.icount);
    out += `${pad(s.id, 9)} ${pad(s.name, 17)} ${pad(humanSize(s.vmStateSize), 7, true)}${pad(date, 20, true)}${pad(clock, 13, true)}${pad(icount, 11, true)}\n`;
  }
  return out;
}

function human(o: InfoJson): string {
  let out = `image: ${o['filename']}\nfile format: ${o['format']}\n`;
  out += `virtual size: ${humanSize(o['virtual-size'] as number)} (${o['virtual-size']} bytes)\n`;
  out += `disk size: ${humanSize(o['actual-size'] as number)}\n`;
  if (o['cluster-size']) out += `cluster_size: ${o['cluster-size']}\n`;
  if (o['backing-filename']) {
    out += `backing file: ${o['backing-filename']}`;
    if (o['full-backing-filename'] !== o['backing-filename']) out += ` (actual path: ${o['full-backing-filename']})`;
    out += '\n';
    if (o['backing-filename-format']) out += `backing file format: ${o['backing-filename-format']}\n`;
  }
  if (o['dirty-flag']) out += 'cleanly shut down: no\n';
  const snaps = o['snapshots'] as InfoJson[] | undefined;
  if (snaps?.length) {
    out += 'Snapshot list:\n';
    out += snapshotTable(
      snaps.map((s) => ({
        id: s['id'] as string,
        name: s['name'] as string,
        vmStateSize: s['vm-state-size'] as number,
        dateSec: s['date-sec'] as number,
        dateNsec: s['date-nsec'] as number,
        vmClockNsec: (s['vm-clock-sec'] as number) * 1e9 + (s['vm-clock-nsec'] as number),
        diskSize: 0,
        icount: (s['icount'] as number | undefined) ?? null,
      })),
    );
  }
  const fs = o['format-specific'] as { data: InfoJson } | undefined;
  if (fs) {
    out += 'Format specific information:\n';
    for (const [k, v] of Object.entries(fs.data)) out += `    ${k.replace(/-/g, ' ')}: ${v}\n`;
  }
  return out;
}

export async function infoCommand(file: string, o: { format?: string; output?: string; backingChain?: boolean }): Promise<void> {
  const format = checkFormatName(o.format) ?? (await probeFormat(file));
  const { device, layers } = await openImageLayers(file, { format, readOnly: true, noBacking: !o.backingChain });
  try {
    const infos: InfoJson[] = [];
    for (const l of layers) infos.push(await layerInfo(l));
    if (o.output === 'json') {
      process.stdout.write(JSON.stringify(o.backingChain ? infos : infos[0], null, 4) + '\n');
    } else {
      process.stdout.write(infos.map(human).join('\n'));
    }
  } finally {
    await device.close();
  }
}
