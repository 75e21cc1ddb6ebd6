//! What a `Chaincode` waiting for its definition to be approved reports: the proposal on the
//! ledger, approvals n/m, who approved and who is missing, and the command that approves it.

use super::channel::Awaiting;
use super::Verdict;

/// The verdict while definition `version` of chaincode `name` waits for approvals.
pub fn awaiting_verdict(channel: &str, name: &str, version: &str, a: &Awaiting) -> Verdict {
    if a.proposal.is_empty() {
        return Verdict::progressing(
            "AwaitingApprovals",
            format!(
                "chaincode {name} version {version} is installed; the node does not show its definition proposal or the last approval yet"
            ),
        );
    }
    let short = a.short();
    Verdict::progressing(
        "AwaitingApprovals",
        format!(
            "chaincode {name} version {version}, proposed as {short}, waits for approvals: {} (approved: {}; missing: {}); approve with `tallyctl proposal approve --channel {channel} {short}`",
            a.count(),
            a.approved_text(),
            a.missing.join(", "),
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::State;

    #[test]
    fn an_awaited_definition_says_who_approved_who_is_missing_and_how_to_approve() {
        let a = Awaiting {
            proposal: "ab".repeat(32),
            needed: 2,
            approved: vec!["org1".into()],
            missing: vec!["org2".into()],
        };
        let v = awaiting_verdict("ch", "notary", "1.0", &a);
        assert_eq!(
            (v.state, v.reason.as_str()),
            (State::Progressing, "AwaitingApprovals")
        );
        assert!(
            v.message.contains("1/2")
                && v.message.contains("approved: org1")
                && v.message.contains("missing: org2")
                && v.message
                    .contains("tallyctl proposal approve --channel ch abababababab"),
            "{}",
            v.message
        );
    }
}
