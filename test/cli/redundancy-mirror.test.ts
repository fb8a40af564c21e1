/**
 * Issue 3, "What must hold", through the real `strata` binary, per layout:
 * silent corruption of up to the redundancy in device files is returned
 * correctly, repaired by scrub and counted on the right devices; devices
 * missing up to the redundancy import DEGRADED and are replaced and
 * resilvered; one more missing device refuses the import, writing nothing.
 * (Split over two files so the layouts run on both cores.)
 */
import { beforeAll, describe, it } from 'vitest';
import { ensureBuilt } from '../helpers/cli.js';
import { LAYOUTS } from './redundancy-helpers.js';
import { redundancyScenario } from './redundancy-scenario.js';

beforeAll(() => {
  if (!process.env['STRATA_TEST_BIN']) ensureBuilt();
});

describe.each(LAYOUTS.filter((l) => ['mirror-2', 'mirror-3', 'raidz1 of 3', 'raidz1 of 5', 'raidz2 of 4'].includes(l.name)))('redundancy: $name', (layout) => {
  it('self-heals corruption, scrubs clean, survives missing devices up to its redundancy', () => redundancyScenario(layout));
});
