//! The runtime against small hand-written modules (WAT): limits, refusals, state semantics.

use tally_runtime::{
    CallContext, Engine, ExecError, Limits, MemoryHost, StateHost, ValidationError, Version,
};

/// Imports, memory, a bump allocator and constant strings shared by the test modules.
const PRELUDE: &str = r#"
  (import "tally" "state_get" (func $get (param i32 i32) (result i32)))
  (import "tally" "state_put" (func $put (param i32 i32 i32 i32)))
  (import "tally" "state_delete" (func $del (param i32 i32)))
  (import "tally" "state_range" (func $range (param i32 i32 i32 i32 i32) (result i32)))
  (import "tally" "state_prefix" (func $prefix (param i32 i32 i32) (result i32)))
  (import "tally" "buffer_copy" (func $copy (param i32 i32) (result i32)))
  (import "tally" "caller_org" (func $org (result i32)))
  (import "tally" "caller_subject" (func $subject (result i32)))
  (import "tally" "caller_role" (func $role (result i32)))
  (import "tally" "tx_id" (func $txid (param i32)))
  (import "tally" "tx_timestamp" (func $time (result i64)))
  (import "tally" "emit_event" (func $emit (param i32 i32 i32 i32)))
  (import "tally" "set_result" (func $result (param i32 i32)))
  (import "tally" "fail" (func $fail (param i32 i32)))
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 4096))
  (func (export "tally_alloc") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $n)))
    (local.get $p))
  (data (i32.const 0) "k1")
  (data (i32.const 16) "v1")
  (data (i32.const 32) "nope")
  (data (i32.const 48) "a/")
  (data (i32.const 64) "a/25")
  (data (i32.const 80) "a/2")
  (data (i32.const 96) "b")
  (data (i32.const 112) "ev")
  ;; Puts the whole host buffer (length $n) into the result.
  (func $return_buffer (param $n i32)
    (drop (call $copy (i32.const 1024) (local.get $n)))
    (call $result (i32.const 1024) (local.get $n)))
"#;

fn module(body: &str) -> Vec<u8> {
    wat::parse_str(format!("(module {PRELUDE} {body})")).expect("test WAT parses")
}

