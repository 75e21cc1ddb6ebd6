//! What a transaction must satisfy besides ordering: its shape, its signer (a certificate
//! chaining to a member CA, valid at the time given) and the channel's policies. The same
//! checks run at submission (wall time) and at apply (block time).

use super::{chaincode, Ledger, MAX_KEY_LEN};
use std::collections::HashMap;
use std::sync::Arc;
use tally_protocol::identity::{self, CertInfo, IdentityError, Role};
use tally_protocol::sig;
use tally_protocol::{Hash, Payload, RejectCode, Signer, Transaction};

/// A signer whose certificate chains to a member CA.
pub struct KnownSigner {
    pub info: CertInfo,
    pub key: sig::PublicKey,
}

impl Ledger {
    /// Resolves and checks the signer of a transaction. Deterministic given the ledger and
    /// `now_s` (block time at apply, wall time at submission).
    pub fn signer_info(
        &self,
        signer: &Signer,
        now_s: i64,
        pending_certs: &HashMap<Hash, Vec<u8>>,
    ) -> Result<(Arc<KnownSigner>, Option<Hash>), (RejectCode, String)> {
        let (hash, der) = match signer {
            Signer::Certificate(der) => (identity::cert_hash(der), Some(der.as_slice())),
            Signer::CertHash(h) => (*h, None),
        };
        let full = der.map(|_| hash);
        if let Some(known) = self.verified_certs.read().get(&hash).cloned() {
            check_time(&known.info, now_s)?;
            return Ok((known, full));
        }
        let owned;
        let der = match der {
            Some(d) => d,
            None => {
                if let Some(d) = pending_certs.get(&hash) {
                    d.as_slice()
                } else {
                    owned = self.db.get(self.keys.cert(&hash.0)).ok().flatten().ok_or((
                        RejectCode::UnknownCertificate,
                        format!("certificate {} is not recorded on channel {}; send the full certificate", hash, self.name),
                    ))?;
                    owned.as_slice()
                }
            }
        };
        // Chain checks are cached without time; time is checked against `now_s` below.
        let (cas, sequence) = {
            let f = self.in_force.read();
            (f.cas.clone(), f.sequence)
        };
        let info = identity::verify_against(&cas, der, None).map_err(|e| match e {
            IdentityError::Revoked(_) => (
                RejectCode::Revoked,
                format!("signer refused on channel {}: {e}", self.name),
            ),
            IdentityError::UnknownIssuer(_) | IdentityError::BadChain(_) => (
                RejectCode::NotMember,
                format!("signer is not a member of channel {}: {e}", self.name),
            ),
            e => (
                RejectCode::NotMember,
                format!("signer certificate rejected: {e}"),
            ),
        })?;
        let key = sig::public_key(&info.public_key).ok_or_else(|| {
            (
                RejectCode::NotMember,
                "signer key is not a valid Ed25519 key".to_string(),
            )
        })?;
        let known = Arc::new(KnownSigner { info, key });
        // Cached only if the configuration it was checked against is still in force: a
        // check that raced a configuration change (a revocation, a CA removed) must not
        // outlive it, or this node would accept a signer that the others refuse.
        let mut cache = self.verified_certs.write();
        if self.in_force.read().sequence == sequence {
            cache.insert(hash, known.clone());
        }
        drop(cache);
        check_time(&known.info, now_s)?;
        Ok((known, full))
    }

    /// Checks everything about a transaction that does not depend on ordering, as a
    /// submitting node does before accepting it, except the signature itself: the caller
    /// checks that against the returned signer's key (in batches, see `verifier`).
    pub fn precheck(
        &self,
        tx: &Transaction,
        raw_len: usize,
        now_ms: u64,
    ) -> Result<Arc<KnownSigner>, (RejectCode, String)> {
        self.refuse_if_retired(None)?;
        self.static_checks(tx, raw_len)?;
        let (signer, _) =
            self.signer_info(&tx.body.signer, (now_ms / 1000) as i64, &HashMap::new())?;
        self.policy_checks(tx, &signer.info, now_ms)?;
        Ok(signer)
    }

