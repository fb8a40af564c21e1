/** `strata import FILE POOL/VOL` and `strata export VOL FILE [-O raw|qcow2]`. */
import type { Command } from 'commander';
import { err } from '../errors.js';
import { formatSize } from '../pool/dataset/units.js';
import type { CliContext } from './context.js';
import { progressBar } from './progress.js';
import { collect, commandLine, parseAssignments } from './args.js';


export function registerTransferCommands(program: Command, ctx: CliContext): void {
  program
    .command('import')
    .description('copy a disk image (raw or qcow2) into a new volume')
    .argument('<file>')
    .argument('<volume>', 'POOL/VOL')
    .option('-f <format>', 'source format: raw|qcow2 (default: probe)')
    .option('-b <blocksize>', 'volume block size')
    .option('-o <prop=value>', 'property for the new volume', collect, [])
    .option('--thick', 'reserve the whole volume size (default sparse)')
    .action(async (file: string, vol: string, o: { f?: string; b?: string; o: string[]; thick?: boolean }) => {
      if (o.f && o.f !== 'raw' && o.f !== 'qcow2') throw err.inval(`unknown format '${o.f}'`);
      const props = parseAssignments(o.o);
      const api = await ctx.api();
      const bar = progressBar('import');
      try {
        const r = await api.importImage(file, vol, { format: o.f as 'raw' | 'qcow2' | undefined, blocksize: o.b, props, sparse: !o.thick, onProgress: ctx.remote ? undefined : bar.update, command: commandLine() });
        bar.stop();
        if (process.stdout.isTTY) process.stdout.write(`imported ${formatSize(r.dataBytes)} of data into ${vol} (${formatSize(r.size)})\n`);
      } finally {
        bar.stop();
      }
    });

  program
    .command('export')
    .description('copy a volume into a disk image file')
    .argument('<volume>', 'POOL/VOL')
    .argument('<file>')
    .option('-O <format>', 'raw|qcow2', 'raw')
    .action(async (vol: string, file: string, o: { O: string }) => {
      if (o.O !== 'raw' && o.O !== 'qcow2') throw err.inval(`unknown format '${o.O}'`);
      const api = await ctx.api();
      const bar = progressBar('export');
      try {
        await api.exportImage(vol, file, { format: o.O, onProgress: ctx.remote ? undefined : bar.update });
      } finally {
        bar.stop();
      }
    });
}