fn funcs() -> Vec<u8> {
    module(
        r#"
  (func (export "echo") (param $p i32) (param $l i32) (result i32)
    (call $result (local.get $p) (local.get $l)) (i32.const 0))
  (func (export "put_then_get") (param i32 i32) (result i32)
    (call $put (i32.const 0) (i32.const 2) (i32.const 16) (i32.const 2))
    (call $return_buffer (call $get (i32.const 0) (i32.const 2)))
    (i32.const 0))
  (func (export "get_k1") (param i32 i32) (result i32)
    (local $n i32)
    (local.set $n (call $get (i32.const 0) (i32.const 2)))
    (if (i32.ge_s (local.get $n) (i32.const 0)) (then (call $return_buffer (local.get $n))))
    (i32.const 0))
  (func (export "put_then_fail") (param i32 i32) (result i32)
    (call $put (i32.const 0) (i32.const 2) (i32.const 16) (i32.const 2))
    (call $emit (i32.const 112) (i32.const 2) (i32.const 16) (i32.const 2))
    (call $fail (i32.const 32) (i32.const 4))
    (i32.const 0))
  (func (export "put_then_status") (param i32 i32) (result i32)
    (call $put (i32.const 0) (i32.const 2) (i32.const 16) (i32.const 2))
    (i32.const 7))
  (func (export "put_and_emit") (param i32 i32) (result i32)
    (call $put (i32.const 0) (i32.const 2) (i32.const 16) (i32.const 2))
    (call $emit (i32.const 112) (i32.const 2) (i32.const 16) (i32.const 2))
    (i32.const 0))
  ;; Puts a/25 and deletes a/2, then scans the prefix a/ (limit from the first arg byte).
  (func (export "scan_mixed") (param $p i32) (param $l i32) (result i32)
    (call $put (i32.const 64) (i32.const 4) (i32.const 16) (i32.const 2))
    (call $del (i32.const 80) (i32.const 3))
    (call $return_buffer
      (call $prefix (i32.const 48) (i32.const 2) (i32.load8_u (local.get $p))))
    (i32.const 0))
  ;; Committed range [a/2, b) without writes.
  (func (export "range") (param i32 i32) (result i32)
    (call $return_buffer
      (call $range (i32.const 80) (i32.const 3) (i32.const 96) (i32.const 1) (i32.const 100)))
    (i32.const 0))
  (func (export "org") (param i32 i32) (result i32)
    (call $return_buffer (call $org)) (i32.const 0))
  (func (export "subject") (param i32 i32) (result i32)
    (call $return_buffer (call $subject)) (i32.const 0))
  (func (export "role") (param i32 i32) (result i32)
    (call $return_buffer (call $role)) (i32.const 0))
  (func (export "txid") (param i32 i32) (result i32)
    (call $txid (i32.const 2048)) (call $result (i32.const 2048) (i32.const 32)) (i32.const 0))
  (func (export "time") (param i32 i32) (result i32)
    (i64.store (i32.const 2048) (call $time))
    (call $result (i32.const 2048) (i32.const 8)) (i32.const 0))
  (func (export "spin") (param i32 i32) (result i32)
    (loop $l (br $l)) (i32.const 0))
  (func (export "hog") (param i32 i32) (result i32)
    (loop $l (br_if $l (i32.ne (memory.grow (i32.const 1)) (i32.const -1))))
    (i32.const 0))
  (func (export "trap") (param i32 i32) (result i32)
    (unreachable))
  (func (export "divide") (param $p i32) (param $l i32) (result i32)
    (i32.div_u (i32.const 1) (i32.sub (local.get $l) (local.get $l))))
  (func $deep (param $n i32) (result i32)
    (i32.add (call $deep (i32.add (local.get $n) (i32.const 1))) (i32.const 1)))
  (func (export "recurse") (param i32 i32) (result i32)
    (call $deep (i32.const 0)))
  (func (export "bad_pointer") (param i32 i32) (result i32)
    (call $put (i32.const 0) (i32.const 2) (i32.const 65530) (i32.const 100))
    (i32.const 0))
  (func (export "bad_key") (param i32 i32) (result i32)
    (call $put (i32.const 0) (i32.const 0) (i32.const 16) (i32.const 2))
    (i32.const 0))
  ;; Deterministic busy work: a checksum over a loop, stored under k1.
  (func (export "work") (param i32 i32) (result i32)
    (local $i i32) (local $acc i32)
    (loop $l
      (local.set $acc (i32.add (i32.mul (local.get $acc) (i32.const 31)) (local.get $i)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (i32.const 10000))))
    (i32.store (i32.const 2048) (local.get $acc))
    (call $put (i32.const 0) (i32.const 2) (i32.const 2048) (i32.const 4))
    (call $result (i32.const 2048) (i32.const 4))
    (i32.const 0))
"#,
    )
}

fn ctx() -> CallContext {
    CallContext {
        chaincode: "t".into(),
        org: "org1".into(),
        subject: "alice".into(),
        role: "client".into(),
        tx_id: [7; 32],
        timestamp_ms: 1_700_000_000_123,
    }
}

const FUEL: u64 = 10_000_000;

fn engine() -> Engine {
    Engine::new(Limits {
        max_memory_pages: 4,
        ..Limits::default()
    })
}

fn call(
    engine: &Engine,
    f: &str,
    args: &[u8],
    host: &mut MemoryHost,
) -> Result<tally_runtime::Outcome, ExecError> {
    let m = engine.load(&funcs()).expect("test module loads");
    engine.invoke(&m, f, args, &ctx(), host, FUEL)
}

