//! The stylesheet, scripts and logo, compiled into the binary: the console needs no file
//! beside it and no network (air-gapped sites included).

use crate::server::Resp;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Response, StatusCode};
use sha2::{Digest, Sha256};

pub const STYLE: &str = include_str!("../assets/style.css");
/// SHA-256, the Merkle path and the block hash, mirroring tally-protocol.
pub const VERIFY: &str = include_str!("../assets/verify.js");
pub const SCRIPT: &str = include_str!("../assets/console.js");
pub const LOGO: &str = include_str!("../assets/logo.svg");

fn find(name: &str) -> Option<(&'static str, &'static str)> {
    match name {
        "style.css" => Some((STYLE, "text/css; charset=utf-8")),
        "verify.js" => Some((VERIFY, "text/javascript; charset=utf-8")),
        "console.js" => Some((SCRIPT, "text/javascript; charset=utf-8")),
        "logo.svg" => Some((LOGO, "image/svg+xml")),
        _ => None,
    }
}

/// The asset, or 304 when the browser's copy is current, or 404.
pub fn serve(name: &str, req: &HeaderMap) -> Resp {
    let Some((body, content_type)) = find(name) else {
        let mut r = Response::new(Full::new(Bytes::from_static(b"no such asset\n")).boxed_unsync());
        *r.status_mut() = StatusCode::NOT_FOUND;
        return r;
    };
    let etag = format!(
        "\"{}\"",
        &hex::encode(Sha256::digest(body.as_bytes()))[..16]
    );
    let fresh = req
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == etag);
    let mut r = if fresh {
        let mut r = Response::new(Full::new(Bytes::new()).boxed_unsync());
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        r
    } else {
        Response::new(Full::new(Bytes::from_static(body.as_bytes())).boxed_unsync())
    };
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    r
}