    pub(super) fn static_checks(
        &self,
        tx: &Transaction,
        raw_len: usize,
    ) -> Result<(), (RejectCode, String)> {
        if tx.body.channel != self.name {
            return Err((
                RejectCode::WrongChannel,
                format!(
                    "transaction is for channel {:?}, not {:?}",
                    tx.body.channel, self.name
                ),
            ));
        }
        let max_tx_bytes = self.in_force.read().config.max_tx_bytes;
        if raw_len > max_tx_bytes as usize {
            return Err((
                RejectCode::TooLarge,
                format!(
                    "transaction is {raw_len} bytes; channel limit is {}",
                    max_tx_bytes
                ),
            ));
        }
        match &tx.body.payload {
            Payload::KvWrite { reads, writes } => {
                if writes.is_empty() {
                    return Err((RejectCode::Malformed, "transaction writes nothing".into()));
                }
                for k in reads
                    .iter()
                    .map(|r| &r.key)
                    .chain(writes.iter().map(|w| &w.key))
                {
                    if k.is_empty() || k.len() > MAX_KEY_LEN {
                        return Err((
                            RejectCode::Malformed,
                            format!("key length must be 1..={MAX_KEY_LEN} bytes"),
                        ));
                    }
                }
                if let Some(w) = writes.iter().find(|w| chaincode::reserved_key(&w.key)) {
                    return Err((
                        RejectCode::Forbidden,
                        format!(
                            "key {:?} is reserved: keys under {:?} change only through the chaincode lifecycle and keys under {:?} only through chaincode",
                            w.key,
                            tally_protocol::chaincode::LIFECYCLE_PREFIX,
                            tally_protocol::chaincode::STATE_PREFIX
                        ),
                    ));
                }
            }
            Payload::Config(u) => {
                if u.config.name != self.name {
                    return Err((
                        RejectCode::Malformed,
                        format!(
                            "configuration is for channel {:?}, not {:?}",
                            u.config.name, self.name
                        ),
                    ));
                }
            }
            p @ (Payload::Propose(_)
            | Payload::ProposalApprove { .. }
            | Payload::ProposalReject { .. }) => self.governance_static_checks(p)?,
            p => self.chaincode_static_checks(p)?,
        }
        Ok(())
    }

    pub(super) fn policy_checks(
        &self,
        tx: &Transaction,
        info: &CertInfo,
        now_ms: u64,
    ) -> Result<(), (RejectCode, String)> {
        let config = self.config();
        let window = config.tx_window_s as u64 * 1000;
        if tx.body.timestamp_ms.abs_diff(now_ms) > window {
            // Said apart: a transaction from the future points at the signer's clock, one
            // from the past at a late resubmission.
            let reason = if tx.body.timestamp_ms > now_ms {
                format!(
                    "transaction is from the future: dated {} s after the ledger's time (window {} s); the signer's clock is probably ahead",
                    (tx.body.timestamp_ms - now_ms) / 1000,
                    config.tx_window_s
                )
            } else {
                format!(
                    "transaction time is more than {} s before the ledger's time",
                    config.tx_window_s
                )
            };
            return Err((RejectCode::Expired, reason));
        }
        if info.role == Role::Node {
            return Err((
                RejectCode::Forbidden,
                "node certificates may not submit transactions".into(),
            ));
        }
        if let Payload::Config(_)
        | Payload::ChaincodeInstall { .. }
        | Payload::ChaincodeApprove { .. }
        | Payload::ChaincodeCommit { .. }
        | Payload::Propose(_)
        | Payload::ProposalApprove { .. }
        | Payload::ProposalReject { .. } = &tx.body.payload
        {
            // Approvals decide; the submitter must still be an admin of a member.
            if info.role != Role::Admin {
                return Err((
                    RejectCode::Forbidden,
                    format!(
                        "configuration, proposals and chaincode lifecycle changes are submitted by admins; {} is a {}",
                        info.subject, info.role
                    ),
                ));
            }
            return Ok(());
        }
        if !config.may_write(&info.org) {
            return Err((
                RejectCode::Forbidden,
                format!(
                    "organization {} may not write to channel {}",
                    info.org, self.name
                ),
            ));
        }
        Ok(())
    }
}

pub(super) fn check_time(info: &CertInfo, now_s: i64) -> Result<(), (RejectCode, String)> {
    if now_s < info.not_before || now_s > info.not_after {
        return Err((
            RejectCode::Expired,
            "signer certificate is outside its validity period".into(),
        ));
    }
    Ok(())
}
