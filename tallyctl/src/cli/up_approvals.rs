//! What `tallyctl up` asks of, and takes from, the organizations that run elsewhere: each
//! channel's genesis written for them to approve, their approvals read and checked before
//! anything starts, and the message that says who must approve which file.

use super::genesis_approval::ApprovalFile;
use super::up::{Side, UpArgs};
use anyhow::{anyhow, bail, Context, Result};
use std::path::{Path, PathBuf};
use tally_planner::Plan;
use tally_protocol::{genesis, Approval};

/// Folder of the data directory where `up` writes the genesis of each channel with external
/// members, for them to approve.
pub const GENESIS_DIR: &str = "genesis";

/// The approval files given: each path, or each `*.json`, `*.yaml` and `*.yml` file of a
/// folder. A file holds one approval (as `tallyctl channel approve-genesis` writes it) or a
/// list of them (as an operator publishes them in the genesis ConfigMap's `approvals.yaml`).
pub(super) fn read_approval_files(paths: &[PathBuf]) -> Result<Vec<(PathBuf, ApprovalFile)>> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(p)
                .with_context(|| format!("reading {}", p.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| {
                    f.extension()
                        .is_some_and(|x| x == "json" || x == "yaml" || x == "yml")
                })
                .collect();
            found.sort();
            files.extend(found);
        } else {
            files.push(p.clone());
        }
    }
    let mut out = Vec::new();
    for f in files {
        let text =
            std::fs::read_to_string(&f).with_context(|| format!("reading {}", f.display()))?;
        for a in parse_approvals(&text).with_context(|| {
            format!(
                "{} is not a genesis approval (as `tallyctl channel approve-genesis` writes it) \
                 nor a list of them (as an operator's approvals.yaml holds them)",
                f.display()
            )
        })? {
            out.push((f.clone(), a));
        }
    }
    Ok(out)
}

/// One approval or a list of them, in JSON or YAML.
fn parse_approvals(text: &str) -> Result<Vec<ApprovalFile>> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        Many(Vec<ApprovalFile>),
        One(ApprovalFile),
    }
    // YAML is a superset of JSON, so one parser reads both.
    Ok(match serde_yaml::from_str::<OneOrMany>(text)? {
        OneOrMany::Many(list) => list,
        OneOrMany::One(a) => vec![a],
    })
}

/// Checks every given approval against the planned genesis of the channel it names, before
/// anything starts: an approval of another genesis, or one whose certificate is not of the
/// organization it speaks for, is refused with the reason.
pub(super) fn check_approvals(plan: &Plan, side: &Side) -> Result<()> {
    for (path, f) in &side.approvals {
        let at = path.display();
        let Some(ch) = plan.channel(&f.channel) else {
            bail!(
                "{at}: an approval for channel {}, which this side does not plan (channels: {})",
                f.channel,
                plan.channels
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        };
        let g = &ch.genesis;
        let cas = g
            .validate()
            .map_err(|e| anyhow!("channel {}: {e}", g.name))?;
        let a = Approval {
            certificate: f.certificate.clone(),
            signature: f.signature.clone(),
        };
        match genesis::approver(g, &cas, &a) {
            Ok(org) if org == f.organization => {}
            Ok(org) => bail!(
                "{at}: refused: it says it is {}'s approval of channel {}, but its certificate is {org}'s",
                f.organization,
                f.channel
            ),
            Err(why) => bail!(
                "{at}: refused: {why} (this side's genesis of channel {} is {}, the approval says it covers {})",
                f.channel,
                g.hash(),
                f.genesis
            ),
        }
    }
    Ok(())
}

/// Writes the genesis of every channel with an external member to `genesis/CHANNEL.json`,
/// what `tallyctl channel approve-genesis --genesis` reads. Both sides of a consortium plan
/// the same genesis, so the two files are the same bytes.
pub(super) fn write_genesis_files(plan: &Plan, dir: &Path) -> Result<()> {
    let external: Vec<&str> = plan
        .organizations
        .iter()
        .filter(|o| o.admin.is_none())
        .map(|o| o.name.as_str())
        .collect();
    for c in &plan.channels {
        if !c
            .genesis
            .members
            .iter()
            .any(|m| external.contains(&m.name.as_str()))
        {
            continue;
        }
        let folder = dir.join(GENESIS_DIR);
        std::fs::create_dir_all(&folder)?;
        let mut json = serde_json::to_vec_pretty(&c.genesis)?;
        json.push(b'\n');
        let path = folder.join(format!("{}.json", c.name));
        std::fs::write(&path, json).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// What an `up` that waits says: per channel, whose approval of which file (or whose bundle)
/// is missing and the commands that bring them.
pub(super) fn awaiting_text(
    dir: &Path,
    args: &UpArgs,
    side: &Side,
    pending: &[crate::local::PendingChannel],
) -> String {
    let d = dir.display();
    let files = args
        .files
        .iter()
        .map(|f| f.display().to_string())
        .collect::<Vec<_>>()
        .join(",");
    let mut out = Vec::new();
    for w in &side.waiting {
        out.push(format!(
            "channel {} waits for the bundle of {}: on their side, `tallyctl --data-dir THEIR_DIR org export ORG --out ORG.bundle.yaml` \
             (or `kubectl tally org export`), then add each bundle to -f here",
            w.channel,
            w.orgs.join(", ")
        ));
    }
    let mut approvals = Vec::new();
    for p in pending {
        let file = dir.join(GENESIS_DIR).join(format!("{}.json", p.channel));
        out.push(format!(
            "channel {} needs the approval of its genesis {} by {}; the genesis is {}",
            p.channel,
            p.genesis.hash(),
            p.missing.join(", "),
            file.display()
        ));
        for org in &p.missing {
            let name = format!("{org}-{}.approval.json", p.channel);
            out.push(format!(
                "  {org} runs, on its side (with a copy of that file): tallyctl --data-dir THEIR_DIR --org {org} --as admin channel approve-genesis --genesis {}.json --out {name}",
                p.channel
            ));
            approvals.push(name);
        }
    }
    let mut again = format!("tallyctl up -f {files} --data-dir {d}");
    for a in &approvals {
        again.push_str(&format!(" --approval {a}"));
    }
    out.push(format!(
        "Nothing is lost: run `{again}` when they arrive (or put them in a folder and give --approval FOLDER); the channels that wait are created then."
    ));
    format!(
        "waiting for other organizations:\n  - {}",
        out.join("\n  - ")
    )
}

#[cfg(test)]
mod tests {
    use super::parse_approvals;

    #[test]
    fn one_approval_or_a_list_in_json_or_yaml() {
        let one = r#"{"organization": "bank", "channel": "receivables", "genesis": "ab",
                      "certificate": "0102", "signature": "0304"}"#;
        let a = parse_approvals(one).expect("one JSON approval");
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].certificate, vec![1, 2]);
        let list = "- organization: core\n  channel: receivables\n  genesis: ab\n  certificate: '0a'\n  signature: '0b'\n\
                    - organization: tier1\n  channel: receivables\n  genesis: ab\n  certificate: '0c'\n  signature: '0d'\n";
        let a = parse_approvals(list).expect("a YAML list");
        assert_eq!(
            a.iter()
                .map(|a| a.organization.as_str())
                .collect::<Vec<_>>(),
            ["core", "tier1"]
        );
        assert!(parse_approvals("- organization: core\n").is_err());
        assert!(parse_approvals("{\"organization\": \"bank\", \"certificate\": \"zz\"}").is_err());
    }
}
