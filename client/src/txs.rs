//! Building and signing transactions.

use tally_protocol::{
    ChannelConfig, ConfigUpdate, Identity, Payload, ReadCheck, Signer, Transaction, TxBody,
    Version, Write,
};

/// Signs a key/value transaction (puts and deletes, no read checks) with a fresh nonce and
/// the current time. `use_cert_hash` sends the certificate's hash instead of the certificate,
/// which the channel accepts once it has recorded the certificate.
pub fn sign_writes(
    id: &Identity,
    channel: &str,
    writes: Vec<Write>,
    use_cert_hash: bool,
) -> Transaction {
    sign_kv(id, channel, Vec::new(), writes, use_cert_hash)
}

/// Signs a key/value transaction whose writes apply only if every read check still holds
/// when the transaction is executed (else it is rejected with `read_conflict`).
pub fn sign_kv(
    id: &Identity,
    channel: &str,
    reads: Vec<ReadCheck>,
    writes: Vec<Write>,
    use_cert_hash: bool,
) -> Transaction {
    sign_payload(
        id,
        channel,
        Payload::KvWrite { reads, writes },
        use_cert_hash,
    )
}

/// Signs any payload with a fresh random nonce and the current time.
pub fn sign_payload(
    id: &Identity,
    channel: &str,
    payload: Payload,
    use_cert_hash: bool,
) -> Transaction {
    let body = TxBody {
        channel: channel.to_string(),
        nonce: rand::random::<u64>(),
        timestamp_ms: tally_protocol::now_ms(),
        signer: signer(id, use_cert_hash),
        payload,
    };
    Transaction::sign(body, id)
}

/// A configuration transaction replacing `current` (in force after `applied` changes) with
/// `next`, approved by each of `approvers` (admins of member organizations) and submitted
/// by `submitter` (an admin too).
pub fn sign_config(
    submitter: &Identity,
    current: &ChannelConfig,
    applied: u64,
    next: ChannelConfig,
    approvers: &[&Identity],
) -> Transaction {
    let mut update = ConfigUpdate::new(current, applied, next);
    for a in approvers {
        update.approve(a);
    }
    let channel = current.name.clone();
    sign_payload(
        submitter,
        &channel,
        Payload::Config(Box::new(update)),
        false,
    )
}

/// Signs a body as given (nonce and timestamp included), e.g. to reproduce a transaction.
pub fn sign_body(id: &Identity, body: TxBody) -> Transaction {
    Transaction::sign(body, id)
}

/// The signer field for an identity: its certificate, or the certificate's hash.
pub fn signer(id: &Identity, use_cert_hash: bool) -> Signer {
    if use_cert_hash {
        Signer::CertHash(id.cert_hash)
    } else {
        Signer::Certificate(id.cert_der.clone())
    }
}

pub fn put(key: &str, value: &[u8]) -> Write {
    Write {
        key: key.to_string(),
        value: Some(value.to_vec()),
    }
}

pub fn delete(key: &str) -> Write {
    Write {
        key: key.to_string(),
        value: None,
    }
}

/// A read check: the key must still be at `version` (as a [`tally_protocol::api::KeyValue`]
/// showed it).
pub fn read_at(key: &str, version: Version) -> ReadCheck {
    ReadCheck {
        key: key.to_string(),
        version: Some(version),
    }
}

/// A read check: the key must not exist.
pub fn read_absent(key: &str) -> ReadCheck {
    ReadCheck {
        key: key.to_string(),
        version: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tally_protocol::{Decode, Encode, OrgCa, Role};

    #[test]
    fn signed_writes_verify_and_round_trip() {
        let ca = OrgCa::generate("org-a").unwrap();
        let id = ca.issue(Role::Client, "alice", &[]).unwrap();
        let a = sign_writes(&id, "ch", vec![put("k", b"v"), delete("d")], false);
        let b = sign_writes(&id, "ch", vec![put("k", b"v"), delete("d")], false);
        assert_ne!(a.id(), b.id(), "fresh nonce per transaction");
        assert!(a.verify_signature(&a.id(), &id.info.public_key));
        assert_eq!(a.body.signer, Signer::Certificate(id.cert_der.clone()));
        let back = Transaction::from_bytes(&a.to_bytes()).unwrap();
        assert_eq!(back, a);

        let h = sign_kv(
            &id,
            "ch",
            vec![read_absent("k")],
            vec![put("k", b"1")],
            true,
        );
        assert_eq!(h.body.signer, Signer::CertHash(id.cert_hash));
        assert!(h.verify_signature(&h.id(), &id.info.public_key));
        let Payload::KvWrite { reads, writes } = &h.body.payload else {
            panic!("a key/value payload: {:?}", h.body.payload);
        };
        assert_eq!(reads, &vec![read_absent("k")]);
        assert_eq!(writes.len(), 1);
        let now = tally_protocol::now_ms();
        assert!(h.body.timestamp_ms <= now && now - h.body.timestamp_ms < 60_000);
    }
}
