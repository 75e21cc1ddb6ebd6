//! The few pieces every page is made of: escaping, the page frame, links and JSON islands.
//!
//! Pages are plain strings built with `write!`; everything that comes from the ledger goes
//! through [`esc`] (text and attribute values alike), so a key, a chaincode result or an
//! organization name can never become markup.

use std::fmt::{self, Display, Write};
use tally_client::client::percent_encode;

/// `write!` into a `String`, which cannot fail.
macro_rules! w {
    ($dst:expr, $($arg:tt)*) => {{
        let _ = std::fmt::Write::write_fmt(&mut $dst, format_args!($($arg)*));
    }};
}
pub(crate) use w;

/// Text escaped for HTML element content and quoted attribute values.
pub struct Esc<'a>(pub &'a str);

impl Display for Esc<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut last = 0;
        for (i, c) in self.0.char_indices() {
            let rep = match c {
                '&' => "&amp;",
                '<' => "&lt;",
                '>' => "&gt;",
                '"' => "&quot;",
                '\'' => "&#39;",
                _ => continue,
            };
            f.write_str(&self.0[last..i])?;
            f.write_str(rep)?;
            last = i + c.len_utf8();
        }
        f.write_str(&self.0[last..])
    }
}

pub fn esc(s: &str) -> Esc<'_> {
    Esc(s)
}

/// A path segment or query value, percent-encoded (then safe in an attribute as it is).
pub fn enc(s: &str) -> String {
    percent_encode(s)
}

/// A JSON value for the page's scripts: `<script type="application/json">` is not executed,
/// and escaping `<`, `>` and `&` keeps the value from closing the element whatever it holds.
pub fn json_island(id: &str, value: &serde_json::Value) -> String {
    let json = value
        .to_string()
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026");
    format!(
        "<script type=\"application/json\" id=\"{}\">{json}</script>",
        esc(id)
    )
}

/// What every page shows around its content.
pub struct Chrome<'a> {
    /// Consortium or console title.
    pub title: &'a str,
    /// The organization whose identity the console reads with.
    pub org: &'a str,
    /// The identity's common name (`client`).
    pub who: &'a str,
    /// The channel the page is about, for the search box and the navigation.
    pub channel: Option<&'a str>,
}

/// A whole document: head, top bar with the search box, breadcrumbs, content.
pub fn page(
    chrome: &Chrome<'_>,
    title: &str,
    crumbs: &[(String, String)],
    content: &str,
) -> String {
    let mut h = String::with_capacity(content.len() + 2048);
    let _ = write!(
        h,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} · {}</title>\
         <link rel=\"icon\" href=\"/assets/logo.svg\" type=\"image/svg+xml\">\
         <link rel=\"stylesheet\" href=\"/assets/style.css\">\
         <script src=\"/assets/verify.js\" defer></script>\
         <script src=\"/assets/console.js\" defer></script></head><body>",
        esc(title),
        esc(chrome.title)
    );
    let _ = write!(
        h,
        "<header class=\"top\"><a class=\"brand\" href=\"/\"><img src=\"/assets/logo.svg\" alt=\"\">\
         <span>{}</span></a>\
         <form class=\"search\" action=\"/search\" method=\"get\" role=\"search\">",
        esc(chrome.title)
    );
    if let Some(ch) = chrome.channel {
        let _ = write!(
            h,
            "<input type=\"hidden\" name=\"channel\" value=\"{}\">",
            esc(ch)
        );
    }
    let _ = write!(
        h,
        "<input type=\"search\" name=\"q\" id=\"q\" placeholder=\"Transaction id, block number or key\" \
         aria-label=\"Search\" autocomplete=\"off\"><button type=\"submit\">Search</button></form>\
         <span class=\"who\" title=\"Every read is signed with this identity; the nodes show it only what its organization may read\">\
         <span class=\"dot\"></span>{} <span class=\"muted\">· {} · read-only</span></span></header>",
        esc(chrome.org),
        esc(chrome.who)
    );
    h.push_str("<nav class=\"crumbs\"><a href=\"/\">Consortium</a>");
    for (label, href) in crumbs {
        if href.is_empty() {
            let _ = write!(h, "<span>{}</span>", esc(label));
        } else {
            let _ = write!(h, "<a href=\"{}\">{}</a>", esc(href), esc(label));
        }
    }
    h.push_str("</nav><main>");
    h.push_str(content);
    h.push_str(
        "</main><footer>Tally console · read-only · every value read with a signed request \
         and checked by the page where a proof exists</footer></body></html>",
    );
    h
}

