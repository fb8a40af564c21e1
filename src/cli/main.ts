#!/usr/bin/env node
/**
 * The `strata` command. One file per command group; every command calls the
 * API (daemon or in-process) and formats the result. User mistakes and
 * storage errors print one line on stderr and exit non-zero; no stack traces
 * unless STRATA_DEBUG is set.
 *
 * Start-up is part of every short command, so nothing is loaded before it is
 * needed. `strata image ...` (also after the global options: `strata --home
 * X image ...`) works on files and never needs the pool, the daemon or the
 * other groups: its plain forms are parsed by image.ts alone (without
 * commander), and anything else (help, mistakes, unusual spellings) by a
 * program holding only the image commands. Every other command builds the
 * whole program. The top-level program (name, description, global options,
 * error output) is the same in both, so help, errors and exit codes do not
 * depend on which path ran.
 */
import type { Command } from 'commander';
import type { CliContext } from './context.js';
import { exitAfterOutput, imageIndex, quietEpipe, runImageFast } from './image-fast.js';

type ImageModule = typeof import('./image.js');

async function loadImage(): Promise<ImageModule | null> {
  try {
    return await import('./image.js');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ERR_MODULE_NOT_FOUND') throw e;
    return null;
  }
}

async function registerAll(program: Command, ctx: CliContext): Promise<void> {
  const [pool, dataset, transfer, snapshot, serve] = await Promise.all([
    import('./pool.js'),
    import('./dataset.js'),
    import('./transfer.js'),
    import('./snapshot.js'),
    import('./serve.js'),
  ]);
  pool.registerPoolCommands(program, ctx);
  dataset.registerDatasetCommands(program, ctx);
  transfer.registerTransferCommands(program, ctx);
  snapshot.registerSnapshotCommands(program, ctx);
  serve.registerServeCommand(program, ctx);
  (await import('./bench.js')).registerBenchCommands(program, ctx);
}

async function main(argv: string[]): Promise<number> {
  const at = imageIndex(argv.slice(2));
  const image = await loadImage();
  if (at >= 0 && image) {
    const code = await runImageFast(argv, image);
    if (code !== null) return code;
  }
  quietEpipe();
  const { Command, CommanderError } = await import('commander');
  const ctx: CliContext | null = at >= 0 ? null : new (await import('./context.js')).CliContext();
  const program = new Command('strata')
    .description('strata: VM disk storage pools, snapshots and NBD/iSCSI serving')
    .option('--home <dir>', 'state directory (default $STRATA_HOME or ./strata-data)')
    .showHelpAfterError(false)
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s.startsWith('error: ') ? `strata: ${s.slice(7)}` : s) });
  if (ctx) {
    program.hook('preAction', (cmd) => {
      ctx.homeDir = cmd.optsWithGlobals<{ home?: string }>().home;
    });
    await registerAll(program, ctx);
  }
  image?.registerImageCommands(program);
  for (const c of program.commands) c.exitOverride();
  let code = 0;
  try {
    await program.parseAsync(argv);
    code = process.exitCode === undefined ? 0 : Number(process.exitCode);
  } catch (e) {
    if (e instanceof CommanderError) {
      code = e.exitCode === 0 ? 0 : 2;
    } else {
      const { isStorageError, exitCodeFor } = await import('../errors.js');
      if (isStorageError(e)) {
        process.stderr.write(`strata: ${e.message}\n`);
        code = exitCodeFor(e.code);
      } else {
        process.stderr.write(`strata: internal error: ${(e as Error)?.message ?? String(e)}\n`);
        if (process.env['STRATA_DEBUG']) process.stderr.write(String((e as Error)?.stack) + '\n');
        code = 1;
      }
    }
  }
  try {
    await ctx?.close();
  } catch (e) {
    process.stderr.write(`strata: ${(e as Error).message}\n`);
    code = code || 1;
  }
  return code;
}

main(process.argv).then(
  (code) => exitAfterOutput(code),
  (e) => {
    process.stderr.write(`strata: ${(e as Error).message}\n`);
    process.exit(1);
  },
);
