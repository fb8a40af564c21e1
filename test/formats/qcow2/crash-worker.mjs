// Crash workload (run as a child by crash.test.ts, then SIGKILLed).
// Prints "W id block count kind" before each request and "F id" after each
// flush resolves, with synchronous writes to the stdout pipe so no line is
// lost when the process is killed.
import { writeSync } from 'node:fs';
import { join } from 'node:path';

const [root, image, seedArg] = process.argv.slice(2);
const { openImage } = await import(join(root, 'formats', 'image-format.js'));
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
const dev = await openImage(image);
const blocks = dev.info().size / BS;
writeSync(1, 'READY\n');
for (let id = 1; ; id++) {
  const n = 1 + Math.floor(rnd() * 32);
  const first = Math.floor(rnd() * (blocks - n));
  const r = rnd();
  const kind = r < 0.85 ? 'd' : r < 0.95 ? 'z' : 't';
  writeSync(1, `W ${id} ${first} ${n} ${kind}\n`);
  if (kind === 'd') {
    const data = Buffer.concat(Array.from({ length: n }, (_, k) => blockData(id, first + k)));
    await dev.write(first * BS, data);
  } else if (kind === 'z') await dev.writeZeroes(first * BS, n * BS, { mayTrim: true });
  else await dev.trim(first * BS, n * BS);
  if (id % 16 === 0) {
    await dev.flush();
    writeSync(1, `F ${id}\n`);
  }
}