#[test]
fn echo_and_context() {
    let e = engine();
    let mut h = MemoryHost::new();
    let out = call(&e, "echo", b"hello", &mut h).unwrap();
    assert_eq!(out.result, b"hello");
    assert!(out.fuel_used > 0);
    assert_eq!(call(&e, "org", b"", &mut h).unwrap().result, b"org1");
    assert_eq!(call(&e, "subject", b"", &mut h).unwrap().result, b"alice");
    assert_eq!(call(&e, "role", b"", &mut h).unwrap().result, b"client");
    assert_eq!(call(&e, "txid", b"", &mut h).unwrap().result, [7; 32]);
    let t = call(&e, "time", b"", &mut h).unwrap().result;
    assert_eq!(u64::from_le_bytes(t.try_into().unwrap()), 1_700_000_000_123);
}

#[test]
fn read_your_writes_never_reach_the_host() {
    let e = engine();
    let mut h = MemoryHost::new();
    let out = call(&e, "put_then_get", b"", &mut h).unwrap();
    assert_eq!(out.result, b"v1");
    assert_eq!(
        h.reads, 0,
        "the read was answered from the call's own writes"
    );
    assert!(out.read_set.is_empty());
    assert_eq!(out.write_set.len(), 1);
    assert_eq!(out.write_set[0].key, "cc~t~k1");
    assert!(h.is_empty(), "writes are returned, not applied");
    out.apply(&mut h).unwrap();
    assert_eq!(h.value("cc~t~k1"), Some(&b"v1"[..]));
}

#[test]
fn read_set_records_versions_and_absence() {
    let e = engine();
    let mut h = MemoryHost::new();
    let out = call(&e, "get_k1", b"", &mut h).unwrap();
    assert_eq!(out.read_set.len(), 1);
    assert_eq!(out.read_set[0].key, "cc~t~k1");
    assert_eq!(out.read_set[0].version, None);
    h.put("cc~t~k1", b"x".to_vec()).unwrap();
    let out = call(&e, "get_k1", b"", &mut h).unwrap();
    assert_eq!(out.result, b"x");
    assert_eq!(out.read_set[0].version, Some(Version { block: 1, tx: 0 }));
    // Another chaincode's key of the same name is invisible.
    let mut other = MemoryHost::new();
    other.put("cc~u~k1", b"y".to_vec()).unwrap();
    assert!(call(&e, "get_k1", b"", &mut other)
        .unwrap()
        .result
        .is_empty());
}

#[test]
fn failed_calls_leave_nothing() {
    let e = engine();
    let mut h = MemoryHost::new();
    let err = call(&e, "put_then_fail", b"", &mut h).unwrap_err();
    assert_eq!(err, ExecError::ContractError("nope".into()));
    let err = call(&e, "put_then_status", b"", &mut h).unwrap_err();
    assert!(
        matches!(err, ExecError::ContractError(ref m) if m.contains("status 7")),
        "{err}"
    );
    assert!(h.is_empty());
    let ok = call(&e, "put_and_emit", b"", &mut h).unwrap();
    assert_eq!(ok.events.len(), 1);
    assert_eq!(ok.events[0].name, "ev");
    assert_eq!(ok.events[0].payload, b"v1");
}

fn decode_entries(b: &[u8]) -> Vec<(String, Vec<u8>)> {
    let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap()) as usize;
    let mut out = Vec::new();
    let mut i = 4;
    for _ in 0..u32_at(0) {
        let kl = u32_at(i);
        let k = String::from_utf8(b[i + 4..i + 4 + kl].to_vec()).unwrap();
        i += 4 + kl;
        let vl = u32_at(i);
        out.push((k, b[i + 4..i + 4 + vl].to_vec()));
        i += 4 + vl;
    }
    assert_eq!(i, b.len());
    out
}

