//! Building and signing transactions.

use tally_protocol::{
    ChaincodeDefinition, ChannelConfig, ConfigUpdate, Hash, Identity, InitCall, Payload, Proposal,
    ReadCheck, Signer, Transaction, TxBody, Version, Write,
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

/// Installs a chaincode definition with its module (`definition.module_hash` must be the
/// module's sha256; [`chaincode_definition`] fills it in). Signed by an admin.
pub fn sign_install(
    admin: &Identity,
    channel: &str,
    definition: ChaincodeDefinition,
    module: Vec<u8>,
) -> Transaction {
    sign_payload(
        admin,
        channel,
        Payload::ChaincodeInstall { definition, module },
        false,
    )
}

/// A definition of `module` under `name` at `sequence`, with an optional init call.
pub fn chaincode_definition(
    name: &str,
    version: &str,
    sequence: u64,
    module: &[u8],
    init: Option<InitCall>,
) -> ChaincodeDefinition {
    ChaincodeDefinition {
        name: name.to_string(),
        version: version.to_string(),
        sequence,
        module_hash: tally_protocol::chaincode::module_hash(module),
        init,
    }
}

/// The admin's organization approves sequence `sequence` of `name` with this module hash.
pub fn sign_approve(
    admin: &Identity,
    channel: &str,
    name: &str,
    sequence: u64,
    module_hash: Hash,
) -> Transaction {
    sign_payload(
        admin,
        channel,
        Payload::ChaincodeApprove {
            name: name.to_string(),
            sequence,
            module_hash,
        },
        false,
    )
}

/// Commits sequence `sequence` of `name` (needs the lifecycle policy's approvals).
pub fn sign_commit(admin: &Identity, channel: &str, name: &str, sequence: u64) -> Transaction {
    sign_payload(
        admin,
        channel,
        Payload::ChaincodeCommit {
            name: name.to_string(),
            sequence,
        },
        false,
    )
}

/// Calls `function` of chaincode `name` with raw argument bytes; `fuel` 0 asks for the
/// node's maximum.
pub fn sign_invoke(
    id: &Identity,
    channel: &str,
    name: &str,
    function: &str,
    args: Vec<u8>,
    fuel: u64,
    use_cert_hash: bool,
) -> Transaction {
    sign_payload(
        id,
        channel,
        Payload::Invoke {
            chaincode: name.to_string(),
            function: function.to_string(),
            args,
            fuel,
        },
        use_cert_hash,
    )
}

/// Arguments in the field encoding of Tally's tools and contracts (a u32 count, then per
/// field a u32 length and the bytes, little-endian).
pub fn fields<T: AsRef<[u8]>>(fields: &[T]) -> Vec<u8> {
    tally_runtime::fields::encode(fields)
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

/// Records `proposal` on its channel, approved by the admin's organization (see
/// `tally_protocol::proposal`).
pub fn sign_propose(admin: &Identity, proposal: Proposal) -> Transaction {
    let channel = proposal.channel.clone();
    sign_payload(admin, &channel, Payload::Propose(Box::new(proposal)), false)
}

/// The admin's organization approves (`approve`) or rejects the proposal `hash` of `channel`.
pub fn sign_vote(admin: &Identity, channel: &str, hash: Hash, approve: bool) -> Transaction {
    let payload = if approve {
        Payload::ProposalApprove { hash }
    } else {
        Payload::ProposalReject { hash }
    };
    sign_payload(admin, channel, payload, false)
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
