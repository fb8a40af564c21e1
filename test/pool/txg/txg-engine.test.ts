import { describe, expect, it } from 'vitest';
import { TxgEngine } from '../../../src/pool/txg/txg.js';

describe('TxgEngine', () => {
  it('a change recorded right after markDirty() is in that txg even when markDirty kicks a sync', async () => {
    const recorded = new Map<number, string[]>();
    const seen = new Map<number, string[]>();
    const eng = new TxgEngine(0, async (txg) => void seen.set(txg, [...(recorded.get(txg) ?? [])]), { dirtyMax: 100, timeoutMs: 60_000 });
    for (let i = 0; i < 5; i++) {
      const t = eng.markDirty(60); // over half of dirtyMax: starts a sync
      // The caller records its change synchronously after markDirty (Volume.modify does).
      recorded.set(t, [...(recorded.get(t) ?? []), `w${i}`]);
      await eng.syncNow();
    }
    const all = [...seen.values()].flat();
    expect(all).toEqual(['w0', 'w1', 'w2', 'w3', 'w4']);
    await eng.close();
  });

  it('syncNow waits for every change made before it; txgs commit in order', async () => {
    const order: number[] = [];
    let release!: () => void;
    let gate = new Promise<void>((r) => (release = r));
    const eng = new TxgEngine(10, async (txg) => {
      order.push(txg);
      await gate;
    }, { timeoutMs: 60_000 });
    eng.markDirty(1);
    const a = eng.syncNow(); // txg 11 starts and blocks on the gate
    eng.markDirty(1); // joins txg 12
    const b = eng.syncNow();
    let bDone = false;
    void b.then(() => (bDone = true));
    release();
    gate = Promise.resolve();
    await a;
    await b;
    expect(bDone).toBe(true);
    expect(order).toEqual([11, 12]);
    expect(eng.synced).toBe(12);
    await eng.close();
  });

  it('a failed sync suspends: waiters and later writers get EIO', async () => {
    const eng = new TxgEngine(0, async () => {
      throw new Error('disk on fire');
    }, { timeoutMs: 60_000 });
    eng.markDirty(1);
    await expect(eng.syncNow()).rejects.toMatchObject({ code: 'EIO' });
    await expect(eng.throttle(1)).rejects.toMatchObject({ code: 'EIO' });
    await expect(eng.syncNow()).rejects.toMatchObject({ code: 'EIO' });
    await eng.close();
  });
});