#[test]
fn scans_merge_the_calls_writes() {
    let e = engine();
    let mut h = MemoryHost::new();
    for k in ["a/1", "a/2", "a/3", "b/1"] {
        h.put(&format!("cc~t~{k}"), k.as_bytes().to_vec()).unwrap();
    }
    h.put("cc~other~a/9", b"hidden".to_vec()).unwrap();
    let keys = |out: &tally_runtime::Outcome| {
        decode_entries(&out.result)
            .into_iter()
            .map(|e| e.0)
            .collect::<Vec<_>>()
    };
    let out = call(&e, "scan_mixed", &[10], &mut h).unwrap();
    assert_eq!(keys(&out), ["a/1", "a/25", "a/3"]);
    assert_eq!(decode_entries(&out.result)[1].1, b"v1");
    // Only committed entries the contract saw are in the read set.
    let read: Vec<_> = out.read_set.iter().map(|r| r.key.as_str()).collect();
    assert_eq!(read, ["cc~t~a/1", "cc~t~a/3"]);
    let out = call(&e, "scan_mixed", &[2], &mut h).unwrap();
    assert_eq!(keys(&out), ["a/1", "a/25"]);
    let out = call(&e, "range", b"", &mut h).unwrap();
    assert_eq!(keys(&out), ["a/2", "a/3"]);
}

#[test]
fn limits_fail_the_call_alone() {
    let e = engine();
    let mut h = MemoryHost::new();
    let err = call(&e, "spin", b"", &mut h).unwrap_err();
    assert_eq!(err, ExecError::OutOfFuel { limit: FUEL });
    let err = call(&e, "hog", b"", &mut h).unwrap_err();
    assert_eq!(err, ExecError::MemoryLimit { max_pages: 4 });
    let err = call(&e, "trap", b"", &mut h).unwrap_err();
    assert!(
        matches!(err, ExecError::Trap(ref m) if m.contains("unreachable")),
        "{err}"
    );
    let err = call(&e, "divide", b"", &mut h).unwrap_err();
    assert!(
        matches!(err, ExecError::Trap(ref m) if m.contains("divide")),
        "{err}"
    );
    let err = call(&e, "recurse", b"", &mut h).unwrap_err();
    assert!(
        matches!(err, ExecError::Trap(ref m) if m.contains("stack")),
        "{err}"
    );
    let err = call(&e, "bad_pointer", b"", &mut h).unwrap_err();
    assert!(
        matches!(
            err,
            ExecError::HostCall {
                call: "state_put",
                ..
            }
        ),
        "{err}"
    );
    let err = call(&e, "bad_key", b"", &mut h).unwrap_err();
    assert!(matches!(err, ExecError::HostCall { ref reason, .. } if reason == "empty key"));
    let err = call(&e, "missing", b"", &mut h).unwrap_err();
    assert_eq!(err, ExecError::NoSuchFunction("missing".into()));
    for err in [
        ExecError::OutOfFuel { limit: 1 },
        ExecError::MemoryLimit { max_pages: 4 },
    ] {
        assert!(err.is_deterministic());
    }
    // The engine is unharmed: the next call works.
    assert_eq!(call(&e, "echo", b"ok", &mut h).unwrap().result, b"ok");
    assert!(h.is_empty());
}

#[test]
fn fuel_is_capped_and_counted_exactly() {
    let e = Engine::new(Limits {
        max_fuel_per_call: 5_000,
        ..Limits::default()
    });
    let m = e.load(&funcs()).unwrap();
    let err = e
        .invoke(&m, "spin", b"", &ctx(), &mut MemoryHost::new(), u64::MAX)
        .unwrap_err();
    assert_eq!(err, ExecError::OutOfFuel { limit: 5_000 });
    // Exactly the fuel a call uses is enough, one less is not.
    let used = e
        .invoke(&m, "echo", b"x", &ctx(), &mut MemoryHost::new(), 5_000)
        .unwrap()
        .fuel_used;
    assert!(e
        .invoke(&m, "echo", b"x", &ctx(), &mut MemoryHost::new(), used)
        .is_ok());
    assert!(matches!(
        e.invoke(&m, "echo", b"x", &ctx(), &mut MemoryHost::new(), used - 1),
        Err(ExecError::OutOfFuel { .. })
    ));
}

