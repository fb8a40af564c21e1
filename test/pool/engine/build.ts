/**
 * Tests that spawn real processes run the compiled CLI/engine from dist/.
 * ensureBuilt() compiles once when dist is missing or older than src/
 * (a directory lock keeps parallel test files from compiling together).
 * tsc may report errors in other engineers' work-in-progress files and
 * still emit; we only require the outputs we use to exist afterwards.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, rmdirSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { newestMtime } from '../../helpers/cli.js';

export const ROOT = resolve(import.meta.dirname, '../../..');
export const CLI = join(ROOT, 'dist/src/cli/main.js');
const WANT = ['dist/src/cli/main.js', 'dist/src/daemon/services.js', 'dist/src/pool/pool.js'];

function stale(): boolean {
  if (!WANT.every((f) => existsSync(join(ROOT, f)))) return true;
  const built = Math.min(...WANT.map((f) => statSync(join(ROOT, f)).mtimeMs));
  return Math.max(newestMtime(join(ROOT, 'src')), newestMtime(join(ROOT, 'formats'))) > built;
}

export async function ensureBuilt(): Promise<void> {
  const lock = join(ROOT, 'dist.build-lock');
  for (;;) {
    if (!stale()) return;
    try {
      mkdirSync(lock);
    } catch {
      // Someone else is building; wait for them (poll the lock: there is no event to wait on across processes).
      await new Promise((r) => setTimeout(r, 200));
      continue;
    }
    try {
      if (stale()) {
        try {
          execFileSync(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', join(ROOT, 'tsconfig.json')], { cwd: ROOT, stdio: 'pipe' });
        } catch {
          /* errors in unrelated files still emit; checked below */
        }
        // The build's second step (npm run build): the CLI bundle bin/strata runs.
        execFileSync(process.execPath, [join(ROOT, 'scripts/bundle-cli.mjs')], { cwd: ROOT, stdio: 'pipe' });
        for (const f of WANT) if (!existsSync(join(ROOT, f))) throw new Error(`build did not produce ${f}`);
      }
      return;
    } finally {
      rmdirSync(lock);
    }
  }
}
