/**
 * What a SIGKILLed action may have left behind, shared by the snapshot crash
 * tests (test/pool/snapshots/crash.test.ts, test/snapshot/crash.test.ts).
 *
 * An action in flight is either not applied or fully applied, except for
 * these documented partial states:
 *  - a write (zero, trim) may have reached any subset of its blocks;
 *  - destroy -R: the dependent clones go first, one txg each, then the
 *    snapshots: any prefix of the clones (by name, which is their creation
 *    order in these tests) may be gone;
 *  - cow and row destroy of several snapshots (`a%b`): one merge and drop
 *    per snapshot, in order: any prefix may be gone;
 *  - cow rollback -r: the later snapshots are merged away newest first,
 *    one txg each, before the store goes back into the head (one txg): any
 *    number of the newest later snapshots may be gone, the head unchanged.
 * (Merges and cow's copy-back move block pointers in one sync task each,
 * so no state with a half-merged layer or a half-restored head is accepted.)
 */
import type { Pool } from '../../../src/pool/pool.js';
import { Volume } from '../../../src/volume/volume.js';
import type { ModelLike, MSnap } from './check.js';

export type Action = Record<string, unknown> & { k: string };
export type CrashModel = ModelLike & {
  mode: string;
  apply(a: Action): string | null;
  clone(): CrashModel;
  findSnap(full: string): MSnap | undefined;
  ownerOf(s: MSnap): string;
  expand(spec: string): MSnap[];
};

const labels = new WeakMap<CrashModel, string>();
/** Which state a candidate is ('before', 'after', or the partial state's name), for the log. */
export function labelOf(m: CrashModel): string {
  return labels.get(m) ?? 'before';
}
function label<T extends CrashModel | null>(m: T, what: string): T {
  if (m) labels.set(m, what);
  return m;
}

/** Take, block by block, `after`'s bytes of volume `name` where the engine shows them, else `base`'s. */
export async function mixBlocks(base: CrashModel, after: CrashModel, name: string, pool: Pool): Promise<CrashModel | null> {
  const m = base.clone();
  const v = m.vols.get(name);
  const want = after.vols.get(name);
  if (!v || !want || !pool.dir.has(name) || v.size !== want.size) return null;
  const got = await Volume.open(pool, name).read(0, v.size);
  for (let o = 0; o < v.size; o += v.bs) {
    if (got.subarray(o, o + v.bs).equals(want.data.subarray(o, o + v.bs))) want.data.copy(v.data, o, o, o + v.bs);
  }
  return m;
}

/**
 * The states an action in flight may have left on top of `m`: m itself
 * first, then the action applied, then the partial states.
 */
export async function outcomes(m: CrashModel, a: Action, pool: Pool): Promise<CrashModel[]> {
  const after = m.clone();
  if (after.apply(a) !== null) return [m]; // it would have been refused: nothing changed
  const out: CrashModel[] = [m, label(after, `after ${a.k}`)];
  if (['write', 'zero', 'trim'].includes(a.k)) {
    const mix = label(await mixBlocks(m, after, String(a['name']), pool), `${a.k} partly`);
    if (mix) out.push(mix);
  }
  if (a.k === 'dvol' && a['r']) {
    // Native destroy -r frees the snapshots first (their own txgs), then the volume: the volume may remain without them.
    const mid = m.clone();
    mid.vols.get(String(a['name']))!.snaps = [];
    out.push(label(mid, 'destroy -r: snapshots gone, volume not yet'));
  }
  if (a.k === 'dsnap') {
    const targets = m.expand(String(a['snap']));
    const ds = m.ownerOf(targets[0]!);
    let base = m;
    if (a['R']) {
      const clones = [...new Set(targets.flatMap((s) => m.clonesOf(s)))];
      for (let j = 1; j <= clones.length; j++) {
        const p = m.clone();
        for (const c of clones.slice(0, j)) p.vols.delete(c);
        out.push(label(p, `destroy -R: ${j} of ${clones.length} clones gone`));
        base = p;
      }
    }
    if (m.mode !== 'native') {
      for (let j = 1; j < targets.length; j++) {
        const p = base.clone();
        const names = new Set(targets.slice(0, j).map((s) => s.name));
        p.vols.get(ds)!.snaps = p.vols.get(ds)!.snaps.filter((s) => !names.has(s.name));
        out.push(label(p, `destroy: ${j} of ${targets.length} snapshots gone`));
      }
    }
  }
  if (a.k === 'rollback' && m.mode === 'cow') {
    const s = m.findSnap(String(a['snap']))!;
    const ds = m.ownerOf(s);
    const snaps = m.vols.get(ds)!.snaps;
    const at = snaps.indexOf(s);
    for (let j = 1; j < snaps.length - at; j++) {
      const p = m.clone();
      p.vols.get(ds)!.snaps.splice(snaps.length - j, j);
      out.push(label(p, `cow rollback: ${j} later snapshots merged away`));
    }
  }
  // Several actions in flight: name the combination.
  if (labels.has(m)) for (const x of out.slice(1)) labels.set(x, `${labelOf(m)} + ${labelOf(x)}`);
  return out;
}

/**
 * Every state the in-flight actions may have left, on top of `m` (in the
 * order they began). Those naming the datasets the pool has come first (a
 * cheap filter before the full comparisons: destroy -R offers one state per
 * clone).
 */
export async function candidateStates(m: CrashModel, inflight: Action[], pool: Pool): Promise<CrashModel[]> {
  let states = [m];
  for (const a of inflight) {
    const next: CrashModel[] = [];
    for (const c of states) next.push(...(await outcomes(c, a, pool)));
    states = next;
  }
  const have = JSON.stringify([...pool.dir.datasets.keys()].filter((n) => n.includes('/')).sort());
  const fits = (c: CrashModel) => (JSON.stringify(c.volNames()) === have ? 0 : 1);
  return states.map((c, i) => ({ c, i })).sort((x, y) => fits(x.c) - fits(y.c) || x.i - y.i).map((x) => x.c);
}
