//! What every handler shares: the ledger as the organization reads it, the node probe, and
//! the page frame; and what a handler answers.

use crate::auth::Auth;
use crate::history::Histories;
use crate::html::{self, Chrome};
use crate::ledger::Ledger;
use crate::probe::Probe;
use hyper::StatusCode;

pub struct App {
    pub ledger: Ledger,
    pub probe: Probe,
    /// Shown in the top bar and every title (the consortium's name).
    pub title: String,
    pub auth: Auth,
    /// Served over TLS: the session cookie gets `Secure`.
    pub tls: bool,
    /// Configuration changes of the channels shown so far.
    pub history: Histories,
}

/// A page's content and where it sits.
pub struct Page {
    pub status: StatusCode,
    pub title: String,
    /// The channel the page is about (scopes the search box).
    pub channel: Option<String>,
    /// Breadcrumbs after "Consortium": label and link (empty: the current page).
    pub crumbs: Vec<(String, String)>,
    pub content: String,
}

impl Page {
    pub fn new(title: impl Into<String>, content: String) -> Page {
        Page {
            status: StatusCode::OK,
            title: title.into(),
            channel: None,
            crumbs: Vec::new(),
            content,
        }
    }

    /// A page inside channel `ch`, with crumbs after the channel's.
    pub fn in_channel(
        ch: &str,
        title: impl Into<String>,
        crumbs: &[(String, String)],
        content: String,
    ) -> Page {
        let title = title.into();
        let mut rest = crumbs.to_vec();
        if rest.is_empty() && !title.is_empty() {
            rest.push((title.clone(), String::new()));
        }
        Page {
            status: StatusCode::OK,
            title: format!("{title} · {ch}"),
            channel: Some(ch.to_string()),
            crumbs: html::channel_crumbs(ch, &rest),
            content,
        }
    }
}

/// What a handler answers.
pub enum Reply {
    Page(Page),
    /// 303 to a path of this console.
    Redirect(String),
    Json(StatusCode, serde_json::Value),
}

impl App {
    pub fn chrome<'a>(&'a self, channel: Option<&'a str>) -> Chrome<'a> {
        Chrome {
            title: &self.title,
            org: self.ledger.org(),
            who: &self.ledger.identity().info.common_name,
            channel,
        }
    }

    /// The whole document of a page.
    pub fn render(&self, p: &Page) -> String {
        html::page(
            &self.chrome(p.channel.as_deref()),
            &p.title,
            &p.crumbs,
            &p.content,
        )
    }
}
