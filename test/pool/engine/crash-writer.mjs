/**
 * Crash writer: opens a pool volume from the compiled engine and writes to
 * it forever (random offsets and sizes, partial blocks, writeZeroes, trims),
 * sequentially, flushing every few ops. The test SIGKILLs it at random.
 *
 * Durable bookkeeping (all fsync'd), in STATE_DIR:
 *   model.bin       volume contents as of the last completed flush (atomic replace)
 *   gen             generation number of model.bin
 *   pending.log     ops of the current generation, journaled BEFORE being issued
 *
 * Because ops are issued one at a time and each joins one txg, and txgs
 * commit in order, the volume after a crash must equal model.bin plus some
 * prefix of pending.log.
 *
 * Usage: node crash-writer.mjs DIST_ROOT HOME STATE_DIR VOLUME SEED
 * Prints "flushed N" after each completed flush.
 */
import { readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { appendDurable, applyOp, opData, writeDurable } from './crash-lib.mjs';

const [distRoot, home, stateDir, volName, seedArg] = process.argv.slice(2);
const { PoolManager } = await import(pathToFileURL(join(distRoot, 'src/daemon/services.js')).href);

let rnd = Number(seedArg) >>> 0 || 7;
const next = () => {
  rnd ^= rnd << 13; rnd ^= rnd >>> 17; rnd ^= rnd << 5; rnd >>>= 0;
  return rnd;
};
const below = (n) => next() % n;

// Short txg timeout and small dirty limit: txgs also commit between flushes, at arbitrary points.
const mgr = new PoolManager(home, { txgTimeoutMs: 50 + below(200), dirtyMax: 4 * 1024 * 1024 });
const { volume } = await mgr.openVolume(volName);
const { size: volSize, blockSize: bs } = volume.info();
// LANES concurrent writers, each on its own region with its own model and journal
// (state files suffixed -LANE when LANES > 1): each region must be its model plus a
// prefix of its own ops, whatever the other lanes did.
const lanes = Number(process.env['STRATA_CRASH_LANES'] ?? 1);
const suffix = (lane) => (lanes > 1 ? `-${lane}` : '');
const regionSize = Math.floor(volSize / lanes / bs) * bs;

async function lane(id) {
  const base = id * regionSize;
  const size = regionSize;
  const modelPath = join(stateDir, `model${suffix(id)}.bin`);
  const genPath = join(stateDir, `gen${suffix(id)}`);
  const pendingPath = join(stateDir, `pending${suffix(id)}.log`);
  const model = readFileSync(modelPath);
  if (model.length !== size) throw new Error(`model is ${model.length} bytes, region ${size}`);
  let gen = Number(readFileSync(genPath, 'utf8'));
  const randomOp = () => {
    const r = below(100);
    let o, n;
    if (r < 35) {
      // whole aligned blocks
      const nb = 1 + below(8);
      o = below(size / bs - nb + 1) * bs;
      n = nb * bs;
    } else if (r < 60) {
      // unaligned, small (partial blocks)
      n = 1 + below(3 * bs);
      o = below(size - n + 1);
    } else if (r < 75) {
      // unaligned, large
      n = 1 + below(256 * 1024);
      o = below(size - n + 1);
    } else {
      n = 1 + below(r < 90 ? 64 * 1024 : Math.min(2 * 1024 * 1024, size)); // large zeroing requests exercise the hole walk
      o = below(size - n + 1);
    }
    const k = r < 75 ? 'w' : r < 90 ? 'z' : 't';
    return { g: gen, k, o, n, s: next() };
  };
  for (let round = 1; ; round++) {
    const ops = Array.from({ length: 1 + below(24) }, randomOp);
    appendDurable(pendingPath, ops.map((op) => JSON.stringify(op) + '\n').join(''));
    for (const op of ops) {
      if (op.k === 'w') await volume.write(base + op.o, opData(op.s, op.n));
      else if (op.k === 'z') await volume.writeZeroes(base + op.o, op.n);
      else await volume.trim(base + op.o, op.n);
      applyOp(model, op);
    }
    await volume.flush();
    // Everything above is now acknowledged durable: record it as the new model generation.
    gen++;
    writeDurable(modelPath, model);
    writeDurable(genPath, String(gen));
    if (id === 0) process.stdout.write(`flushed ${round}\n`);
  }
}
await Promise.all(Array.from({ length: lanes }, (_, i) => lane(i)));
