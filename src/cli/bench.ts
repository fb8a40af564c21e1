/**
 * `strata bench snapshots`: the snapshot-strategies benchmark
 * (bench/snapshot-strategies) for administrators: native, cow and row
 * volumes against qcow2 internal snapshots and external overlays served by
 * strata and by qemu-nbd, measured with fio over NBD. By default on a
 * temporary pool in --dir (nothing of the home is touched); with --pool, on
 * that pool of the home (volumes under POOL/strata-bench-PID, destroyed
 * afterwards), through the running daemon if there is one.
 * Writes JSON, Markdown and SVG charts to --out; prints the Markdown (or,
 * with --json, the JSON) on stdout and progress on stderr.
 */
import { existsSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Command } from 'commander';
import { err } from '../errors.js';
import type { CliContext } from './context.js';
import { DEFAULTS, parseOptions, type RawOptions } from './bench-options.js';

interface BenchSnapshotsOpts extends RawOptions {
  out?: string;
  json?: boolean;
}

export function registerBenchCommands(program: Command, ctx: CliContext): void {
  const bench = program.command('bench').description('benchmarks of this machine and its storage');
  bench
    .command('snapshots')
    .description('compare snapshot strategies (native, cow, row) with qcow2 internal/external snapshots: IOPS, amplification, fragmentation, chain depth, create/delete time, space')
    .option('--size <size>', 'disk size of the IOPS, amplification, fragmentation and depth tests', DEFAULTS.size)
    .option('--rounds <n>', 'rounds (targets alternate within each; medians are reported)', DEFAULTS.rounds)
    .option('--runtime <sec>', 'seconds of each time-based read job', DEFAULTS.runtime)
    .option('--sizes <list>', 'volume sizes for snapshot create/delete time', DEFAULTS.sizes)
    .option('--depths <list>', 'snapshot counts for the chain-depth reads', DEFAULTS.depths)
    .option('--dir <dir>', 'directory for the temporary pool and the qcow2 images (default: the system temp directory)')
    .option('--pool <name>', 'benchmark on this pool of the home instead of a temporary pool')
    .option('--nbd <addr>', "NBD address of the home's running daemon (default: its config, else 127.0.0.1:10809)")
    .option('--only <list>', 'only these targets: native,cow,row,qcow2-int,qcow2-ext,qcow2-int/strata,...')
    .option('--out <dir>', 'where to write snapshot-strategies.{json,md} and the SVG charts (default: bench/results of a checkout, else ./strata-bench-results)')
    .option('--json', 'print the JSON result instead of the Markdown report')
    .action(async (o: BenchSnapshotsOpts) => {
      // Loaded here: nothing else needs the benchmark (or fio).
      const { runSnapshotBench, defaultResultsDir } = await import('../../bench/snapshot-strategies/index.js');
      const { markdown, writeOutputs } = await import('../../bench/snapshot-strategies/report.js');
      let opts;
      try {
        opts = parseOptions(o, o.pool ? ctx.home.dir : undefined, (l) => process.stderr.write(`${l}\n`));
      } catch (e) {
        throw err.inval((e as Error).message);
      }
      const checkout = defaultResultsDir();
      const out = o.out ?? (existsSync(dirname(checkout)) ? checkout : 'strata-bench-results');
      const r = await runSnapshotBench(opts);
      const files = await writeOutputs(r, out);
      process.stdout.write(o.json ? JSON.stringify(r, null, 2) + '\n' : markdown(r));
      process.stderr.write(`strata: wrote ${files.json}, ${files.md} and ${files.svgs.length} charts\n`);
    });
}
