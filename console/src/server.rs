//! The HTTP side: the listener (plain or TLS, bounded), who may ask (auth.rs), which page a
//! URL is, and the headers every answer carries.

use crate::app::{App, Page, Reply};
use crate::assets;
use crate::auth::{self, Auth, Verdict};
use crate::error::ConsoleError;
use crate::html::{esc, w};
use crate::live;
use crate::pages;
use crate::query;
use crate::routes::{self, Route};
use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio_rustls::TlsAcceptor;

pub type Body = UnsyncBoxBody<Bytes, Infallible>;
pub type Resp = Response<Body>;

/// Connections served at once; more wait in the kernel's backlog.
const MAX_CONNECTIONS: usize = 256;
/// A client must send its request head within this.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// The one request with a body is the login form.
const MAX_FORM: usize = 8 * 1024;

/// Serves until `stop` turns true.
pub async fn serve(
    app: Arc<App>,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    mut stop: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.changed() => break,
        };
        let (stream, remote) = match accepted {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().acquire_owned().await else {
            break;
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let tls = tls.clone();
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let svc = service_fn(move |req| {
                let app = app.clone();
                async move { Ok::<_, Infallible>(handle(app, req).await) }
            });
            let builder = {
                let mut b = http1::Builder::new();
                b.timer(TokioTimer::new())
                    .header_read_timeout(HEADER_TIMEOUT);
                b
            };
            let result = match tls {
                Some(acceptor) => {
                    match tokio::time::timeout(HEADER_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(s)) => {
                            let conn = builder.serve_connection(TokioIo::new(s), svc);
                            tokio::select! { r = conn => r, _ = stop.changed() => Ok(()) }
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(%remote, error = %e, "TLS handshake failed");
                            Ok(())
                        }
                        Err(_) => Ok(()),
                    }
                }
                None => {
                    let conn = builder.serve_connection(TokioIo::new(stream), svc);
                    tokio::select! { r = conn => r, _ = stop.changed() => Ok(()) }
                }
            };
            if let Err(e) = result {
                tracing::debug!(%remote, error = %e, "connection ended");
            }
        });
    }
    app.history.stop();
}

fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).boxed_unsync()
}

