/** `strata image create` and the -o parsing shared with convert. */
import { resolve as resolvePath } from 'node:path';
import { createImage, openImage, probeFormat } from '../../../formats/image-format.js';
import { resolveBacking } from '../../../formats/qcow2/chain.js';
import type { Preallocation, Qcow2CreateOptions } from '../../../formats/qcow2/create.js';
import { err } from '../../errors.js';
import { checkFormatName, parseBool, parseImgSize, parseOptionList } from './common.js';

/** qemu-img's -o names for qcow2 (and raw's preallocation). */
export function createOptionsFrom(format: 'raw' | 'qcow2', list: string[] | undefined): Partial<Qcow2CreateOptions> {
  const o: Partial<Qcow2CreateOptions> = {};
  for (const [k, v] of parseOptionList(list)) {
    switch (k) {
      case 'cluster_size':
        o.clusterSize = parseImgSize(v);
        break;
      case 'compat':
        if (v === '0.10' || v === 'v2') o.compat = '0.10';
        else if (v === '1.1' || v === 'v3') o.compat = '1.1';
        else throw err.inval(`invalid compat '${v}': use 0.10 or 1.1`);
        break;
      case 'refcount_bits':
        o.refcountBits = Number(v);
        break;
      case 'extended_l2':
        o.extendedL2 = parseBool(k, v);
        break;
      case 'compression_type':
        if (v !== 'zlib' && v !== 'zstd') throw err.inval(`invalid compression_type '${v}': use zlib or zstd`);
        o.compressionType = v;
        break;
      case 'lazy_refcounts':
        o.lazyRefcounts = parseBool(k, v);
        break;
      case 'preallocation':
        if (!['off', 'metadata', 'falloc', 'full'].includes(v)) throw err.inval(`invalid preallocation '${v}'`);
        o.preallocation = v as Preallocation;
        break;
      case 'backing_file':
        o.backingFile = v;
        break;
      case 'backing_fmt':
        o.backingFormat = v;
        break;
      case 'size':
        o.size = parseImgSize(v);
        break;
      default:
        throw err.inval(`invalid option '${k}' for format '${format}'`);
    }
    if (format === 'raw' && k !== 'preallocation' && k !== 'size') throw err.inval(`invalid option '${k}' for format 'raw'`);
  }
  return o;
}

export async function createCommand(
  file: string,
  sizeArg: string | undefined,
  o: { format?: string; options?: string[]; backing?: string; backingFormat?: string; unsafe?: boolean; quiet?: boolean },
): Promise<void> {
  const format = checkFormatName(o.format ?? 'raw')!;
  const co = createOptionsFrom(format, o.options);
  const backing = o.backing ?? co.backingFile;
  let backingFormat = o.backingFormat ?? co.backingFormat;
  let size = sizeArg !== undefined ? parseImgSize(sizeArg) : co.size;
  if (backing) {
    if (format !== 'qcow2') throw err.inval('backing files need -f qcow2');
    const bpath = resolveBacking(resolvePath(file), backing);
    if (!o.unsafe || size === undefined) {
      backingFormat = checkFormatName(backingFormat) ?? (await probeFormat(bpath));
      const dev = await openImage(bpath, { format: backingFormat, readOnly: true });
      size ??= dev.info().size;
      await dev.close();
    }
  }
  if (size === undefined) throw err.inval('image size must be given');
  if (!o.quiet) {
    const parts = [`Formatting '${file}', fmt=${format}`];
    if (format === 'qcow2') {
      parts.push(`cluster_size=${co.clusterSize ?? 65536}`, `extended_l2=${co.extendedL2 ? 'on' : 'off'}`, `compression_type=${co.compressionType ?? 'zlib'}`);
    }
    parts.push(`size=${size}`);
    if (backing) parts.push(`backing_file=${backing}`, `backing_fmt=${backingFormat}`);
    if (format === 'qcow2') parts.push(`lazy_refcounts=${co.lazyRefcounts ? 'on' : 'off'}`, `refcount_bits=${co.refcountBits ?? 16}`);
    process.stdout.write(parts.join(' ') + '\n');
  }
  const dev = await createImage(file, { ...co, format, size, backingFile: backing, backingFormat, noOpenBacking: true });
  await dev.close();
}
