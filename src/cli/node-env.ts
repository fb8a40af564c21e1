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
