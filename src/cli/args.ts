/** Argument helpers the command groups share. */
import { err } from '../errors.js';

/** commander accumulator for repeatable options (`-o a=b -o c=d`). */
export const collect = (v: string, prev: string[]): string[] => prev.concat([v]);

/** `prop=value` words into a record; a word without a name before '=' is refused. */
export function parseAssignments(list: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const a of list) {
    const i = a.indexOf('=');
    if (i <= 0) throw err.inval(`invalid property assignment '${a}': expected prop=value`);
    out[a.slice(0, i)] = a.slice(i + 1);
  }
  return out;
}

/** The command as typed, for pool history. */
export const commandLine = (): string => 'strata ' + process.argv.slice(2).join(' ');
