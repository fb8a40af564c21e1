/**
 * The snapshot-strategies benchmark as a script (the same code as
 * `strata bench snapshots`); writes bench/results/snapshot-strategies.{json,md}
 * and its SVG charts unless --out says otherwise.
 *
 *   npm run build && node dist/bench/snapshot-strategies/run.js [--size 256M]
 *       [--rounds 3] [--runtime 1] [--sizes 64M,256M,1G] [--depths 1,10,50]
 *       [--dir /tmp] [--only native,row,qcow2-ext] [--out DIR] [--json]
 *       [--pool NAME --home DIR [--nbd ADDR:PORT]]
 */
import { pathToFileURL } from 'node:url';
import { defaultResultsDir, runSnapshotBench } from './index.js';
import { parseOptions, type RawOptions } from '../../src/cli/bench-options.js';
import { markdown, writeOutputs } from './report.js';

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const raw: Record<string, string> = {};
  let json = false;
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '--json') json = true;
    else if (a.startsWith('--') && args[i + 1] !== undefined) raw[a.slice(2)] = args[++i]!;
    else throw new Error(`unexpected argument '${a}'`);
  }
  const opts = parseOptions(raw as RawOptions, raw['home'], (l) => process.stderr.write(`${l}\n`));
  const r = await runSnapshotBench(opts);
  const files = await writeOutputs(r, raw['out'] ?? defaultResultsDir());
  process.stdout.write(json ? JSON.stringify(r, null, 2) + '\n' : markdown(r));
  process.stderr.write(`wrote ${files.json}, ${files.md} and ${files.svgs.length} charts\n`);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((e) => {
    process.stderr.write(`bench failed: ${(e as Error).stack ?? e}\n`);
    process.exit(1);
  });
}
