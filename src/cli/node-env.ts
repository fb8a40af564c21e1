/**
 * The process settings `bin/strata` starts Node with, as one source of truth
 * for the wrapper's test and for the benchmarks (which run strata's servers
 * in their own process and must measure what users run).
 *
 * MALLOC_TUNABLES (glibc; musl ignores the variable): serve large buffers
 * from the heap, not from a fresh mmap each, and keep up to 256 MiB of freed
 * heap instead of returning it at once. A pool volume keeps each NBD write
 * payload (WriteOptions.owned) until its txg syncs and the ARC lets it go,
 * so a 1 MiB-write stream allocates and frees ~1 MiB buffers at disk speed.
 * With glibc's defaults many of those came from new mappings: the kernel
 * faulted in and zeroed every page (clear_page was 9% of the server's
 * samples in `perf`), and seq writes of 1 MiB at QD16 to a pool volume ran
 * at 285-337 MB/s against 405-475 MB/s with these settings (alternated runs,
 * bench/README.md). Memory stays bounded: allocations of 32 MiB or more still
 * get their own mapping, and more than 256 MiB of free heap is trimmed.
 */
export const MALLOC_TUNABLES = 'glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=268435456';

/**
 * V8 flags (bin/strata passes them to node):
 *
 * --max-semi-space-size=32 (MiB; Node 20's default is 16): the young
 * generation a scavenge sweeps. A pool volume's write path allocates about
 * 12 KB of short-lived objects per 4K write (the request, block pointers
 * decoded on the way to the ARC, arrays and promises), while the requests
 * around it are still in flight: with 16 MiB, scavenges came often enough to
 * promote objects still in use, and the server's main thread spent 8.9% in
 * the garbage collector under 4K random writes over NBD, 4.8-5.0% with a
 * larger young generation. Alternated runs over NBD to a 1 GiB pool volume
 * (4 rounds, medians, bench/README.md session 12): 4K random reads 70.2K
 * IOPS against 55.2K, 4K random writes 32.8K against 30.9K (the first run
 * after reads) and 31.2K against 32.0K (the second), 1M writes 1228 against
 * 1171 MB/s, 1M reads equal; two earlier A/Bs had the second random-write
 * run at 30.7K against 27.9K and 32.7K against 29.1K. It costs at most 3 x
 * 16 MiB more memory, and nothing at start-up (the young generation grows to
 * its maximum only under allocation).
 */
export const NODE_FLAGS: readonly string[] = ['--max-semi-space-size=32'];
