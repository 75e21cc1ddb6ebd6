//! A channel: its latest blocks (live), members and policies, configuration, chaincodes, and
//! the place where governance proposals will be listed.

use crate::app::{App, Page, Reply};
use crate::error::ConsoleError;
use crate::format;
use crate::history::{self, Snapshot};
use crate::html::{self, esc, w};
use crate::pages::blocks::{self, BlockRow};
use crate::pages::contracts::views_of;
use std::sync::Arc;
use tally_protocol::chaincode::ChaincodeInfo;
use tally_protocol::{ChannelConfig, NodeRef};

pub async fn page(app: &Arc<App>, ch: &str) -> Result<Reply, ConsoleError> {
    // The signed read of the latest block is what lets the node decide whether this
    // organization may see the channel at all; nothing is shown before it answers.
    let latest = app
        .ledger
        .read(ch, |c| async move { c.block(ch, None).await })
        .await?;
    let top = latest.header.number;
    let (older, chaincodes, topo) = tokio::join!(
        blocks::fetch(app, ch, (top.saturating_sub(blocks::PAGE - 1)..top).rev()),
        app.ledger
            .read(ch, |c| async move { c.chaincodes(ch).await }),
        app.ledger.topology(),
    );
    let entry = topo
        .channels
        .get(ch)
        .ok_or_else(|| ConsoleError::UnknownChannel(ch.to_string()))?;
    let mut rows = vec![BlockRow::of(&latest)];
    // Newest first, in the order asked.
    rows.extend(older?.iter().map(BlockRow::of));
    // The configuration sequence as the organization's own node reports it.
    let own_status = entry
        .config
        .nodes()
        .filter(|n| n.org == app.ledger.org())
        .chain(entry.config.nodes())
        .find_map(|n| topo.status(&n.api_url, ch));

    let mut h = String::new();
    w!(
        h,
        "<div class=\"grid\"><section class=\"card wide\"><h1>Channel {} <span class=\"live\" id=\"live\">connecting…</span></h1>\
         <p class=\"muted\">Height <span id=\"height\">{}</span> · newest block first · new blocks appear as they are committed</p>",
        esc(ch),
        top + 1
    );
    h.push_str(&blocks::table(ch, &rows, Some(top + 1)));
    if top + 1 > blocks::PAGE {
        w!(
            h,
            "<p class=\"pager\"><a href=\"/channels/{}/blocks?before={}\">older blocks →</a> · \
             <a href=\"/channels/{}/keys\">browse keys</a></p>",
            html::enc(ch),
            top + 1 - blocks::PAGE,
            html::enc(ch)
        );
    } else {
        w!(
            h,
            "<p class=\"pager\"><a href=\"/channels/{}/keys\">browse keys</a></p>",
            html::enc(ch)
        );
    }
    h.push_str("</section>");

    let applied = own_status.map_or(0, |s| s.config_sequence);
    let snapshot = app.history.snapshot(app, ch, applied);
    h.push_str(&members(&entry.config));
    h.push_str(&chaincode_summary(ch, &chaincodes.unwrap_or_default()));
    h.push_str(&configuration(
        ch,
        &entry.config,
        &snapshot,
        own_status,
        top + 1,
    ));
    h.push_str(PROPOSALS);
    h.push_str("</div>");
    let mut page = Page::in_channel(ch, "", &[], h);
    page.title = format!("channel {ch}");
    Ok(Reply::Page(page))
}

/// Governance (issue 13) is not built: the place is kept and says so, rather than showing an
/// empty list that would read as "nothing pending".
const PROPOSALS: &str =
    "<section class=\"card placeholder\" id=\"proposals\"><h2>Pending proposals</h2>\
    <p><strong>Not available yet.</strong> Proposals voted on the ledger (a member's admission, a \
    policy or consenter change) and who has approved each will be listed here once governance \
    lands (issue 13). Today a configuration change is one transaction that carries every \
    approval at once.</p></section>";

fn everyone_or(list: &[String]) -> String {
    if list.is_empty() {
        "every member".into()
    } else {
        list.join(", ")
    }
}

fn members(c: &ChannelConfig) -> String {
    let now = tally_protocol::identity::now_unix();
    let may = |list: &[String], org: &str| list.is_empty() || list.iter().any(|o| o == org);
    let mut h = String::from(
        "<section class=\"card\"><h2>Members and policies</h2><table><thead><tr><th>Organization</th>\
         <th>May</th><th>CA certificate</th></tr></thead><tbody>",
    );
    for m in &c.members {
        let mut roles = Vec::new();
        if may(&c.policies.readers, &m.name) {
            roles.push("read");
        }
        if may(&c.policies.writers, &m.name) {
            roles.push("write");
        }
        if may(&c.policies.admins, &m.name) {
            roles.push("administer");
        }
        let ca = match format::cert_not_after(&m.ca_pem) {
            Some(t) => html::expiry(&format::expiry(t, now)),
            None => html::pill("bad", "unreadable"),
        };
        w!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{ca}</td></tr>",
            esc(&m.name),
            esc(&roles.join(", "))
        );
    }
    h.push_str("</tbody></table>");
    h.push_str(&html::facts(&[
        (
            "readers",
            esc(&everyone_or(&c.policies.readers)).to_string(),
        ),
        (
            "writers",
            esc(&everyone_or(&c.policies.writers)).to_string(),
        ),
        ("admins", esc(&everyone_or(&c.policies.admins)).to_string()),
    ]));
    h.push_str("</section>");
    h
}