fn respond(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Resp {
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// Headers every answer carries: no script, style or frame from anywhere else, no referrer
/// leaking a transaction id to another site, nothing cached that came from the ledger.
fn harden(mut r: Resp, cacheable: bool) -> Resp {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if !cacheable {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    r
}

fn page(app: &App, p: &Page) -> Resp {
    respond(p.status, "text/html; charset=utf-8", app.render(p))
}

fn redirect(location: &str) -> Resp {
    let mut r = respond(StatusCode::SEE_OTHER, "text/plain; charset=utf-8", "");
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

fn wants_html(req: &Request<Incoming>) -> bool {
    req.headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"))
}

/// The login form (token mode), with an optional complaint.
fn login_page(app: &App, next: &str, complaint: Option<&str>, status: StatusCode) -> Resp {
    let mut h = String::new();
    w!(
        h,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" \
         content=\"width=device-width, initial-scale=1\"><title>Sign in · {t}</title>\
         <link rel=\"stylesheet\" href=\"/assets/style.css\"></head><body class=\"login\">\
         <form class=\"card login\" method=\"post\" action=\"/login\"><h1><img src=\"/assets/logo.svg\" alt=\"\"> {t}</h1>\
         <p class=\"muted\">This console reads the ledger as one organization. Paste its access token \
         (from the console's Secret) to continue.</p>",
        t = esc(&app.title)
    );
    if let Some(c) = complaint {
        w!(h, "<p class=\"alert\" id=\"login-error\">{}</p>", esc(c));
    }
    w!(
        h,
        "<input type=\"hidden\" name=\"next\" value=\"{}\"><input type=\"password\" name=\"token\" \
         id=\"token\" autocomplete=\"current-password\" placeholder=\"access token\" autofocus required>\
         <button type=\"submit\">Sign in</button></form></body></html>",
        esc(next)
    );
    respond(status, "text/html; charset=utf-8", h)
}

async fn login(app: &App, req: Request<Incoming>) -> Resp {
    let Auth::Token(token) = &app.auth else {
        return redirect("/");
    };
    if req.method() != Method::POST {
        let next = query::get(req.uri().query(), "next").unwrap_or_else(|| "/".into());
        return login_page(app, &auth::safe_next(&next), None, StatusCode::OK);
    }
    let body = match Limited::new(req.into_body(), MAX_FORM).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return respond(
                StatusCode::PAYLOAD_TOO_LARGE,
                "text/plain; charset=utf-8",
                "form too large\n",
            )
        }
    };
    let form = query::pairs(&String::from_utf8_lossy(&body));
    let field = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let next = auth::safe_next(field("next").unwrap_or("/"));
    if !field("token").is_some_and(|t| token.matches(t)) {
        tracing::warn!("console login with a wrong token");
        return login_page(
            app,
            &next,
            Some("That is not this console's token."),
            StatusCode::UNAUTHORIZED,
        );
    }
    let mut r = redirect(&next);
    let cookie = format!(
        "{}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age=43200{}",
        auth::COOKIE_NAME,
        token.session(),
        if app.tls { "; Secure" } else { "" }
    );
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

/// One request, start to end.
pub async fn handle(app: Arc<App>, req: Request<Incoming>) -> Resp {
    let path = req.uri().path().to_string();
    let route = routes::parse(&path, req.uri().query());
    let method = req.method().clone();
    let allowed = method == Method::GET
        || method == Method::HEAD
        || (method == Method::POST && route == Route::Login);
    if !allowed {
        let mut r = respond(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            "the console is read-only\n",
        );
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return harden(r, false);
    }
    // Health and the static assets hold nothing read with the identity.
    match &route {
        Route::Health => {
            return harden(
                respond(StatusCode::OK, "text/plain; charset=utf-8", "ok\n"),
                false,
            )
        }
        Route::Asset(name) => return harden(assets::serve(name, req.headers()), true),
        _ => {}
    }
    match app.auth.check(req.headers()) {
        Verdict::Allowed => {}
        Verdict::WrongHost => {
            tracing::warn!(host = ?req.headers().get(header::HOST), "request under a name that is not loopback refused");
            return harden(
                respond(
                    StatusCode::MISDIRECTED_REQUEST,
                    "text/plain; charset=utf-8",
                    "this console has no login and answers only as 127.0.0.1 or localhost\n",
                ),
                false,
            );
        }
        Verdict::LoginNeeded if route == Route::Login => {}
        Verdict::LoginNeeded => {
            let next = match req.uri().query() {
                Some(q) => format!("{path}?{q}"),
                None => path.clone(),
            };
            let r = if wants_html(&req) {
                login_page(
                    &app,
                    &auth::safe_next(&next),
                    None,
                    StatusCode::UNAUTHORIZED,
                )
            } else {
                let mut r = respond(
                    StatusCode::UNAUTHORIZED,
                    "text/plain; charset=utf-8",
                    "a bearer token is required\n",
                );
                r.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"tally-console\""),
                );
                r
            };
            return harden(r, false);
        }
    }
    if route == Route::Login {
        return harden(login(&app, req).await, false);
    }
    let last_event = req
        .headers()
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let started = std::time::Instant::now();
    let r = dispatch(&app, &route, last_event).await;
    tracing::debug!(%path, status = r.status().as_u16(), ms = started.elapsed().as_millis() as u64, "served");
    harden(r, false)
}

async fn dispatch(app: &Arc<App>, route: &Route, last_event: Option<u64>) -> Resp {
    if let Route::Live { ch, from } = route {
        // After a reconnect the browser names the last block it got.
        let from = last_event.map(|n| n + 1).or(*from).unwrap_or(0);
        return match live::events(app.clone(), ch.clone(), from).await {
            Ok(events) => {
                let body = StreamBody::new(events.map(|b| Ok::<_, Infallible>(Frame::data(b))));
                let mut r = Response::new(BodyExt::boxed_unsync(body));
                let h = r.headers_mut();
                h.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/event-stream"),
                );
                h.insert("x-accel-buffering", HeaderValue::from_static("no"));
                r
            }
            Err(e) => respond(e.status(), "text/plain; charset=utf-8", format!("{e}\n")),
        };
    }
    let result: Result<Reply, ConsoleError> = match route {
        Route::Consortium => Ok(pages::consortium::page(app).await),
        Route::Channel(ch) => pages::channel::page(app, ch).await,
        Route::Blocks { ch, before } => pages::blocks::older(app, ch, *before).await,
        Route::Block { ch, n } => pages::block::page(app, ch, *n).await,
        Route::Tx { ch, id } => pages::tx::page(app, ch, id).await,
        Route::Keys { ch, prefix } => pages::keys::list(app, ch, prefix).await,
        Route::Key { ch, key } => pages::keys::key(app, ch, key).await,
        Route::Chaincodes(ch) => pages::chaincodes::page(app, ch).await,
        Route::Trace { ch, cc, id } => pages::contracts::trace(app, ch, cc, id.as_deref()).await,
        Route::Notary { ch, cc } => pages::contracts::notary(app, ch, cc).await,
        Route::NotaryLookup { ch, cc, hash } => pages::contracts::notary_lookup(app, ch, cc, hash)
            .await
            .or_else(|e| {
                Ok(Reply::Json(
                    e.status(),
                    serde_json::json!({"error": e.to_string()}),
                ))
            }),
        Route::Search { q, channel } => pages::search::page(app, q, channel.as_deref()).await,
        Route::NotFound => Err(ConsoleError::NotFound("there is no such page".into())),
        Route::Health | Route::Asset(_) | Route::Login | Route::Live { .. } => {
            Err(ConsoleError::NotFound("there is no such page".into()))
        }
    };
    match result {
        Ok(Reply::Page(p)) => page(app, &p),
        Ok(Reply::Redirect(to)) => redirect(&to),
        Ok(Reply::Json(status, v)) => respond(status, "application/json", v.to_string()),
        Err(e) => {
            if e.status().is_server_error() {
                tracing::warn!(error = %e, "page failed");
            }
            page(app, &pages::error(&e, route.channel()))
        }
    }
}
