// Crash workload (run as a child by crash.test.ts, then SIGKILLed).
// Prints "W id block count kind" before each request and "F id" after each
// flush resolves, with synchronous writes to the stdout pipe so no line is
// lost when the process is killed.
import { writeSync } from 'node:fs';
import { join } from 'node:path';

// With a fourth argument "behind": the image is opened with write-behind and a
// tiny L2 cache (evictions while data is in flight), and up to four
// non-overlapping requests are in flight at once (as convert does).
const [root, image, seedArg, mode] = process.argv.slice(2);
const { openImage } = await import(join(root, 'formats', 'image-format.js'));
const { Qcow2Image } = await import(join(root, 'formats', 'qcow2', 'image.js'));
const BS = 4096;
let s = Number(seedArg) >>> 0 || 1;
const rnd = () => {
  s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
  return s / 2 ** 32;
};
export function blockData(id, block) {
  const b = Buffer.alloc(BS);
  let x = (Math.imul(id, 2654435761) ^ Math.imul(block, 40503)) >>> 0 || 7;
  for (let i = 0; i < BS; i += 4) {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    b.writeUInt32LE(x, i);
  }
  return b;
}
const dev = mode === 'behind' ? await Qcow2Image.open(image, { writeBehind: true, cacheBytes: 32 * 1024 }) : await openImage(image);
const blocks = dev.info().size / BS;
const inFlight = mode === 'behind' ? 4 : 1;
writeSync(1, 'READY\n');
for (let id = 1; ; ) {
  const batch = [];
  const taken = [];
  let flush = false;
  while (batch.length < inFlight) {
    const n = 1 + Math.floor(rnd() * 32);
    const first = Math.floor(rnd() * (blocks - n));
    const r = rnd();
    const kind = r < 0.85 ? 'd' : r < 0.95 ? 'z' : 't';
    if (taken.some(([a, z]) => first < z && a < first + n)) continue; // requests in flight never overlap
    taken.push([first, first + n]);
    writeSync(1, `W ${id} ${first} ${n} ${kind}\n`);
    if (kind === 'd') {
      const data = Buffer.concat(Array.from({ length: n }, (_, k) => blockData(id, first + k)));
      batch.push(dev.write(first * BS, data));
    } else if (kind === 'z') batch.push(dev.writeZeroes(first * BS, n * BS, { mayTrim: true }));
    else batch.push(dev.trim(first * BS, n * BS));
    if (id % 16 === 0) flush = true;
    id++;
  }
  await Promise.all(batch);
  if (flush) {
    await dev.flush();
    writeSync(1, `F ${id - 1}\n`);
  }
}
