/**
 * `strata image` alone, for the convert benchmark: the same commands as
 * `strata image ...` without loading the rest of the CLI (pool, daemon,
 * HTTP), whose start-up cost is not the codec's. run.ts reports that cost
 * separately.
 */
import { Command, CommanderError } from 'commander';
import { registerImageCommands } from '../../src/cli/image.js';

const program = new Command('strata').exitOverride();
registerImageCommands(program);
try {
  await program.parseAsync(process.argv);
} catch (e) {
  if (!(e instanceof CommanderError)) throw e;
  process.exitCode = e.exitCode;
}
