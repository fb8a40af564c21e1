/**
 * `strata image ...`: qemu-img's syntax and exit codes over formats/ (raw,
 * qcow2 with backing chains). Each subcommand lives in ./image/.
 */
import type { Command } from 'commander';
import type { commitCommand, rebaseCommand } from './image/chain-ops.js';
import { action, collect } from './image/common.js';
import type { convertCommand } from './image/convert.js';
import type { createCommand } from './image/create.js';
import type { compareCommand, mapCommand, resizeCommand } from './image/inspect.js';
import type { snapshotCommand } from './image/snapshot.js';

// Each subcommand's module (and the formats it needs) is loaded only when
// that subcommand runs: start-up is a visible part of short commands.
const load = {
  check: () => import('./image/check.js'),
  chainOps: () => import('./image/chain-ops.js'),
  convert: () => import('./image/convert.js'),
  create: () => import('./image/create.js'),
  info: () => import('./image/info.js'),
  inspect: () => import('./image/inspect.js'),
  snapshot: () => import('./image/snapshot.js'),
};

export function registerImageCommands(program: Command): void {
  const image = program.command('image').description('inspect, create and convert raw/qcow2 image files (qemu-img syntax)');

  image
    .command('info')
    .description('show information about an image')
    .option('-f, --format <fmt>', 'image format (probed by default)')
    .option('--output <fmt>', 'human or json', 'human')
    .option('--backing-chain', 'show every image of the backing chain')
    .option('-U, --force-share', 'accepted for compatibility')
    .argument('<file>')
    .action(action(async (file: string, o: { format?: string; output?: string; backingChain?: boolean }) => (await load.info()).infoCommand(file, o)));

  image
    .command('check')
    .description('check an image for consistency (exit 0 clean, 2 corruptions, 3 leaks)')
    .option('-f, --format <fmt>', 'image format')
    .option('-r, --repair <what>', 'repair leaks or all')
    .option('--output <fmt>', 'human or json', 'human')
    .option('-q, --quiet', 'accepted for compatibility')
    .argument('<file>')
    .action(action(async (file: string, o: { format?: string; repair?: string; output?: string }) => (await load.check()).checkCommand(file, o)));

  image
    .command('create')
    .description('create a new image')
    .option('-f, --format <fmt>', 'raw or qcow2', 'raw')
    .option('-o, --options <list>', 'cluster_size,compat,refcount_bits,extended_l2,compression_type,lazy_refcounts,preallocation', collect)
    .option('-b, --backing <file>', 'backing file')
    .option('-F, --backing-format <fmt>', 'backing file format')
    .option('-u, --unsafe', 'do not open the backing file')
    .option('-q, --quiet', 'no output')
    .argument('<file>')
    .argument('[size]')
    .action(action(async (file: string, size: string | undefined, o: Parameters<typeof createCommand>[2]) => (await load.create()).createCommand(file, size, o)));

  image
    .command('convert')
    .description('convert an image (or an internal snapshot) to a new image')
    .option('-f, --format <fmt>', 'source format')
    .option('-O, --output-format <fmt>', 'raw or qcow2', 'raw')
    .option('-c, --compress', 'compress the output clusters (qcow2)')
    .option('-o, --options <list>', 'output creation options', collect)
    .option('-l, --snapshot <spec>', 'snapshot.name=NAME, snapshot.id=ID, or NAME')
    .option('-p, --progress', 'show progress')
    .option('-t, --cache <mode>', 'output cache mode: writeback (default, output durable at exit) or unsafe (no sync)')
    .argument('<src>')
    .argument('<dst>')
    .action(action(async (src: string, dst: string, o: Parameters<typeof convertCommand>[2]) => (await load.convert()).convertCommand(src, dst, o)));

  image
    .command('snapshot')
    .description('create, apply, delete or list internal snapshots')
    .option('-c, --create <name>', 'create a snapshot')
    .option('-a, --apply <name>', 'revert the disk to a snapshot')
    .option('-d, --delete <name>', 'delete a snapshot')
    .option('-l, --list', 'list snapshots')
    .option('-f, --format <fmt>', 'image format')
    .argument('<file>')
    .action(action(async (file: string, o: Parameters<typeof snapshotCommand>[1]) => (await load.snapshot()).snapshotCommand(file, o)));

  image
    .command('commit')
    .description('write the changes of an image into its backing file')
    .option('-f, --format <fmt>', 'image format')
    .option('-d, --keep', 'do not empty the image afterwards')
    .option('-p, --progress', 'show progress')
    .argument('<file>')
    .action(action(async (file: string, o: Parameters<typeof commitCommand>[1]) => (await load.chainOps()).commitCommand(file, o)));

  image
    .command('rebase')
    .description('change the backing file of an image')
    .option('-f, --format <fmt>', 'image format')
    .option('-b, --backing <file>', 'new backing file ("" for none)')
    .option('-F, --backing-format <fmt>', 'new backing file format')
    .option('-u, --unsafe', 'only change the header')
    .option('-p, --progress', 'show progress')
    .argument('<file>')
    .action(action(async (file: string, o: Parameters<typeof rebaseCommand>[1]) => (await load.chainOps()).rebaseCommand(file, o)));

  image
    .command('compare')
    .description('compare the contents of two images (exit 0 same, 1 different, 2 error)')
    .option('-f, --format <fmt>', 'format of the first image')
    .option('-F, --second-format <fmt>', 'format of the second image')
    .option('-s, --strict', 'images of different sizes differ')
    .option('-p, --progress', 'accepted for compatibility')
    .argument('<a>')
    .argument('<b>')
    .action(action(async (a: string, b: string, o: Parameters<typeof compareCommand>[2]) => (await load.inspect()).compareCommand(a, b, o), 2));

  image
    .command('map')
    .description('show how the guest disk maps to image files')
    .option('-f, --format <fmt>', 'image format')
    .option('--output <fmt>', 'human or json', 'human')
    .argument('<file>')
    .action(action(async (file: string, o: Parameters<typeof mapCommand>[1]) => (await load.inspect()).mapCommand(file, o)));

  image
    .command('resize')
    .description('change the virtual size of an image')
    .option('-f, --format <fmt>', 'image format')
    .option('--shrink', 'allow shrinking')
    .argument('<file>')
    .argument('<size>', 'SIZE, +SIZE or -SIZE')
    .allowExcessArguments(false)
    .action(action(async (file: string, size: string, o: Parameters<typeof resizeCommand>[2]) => (await load.inspect()).resizeCommand(file, size, o)));

  for (const c of image.commands) c.exitOverride();
}
