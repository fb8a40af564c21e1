/** A progress bar on a TTY (stderr), nothing otherwise. */
import cliProgress from 'cli-progress';
import { formatSize } from '../pool/dataset/units.js';
import type { CopyProgress } from '../device/copy.js';

export function progressBar(label: string): { update: (p: CopyProgress) => void; stop: () => void } {
  if (!process.stderr.isTTY) return { update: () => {}, stop: () => {} };
  const bar = new cliProgress.SingleBar(
    { format: `${label} [{bar}] {percentage}% | {doneH}/{totalH} | ETA {eta_formatted}`, stream: process.stderr, hideCursor: true },
    cliProgress.Presets.shades_classic,
  );
  let started = false;
  let last = 0;
  return {
    update: (p) => {
      if (!started) {
        bar.start(p.total, 0, { doneH: '0B', totalH: formatSize(p.total) });
        started = true;
      }
      const now = Date.now();
      if (now - last < 100 && p.done < p.total) return;
      last = now;
      bar.update(p.done, { doneH: formatSize(p.done), totalH: formatSize(p.total) });
    },
    stop: () => {
      if (started) bar.stop();
    },
  };
}