fn chaincode_summary(ch: &str, list: &[ChaincodeInfo]) -> String {
    let mut h = format!(
        "<section class=\"card\"><h2><a href=\"/channels/{}/chaincodes\">Chaincodes</a></h2>",
        html::enc(ch)
    );
    if list.is_empty() {
        h.push_str("<p class=\"muted\">No chaincode installed.</p>");
    } else {
        h.push_str("<ul class=\"plain\">");
        for c in list {
            let state = match (&c.active, c.pending.is_empty()) {
                (Some(d), true) => format!("{} (sequence {})", d.version, d.sequence),
                (Some(d), false) => format!(
                    "{} (sequence {}), an upgrade pending",
                    d.version, d.sequence
                ),
                (None, _) => "pending approval".into(),
            };
            w!(h, "<li><strong>{}</strong> {}", esc(&c.name), esc(&state));
            for (label, href) in views_of(ch, c) {
                w!(h, " · <a href=\"{}\">{}</a>", esc(&href), esc(label));
            }
            h.push_str("</li>");
        }
        h.push_str("</ul>");
    }
    h.push_str("</section>");
    h
}

fn node_line(n: &NodeRef) -> String {
    format!("{} ({})", n.name, n.org)
}

fn configuration(
    ch: &str,
    c: &ChannelConfig,
    snap: &Snapshot,
    status: Option<&tally_protocol::api::ChannelStatus>,
    height: u64,
) -> String {
    let list = |ns: &[NodeRef]| {
        if ns.is_empty() {
            "none".to_string()
        } else {
            ns.iter().map(node_line).collect::<Vec<_>>().join(", ")
        }
    };
    let rows = [
        ("consenters", esc(&list(&c.consenters)).to_string()),
        ("observers", esc(&list(&c.observers)).to_string()),
        (
            "blocks cut at",
            format!(
                "{} transactions, {} bytes or {} ms",
                c.batch.max_txs, c.batch.max_bytes, c.batch.timeout_ms
            ),
        ),
        ("largest transaction", format!("{} bytes", c.max_tx_bytes)),
        ("time window", format!("{} s", c.tx_window_s)),
        ("snapshot every", format!("{} blocks", c.snapshot_interval)),
    ];
    let mut h = String::from(
        "<section class=\"card\" id=\"configuration\"><h2>Configuration in force</h2>",
    );
    h.push_str(&html::facts(&rows));
    h.push_str(
        "<h3>History</h3><ol class=\"history\" id=\"config-history\">\
         <li>sequence 0: the genesis configuration, committed to by block 0</li>",
    );
    let mut before: Option<&ChannelConfig> = None;
    for change in &snap.changes {
        w!(
            h,
            "<li>sequence {}: block <a href=\"{}\">{}</a>, {} · transaction {} · approved by {}<ul>",
            change.sequence,
            esc(&html::block_href(ch, change.block)),
            change.block,
            esc(&format::utc_ms(change.time_ms)),
            html::hash(
                &change.tx_id.to_hex(),
                Some(&html::tx_href(ch, &change.tx_id.to_hex()))
            ),
            esc(&change.approvers.join(", "))
        );
        let lines = match before {
            Some(b) => history::differences(b, &change.config),
            None => history::summary(&change.config),
        };
        for d in lines {
            w!(h, "<li>{}</li>", esc(&d));
        }
        h.push_str("</ul></li>");
        before = Some(&change.config);
    }
    h.push_str("</ol>");
    // The node counts the changes it applied; the reading says how far it got.
    let applied = status.map_or(0, |s| s.config_sequence);
    let note = if snap.changes.len() as u64 >= applied {
        match status {
            Some(s) => format!(
                "Complete: the configuration in force has hash {}.",
                html::hash(&s.config_hash.to_hex(), None)
            ),
            None => "Complete as far as known (no node answered).".into(),
        }
    } else {
        let mut n = format!(
            "Reading the chain for the node's {applied} configuration change{}: {} found, {} of {} blocks read",
            if applied == 1 { "" } else { "s" },
            snap.changes.len(),
            snap.scanned,
            height
        );
        if let Some(t) = &snap.trouble {
            w!(n, " ({})", esc(t));
        }
        n.push_str(". Reload to see more.");
        n
    };
    w!(
        h,
        "<p class=\"muted\" id=\"config-scan\">{note}</p></section>"
    );
    h
}
