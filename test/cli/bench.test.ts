/**
 * `strata bench snapshots` through the real binary, with tiny sizes and one
 * round: it runs every phase against every target (strata serve with
 * native/cow/row volumes and qcow2 images, qemu-nbd) and writes a JSON
 * result, a Markdown report and SVG charts that parse. No timing is judged
 * here; only the byte counters (amplification) are, loosely.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tmp } from '../helpers/cli.js';
import { buildProject } from '../formats/qcow2/helpers.js';

const has = (cmd: string) => spawnSync(cmd, ['--version'], { stdio: 'ignore' }).status === 0;
const peers = has('fio') && has('qemu-img') && has('qemu-nbd') && has('qemu-io');

/** Well-formedness of our hand-written SVG: one root, every element closed, nothing after it. */
function checkSvg(svg: string): void {
  expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
  const stack: string[] = [];
  const body = svg.replace(/<title>[^<]*<\/title>/g, '');
  for (const m of body.matchAll(/<(\/?)([a-zA-Z][\w-]*)((?:\s+[\w:-]+="[^"<>]*")*)\s*(\/?)>/g)) {
    const [, close, name, , self] = m;
    if (self) continue;
    if (close) expect(stack.pop()).toBe(name);
    else stack.push(name!);
  }
  expect(stack).toEqual([]);
  // Nothing that looks like a tag was left unmatched by the pattern above (e.g. a stray '<').
  expect(body.replace(/<(\/?)([a-zA-Z][\w-]*)((?:\s+[\w:-]+="[^"<>]*")*)\s*(\/?)>/g, '')).not.toMatch(/[<>]/);
  expect(svg).toMatch(/<rect [^>]*height="[\d.]+"/);
}

let build: ReturnType<typeof buildProject>;
let dir: string;

beforeAll(() => {
  if (!peers) return;
  // A private build: other suites rebuilding dist/ meanwhile cannot break this run.
  build = buildProject('bench');
  dir = tmp('strata-bench-cli-');
}, 120_000);

afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
  build?.cleanup();
});

describe('strata bench snapshots', () => {
  it.skipIf(!peers)('runs every phase on tiny disks and writes JSON, Markdown and SVG that parse', () => {
    const out = join(dir, 'out');
    const r = spawnSync(
      process.execPath,
      [build.cli, 'bench', 'snapshots', '--size', '8M', '--rounds', '1', '--runtime', '0.3', '--sizes', '4M', '--depths', '1,2', '--dir', dir, '--out', out, '--json'],
      { encoding: 'utf8', timeout: 170_000 },
    );
    expect(r.stderr).not.toMatch(/internal error|ERROR/);
    expect(r.status).toBe(0);
    const printed = JSON.parse(r.stdout);
    const saved = JSON.parse(readFileSync(join(out, 'snapshot-strategies.json'), 'utf8'));
    expect(saved).toEqual(printed);
    expect(saved.errors).toEqual([]);
    const names = ['native', 'cow', 'row', 'qcow2-int/strata', 'qcow2-int/qemu-nbd', 'qcow2-ext/strata', 'qcow2-ext/qemu-nbd'];
    expect(saved.targets.map((t: { name: string }) => t.name)).toEqual(names);
    for (const n of names) {
      expect(saved.overwrite[n].iopsBefore.median).toBeGreaterThan(0);
      expect(saved.overwrite[n].iopsAfter.median).toBeGreaterThan(0);
      expect(saved.seqReadFresh[n].median).toBeGreaterThan(0);
      expect(saved.fragmentation[n].seqRead.median).toBeGreaterThan(0);
      expect(saved.space['filled'][n].used).toBeGreaterThan(0);
    }
    for (const n of ['native', 'cow', 'row', 'qcow2-ext/strata', 'qcow2-ext/qemu-nbd']) {
      expect(Object.keys(saved.depth[n])).toEqual(['1', '2']);
      expect(saved.depth[n]['2'].readIops.median).toBeGreaterThan(0);
    }
    for (const n of ['native', 'cow', 'row', 'qcow2-int', 'qcow2-ext']) {
      expect(saved.sizes[n]['4M'].createMs.median).toBeGreaterThan(0);
      expect(saved.sizes[n]['4M'].deleteMs.median).toBeGreaterThan(0);
    }
    // The temporary pool is ours: amplification is measured cold; cow pays a copy-out per first overwrite.
    expect(saved.coldCache).toBe(true);
    expect(saved.amplification['cow'].firstOverwrite.median).toBeGreaterThan(2);
    expect(saved.amplification['native'].firstOverwrite.median).toBeLessThan(1.6);
    expect(saved.amplification['row'].firstOverwrite.median).toBeLessThan(1.6);

    const md = readFileSync(join(out, 'snapshot-strategies.md'), 'utf8');
    expect(md).toMatch(/^# Snapshot strategies/);
    for (const h of ['## Anomalies', '## Summary', '## Write amplification', '## Snapshot create and delete time', '## Space used', '## Charts']) expect(md).toContain(h);
    const summary = md.split('## Summary')[1]!.split('\n## ')[0]!.split('\n').filter((l) => l.startsWith('| '));
    expect(summary.length).toBe(1 + names.length);
    for (const n of names) expect(summary.some((l) => l.startsWith(`| ${n} |`))).toBe(true);

    const svgs = readdirSync(out).filter((f) => f.endsWith('.svg'));
    expect(svgs.sort()).toEqual(
      ['amplification', 'create-time', 'delete-time', 'depth-read', 'overwrite-iops', 'seq-read', 'space'].map((c) => `snapshot-strategies-${c}.svg`),
    );
    for (const f of svgs) {
      checkSvg(readFileSync(join(out, f), 'utf8'));
      expect(md).toContain(`](${f})`);
    }
    // Nothing left behind in --dir but the output.
    expect(readdirSync(dir).filter((f) => f !== 'out')).toEqual([]);
    expect(existsSync(join(out, 'snapshot-strategies.md'))).toBe(true);
  }, 180_000);

  it.skipIf(!peers)('refuses bad options with one line', () => {
    const r = spawnSync(process.execPath, [build.cli, 'bench', 'snapshots', '--size', '3K', '--dir', dir], { encoding: 'utf8', timeout: 60_000 });
    expect(r.status).not.toBe(0);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/^strata: invalid --size '3K'/);
  });
});
