/**
 * Shared by the crash writer (a child process) and the crash test: the op
 * journal format and deterministic data for each op, so the journal records
 * only (kind, offset, length, seed), never the data itself.
 */
import { closeSync, fsyncSync, openSync, readFileSync, renameSync, writeSync, existsSync } from 'node:fs';

/** Deterministic bytes for an op: random words, or (seed odd) a compressible pattern. */
export function opData(seed, length) {
  const b = Buffer.allocUnsafe(length);
  let x = seed >>> 0 || 1;
  if (seed % 3 === 1) {
    // Compressible: short runs of one byte value.
    for (let i = 0; i < length; i++) {
      if (i % 512 === 0) {
        x ^= x << 13; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
      }
      b[i] = x & 0xff;
    }
    return b;
  }
  let i = 0;
  for (; i + 4 <= length; i += 4) {
    x ^= x << 13; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    b.writeUInt32LE(x, i);
  }
  for (; i < length; i++) {
    x ^= x << 13; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    b[i] = x & 0xff;
  }
  return b;
}

/** Apply one journaled op to a model buffer. */
export function applyOp(model, op) {
  if (op.k === 'w') opData(op.s, op.n).copy(model, op.o);
  else model.fill(0, op.o, op.o + op.n); // 'z' (writeZeroes) and 't' (trim) both read back as zeroes
}

/** Write a file atomically and durably (temp, fsync, rename). */
export function writeDurable(path, data) {
  const tmp = path + '.tmp';
  const fd = openSync(tmp, 'w');
  try {
    writeSync(fd, data);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
}

/** Append lines to a journal and fsync before returning. */
export function appendDurable(path, text) {
  const fd = openSync(path, 'a');
  try {
    writeSync(fd, text);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** Ops journaled after generation `gen`'s model was saved (a torn last line is ignored: that op was never issued). */
export function readPending(path, gen) {
  if (!existsSync(path)) return [];
  const out = [];
  for (const line of readFileSync(path, 'utf8').split('\n')) {
    if (!line) continue;
    let op;
    try {
      op = JSON.parse(line);
    } catch {
      continue;
    }
    if (op.g === gen) out.push(op);
  }
  return out;
}
