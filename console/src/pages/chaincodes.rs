//! Chaincode definitions of a channel: the committed one with the organizations that approved
//! it, and definitions waiting for approvals.

use crate::app::{App, Page, Reply};
use crate::error::ConsoleError;
use crate::format;
use crate::html::{self, esc, w};
use crate::pages::contracts::views_of;
use tally_protocol::chaincode::ChaincodeDefinition;

fn definition(d: &ChaincodeDefinition) -> String {
    let init = match &d.init {
        Some(i) => format!(
            "<code>{}({})</code>",
            esc(&i.function),
            esc(&format::args(&i.args))
        ),
        None => "none".into(),
    };
    html::facts(&[
        ("version", esc(&d.version).to_string()),
        ("sequence", d.sequence.to_string()),
        (
            "module sha256",
            format!("<code class=\"full\">{}</code>", d.module_hash),
        ),
        ("init call", init),
    ])
}

/// Every member with whether it approved.
fn approvals(members: &[String], approved: &[String]) -> String {
    let mut h = String::from("<ul class=\"approvals\">");
    for m in members {
        if approved.contains(m) {
            w!(h, "<li class=\"yes\">{} ✓</li>", esc(m));
        } else {
            w!(h, "<li class=\"no\">{} —</li>", esc(m));
        }
    }
    h.push_str("</ul>");
    h
}

pub async fn page(app: &App, ch: &str) -> Result<Reply, ConsoleError> {
    // The list is open on the node, so a signed read of the channel comes first: the page is
    // only for organizations that may read the channel.
    app.ledger.check_reader(ch).await?;
    let list = app
        .ledger
        .read(ch, |c| async move { c.chaincodes(ch).await })
        .await?;
    let topo = app.ledger.topology().await;
    let members: Vec<String> = topo
        .channels
        .get(ch)
        .map(|e| e.config.members.iter().map(|m| m.name.clone()).collect())
        .unwrap_or_default();
    let mut h = String::new();
    if list.is_empty() {
        h.push_str("<section class=\"card\"><h1>Chaincodes</h1><p class=\"muted\">No chaincode is installed on this channel.</p></section>");
    }
    for c in &list {
        w!(
            h,
            "<section class=\"card\" id=\"cc-{}\"><h1>{}</h1>",
            esc(&c.name),
            esc(&c.name)
        );
        match &c.active {
            Some(d) => {
                h.push_str(&html::pill("ok", "committed"));
                h.push_str(&definition(d));
                h.push_str("<h3>Approved by</h3>");
                h.push_str(&approvals(&members, &c.approvals));
                let views = views_of(ch, c);
                if !views.is_empty() {
                    h.push_str("<p>");
                    for (label, href) in views {
                        w!(
                            h,
                            "<a class=\"button\" href=\"{}\">{}</a> ",
                            esc(&href),
                            esc(label)
                        );
                    }
                    h.push_str("</p>");
                }
            }
            None => h.push_str(&html::pill("warn", "not committed yet")),
        }
        for p in &c.pending {
            w!(
                h,
                "<div class=\"pending\"><h3>Waiting for approvals: sequence {} ({} of {} needed)</h3>",
                p.definition.sequence,
                p.approvals.len(),
                p.needed
            );
            h.push_str(&definition(&p.definition));
            h.push_str(&approvals(&members, &p.approvals));
            h.push_str("</div>");
        }
        h.push_str("</section>");
    }
    Ok(Reply::Page(Page::in_channel(ch, "chaincodes", &[], h)))
}
