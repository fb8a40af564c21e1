/** `strata image compare`, `map` and `resize`. */
import { stat, truncate } from 'node:fs/promises';
import { openImage, openImageLayers, probeFormat } from '../../../formats/image-format.js';
import { Kind, Qcow2Image, resizeImage, type Layer } from '../../../formats/qcow2/index.js';
import type { BlockDevice } from '../../device/block-device.js';
import { err } from '../../errors.js';
import { checkFormatName, ExitCode, parseImgSize } from './common.js';

const CHUNK = 4 * 1024 * 1024;

async function firstDiff(a: BlockDevice, b: BlockDevice | null, from: number, to: number): Promise<number> {
  const zero = Buffer.alloc(CHUNK);
  for (let p = from; p < to; p += CHUNK) {
    const n = Math.min(CHUNK, to - p);
    const x = await a.read(p, n);
    const y = b ? await b.read(p, n) : zero.subarray(0, n);
    if (!x.equals(y)) {
      for (let i = 0; i < n; i++) if (x[i] !== y[i]) return p + Math.floor(i / 512) * 512;
    }
  }
  return -1;
}

/** Exit 0 identical, 1 different, 2 error (see action()). */
export async function compareCommand(a: string, b: string, o: { format?: string; secondFormat?: string; strict?: boolean }): Promise<void> {
  const da = await openImage(a, { format: checkFormatName(o.format), readOnly: true });
  try {
    const db = await openImage(b, { format: checkFormatName(o.secondFormat ?? o.format), readOnly: true });
    try {
      const sa = da.info().size;
      const sb = db.info().size;
      if (sa !== sb && o.strict) {
        process.stdout.write(`Strict mode: Image size mismatch!\n`);
        throw new ExitCode(1);
      }
      let d = await firstDiff(da, db, 0, Math.min(sa, sb));
      if (d < 0 && sa !== sb) {
        process.stdout.write('Warning: Image size mismatch!\n');
        d = sa > sb ? await firstDiff(da, null, sb, sa) : await firstDiff(db, null, sa, sb);
      }
      if (d >= 0) {
        process.stdout.write(`Content mismatch at offset ${d}!\n`);
        throw new ExitCode(1);
      }
      process.stdout.write('Images are identical.\n');
    } finally {
      await db.close();
    }
  } finally {
    await da.close();
  }
}

export interface MapEntry {
  start: number;
  length: number;
  depth: number;
  present: boolean;
  zero: boolean;
  data: boolean;
  offset?: number;
}

/** qemu-img map's walk: each range is described by the first layer that says something about it. */
async function mapRange(layers: Layer[], k: number, off: number, len: number, out: MapEntry[]): Promise<void> {
  const l = layers[k]!;
  const push = (e: MapEntry) => {
    const last = out[out.length - 1];
    if (
      last && last.depth === e.depth && last.present === e.present && last.zero === e.zero && last.data === e.data &&
      (last.offset === undefined) === (e.offset === undefined) && (e.offset === undefined || last.offset! + last.length === e.offset)
    ) {
      last.length += e.length;
    } else out.push(e);
  };
  if (!l.qcow2) {
    const rsize = l.dev.info().size;
    const n = Math.max(0, Math.min(len, rsize - off));
    if (n > 0) push({ start: off, length: n, depth: k, present: true, zero: false, data: true, offset: off });
    return;
  }
  for (const s of await l.qcow2.ownSegments(off, len)) {
    switch (s.kind) {
      case Kind.Data:
        push({ start: s.offset, length: s.length, depth: k, present: true, zero: false, data: true, offset: s.host });
        break;
      case Kind.Compressed:
        push({ start: s.offset, length: s.length, depth: k, present: true, zero: false, data: true });
        break;
      case Kind.Zero:
        push({ start: s.offset, length: s.length, depth: k, present: true, zero: true, data: false });
        break;
      default: {
        const below = layers[k + 1];
        const bsize = below ? below.dev.info().size : 0;
        const inside = below ? Math.max(0, Math.min(s.length, bsize - s.offset)) : 0;
        if (inside > 0) await mapRange(layers, k + 1, s.offset, inside, out);
        if (inside < s.length) push({ start: s.offset + inside, length: s.length - inside, depth: k, present: false, zero: true, data: false });
      }
    }
  }
}

export async function mapCommand(file: string, o: { format?: string; output?: string }): Promise<void> {
  const { device, layers } = await openImageLayers(file, { format: checkFormatName(o.format), readOnly: true });
  try {
    const size = device.info().size;
    const out: MapEntry[] = [];
    for (let p = 0; p < size; p += 1024 * CHUNK) await mapRange(layers, 0, p, Math.min(1024 * CHUNK, size - p), out);
    if (o.output === 'json') {
      const lines = out.map((e) => {
        let s = `{ "start": ${e.start}, "length": ${e.length}, "depth": ${e.depth}, "present": ${e.present}, "zero": ${e.zero}, "data": ${e.data}`;
        if (e.offset !== undefined) s += `, "offset": ${e.offset}`;
        return s + '}';
      });
      process.stdout.write(`[${lines.join(',\n')}]\n`);
    } else {
      const hex = (n: number) => (n === 0 ? '0' : `0x${n.toString(16)}`);
      let s = `${'Offset'.padEnd(16)}${'Length'.padEnd(16)}${'Mapped to'.padEnd(16)}File\n`;
      for (const e of out) {
        if (!e.data || e.offset === undefined) continue;
        s += `${hex(e.start).padEnd(16)}${hex(e.length).padEnd(16)}${hex(e.offset).padEnd(16)}${layers[e.depth]!.path}\n`;
      }
      process.stdout.write(s);
    }
  } finally {
    await device.close();
  }
}

export async function resizeCommand(file: string, sizeArg: string, o: { format?: string; shrink?: boolean }): Promise<void> {
  const format = checkFormatName(o.format) ?? (await probeFormat(file));
  const rel = sizeArg.startsWith('+') ? 1 : sizeArg.startsWith('-') ? -1 : 0;
  const amount = parseImgSize(rel ? sizeArg.slice(1) : sizeArg);
  if (format === 'raw') {
    const cur = (await stat(file)).size;
    const ns = rel ? cur + rel * amount : amount;
    if (ns < 0) throw err.inval('new size would be negative');
    if (ns < cur && !o.shrink) throw err.inval('use the --shrink option to shrink an image (data past the new end is lost)');
    await truncate(file, ns);
  } else {
    const img = await Qcow2Image.open(file);
    try {
      const ns = rel ? img.size + rel * amount : amount;
      if (ns < img.size && !o.shrink) throw err.inval('use the --shrink option to shrink an image');
      await resizeImage(img, ns);
    } finally {
      await img.close();
    }
  }
  process.stdout.write('Image resized.\n');
}
