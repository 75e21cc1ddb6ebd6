//! The consortium as the organization sees it: the channels it reads with their leader,
//! height and whether the nodes agree; the nodes of those channels with role, height and
//! certificate expiry; the member organizations with their CAs.

use crate::agreement::{self, Tips};
use crate::app::{App, Page, Reply};
use crate::format;
use crate::html::{self, esc, w};
use crate::ledger::{ChannelEntry, Topology};
use futures_util::future::join_all;
use std::collections::{BTreeMap, BTreeSet};
use tally_protocol::api::ChannelStatus;

/// The verdict on one channel: agreed or not, and in words.
async fn verdict(app: &App, ch: &str, entry: &ChannelEntry, topo: &Topology) -> (bool, String) {
    let statuses: Vec<(&str, &ChannelStatus)> = entry
        .config
        .nodes()
        .filter_map(|n| topo.status(&n.api_url, ch).map(|s| (n.name.as_str(), s)))
        .collect();
    match agreement::tips(&statuses) {
        Tips::Same { height } => (
            true,
            format!(
                "all {} nodes that answered agree at height {height}",
                statuses.len()
            ),
        ),
        Tips::Split(why) => (false, format!("nodes DISAGREE: {why}")),
        Tips::Unknown => (false, "no node answered".into()),
        Tips::Behind { common } => {
            let hashes = join_all(entry.config.nodes().map(|n| async move {
                let c = app.ledger.client(&n.api_url).ok()?;
                let hd = c.header(ch, common).await.ok()?;
                Some((n.name.as_str(), hd.hash()))
            }))
            .await;
            let hashes: Vec<_> = hashes.into_iter().flatten().collect();
            match agreement::headers(common, &hashes) {
                Ok(()) => (
                    true,
                    format!("heights differ while nodes catch up; block {common} is the same on every node"),
                ),
                Err(why) => (false, format!("nodes DISAGREE: {why}")),
            }
        }
    }
}

