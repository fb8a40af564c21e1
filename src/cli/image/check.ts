/** `strata image check`: qemu-img's output and exit codes (0 clean, 2 corruptions, 3 leaks, 1 check failed, 63 unsupported). */
import { probeFormat } from '../../../formats/image-format.js';
import { checkImage, Qcow2Image } from '../../../formats/qcow2/index.js';
import { err } from '../../errors.js';
import { checkFormatName, ExitCode } from './common.js';

export async function checkCommand(file: string, o: { format?: string; repair?: string; output?: string }): Promise<void> {
  const format = checkFormatName(o.format) ?? (await probeFormat(file));
  if (format !== 'qcow2') {
    process.stderr.write('strata: This image format does not support checks\n');
    throw new ExitCode(63);
  }
  if (o.repair !== undefined && o.repair !== 'leaks' && o.repair !== 'all') throw err.inval(`invalid -r argument '${o.repair}': use leaks or all`);
  const repair = o.repair as 'leaks' | 'all' | undefined;
  const img = await Qcow2Image.open(file, { readOnly: repair === undefined });
  let r;
  try {
    r = await img.exclusive(() => checkImage(img, { repair }));
  } finally {
    await img.close();
  }
  if (o.output === 'json') {
    const j: Record<string, unknown> = {};
    if (r.imageEndOffset) j['image-end-offset'] = r.imageEndOffset;
    if (r.totalClusters) j['total-clusters'] = r.totalClusters;
    j['check-errors'] = r.checkErrors;
    if (r.leaks) j['leaks'] = r.leaks;
    if (r.corruptions) j['corruptions'] = r.corruptions;
    if (r.leaksFixed) j['leaks-fixed'] = r.leaksFixed;
    if (r.corruptionsFixed) j['corruptions-fixed'] = r.corruptionsFixed;
    if (r.allocatedClusters) j['allocated-clusters'] = r.allocatedClusters;
    j['filename'] = file;
    j['format'] = 'qcow2';
    if (r.fragmentedClusters) j['fragmented-clusters'] = r.fragmentedClusters;
    if (r.compressedClusters) j['compressed-clusters'] = r.compressedClusters;
    process.stdout.write(JSON.stringify(j, null, 4) + '\n');
  } else {
    let out = '';
    if (repair === undefined) for (const m of r.messages.slice(0, 1000)) out += `${m}\n`;
    if (r.leaksFixed || r.corruptionsFixed) {
      out += `The following inconsistencies were found and repaired:\n\n    ${r.leaksFixed} leaked clusters\n    ${r.corruptionsFixed} corruptions\n\nDouble checking the fixed image now...\n`;
    }
    if (r.corruptions === 0 && r.leaks === 0) out += 'No errors were found on the image.\n';
    if (r.corruptions) out += `\n${r.corruptions} errors were found on the image.\nData may be corrupted, or further writes to the image may corrupt it.\n`;
    if (r.leaks) out += `\n${r.leaks} leaked clusters were found on the image.\nThis means waste of disk space, but no harm to data.\n`;
    const pct = (n: number) => (r.totalClusters ? fixed2((100 * n) / r.totalClusters) : '0.00');
    const pctA = (n: number) => (r.allocatedClusters ? fixed2((100 * n) / r.allocatedClusters) : '0.00');
    out += `${r.allocatedClusters}/${r.totalClusters} = ${pct(r.allocatedClusters)}% allocated, ${pctA(r.fragmentedClusters)}% fragmented, ${pctA(r.compressedClusters)}% compressed clusters\n`;
    out += `Image end offset: ${r.imageEndOffset}\n`;
    process.stdout.write(out);
  }
  if (r.corruptions) throw new ExitCode(2);
  if (r.leaks) throw new ExitCode(3);
}

/** printf("%.2f") as glibc does it: exact ties round to even (3.125 -> 3.12), unlike toFixed. */
function fixed2(x: number): string {
  const scaled = x * 100;
  const fl = Math.floor(scaled);
  if (scaled - fl === 0.5 && fl % 2 === 0) return (fl / 100).toFixed(2);
  return x.toFixed(2);
}
