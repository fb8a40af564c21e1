/**
 * Crash child for the snapshot strategies (test/snapshot/crash.test.ts): a
 * seeded workload on pool `tank` of a home, through PoolManager from a
 * private build, until SIGKILLed. Every action is journaled durably before
 * it starts (`B id json`) and after it returns (`D id code`); writes are
 * flushed, so a `D` line means durable. The model (model-lib.mjs) says what
 * each action must return; a mismatch exits 3.
 *
 * Scenarios:
 *  - copyout (cow): one volume filled, then random overwrites with
 *    snapshots taken, destroyed (merged) and rolled back among them: most
 *    writes copy old blocks out into the newest snapshot's store.
 *  - merge (row, or any mode): a large layer (the volume rewritten) is
 *    snapshotted, then a snapshot is destroyed (its layer merged into the
 *    next layer or the head; cow: its store into the previous one) while a
 *    writer keeps writing (flushed, one write at a time): up to two actions
 *    are in flight.
 *  - clones (native, row): a template snapshot cloned to tank/vm001..vm100
 *    in one call, some clones written, then all destroyed (one by one, or
 *    with the snapshot by destroy -R), again and again.
 *
 * Progress on stdout: `done N` after each action, `phase NAME K` when the
 * K-th interesting stretch (a merge, a clone batch) starts, so the parent
 * can aim its kill.
 *
 * usage: node crash-child.mjs DIST HOME JOURNAL SCENARIO MODE SEED
 */
import { crashRunner, rng } from '../pool/snapshots/model-lib.mjs';

const [dist, home, journal, scenario, mode, seedArg] = process.argv.slice(2);
const runner = await crashRunner({ dist, home, journal, mode });
const { model } = runner;
const r = rng(Number(seedArg));
let ids = 0;

/** Run one action (crashRunner's act), journaled with its id: `B id json`, `D id code`. */
function act(a) {
  return runner.act(a, `${ids++} `);
}

const phase = (name, k) => process.stdout.write(`phase ${name} ${k}\n`);
const MiB = 1 << 20;

/** Write [from, to) of a volume in 1 MiB flushed writes. */
async function fill(name, from, to) {
  for (let o = from; o < to; o += MiB) await act({ k: 'write', name, off: o, len: Math.min(MiB, to - o), seed: r.next() });
}

function randomWrite(name, size, bs, maxLen) {
  const len = Math.min(size, 1 + r.below(maxLen));
  // Half the writes block-aligned (whole-block overwrites), half anywhere (partial blocks).
  let off = r.below(size - len + 1);
  if (r.below(2) === 0) off -= off % bs;
  const z = r.below(8);
  return { k: z === 0 ? 'zero' : z === 1 ? 'trim' : 'write', name, off, len, seed: r.next() };
}

async function copyout() {
  const name = 'tank/v';
  const size = 8 * MiB;
  const bs = 8192;
  await act({ k: 'create', name, size, bs, mode });
  await fill(name, 0, size);
  let k = 0;
  for (;;) {
    const snaps = model.vols.get(name).snaps;
    const x = r.below(100);
    if (x < 65) {
      if (snaps.length) phase('copyout', runner.done);
      await act(randomWrite(name, size, bs, 256 * 1024));
    } else if (x < 80 || !snaps.length) {
      if (snaps.length >= 4) await act({ k: 'dsnap', snap: `${name}@${snaps[r.below(snaps.length)].name}`, R: false });
      await act({ k: 'snap', name: `${name}@s${k++}` });
    } else if (x < 92) {
      await act({ k: 'dsnap', snap: `${name}@${snaps[r.below(snaps.length)].name}`, R: false });
    } else {
      // Rollback: to the newest, or (-r) further back, merging the later ones away.
      const to = r.below(2) === 0 ? snaps.length - 1 : r.below(snaps.length);
      await act({ k: 'rollback', snap: `${name}@${snaps[to].name}`, r: to < snaps.length - 1 });
    }
  }
}

async function merge() {
  const name = 'tank/v';
  const size = 32 * MiB;
  const bs = 4096;
  await act({ k: 'create', name, size, bs, mode });
  let k = 0;
  for (;;) {
    // A large top layer: most of the volume rewritten since the last snapshot.
    const from = r.below(8) * MiB;
    await fill(name, from, Math.min(size, from + (16 + r.below(17)) * MiB));
    await act({ k: 'snap', name: `${name}@s${k}` });
    // A few writes into the new head, so a merge into it must skip them.
    for (let i = r.below(4); i > 0; i--) await act(randomWrite(name, size, bs, 512 * 1024));
    const snaps = model.vols.get(name).snaps;
    // Newest (merges into the live head, I/O paused per batch) or an older one (into the next layer).
    const target = snaps.length > 1 && r.below(2) === 0 ? snaps[snaps.length - 2] : snaps[snaps.length - 1];
    phase('merge', k);
    let merging = true;
    const destroy = act({ k: 'dsnap', snap: `${name}@${target.name}`, R: false }).finally(() => (merging = false));
    // The guest keeps writing (one flushed write at a time) until the merge is done.
    while (merging) await act(randomWrite(name, size, bs, 128 * 1024));
    await destroy;
    phase('merged', k);
    // Keep at most two snapshots between rounds.
    const left = model.vols.get(name).snaps;
    if (left.length > 2) await act({ k: 'dsnap', snap: `${name}@${left[0].name}`, R: false });
    k++;
  }
}

async function clones() {
  const tmpl = 'tank/tmpl';
  const size = 1 * MiB;
  const bs = 8192;
  await act({ k: 'create', name: tmpl, size, bs, mode });
  await fill(tmpl, 0, size);
  await act({ k: 'snap', name: `${tmpl}@gold` });
  const names = Array.from({ length: 100 }, (_, i) => `tank/vm${String(i + 1).padStart(3, '0')}`);
  for (let k = 0; ; k++) {
    phase('clone', k);
    await act({ k: 'clones', snap: `${tmpl}@gold`, names });
    phase('cloned', k);
    for (let i = 1 + r.below(6); i > 0; i--) await act(randomWrite(names[r.below(names.length)], size, bs, 64 * 1024));
    if (r.below(2) === 0) {
      for (const n of names) await act({ k: 'dvol', name: n, r: false });
    } else {
      // The clones go with the snapshot; the template changes a little and is snapshotted again.
      await act({ k: 'dsnap', snap: `${tmpl}@gold`, R: true });
      await act(randomWrite(tmpl, size, bs, 64 * 1024));
      await act({ k: 'snap', name: `${tmpl}@gold` });
    }
  }
}

try {
  if (scenario === 'copyout') await copyout();
  else if (scenario === 'merge') await merge();
  else if (scenario === 'clones') await clones();
  else throw new Error(`unknown scenario ${scenario}`);
} catch (e) {
  process.stderr.write(`child failed: ${e?.stack ?? e}\n`);
  process.exit(4);
} finally {
  runner.closeJournal();
}
