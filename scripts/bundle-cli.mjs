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
import { chmodSync } from 'node:fs';

const out = 'dist/src/cli/main-fast.cjs';
await build({
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
});
chmodSync('dist/src/cli/main.js', 0o755);
