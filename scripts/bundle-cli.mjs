// Build step after tsc: bundle the CLI's entry (dist/src/cli/main-fast.js,
// which tsc just wrote) with everything it imports statically or loads
// lazily by relative path into one CommonJS file, dist/src/cli/main-fast.cjs,
// the file bin/strata runs. src/cli/main-fast.ts says why.
//
// - Packages stay outside (required from node_modules at run time).
// - ./main.js stays outside: the bundle imports the ES module program for
//   everything but the image fast path.
// - import.meta.url (formats/qcow2/compress.ts's createRequire) becomes the
//   bundle's own URL: same directory tree, so package lookups resolve the same.
import { build } from 'esbuild';
import { chmodSync, readFileSync } from 'node:fs';

const out = 'dist/src/cli/main-fast.cjs';
const result = await build({
  entryPoints: ['dist/src/cli/main-fast.js'],
  outfile: out,
  bundle: true,
  platform: 'node',
  format: 'cjs',
  target: 'node20',
  packages: 'external',
  external: ['./main.js'],
  define: { 'import.meta.url': '__bundleUrl' },
  banner: { js: "const __bundleUrl = require('node:url').pathToFileURL(__filename).href;" },
  logLevel: 'warning',
  metafile: true,
});
// The import.meta.url replacement above is right for createRequire (a
// package lookup) and wrong for paths relative to a module (new URL('./x.js',
// import.meta.url) would resolve against dist/src/cli/): refuse the bundle if
// any module but the one that was checked uses import.meta.
const MAY_USE_IMPORT_META = new Set(['dist/formats/qcow2/compress.js']);
for (const input of Object.keys(result.metafile.inputs)) {
  if (!MAY_USE_IMPORT_META.has(input) && readFileSync(input, 'utf8').includes('import.meta')) {
    throw new Error(`${input} uses import.meta: check it works from the bundle (${out}), then add it to MAY_USE_IMPORT_META in scripts/bundle-cli.mjs`);
  }
}
chmodSync('dist/src/cli/main.js', 0o755);
