//! Signature checks for submissions, on a thread of their own. Whatever requests are waiting
//! when the thread gets to them are checked as one batch (several times cheaper per signature
//! under load); a lone request is checked alone, without waiting for company. A batch that
//! fails is checked again one by one, so each caller gets its own answer.

use std::sync::mpsc::{self, Receiver, Sender};
use tally_protocol::sig::{self, PublicKey};
use tokio::sync::oneshot;

const MAX_BATCH: usize = 512;

struct Job {
    key: PublicKey,
    sig: Vec<u8>,
    msg: [u8; 32],
    done: oneshot::Sender<bool>,
}

#[derive(Clone)]
pub struct Verifier {
    jobs: Sender<Job>,
}

impl Verifier {
    pub fn start() -> std::io::Result<Verifier> {
        let (jobs, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("sig-verify".into())
            .spawn(move || run(rx))?;
        Ok(Verifier { jobs })
    }

    /// Whether `sig` is a valid signature of `msg` by `key`.
    pub async fn verify(&self, key: PublicKey, sig: &[u8], msg: [u8; 32]) -> bool {
        let (done, rx) = oneshot::channel();
        let job = Job {
            key,
            sig: sig.to_vec(),
            msg,
            done,
        };
        if let Err(mpsc::SendError(job)) = self.jobs.send(job) {
            // The thread is gone (shutting down): check here instead.
            return sig::verify(&job.key, &job.sig, &job.msg);
        }
        rx.await.unwrap_or(false)
    }
}

fn run(rx: Receiver<Job>) {
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        while jobs.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        let all_valid = if jobs.len() == 1 {
            false // checked alone below
        } else {
            let mut batch = sig::Batch::new();
            jobs.iter().all(|j| batch.push(&j.key, &j.sig, &j.msg)) && batch.verify()
        };
        for j in jobs {
            let ok = all_valid || sig::verify(&j.key, &j.sig, &j.msg);
            let _ = j.done.send(ok);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn each_caller_gets_its_own_answer() {
        let v = Verifier::start().unwrap();
        let k = SigningKey::generate(&mut rand::rngs::OsRng);
        let pk = sig::public_key(&k.verifying_key().to_bytes()).unwrap();
        let mut calls = Vec::new();
        for i in 0..200u8 {
            let msg = [i; 32];
            let mut s = k.sign(&msg).to_bytes().to_vec();
            if i % 10 == 0 {
                s[0] ^= 1;
            }
            let v = v.clone();
            calls.push(tokio::spawn(
                async move { (i, v.verify(pk, &s, msg).await) },
            ));
        }
        for c in calls {
            let (i, ok) = c.await.unwrap();
            assert_eq!(ok, i % 10 != 0, "signature {i}");
        }
    }
}
