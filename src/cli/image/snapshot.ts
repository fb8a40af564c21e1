/** `strata image snapshot -c|-a|-d|-l`: internal snapshots, as qemu-img snapshot. */
import { applySnapshot, createSnapshot, deleteSnapshot, listSnapshots, Qcow2Image } from '../../../formats/qcow2/index.js';
import { probeFormat } from '../../../formats/image-format.js';
import { err } from '../../errors.js';
import { checkFormatName } from './common.js';
import { snapshotTable } from './info.js';

export async function snapshotCommand(file: string, o: { create?: string; apply?: string; delete?: string; list?: boolean; format?: string }): Promise<void> {
  const ops = [o.create, o.apply, o.delete].filter((x) => x !== undefined).length + (o.list ? 1 : 0);
  if (ops > 1) throw err.inval('use only one of -c, -a, -d, -l');
  const format = checkFormatName(o.format) ?? (await probeFormat(file));
  if (format !== 'qcow2') throw err.notsup(`format '${format}' does not support internal snapshots`);
  const list = ops === 0 || !!o.list;
  const img = await Qcow2Image.open(file, { readOnly: list });
  try {
    if (list) {
      const s = listSnapshots(img);
      if (s.length) process.stdout.write('Snapshot list:\n' + snapshotTable(s));
    } else if (o.create !== undefined) await createSnapshot(img, o.create);
    else if (o.apply !== undefined) await applySnapshot(img, o.apply);
    else if (o.delete !== undefined) await deleteSnapshot(img, o.delete);
  } finally {
    await img.close();
  }
}