pub async fn page(app: &App) -> Reply {
    let topo = app.ledger.fresh_topology().await;
    let nodes = topo.nodes_of_readable();
    let now = tally_protocol::identity::now_unix();
    let (expiries, verdicts) = tokio::join!(
        join_all(nodes.values().map(|n| app.probe.cert_expiry(&n.api_url))),
        join_all(topo.readable().map(|(ch, e)| verdict(app, ch, e, &topo))),
    );
    let mut h = String::new();

    // Channels
    h.push_str("<section class=\"card\"><h1>Channels</h1>");
    let readable: Vec<(&String, &ChannelEntry)> = topo.readable().collect();
    if readable.is_empty() {
        w!(
            h,
            "<p class=\"muted\">Organization {} reads no channel on the nodes this console reaches.</p>",
            esc(app.ledger.org())
        );
    }
    h.push_str("<div class=\"channels\">");
    for ((ch, e), (agree, why)) in readable.iter().zip(&verdicts) {
        let names: BTreeMap<u64, &str> =
            e.config.nodes().map(|n| (n.id, n.name.as_str())).collect();
        let best = e
            .config
            .nodes()
            .filter_map(|n| topo.status(&n.api_url, ch))
            .max_by_key(|s| s.height);
        let (height, leader) = match best {
            Some(s) => (
                s.height.to_string(),
                names
                    .get(&s.leader_id)
                    .copied()
                    .unwrap_or("none")
                    .to_string(),
            ),
            None => ("?".into(), "?".into()),
        };
        w!(
            h,
            "<a class=\"channel\" href=\"{}\"><h2>{}</h2><p>height <strong>{}</strong> · leader {}</p>\
             <p>{} members · {} consenters · {} observers</p>{}</a>",
            esc(&html::channel_href(ch)),
            esc(ch),
            height,
            esc(&leader),
            e.config.members.len(),
            e.config.consenters.len(),
            e.config.observers.len(),
            format!(
                "<p class=\"agreement\" title=\"{}\">{}</p>",
                esc(why),
                html::pill(if *agree { "ok" } else { "bad" }, if *agree { "nodes agree" } else { "nodes disagree" })
            )
        );
    }
    h.push_str("</div>");
    for ((ch, _), (agree, why)) in readable.iter().zip(&verdicts) {
        if !agree {
            w!(
                h,
                "<p class=\"alert\"><strong>{}</strong>: {}</p>",
                esc(ch),
                esc(why)
            );
        }
    }
    h.push_str("</section>");

    // Nodes
    h.push_str(
        "<section class=\"card\"><h2>Nodes</h2><table><thead><tr><th>Node</th><th>Organization</th>\
         <th>Channel</th><th>Role</th><th>Raft</th><th class=\"num\">Height</th><th>Leader</th>\
         <th>State root</th><th>TLS certificate</th></tr></thead><tbody>",
    );
    for (n, expiry) in nodes.values().zip(&expiries) {
        let cert = match expiry {
            Some(t) => html::expiry(&format::expiry(*t, now)),
            None => "<span class=\"muted\">unknown</span>".into(),
        };
        for (i, (ch, seat)) in n.seats.iter().enumerate() {
            let first = if i == 0 {
                format!(
                    "<td rowspan=\"{r}\"><strong>{}</strong></td><td rowspan=\"{r}\">{}</td>",
                    esc(&n.name),
                    esc(&n.org),
                    r = n.seats.len()
                )
            } else {
                String::new()
            };
            let cells = match topo.status(&n.api_url, ch) {
                Some(s) => {
                    let names: BTreeMap<u64, String> = topo
                        .channels
                        .get(ch)
                        .map(|e| e.config.nodes().map(|x| (x.id, x.name.clone())).collect())
                        .unwrap_or_default();
                    let raft = format!("{:?}", s.role).to_lowercase();
                    format!(
                        "<td>{}{}</td><td class=\"num\">{}</td><td>{}</td><td>{}</td>",
                        esc(&raft),
                        if s.ready {
                            ""
                        } else {
                            " <span class=\"pill warn\">catching up</span>"
                        },
                        s.height,
                        esc(names.get(&s.leader_id).map_or("none", String::as_str)),
                        html::hash(&s.state_root.to_hex(), None)
                    )
                }
                None => format!(
                    "<td colspan=\"4\">{} <span class=\"muted\">{}</span></td>",
                    html::pill("bad", "unreachable"),
                    esc(&format::cut(topo.node_error(&n.api_url).unwrap_or(""), 120))
                ),
            };
            let cert_cell = if i == 0 {
                format!("<td rowspan=\"{}\">{cert}</td>", n.seats.len())
            } else {
                String::new()
            };
            w!(
                h,
                "<tr>{first}<td><a href=\"{}\">{}</a></td><td>{}</td>{cells}{cert_cell}</tr>",
                esc(&html::channel_href(ch)),
                esc(ch),
                seat
            );
        }
    }
    h.push_str("</tbody></table></section>");

    // Organizations
    let mut orgs: BTreeMap<&str, (Option<i64>, BTreeSet<&str>)> = BTreeMap::new();
    for (ch, e) in &readable {
        for m in &e.config.members {
            let o = orgs
                .entry(m.name.as_str())
                .or_insert_with(|| (format::cert_not_after(&m.ca_pem), BTreeSet::new()));
            o.1.insert(ch.as_str());
        }
    }
    h.push_str(
        "<section class=\"card\"><h2>Organizations</h2><table><thead><tr><th>Organization</th><th>Channels</th>\
         <th class=\"num\">Nodes</th><th>CA certificate</th></tr></thead><tbody>",
    );
    for (org, (ca, chans)) in &orgs {
        let n_nodes = nodes.values().filter(|n| n.org == *org).count();
        let ca = match ca {
            Some(t) => html::expiry(&format::expiry(*t, now)),
            None => html::pill("bad", "unreadable"),
        };
        w!(
            h,
            "<tr><td><strong>{}</strong>{}</td><td>{}</td><td class=\"num\">{}</td><td>{ca}</td></tr>",
            esc(org),
            if *org == app.ledger.org() { " <span class=\"pill info\">this console</span>" } else { "" },
            esc(&chans.iter().copied().collect::<Vec<_>>().join(", ")),
            n_nodes
        );
    }
    h.push_str("</tbody></table>");
    let me = &app.ledger.identity().info;
    let mine = html::expiry(&format::expiry(me.not_after, now));
    w!(
        h,
        "<p class=\"muted\">This console reads as <strong>{}/{}</strong> ({}); its certificate expires {}.</p></section>",
        esc(&me.org),
        esc(&me.common_name),
        esc(me.role.as_str()),
        mine
    );
    Reply::Page(Page::new("consortium", h))
}
