//! Signature verification cost per signature: strict single (ed25519-dalek), ZIP-215 single
//! and ZIP-215 batch (ed25519-zebra). `cargo run --release -p tally-protocol --example sigspeed`
use ed25519_dalek::{Signer, SigningKey};
use std::time::Instant;

fn main() {
    let n = 4000;
    let keys: Vec<SigningKey> = (0..16)
        .map(|_| SigningKey::generate(&mut rand::rngs::OsRng))
        .collect();
    let msgs: Vec<[u8; 32]> = (0..n).map(|i| [(i % 251) as u8; 32]).collect();
    let sigs: Vec<_> = (0..n).map(|i| keys[i % 16].sign(&msgs[i])).collect();
    let vks: Vec<_> = keys.iter().map(|k| k.verifying_key()).collect();
    let t = Instant::now();
    for i in 0..n {
        assert!(vks[i % 16].verify_strict(&msgs[i], &sigs[i]).is_ok());
    }
    let strict = t.elapsed().as_secs_f64() / n as f64;
    let zk: Vec<ed25519_zebra::VerificationKey> = vks
        .iter()
        .map(|v| ed25519_zebra::VerificationKey::try_from(v.to_bytes()).unwrap())
        .collect();
    let zs: Vec<ed25519_zebra::Signature> = sigs
        .iter()
        .map(|s| ed25519_zebra::Signature::from_bytes(&s.to_bytes()))
        .collect();
    let t = Instant::now();
    for i in 0..n {
        assert!(zk[i % 16].verify(&zs[i], &msgs[i]).is_ok());
    }
    let single = t.elapsed().as_secs_f64() / n as f64;
    let t = Instant::now();
    for chunk in (0..n).collect::<Vec<_>>().chunks(100) {
        let mut b = ed25519_zebra::batch::Verifier::new();
        for &i in chunk {
            b.queue((zk[i % 16].into(), zs[i], &msgs[i]));
        }
        assert!(b.verify(rand::rngs::OsRng).is_ok());
    }
    let batch = t.elapsed().as_secs_f64() / n as f64;
    println!("strict single {:.1} us, zip215 single {:.1} us, zip215 batch of 100 {:.1} us per signature", strict * 1e6, single * 1e6, batch * 1e6);
}