/// The crumbs of a page inside channel `ch`: the channel, then `rest`.
pub fn channel_crumbs(ch: &str, rest: &[(String, String)]) -> Vec<(String, String)> {
    let mut v = vec![(format!("channel {ch}"), channel_href(ch))];
    v.extend_from_slice(rest);
    v
}

pub fn channel_href(ch: &str) -> String {
    format!("/channels/{}", enc(ch))
}

pub fn block_href(ch: &str, n: u64) -> String {
    format!("/channels/{}/blocks/{n}", enc(ch))
}

pub fn tx_href(ch: &str, id: &str) -> String {
    format!("/channels/{}/tx/{}", enc(ch), enc(id))
}

pub fn key_href(ch: &str, key: &str) -> String {
    format!("/channels/{}/key?k={}", enc(ch), enc(key))
}

/// A hash shown by its first 12 digits, whole in the tooltip, linking to `href` if given.
pub fn hash(h: &str, href: Option<&str>) -> String {
    let short = h.get(..12).unwrap_or(h);
    match href {
        Some(href) => format!(
            "<a class=\"hash\" href=\"{}\" title=\"{}\">{}</a>",
            esc(href),
            esc(h),
            esc(short)
        ),
        None => format!(
            "<code class=\"hash\" title=\"{}\">{}</code>",
            esc(h),
            esc(short)
        ),
    }
}

/// A coloured label: `ok`, `bad`, `warn` or `info`.
pub fn pill(class: &str, text: &str) -> String {
    format!("<span class=\"pill {}\">{}</span>", esc(class), esc(text))
}

/// A certificate's expiry as a label: the date, with the distance shown when it is near and
/// in the tooltip always.
pub fn expiry(e: &crate::format::Expiry) -> String {
    let text = if e.class == "ok" {
        e.date.clone()
    } else {
        format!("{} ({})", e.date, e.distance)
    };
    format!(
        "<span class=\"pill {}\" title=\"{}\">{}</span>",
        esc(e.class),
        esc(&e.distance),
        esc(&text)
    )
}

/// A definition list from label/HTML pairs.
pub fn facts(rows: &[(&str, String)]) -> String {
    let mut h = String::from("<dl class=\"facts\">");
    for (k, v) in rows {
        let _ = write!(h, "<dt>{}</dt><dd>{v}</dd>", esc(k));
    }
    h.push_str("</dl>");
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_covers_markup_and_quotes() {
        assert_eq!(
            esc("<a href=\"x\">Tom & 'Jerry'</a>").to_string(),
            "&lt;a href=&quot;x&quot;&gt;Tom &amp; &#39;Jerry&#39;&lt;/a&gt;"
        );
        assert_eq!(esc("货物 plain").to_string(), "货物 plain");
    }

    #[test]
    fn json_islands_cannot_close_their_element() {
        let v = serde_json::json!({"k": "</script><script>alert(1)</script>&"});
        let s = json_island("x", &v);
        assert_eq!(s.matches("</script>").count(), 1, "{s}");
        let inner = &s[s.find('>').unwrap() + 1..s.rfind("</script>").unwrap()];
        let back: serde_json::Value = serde_json::from_str(inner).unwrap();
        assert_eq!(back, v);
    }
}
