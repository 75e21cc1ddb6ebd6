//! Transaction signature checks under one rule on every node: Ed25519 as ZIP-215 defines it
//! (cofactored verification). Under that rule verifying a block's signatures as one batch
//! accepts exactly what verifying them one by one accepts, so a node may batch (about three
//! times cheaper per signature) without ever disagreeing with a node that did not. With the
//! usual cofactorless rule a crafted signature can pass a batch by chance and fail alone,
//! which on a ledger would split the nodes.

pub type PublicKey = ed25519_zebra::VerificationKey;

pub fn public_key(bytes: &[u8; 32]) -> Option<PublicKey> {
    PublicKey::try_from(*bytes).ok()
}

fn signature(sig: &[u8]) -> Option<ed25519_zebra::Signature> {
    let bytes: [u8; 64] = sig.try_into().ok()?;
    Some(ed25519_zebra::Signature::from_bytes(&bytes))
}

pub fn verify(key: &PublicKey, sig: &[u8], msg: &[u8]) -> bool {
    signature(sig).is_some_and(|s| key.verify(&s, msg).is_ok())
}

/// Signatures checked together; `verify` is true only when every one of them is valid.
#[derive(Default)]
pub struct Batch {
    verifier: ed25519_zebra::batch::Verifier,
    len: usize,
}

impl Batch {
    pub fn new() -> Batch {
        Batch::default()
    }

    /// Queues a signature; false (nothing queued) when it is not even 64 bytes.
    pub fn push(&mut self, key: &PublicKey, sig: &[u8], msg: &[u8]) -> bool {
        let Some(s) = signature(sig) else {
            return false;
        };
        self.verifier.queue(((*key).into(), s, msg));
        self.len += 1;
        true
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn verify(self) -> bool {
        self.len == 0 || self.verifier.verify(rand::rngs::OsRng).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    #[test]
    fn batch_agrees_with_single_checks() {
        let keys: Vec<SigningKey> = (0..4)
            .map(|_| SigningKey::generate(&mut rand::rngs::OsRng))
            .collect();
        let pks: Vec<PublicKey> = keys
            .iter()
            .map(|k| public_key(&k.verifying_key().to_bytes()).unwrap())
            .collect();
        let msgs: Vec<[u8; 32]> = (0..20u8).map(|i| [i; 32]).collect();
        let mut sigs: Vec<Vec<u8>> = msgs
            .iter()
            .enumerate()
            .map(|(i, m)| keys[i % 4].sign(m).to_bytes().to_vec())
            .collect();
        let run = |sigs: &[Vec<u8>]| {
            let mut b = Batch::new();
            for (i, m) in msgs.iter().enumerate() {
                b.push(&pks[i % 4], &sigs[i], m);
            }
            b.verify()
        };
        assert!(run(&sigs));
        assert!(sigs
            .iter()
            .enumerate()
            .all(|(i, s)| verify(&pks[i % 4], s, &msgs[i])));
        sigs[7][3] ^= 1;
        assert!(!run(&sigs));
        assert!(!verify(&pks[7 % 4], &sigs[7], &msgs[7]));
        // A signature by the wrong key fails alone and in a batch.
        sigs[7] = keys[0].sign(&msgs[7]).to_bytes().to_vec();
        assert!(!verify(&pks[3], &sigs[7], &msgs[7]));
        assert!(!run(&sigs));
        let mut b = Batch::new();
        assert!(!b.push(&pks[0], &[0u8; 10], b"m"));
        assert!(b.is_empty() && b.verify());
    }
}
