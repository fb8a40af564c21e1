/**
 * Entry of a prepare worker thread (see prepare-workers.ts): prepares the
 * blocks of each arena it is sent, in place, and answers with the job id.
 * Any failure is reported back; the pool then prepares that batch itself.
 */
import { parentPort } from 'node:worker_threads';
import { prepareInArena } from './prepare.js';

interface Job {
  id: number;
  sab: SharedArrayBuffer;
  n: number;
}

parentPort!.on('message', (j: Job) => {
  try {
    prepareInArena(j.sab, j.n);
    parentPort!.postMessage({ id: j.id });
  } catch (e) {
    parentPort!.postMessage({ id: j.id, error: (e as Error)?.message ?? String(e) });
  }
});
