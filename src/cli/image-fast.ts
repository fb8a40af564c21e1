/**
 * The fast path of `strata image ...`, shared by both entries (main.ts, the
 * ES module program, and main-fast.ts, the one-file bundle bin/strata runs):
 * plain forms of the image commands are parsed by image.ts alone and run
 * without commander, the pool, the daemon or the other command groups.
 * Anything else (help, mistakes, unusual spellings) gets null and takes the
 * whole program, so help, errors and exit codes never depend on the path.
 */
import type * as ImageModule from './image.js';

/** Whether this run created process.stdout (quietEpipe does, before any output). */
let stdoutUsed = false;

/** `strata list | head` closes our stdout early: that is not an error. */
export function quietEpipe(): void {
  stdoutUsed = true;
  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE') process.exit(0);
  });
}

/**
 * Exit with `code` once stdout has taken everything written to it. Output
 * to a pipe is asynchronous once the pipe is full (64 KiB), and
 * process.exit() drops what is still queued: `strata image map
 * --output=json big.qcow2 | wc -c` printed 65536 of 3.5 MB before. The
 * empty write's callback runs after every earlier write is flushed (or
 * failed: a closed pipe ends the run anyway). A run that never created
 * stdout (convert) exits at once.
 */
export function exitAfterOutput(code: number): void {
  if (!stdoutUsed) process.exit(code);
  process.stdout.write('', () => process.exit(code));
}

/**
 * Where `image` is in the command words when they are `image ...`, possibly
 * after the global options (`--home DIR`, `--home=DIR`); -1 otherwise
 * (help, `--`, unknown options, other groups take the whole program).
 */
export function imageIndex(args: readonly string[]): number {
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '--home') i++; // its value, whatever it looks like (commander takes the next word)
    else if (a.startsWith('--home=')) continue;
    else return a === 'image' ? i : -1;
  }
  return -1;
}

/** Run `argv` (process.argv shape) on the fast path: the exit code, or null when the whole program is needed. */
export async function runImageFast(argv: readonly string[], image: typeof ImageModule): Promise<number | null> {
  const at = imageIndex(argv.slice(2));
  if (at < 0) return null;
  const parsed = image.parseImageArgs(argv.slice(at + 3));
  if (!parsed) return null;
  // convert never writes to stdout, and creating process.stdout costs
  // milliseconds (a socket when it is a pipe): only the others watch it.
  if (parsed.name !== 'convert') quietEpipe();
  // The command reports its own failures (one line, process.exitCode).
  await image.runImageCommand(parsed.name, parsed.args, parsed.opts);
  return process.exitCode === undefined ? 0 : Number(process.exitCode);
}
