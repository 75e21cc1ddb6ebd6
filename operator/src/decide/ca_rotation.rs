//! The CA rotation's choices for one organization with a generated CA: which step comes next
//! and what its status says. The rotation's state lives in the organization's CA Secret (which
//! keys it holds, and two annotations), so an operator that restarts picks it up where it was:
//!
//! 1. `AddingCa`: the new CA waits in the Secret beside the current one; every channel of the
//!    organization is to trust both (the Channel controller proposes that change as any other).
//! 2. `Reissuing`: once every channel trusts both, the new CA becomes the issuing one and the
//!    old one is kept beside it, still trusted; every identity is issued afresh and the nodes
//!    roll one at a time onto their new certificates.
//! 3. `RemovingOldCa`: once every node serves a certificate of the new CA, the old one is
//!    dropped from the Secret and the channels are to trust the new one alone.
//! 4. `Done`: every channel trusts only the new CA.
//!
//! A channel never lacks the CA its nodes' certificates chain to: the issuing CA changes only
//! after every channel trusts both, and the old one goes only after no node holds its
//! certificates.

use std::collections::BTreeSet;
use tally_api::consortium::{CaRotationPhase, CaRotationStatus};

/// The rotation state kept in an organization's CA Secret. CAs are named by fingerprint.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SecretState {
    /// The `ca.rotate` value of the last rotation started (or the one the CA was made with).
    pub token: Option<String>,
    /// The phase last recorded; only `RemovingOldCa` and `Done` are read from it, the
    /// earlier phases are told by the keys present.
    pub phase: Option<CaRotationPhase>,
    /// The issuing CA (`tls.crt`).
    pub current: String,
    /// The CA being added (`next.crt`), during `AddingCa`.
    pub next: Option<String>,
    /// The CA being retired (`previous.crt`), during `Reissuing`.
    pub previous: Option<String>,
}

/// What the nodes of one channel say it trusts for the organization.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChannelTrust {
    pub channel: String,
    /// For each node that answered, the CAs its configuration lists for the organization.
    pub answers: Vec<BTreeSet<String>>,
}

