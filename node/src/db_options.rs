//! The RocksDB settings of a node's database, shared by the node and the apply benchmark
//! (`examples/apply_cost.rs`), so that what the benchmark measures is what a node runs.

use rocksdb::Options;

pub fn db_options() -> Options {
    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.increase_parallelism(2);
    opts.set_max_background_jobs(2);
    opts.set_write_buffer_size(64 * 1024 * 1024);
    opts.set_max_total_wal_size(512 * 1024 * 1024);
    // Every submission and every applied transaction looks up its id, and nearly all of
    // those lookups miss: bloom filters answer a miss without reading data blocks.
    let mut table = rocksdb::BlockBasedOptions::default();
    table.set_bloom_filter(10.0, false);
    table.set_block_cache(&rocksdb::Cache::new_lru_cache(64 * 1024 * 1024));
    table.set_cache_index_and_filter_blocks(true);
    // A lookup that misses asks every level-0 file's filter; pinned, those filters (and
    // indexes) are held by their tables instead of looked up in the cache each time, which
    // takes 4-7 % off the apply path's CPU (docs/benchmarks.md). Level 0 holds a handful of
    // files, so what stays pinned is small.
    table.set_pin_l0_filter_and_index_blocks_in_cache(true);
    opts.set_block_based_table_factory(&table);
    // The same for the memtable, where most lookups land and miss.
    opts.set_memtable_whole_key_filtering(true);
    opts.set_memtable_prefix_bloom_ratio(0.1);
    opts
}
