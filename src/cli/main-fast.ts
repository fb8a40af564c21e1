/**
 * What bin/strata runs for `strata image ...`: the build bundles this file,
 * with the image commands and the formats they use, into one CommonJS file
 * (dist/src/cli/main-fast.cjs, scripts/bundle-cli.mjs).
 *
 * Why a bundle: Node 20 loads ES modules one by one through its asynchronous
 * loader (resolve, read, compile, link per file); for the ~30 modules of
 * `strata image convert` that cost ~20-25 ms of every run, which one
 * CommonJS file does not pay (measured: a 1 MiB convert 72 -> 53 ms, `node
 * -e 0` being 33). Short commands are what users run by the hundred.
 *
 * Only the fast path of image.ts runs from the bundle (image-fast.ts);
 * anything else (image help, mistakes, and other commands should this file
 * be started for them) imports main.js, the ES module program, which then
 * runs as if started directly. The two never share objects: a bundled class
 * (StorageError, say) is not the ES module's class, so the bundle hands over
 * before creating any. Other commands do not come here at all (bin/strata):
 * loading the bundle first measured ~10 ms on `strata --help`.
 */
import { exitAfterOutput, imageIndex, runImageFast } from './image-fast.js';

/** The image fast path (the bundle's modules are evaluated when first imported, so only for `image ...`). */
async function fast(): Promise<number | null> {
  if (imageIndex(process.argv.slice(2)) < 0) return null;
  return runImageFast(process.argv, await import('./image.js'));
}

fast().then(
  (code) => {
    if (code === null) return import('./main.js');
    exitAfterOutput(code);
  },
  (e) => {
    process.stderr.write(`strata: ${(e as Error).message}\n`);
    process.exit(1);
  },
);