/// Whether a node of the organization serves a certificate of the issuing CA.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeCa {
    pub name: String,
    /// `None` when a handshake trusting the issuing CA alone succeeded; else why not.
    pub not_yet: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RotationObserved {
    /// The organization's `ca.rotate`.
    pub requested: Option<String>,
    pub secret: SecretState,
    /// Every channel the organization is a member of (read during `AddingCa` and
    /// `RemovingOldCa`).
    pub channels: Vec<ChannelTrust>,
    /// Every hosted node of the organization (read during `Reissuing`).
    pub nodes: Vec<NodeCa>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RotationAction {
    /// Make the new CA and keep it in the Secret as `next`, recording the token.
    Start,
    /// The new CA becomes the issuing one; the old one is kept as `previous`.
    Swap,
    /// Drop `previous`: the channels are to trust the new CA alone.
    DropPrevious,
    /// Record `Done`.
    Finish,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RotationDecision {
    pub action: Option<RotationAction>,
    /// The status once the action is taken; `None` when no rotation was ever asked for.
    pub status: Option<CaRotationStatus>,
}

/// The phase the Secret is in, told by its keys first (they are what the plan reads).
pub fn phase_of(s: &SecretState) -> Option<CaRotationPhase> {
    if s.next.is_some() {
        Some(CaRotationPhase::AddingCa)
    } else if s.previous.is_some() {
        Some(CaRotationPhase::Reissuing)
    } else {
        // Without the keys of an earlier phase, anything short of Done (which a crash between
        // two writes cannot leave, as each step is one write) waits for the channels to trust
        // the issuing CA alone: the check that is true of a finished rotation anyway.
        match s.phase {
            Some(CaRotationPhase::Done) => Some(CaRotationPhase::Done),
            Some(_) => Some(CaRotationPhase::RemovingOldCa),
            None => None,
        }
    }
}

fn short(fp: &str) -> &str {
    &fp[..fp.len().min(12)]
}

/// The channels not (yet) at `wanted`, each with why; empty when every channel is.
fn channels_short_of(
    channels: &[ChannelTrust],
    wanted: impl Fn(&BTreeSet<String>) -> bool,
) -> Vec<String> {
    channels
        .iter()
        .filter_map(|c| {
            if c.answers.is_empty() {
                Some(format!("{} (no node answers)", c.channel))
            } else if c.answers.iter().all(&wanted) {
                None
            } else {
                let behind = c.answers.iter().filter(|a| !wanted(a)).count();
                Some(format!(
                    "{} ({behind} of {} nodes not there yet)",
                    c.channel,
                    c.answers.len()
                ))
            }
        })
        .collect()
}

pub fn decide(o: &RotationObserved) -> RotationDecision {
    let s = &o.secret;
    let token = s.token.clone().unwrap_or_default();
    let status = |phase: CaRotationPhase, message: String| {
        Some(CaRotationStatus {
            requested: token.clone(),
            phase,
            message,
        })
    };
    let queued = match &o.requested {
        Some(r) if *r != token => format!(" (rotation {r:?} starts once this one is done)"),
        _ => String::new(),
    };
    match phase_of(s) {
        Some(CaRotationPhase::AddingCa) => {
            let next = s.next.as_deref().unwrap_or_default();
            let both = |a: &BTreeSet<String>| a.contains(&s.current) && a.contains(next);
            let short_of = channels_short_of(&o.channels, both);
            if short_of.is_empty() {
                RotationDecision {
                    action: Some(RotationAction::Swap),
                    status: status(
                        CaRotationPhase::Reissuing,
                        format!(
                            "every channel trusts both CAs; re-issuing identities from the new CA {}{queued}",
                            short(next)
                        ),
                    ),
                }
            } else {
                RotationDecision {
                    action: None,
                    status: status(
                        CaRotationPhase::AddingCa,
                        format!(
                            "adding the new CA {} beside {}; waiting for channels: {}{queued}",
                            short(next),
                            short(&s.current),
                            short_of.join(", ")
                        ),
                    ),
                }
            }
        }
        Some(CaRotationPhase::Reissuing) => {
            let behind: Vec<String> = o
                .nodes
                .iter()
                .filter_map(|n| Some(format!("{} ({})", n.name, n.not_yet.as_deref()?)))
                .collect();
            if behind.is_empty() {
                RotationDecision {
                    action: Some(RotationAction::DropPrevious),
                    status: status(
                        CaRotationPhase::RemovingOldCa,
                        format!(
                            "every node serves a certificate of the new CA; removing the old CA {} from the channels{queued}",
                            short(s.previous.as_deref().unwrap_or_default())
                        ),
                    ),
                }
            } else {
                RotationDecision {
                    action: None,
                    status: status(
                        CaRotationPhase::Reissuing,
                        format!(
                            "{} of {} nodes serve a certificate of the new CA; waiting for {}{queued}",
                            o.nodes.len() - behind.len(),
                            o.nodes.len(),
                            behind.join(", ")
                        ),
                    ),
                }
            }
        }
        Some(CaRotationPhase::RemovingOldCa) => {
            let alone = |a: &BTreeSet<String>| a.len() == 1 && a.contains(&s.current);
            let short_of = channels_short_of(&o.channels, alone);
            if short_of.is_empty() {
                RotationDecision {
                    action: Some(RotationAction::Finish),
                    status: status(CaRotationPhase::Done, done_message(s)),
                }
            } else {
                RotationDecision {
                    action: None,
                    status: status(
                        CaRotationPhase::RemovingOldCa,
                        format!(
                            "removing the old CA; waiting for channels: {}{queued}",
                            short_of.join(", ")
                        ),
                    ),
                }
            }
        }
        Some(CaRotationPhase::Done) | None => match &o.requested {
            Some(r) if *r != token => RotationDecision {
                action: Some(RotationAction::Start),
                status: Some(CaRotationStatus {
                    requested: r.clone(),
                    phase: CaRotationPhase::AddingCa,
                    message: "making the new CA".into(),
                }),
            },
            // No rotation ever ran (the CA may have been made with this very token).
            _ if s.phase.is_none() => RotationDecision::default(),
            _ => RotationDecision {
                action: None,
                status: status(CaRotationPhase::Done, done_message(s)),
            },
        },
    }
}

fn done_message(s: &SecretState) -> String {
    format!("every channel trusts only the new CA {}", short(&s.current))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(token: Option<&str>, phase: Option<CaRotationPhase>) -> SecretState {
        SecretState {
            token: token.map(String::from),
            phase,
            current: "aaaa".into(),
            next: None,
            previous: None,
        }
    }

    fn trusts(channel: &str, answers: &[&[&str]]) -> ChannelTrust {
        ChannelTrust {
            channel: channel.into(),
            answers: answers
                .iter()
                .map(|a| a.iter().map(|s| s.to_string()).collect())
                .collect(),
        }
    }

    #[test]
    fn a_new_token_starts_a_rotation_and_the_one_the_ca_was_made_with_does_not() {
        let mut o = RotationObserved {
            requested: Some("2026-12".into()),
            secret: secret(Some("2026-12"), None),
            ..Default::default()
        };
        assert_eq!(decide(&o), RotationDecision::default());
        o.requested = None;
        o.secret = secret(None, None);
        assert_eq!(decide(&o), RotationDecision::default());
        o.requested = Some("2027-01".into());
        let d = decide(&o);
        assert_eq!(d.action, Some(RotationAction::Start));
        let st = d.status.expect("status");
        assert_eq!(
            (st.requested.as_str(), st.phase),
            ("2027-01", CaRotationPhase::AddingCa)
        );
        // After a finished rotation, the same token does nothing; a new one starts again.
        o.secret = secret(Some("2027-01"), Some(CaRotationPhase::Done));
        let d = decide(&o);
        assert_eq!(d.action, None);
        assert_eq!(d.status.expect("status").phase, CaRotationPhase::Done);
        o.requested = Some("2027-02".into());
        assert_eq!(decide(&o).action, Some(RotationAction::Start));
    }

    #[test]
    fn the_issuing_ca_changes_only_once_every_node_of_every_channel_trusts_both() {
        let mut s = secret(Some("r1"), Some(CaRotationPhase::AddingCa));
        s.next = Some("bbbb".into());
        let mut o = RotationObserved {
            requested: Some("r1".into()),
            secret: s,
            channels: vec![
                trusts("ch1", &[&["aaaa", "bbbb"], &["aaaa"]]),
                trusts("ch2", &[]),
            ],
            ..Default::default()
        };
        let d = decide(&o);
        assert_eq!(
            d.action, None,
            "one node of ch1 lags and nobody answers for ch2"
        );
        let m = d.status.expect("status").message;
        assert!(m.contains("ch1 (1 of 2 nodes"), "{m}");
        assert!(m.contains("ch2 (no node answers)"), "{m}");
        o.channels = vec![
            trusts("ch1", &[&["aaaa", "bbbb"], &["bbbb", "aaaa"]]),
            trusts("ch2", &[&["aaaa", "bbbb"]]),
        ];
        let d = decide(&o);
        assert_eq!(d.action, Some(RotationAction::Swap));
        assert_eq!(d.status.expect("status").phase, CaRotationPhase::Reissuing);
        // An organization in no channel swaps at once.
        o.channels.clear();
        assert_eq!(decide(&o).action, Some(RotationAction::Swap));
    }

    #[test]
    fn the_old_ca_goes_only_once_every_node_serves_the_new_one() {
        let mut s = secret(Some("r1"), Some(CaRotationPhase::Reissuing));
        s.current = "bbbb".into();
        s.previous = Some("aaaa".into());
        let mut o = RotationObserved {
            requested: Some("r2".into()),
            secret: s,
            nodes: vec![
                NodeCa {
                    name: "p-0".into(),
                    not_yet: None,
                },
                NodeCa {
                    name: "p-1".into(),
                    not_yet: Some("handshake: unknown issuer".into()),
                },
            ],
            ..Default::default()
        };
        let d = decide(&o);
        assert_eq!(d.action, None);
        let st = d.status.expect("status");
        assert_eq!(st.phase, CaRotationPhase::Reissuing);
        assert_eq!(
            st.requested, "r1",
            "the running rotation, not the queued one"
        );
        assert!(st.message.contains("1 of 2 nodes"), "{}", st.message);
        assert!(st.message.contains("p-1 (handshake"), "{}", st.message);
        assert!(st.message.contains("\"r2\" starts once"), "{}", st.message);
        o.nodes[1].not_yet = None;
        let d = decide(&o);
        assert_eq!(d.action, Some(RotationAction::DropPrevious));
        assert_eq!(
            d.status.expect("status").phase,
            CaRotationPhase::RemovingOldCa
        );
    }

    #[test]
    fn done_once_every_channel_trusts_the_new_ca_alone() {
        let mut s = secret(Some("r1"), Some(CaRotationPhase::RemovingOldCa));
        s.current = "bbbb".into();
        let mut o = RotationObserved {
            requested: Some("r1".into()),
            secret: s,
            channels: vec![trusts("ch1", &[&["bbbb"], &["aaaa", "bbbb"]])],
            ..Default::default()
        };
        let d = decide(&o);
        assert_eq!(d.action, None);
        assert_eq!(
            d.status.expect("status").phase,
            CaRotationPhase::RemovingOldCa
        );
        o.channels = vec![trusts("ch1", &[&["bbbb"], &["bbbb"]])];
        let d = decide(&o);
        assert_eq!(d.action, Some(RotationAction::Finish));
        assert_eq!(d.status.expect("status").phase, CaRotationPhase::Done);
    }

    #[test]
    fn the_secret_keys_tell_the_phase_before_the_annotation() {
        let mut s = secret(Some("r1"), Some(CaRotationPhase::Done));
        s.next = Some("bbbb".into());
        assert_eq!(phase_of(&s), Some(CaRotationPhase::AddingCa));
        s.next = None;
        s.previous = Some("aaaa".into());
        assert_eq!(phase_of(&s), Some(CaRotationPhase::Reissuing));
        s.previous = None;
        assert_eq!(phase_of(&s), Some(CaRotationPhase::Done));
        s.phase = Some(CaRotationPhase::Reissuing);
        assert_eq!(
            phase_of(&s),
            Some(CaRotationPhase::RemovingOldCa),
            "a recorded Reissuing without the old CA kept waits for the channels to drop it"
        );
    }
}
