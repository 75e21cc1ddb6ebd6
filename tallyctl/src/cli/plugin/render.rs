//! `kubectl tally status` as text: a tree of organizations, Peers and nodes, then channels and
//! chaincodes. Colour only where asked (a terminal without NO_COLOR); the words carry the
//! meaning either way, so piped output loses nothing.

use super::view::{
    ChaincodeView, ChannelView, ConsortiumView, IdentityView, OrgView, Pending, Readiness,
};
use std::fmt::Write;

/// Whether to paint.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Paint {
    Colour,
    Plain,
}

impl Paint {
    fn wrap(self, code: &str, text: &str) -> String {
        match self {
            Paint::Colour => format!("\x1b[{code}m{text}\x1b[0m"),
            Paint::Plain => text.to_string(),
        }
    }
    fn good(self, t: &str) -> String {
        self.wrap("32", t)
    }
    fn bad(self, t: &str) -> String {
        self.wrap("31", t)
    }
    fn unsure(self, t: &str) -> String {
        self.wrap("33", t)
    }
    fn bold(self, t: &str) -> String {
        self.wrap("1", t)
    }
}

fn ready_word(p: Paint, r: &Readiness) -> String {
    match r {
        Readiness::Ready => p.good("Ready"),
        Readiness::NotReady { reason, message } if message.is_empty() => {
            p.bad(&format!("NotReady ({reason})"))
        }
        Readiness::NotReady { reason, message } => {
            p.bad(&format!("NotReady ({reason}: {message})"))
        }
        Readiness::Unknown => p.unsure("Unknown"),
    }
}

/// Branch glyphs for the i-th of n children.
fn branch(i: usize, n: usize) -> (&'static str, &'static str) {
    if i + 1 == n {
        ("└─ ", "   ")
    } else {
        ("├─ ", "│  ")
    }
}

pub fn render(v: &ConsortiumView, p: Paint) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} {}/{}  {}",
        p.bold("Consortium"),
        v.namespace,
        v.name,
        ready_word(p, &v.ready)
    );
    let more_after_channels = !v.chaincodes.is_empty() || !v.identities.is_empty();
    organizations(&mut out, p, &v.organizations, true);
    channels(&mut out, p, &v.channels, more_after_channels);
    if !v.chaincodes.is_empty() {
        chaincodes(&mut out, p, &v.chaincodes, !v.identities.is_empty());
    }
    if !v.identities.is_empty() {
        identities(&mut out, p, &v.identities);
    }
    out
}

fn organizations(out: &mut String, p: Paint, orgs: &[OrgView], more: bool) {
    let (head, pad) = if more { branch(0, 2) } else { branch(0, 1) };
    let _ = writeln!(out, "{head}{}", p.bold("Organizations"));
    if orgs.is_empty() {
        let _ = writeln!(out, "{pad}└─ (none)");
    }
    for (i, o) in orgs.iter().enumerate() {
        let (b, ipad) = branch(i, orgs.len());
        let ca = match (o.ca_fingerprint.as_str(), o.ca_not_after.as_str()) {
            ("", _) => String::from("CA not reported yet"),
            (fp, "") => format!("CA {fp}"),
            (fp, until) => format!("CA {fp}, expires {until}"),
        };
        let _ = writeln!(out, "{pad}{b}{}  {ca}", p.bold(&o.name));
        // Peers first, then the organization's nodes in other clusters, as one list of children.
        let children = o.peers.len() + o.remote.len();
        if children == 0 {
            let _ = writeln!(out, "{pad}{ipad}└─ no Peers");
        }
        for (j, peer) in o.peers.iter().enumerate() {
            let (pb, ppad) = branch(j, children);
            let _ = writeln!(
                out,
                "{pad}{ipad}{pb}Peer {} ({}, {}/{} ready)  {}",
                peer.name,
                peer.role,
                peer.ready_replicas,
                peer.replicas,
                ready_word(p, &peer.ready)
            );
            for (k, n) in peer.nodes.iter().enumerate() {
                let (nb, _) = branch(k, peer.nodes.len());
                let state = if n.ready {
                    p.good("ready")
                } else {
                    p.bad("not ready")
                };
                let chans: Vec<String> = n
                    .channels
                    .iter()
                    .map(|c| format!("{}@{} {}", c.name, c.height, c.role))
                    .collect();
                let _ = writeln!(
                    out,
                    "{pad}{ipad}{ppad}{nb}{} {state}  {}",
                    n.name,
                    chans.join(", ")
                );
            }
        }
        for (j, r) in o.remote.iter().enumerate() {
            let (rb, _) = branch(o.peers.len() + j, children);
            let chans: Vec<String> = r
                .channels
                .iter()
                .map(|c| match &c.unreachable {
                    None => format!("{}@{}", c.name, c.height),
                    Some(why) => format!("{} {}", c.name, p.bad(&format!("unreachable ({why})"))),
                })
                .collect();
            let _ = writeln!(
                out,
                "{pad}{ipad}{rb}remote node {} at {}  {}",
                r.name,
                r.address,
                chans.join(", ")
            );
        }
    }
}

