//! Per-call overhead of the runtime, and interpreter throughput.
//!
//!   cargo run --release -p tally-runtime --example bench
//!
//! Also times a receivables transfer when chaincode/build.sh can build the contracts.
//! docs/chaincode-runtime.md records the figures.

use std::path::Path;
use std::process::Command;
use std::time::Instant;
use tally_runtime::testkit::Contract;
use tally_runtime::{CallContext, Engine, Limits, MemoryHost, StateHost};

const WAT: &str = r#"(module
  (import "tally" "state_get" (func $get (param i32 i32) (result i32)))
  (import "tally" "state_put" (func $put (param i32 i32 i32 i32)))
  (import "tally" "buffer_copy" (func $copy (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 4096))
  (func (export "tally_alloc") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $n)))
    (local.get $p))
  (data (i32.const 0) "counter")
  (func (export "empty") (param i32 i32) (result i32) (i32.const 0))
  ;; Reads an 8-byte counter, adds one, writes it back.
  (func (export "get_put") (param i32 i32) (result i32)
    (local $n i32)
    (local.set $n (call $get (i32.const 0) (i32.const 7)))
    (if (i32.eq (local.get $n) (i32.const 8))
      (then (drop (call $copy (i32.const 64) (i32.const 8)))))
    (i64.store (i32.const 64) (i64.add (i64.load (i32.const 64)) (i64.const 1)))
    (call $put (i32.const 0) (i32.const 7) (i32.const 64) (i32.const 8))
    (i32.const 0))
  ;; Loops as many times as the u32 argument says.
  (func (export "busy") (param $p i32) (param i32) (result i32)
    (local $n i32) (local $i i32) (local $acc i32)
    (local.set $n (i32.load (local.get $p)))
    (loop $l
      (local.set $acc (i32.add (i32.mul (local.get $acc) (i32.const 31)) (local.get $i)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (local.get $n))))
    (i32.const 0)))"#;

fn ctx() -> CallContext {
    CallContext {
        chaincode: "bench".into(),
        org: "org1".into(),
        subject: "client".into(),
        role: "client".into(),
        tx_id: [1; 32],
        timestamp_ms: 1,
    }
}

fn per_call(label: &str, n: u32, mut f: impl FnMut()) {
    for _ in 0..n / 10 {
        f(); // warm up
    }
    let t = Instant::now();
    for _ in 0..n {
        f();
    }
    let us = t.elapsed().as_secs_f64() * 1e6 / f64::from(n);
    println!("{label:<44} {us:>9.2} µs/call  {:>9.0} calls/s", 1e6 / us);
}

fn main() {
    let bytes = wat::parse_str(WAT).expect("bench WAT parses");
    let engine = Engine::new(Limits {
        max_fuel_per_call: u64::MAX,
        ..Limits::default()
    });
    let t = Instant::now();
    let module = engine.load(&bytes).expect("bench module loads");
    println!(
        "{:<44} {:>9.2} µs",
        "validate + compile (cache miss)",
        t.elapsed().as_secs_f64() * 1e6
    );
    per_call("cache hit by bytes (sha256 + lookup)", 20_000, || {
        engine.load(&bytes).expect("cached");
    });
    let hash = module.hash();
    per_call("cache hit by hash", 200_000, || {
        engine.cached(&hash).expect("cached");
    });
    let ctx = ctx();
    let mut host = MemoryHost::new();
    per_call("empty call (store, instance, args, call)", 20_000, || {
        engine
            .invoke(&module, "empty", b"", &ctx, &mut host, 1_000_000)
            .expect("empty call");
    });
    let args = vec![7u8; 256];
    per_call("empty call with 256 bytes of arguments", 20_000, || {
        engine
            .invoke(&module, "empty", &args, &ctx, &mut host, 1_000_000)
            .expect("empty call");
    });
    per_call("get + put call, outcome applied", 20_000, || {
        let out = engine
            .invoke(&module, "get_put", b"", &ctx, &mut host, 1_000_000)
            .expect("get_put call");
        out.apply(&mut host).expect("apply");
    });
    let counter = host.get("cc~bench~counter").ok().flatten().map(|(_, v)| v);
    println!("  (counter now {:?})", counter.map(|v| v[0]));

    // Interpreter throughput: one long metered loop, no host calls.
    let iters: u32 = 100_000_000;
    let t = Instant::now();
    let fuel = engine
        .invoke(
            &module,
            "busy",
            &iters.to_le_bytes(),
            &ctx,
            &mut host,
            u64::MAX,
        )
        .expect("busy")
        .fuel_used;
    let s = t.elapsed().as_secs_f64();
    println!(
        "busy loop: {:.1} M iterations/s, {:.0} M fuel/s ({iters} iterations, {fuel} fuel)",
        f64::from(iters) / s / 1e6,
        fuel as f64 / s / 1e6,
    );

    let out = std::env::temp_dir().join("tally-bench-chaincode");
    let built = Command::new("bash")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../chaincode/build.sh"))
        .arg(&out)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !built {
        println!("receivables: skipped (chaincode/build.sh could not build)");
        return;
    }
    let wasm = std::fs::read(out.join("receivables.wasm")).expect("receivables.wasm");
    let mut c = Contract::new("receivables", &wasm).expect("receivables loads");
    c.call_str("x", "init", &["core", "CoreCo"]).expect("init");
    let maturity = (c.time_ms + 86_400_000).to_string();
    c.call_str("CoreCo", "issue", &["R1", "A", "1000000", &maturity])
        .expect("issue");
    let n: u32 = 5_000;
    let t = Instant::now();
    let mut fuel = 0;
    for _ in 0..n {
        fuel += c.call("A", "get", &["R1"]).expect("get").fuel_used;
    }
    let us = t.elapsed().as_secs_f64() * 1e6 / f64::from(n);
    println!(
        "{:<44} {us:>9.2} µs/call  {:>9.0} calls/s  ({} fuel/call)",
        "receivables get (C contract, read only)",
        1e6 / us,
        fuel / u64::from(n)
    );
    let t = Instant::now();
    let mut fuel = 0;
    for i in 0..n {
        let (from, to) = if i % 2 == 0 { ("A", "B") } else { ("B", "A") };
        fuel += c
            .call(from, "transfer", &["R1", to])
            .expect("transfer")
            .fuel_used;
    }
    let us = t.elapsed().as_secs_f64() * 1e6 / f64::from(n);
    println!(
        "{:<44} {us:>9.2} µs/call  {:>9.0} calls/s  ({} fuel/call)",
        "receivables transfer (C contract)",
        1e6 / us,
        fuel / u64::from(n)
    );
}