#[test]
fn same_inputs_same_outcome() {
    let run = || {
        let e = engine();
        let mut h = MemoryHost::new();
        h.put("cc~t~k0", b"seed".to_vec()).unwrap();
        call(&e, "work", b"abc", &mut h).unwrap()
    };
    let a = run();
    let b = run();
    assert_eq!(a, b);
    assert!(a.fuel_used > 10_000, "the loop is metered: {}", a.fuel_used);
    // A cached module charges the same fuel as a freshly compiled one.
    let e = engine();
    let first = call(&e, "work", b"abc", &mut MemoryHost::new()).unwrap();
    let again = call(&e, "work", b"abc", &mut MemoryHost::new()).unwrap();
    assert_eq!(first.fuel_used, again.fuel_used);
    assert_eq!(first.fuel_used, a.fuel_used);
}

#[test]
fn cache_hits_avoid_recompiling() {
    let e = Engine::new(Limits {
        cached_modules: 1,
        ..Limits::default()
    });
    let bytes = funcs();
    let m1 = e.load(&bytes).unwrap();
    let m2 = e.load(&bytes).unwrap();
    assert!(std::sync::Arc::ptr_eq(&m1, &m2));
    let s = e.cache_stats();
    assert_eq!((s.compiles, s.hits, s.entries), (1, 1, 1));
    assert!(e.cached(&m1.hash()).is_some());
    let other = module(r#"(func (export "f") (param i32 i32) (result i32) (i32.const 0))"#);
    e.load(&other).unwrap();
    let s = e.cache_stats();
    assert_eq!((s.compiles, s.evictions, s.entries), (2, 1, 1));
    assert!(e.cached(&m1.hash()).is_none());
}

fn refused(wat_body: &str) -> ValidationError {
    let bytes = wat::parse_str(format!("(module {wat_body})")).expect("test WAT parses");
    engine()
        .validate(&bytes)
        .expect_err("module should be refused")
}

const MIN: &str = r#"
  (memory (export "memory") 1)
  (func (export "tally_alloc") (param i32) (result i32) (i32.const 0))
  (func (export "run") (param i32 i32) (result i32) (i32.const 0))
"#;

#[test]
fn validation_accepts_the_minimum() {
    let bytes = wat::parse_str(format!("(module {MIN})")).unwrap();
    let info = engine().validate(&bytes).unwrap();
    assert_eq!(info.functions, ["run"]);
    assert_eq!(info.memory_min_pages, 1);
    let info = engine().validate(&funcs()).unwrap();
    assert!(info.imports.contains(&"state_get".to_string()));
}

#[test]
fn validation_refuses_floats() {
    let e = refused(&format!(
        r#"{MIN} (func (export "f") (param i32 i32) (result i32)
             (drop (f32.add (f32.const 1) (f32.const 2))) (i32.const 0))"#
    ));
    assert!(
        matches!(e, ValidationError::FloatingPoint(ref m) if m.contains("F32")),
        "{e}"
    );
    let e = refused(&format!(
        r#"{MIN} (func (export "f") (param i32 i32) (result i32)
             (i32.trunc_f64_s (f64.const 1)))"#
    ));
    assert!(matches!(e, ValidationError::FloatingPoint(_)), "{e}");
    let e = refused(&format!(r#"{MIN} (func $g (param f64))"#));
    assert!(matches!(e, ValidationError::FloatingPoint(_)), "{e}");
    let e = refused(&format!(r#"{MIN} (global f32 (f32.const 0))"#));
    assert!(matches!(e, ValidationError::FloatingPoint(_)), "{e}");
    let e = refused(&format!(
        r#"{MIN} (func (export "g") (param i32 i32) (result i32) (local f64) (i32.const 0))"#
    ));
    assert!(matches!(e, ValidationError::FloatingPoint(_)), "{e}");
}

#[test]
fn validation_refuses_foreign_imports() {
    let e = refused(&format!(r#"(import "env" "abort" (func)) {MIN}"#));
    assert!(
        matches!(e, ValidationError::Import { ref module, .. } if module == "env"),
        "{e}"
    );
    let e = refused(&format!(
        r#"(import "tally" "clock" (func (result i64))) {MIN}"#
    ));
    assert!(
        matches!(e, ValidationError::Import { ref name, .. } if name == "clock"),
        "{e}"
    );
    let e = refused(&format!(
        r#"(import "tally" "state_get" (func (param i32))) {MIN}"#
    ));
    assert!(e.to_string().contains("signature"), "{e}");
    let e = refused(
        r#"(import "tally" "mem" (memory 1))
           (func (export "tally_alloc") (param i32) (result i32) (i32.const 0))
           (func (export "run") (param i32 i32) (result i32) (i32.const 0))"#,
    );
    assert!(matches!(e, ValidationError::Import { .. }), "{e}");
}

#[test]
fn validation_requires_exports_and_limits() {
    let e = refused(
        r#"(memory (export "memory") 1) (func (export "run") (param i32 i32) (result i32) (i32.const 0))"#,
    );
    assert!(matches!(e, ValidationError::MissingExport { ref name, .. } if name == "tally_alloc"));
    let e = refused(
        r#"(memory (export "memory") 1) (func (export "tally_alloc") (param i32) (result i32) (i32.const 0))"#,
    );
    assert!(matches!(e, ValidationError::MissingExport { .. }), "{e}");
    let e = refused(
        r#"(memory 1) (func (export "tally_alloc") (param i32) (result i32) (i32.const 0)) (func (export "run") (param i32 i32) (result i32) (i32.const 0))"#,
    );
    assert!(matches!(e, ValidationError::MissingExport { ref name, .. } if name == "memory"));
    let e = refused(&format!(
        r#"{MIN} (func (export "odd") (param i32) (result i32) (i32.const 0))"#
    ));
    assert!(
        matches!(e, ValidationError::Export { ref name, .. } if name == "odd"),
        "{e}"
    );
    let e = refused(&format!(
        r#"{MIN} (func (export "tally_x") (param i32 i32) (result i32) (i32.const 0))"#
    ));
    assert!(matches!(e, ValidationError::Export { .. }), "{e}");
    let e = refused(&format!(r#"{MIN} (func $s) (start $s)"#));
    assert_eq!(e, ValidationError::StartFunction);
    let e = refused(
        r#"(memory (export "memory") 1 100)
           (func (export "tally_alloc") (param i32) (result i32) (i32.const 0))
           (func (export "run") (param i32 i32) (result i32) (i32.const 0))"#,
    );
    assert!(
        matches!(e, ValidationError::Memory(ref m) if m.contains("maximum")),
        "{e}"
    );
    let big = Engine::new(Limits {
        max_module_bytes: 10,
        ..Limits::default()
    });
    assert!(matches!(
        big.validate(&funcs()),
        Err(ValidationError::TooLarge { .. })
    ));
    assert!(matches!(
        engine().validate(b"not wasm"),
        Err(ValidationError::Malformed(_))
    ));
}

#[test]
fn every_abi_function_is_bound() {
    use tally_runtime::abi::{AbiType, HOST_FUNCTIONS};
    let ty = |ts: &[AbiType]| {
        ts.iter()
            .map(|t| match t {
                AbiType::I32 => " i32",
                AbiType::I64 => " i64",
            })
            .collect::<String>()
    };
    let imports: String = HOST_FUNCTIONS
        .iter()
        .map(|h| {
            format!(
                r#"(import "tally" "{}" (func (param{}) (result{})))"#,
                h.name,
                ty(h.params),
                ty(h.results)
            )
        })
        .collect();
    let bytes = wat::parse_str(format!("(module {imports} {MIN})")).unwrap();
    let e = engine();
    let m = e.load(&bytes).unwrap();
    assert_eq!(m.info().imports.len(), HOST_FUNCTIONS.len());
    e.invoke(&m, "run", b"", &ctx(), &mut MemoryHost::new(), FUEL)
        .unwrap();
}