fn channels(out: &mut String, p: Paint, chans: &[ChannelView], more: bool) {
    let (head, pad) = if more { branch(0, 2) } else { branch(0, 1) };
    let _ = writeln!(out, "{head}{}", p.bold("Channels"));
    if chans.is_empty() {
        let _ = writeln!(out, "{pad}└─ (none)");
    }
    for (i, c) in chans.iter().enumerate() {
        let (b, ipad) = branch(i, chans.len());
        let agree = match c.agree {
            Some(true) => p.good("nodes agree"),
            Some(false) => p.bad("STATE ROOTS DIFFER"),
            None => p.unsure("agreement unknown"),
        };
        let leader = if c.leader.is_empty() {
            p.bad("no leader")
        } else {
            format!("leader {}", c.leader)
        };
        let lag = match c.node_heights {
            Some((lo, hi)) if lo != hi => format!(", nodes at {lo}..{hi}"),
            _ => String::new(),
        };
        let _ = writeln!(
            out,
            "{pad}{b}{}  height {}{lag}, {leader}, {agree}, config #{}  {}",
            p.bold(&c.name),
            c.height,
            c.config_sequence,
            ready_word(p, &c.ready)
        );
        let _ = writeln!(out, "{pad}{ipad}members: {}", c.members.join(", "));
        let _ = writeln!(
            out,
            "{pad}{ipad}consenters: {}{}",
            c.consenters.join(", "),
            if c.observers.is_empty() {
                String::new()
            } else {
                format!("; observers: {}", c.observers.join(", "))
            }
        );
        if let Some(b) = &c.last_backup {
            let _ = writeln!(
                out,
                "{pad}{ipad}last backup {} at height {} ({})",
                b.name, b.height, b.completed
            );
        }
        match &c.pending {
            None => {}
            Some(Pending::Unknown(why)) => {
                let _ = writeln!(
                    out,
                    "{pad}{ipad}{}",
                    p.unsure(&format!("proposals unknown: {why}"))
                );
            }
            Some(Pending::Read(list)) if list.is_empty() => {
                let _ = writeln!(out, "{pad}{ipad}no pending proposals");
            }
            Some(Pending::Read(list)) => {
                let _ = writeln!(
                    out,
                    "{pad}{ipad}{}",
                    p.unsure(&format!(
                        "{} pending proposal{}",
                        list.len(),
                        if list.len() == 1 { "" } else { "s" }
                    ))
                );
                for (j, prop) in list.iter().enumerate() {
                    let (pb, _) = branch(j, list.len());
                    let missing = if prop.missing.is_empty() {
                        String::new()
                    } else {
                        format!(", missing {}", prop.missing.join(", "))
                    };
                    let why = if prop.description.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", prop.description)
                    };
                    let _ = writeln!(
                        out,
                        "{pad}{ipad}{pb}{} approvals {}/{}{missing}{why}",
                        &prop.hash[..12.min(prop.hash.len())],
                        prop.approvals,
                        prop.needed
                    );
                }
            }
        }
    }
}

fn chaincodes(out: &mut String, p: Paint, codes: &[ChaincodeView], more: bool) {
    let (head, pad) = if more { branch(0, 2) } else { branch(0, 1) };
    let _ = writeln!(out, "{head}{}", p.bold("Chaincodes"));
    for (i, c) in codes.iter().enumerate() {
        let (b, _) = branch(i, codes.len());
        let committed = if c.committed_version.is_empty() {
            p.unsure("not committed")
        } else {
            format!(
                "committed {} (sequence {})",
                c.committed_version, c.sequence
            )
        };
        let awaiting = if c.awaiting.is_empty() {
            String::new()
        } else {
            format!(", awaiting {}", p.unsure(&c.awaiting.join(", ")))
        };
        let _ = writeln!(
            out,
            "{pad}{b}{} on {}: wants {}, {committed}, approved by {}{awaiting}  {}",
            p.bold(&c.name),
            c.channel,
            c.version,
            if c.approved_by.is_empty() {
                "nobody yet".to_string()
            } else {
                c.approved_by.join(", ")
            },
            ready_word(p, &c.ready)
        );
    }
}

fn identities(out: &mut String, p: Paint, ids: &[IdentityView]) {
    let _ = writeln!(out, "└─ {}", p.bold("Certificates"));
    for (i, id) in ids.iter().enumerate() {
        let (b, _) = branch(i, ids.len());
        let _ = writeln!(
            out,
            "   {b}{}  expires {}, renews from {}",
            id.name, id.not_after, id.renew_at
        );
    }
}
