//! The console's pages, one module each, and the page shown when one cannot be.

pub mod block;
pub mod blocks;
pub mod chaincodes;
pub mod channel;
pub mod consortium;
pub mod contracts;
pub mod keys;
pub mod search;
pub mod tx;
pub mod txview;

use crate::app::Page;
use crate::error::ConsoleError;
use crate::html::{esc, w};

/// The page for an error: for a channel the organization may not read, a plain statement
/// and nothing of the channel.
pub fn error(e: &ConsoleError, channel: Option<&str>) -> Page {
    let mut h = String::new();
    let title = match e {
        ConsoleError::NotMember { channel, org } => {
            w!(
                h,
                "<section class=\"card refusal\" id=\"refused\"><h1>Not a member</h1><p>Organization \
                 <strong>{}</strong> is not a member of channel <strong>{}</strong>, so its nodes \
                 refuse to show this organization anything of it.</p><p class=\"muted\">The node \
                 checked the console's signed read against the channel's member CAs. To see this \
                 channel, the channel's members must admit {} by a configuration change.</p></section>",
                esc(org),
                esc(channel),
                esc(org)
            );
            "not a member"
        }
        ConsoleError::NotReader { channel, org } => {
            w!(
                h,
                "<section class=\"card refusal\" id=\"refused\"><h1>Not a reader</h1><p>Organization \
                 <strong>{}</strong> is a member of channel <strong>{}</strong> but not one of the \
                 organizations its readers policy lets read it, so its nodes refuse to show its data.</p></section>",
                esc(org),
                esc(channel)
            );
            "not a reader"
        }
        other => {
            let heading = match other.status().as_u16() {
                404 => "Not found",
                400 => "Bad request",
                502 => "No node answered",
                _ => "Error",
            };
            w!(
                h,
                "<section class=\"card refusal\"><h1>{heading}</h1><p id=\"error\">{}</p></section>",
                esc(&other.to_string())
            );
            heading
        }
    };
    let mut p = match channel {
        // A refused channel keeps only its name in the crumbs.
        Some(ch) => Page::in_channel(ch, title, &[], h),
        None => Page::new(title, h),
    };
    p.status = e.status();
    p
}
