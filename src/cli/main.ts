#!/usr/bin/env node
/**
 * The `strata` command. One file per command group; every command calls the
 * API (daemon or in-process) and formats the result. User mistakes and
 * storage errors print one line on stderr and exit non-zero; no stack traces
 * unless STRATA_DEBUG is set.
 */
import { Command, CommanderError } from 'commander';
import { isStorageError, exitCodeFor } from '../errors.js';
import { CliContext } from './context.js';
import { registerPoolCommands } from './pool.js';
import { registerDatasetCommands } from './dataset.js';
import { registerTransferCommands } from './transfer.js';
import { registerServeCommand } from './serve.js';
import { registerSnapshotCommands } from './snapshot.js';

// `strata list | head` closes our stdout early: that is not an error.
process.stdout.on('error', (e: NodeJS.ErrnoException) => {
  if (e.code === 'EPIPE') process.exit(0);
});

async function main(argv: string[]): Promise<number> {
  const ctx = new CliContext();
  const program = new Command('strata')
    .description('strata: VM disk storage pools, snapshots and NBD/iSCSI serving')
    .option('--home <dir>', 'state directory (default $STRATA_HOME or ./strata-data)')
    .showHelpAfterError(false)
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s.startsWith('error: ') ? `strata: ${s.slice(7)}` : s) });
  program.hook('preAction', (cmd) => {
    ctx.homeDir = cmd.optsWithGlobals<{ home?: string }>().home;
  });
  registerPoolCommands(program, ctx);
  registerDatasetCommands(program, ctx);
  registerTransferCommands(program, ctx);
  registerSnapshotCommands(program, ctx);
  registerServeCommand(program, ctx);
  (await import('./bench.js')).registerBenchCommands(program, ctx);
  try {
    const image = (await import('./image.js')) as { registerImageCommands?: (p: Command) => void };
    image.registerImageCommands?.(program);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ERR_MODULE_NOT_FOUND') throw e;
  }
  for (const c of program.commands) c.exitOverride();
  let code = 0;
  try {
    await program.parseAsync(argv);
    code = process.exitCode === undefined ? 0 : Number(process.exitCode);
  } catch (e) {
    if (e instanceof CommanderError) {
      code = e.exitCode === 0 ? 0 : 2;
    } else if (isStorageError(e)) {
      process.stderr.write(`strata: ${e.message}\n`);
      code = exitCodeFor(e.code);
    } else {
      process.stderr.write(`strata: internal error: ${(e as Error)?.message ?? String(e)}\n`);
      if (process.env['STRATA_DEBUG']) process.stderr.write(String((e as Error)?.stack) + '\n');
      code = 1;
    }
  }
  try {
    await ctx.close();
  } catch (e) {
    process.stderr.write(`strata: ${(e as Error).message}\n`);
    code = code || 1;
  }
  return code;
}

main(process.argv).then(
  (code) => process.exit(code),
  (e) => {
    process.stderr.write(`strata: ${(e as Error).message}\n`);
    process.exit(1);
  },
);
