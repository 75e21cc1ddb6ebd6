//! Cost of the state commitment per write: the lattice hash (LtHash, 1024 × 16-bit lanes) that
//! block headers commit to, against the single 256-bit additive sum it replaced. A write of an
//! existing key costs one removal and one addition.
//! `cargo run --release -p tally-protocol --example statecost`
use std::time::Instant;
use tally_protocol::state::StateDigest;
use tally_protocol::{Hash, Version};

fn main() {
    let n = 20_000u32;
    let value = [7u8; 100];
    let keys: Vec<String> = (0..n).map(|i| format!("invoice/{i:08}")).collect();
    let mut d = StateDigest::default();
    let t = Instant::now();
    for (i, k) in keys.iter().enumerate() {
        let old = Version {
            block: 1,
            tx: i as u32,
        };
        let new = Version {
            block: 2,
            tx: i as u32,
        };
        d.remove(k, &old, &value);
        d.add(k, &new, &value);
    }
    let lthash = t.elapsed().as_secs_f64() / n as f64;
    let t = Instant::now();
    let roots = 1000;
    for _ in 0..roots {
        std::hint::black_box(d.root());
    }
    let root = t.elapsed().as_secs_f64() / roots as f64;
    // The old additive sum: one SHA-256 per term and a 256-bit addition.
    let mut acc = [0u64; 4];
    let t = Instant::now();
    for (i, k) in keys.iter().enumerate() {
        for v in [1u64, 2] {
            let h = Hash::tagged(
                b"tally-state-entry",
                &[
                    k.as_bytes(),
                    &v.to_be_bytes(),
                    &(i as u32).to_be_bytes(),
                    &value,
                ],
            );
            for (j, a) in acc.iter_mut().enumerate() {
                let mut b = [0u8; 8];
                b.copy_from_slice(&h.0[j * 8..j * 8 + 8]);
                *a = a.wrapping_add(u64::from_be_bytes(b));
            }
        }
    }
    std::hint::black_box(acc);
    let additive = t.elapsed().as_secs_f64() / n as f64;
    println!(
        "per write (remove + add, 100-byte value): lthash {:.2} µs, old additive sum {:.2} µs; root of the 2 KiB vector {:.2} µs",
        lthash * 1e6,
        additive * 1e6,
        root * 1e6
    );
}
