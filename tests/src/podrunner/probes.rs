//! Probes.

use super::*;

pub(super) struct Probes {
    pub(super) t0: Instant,
    pub(super) started: bool,
    pub(super) ready: bool,
    pub(super) startup_failures: u32,
    pub(super) ready_failures: u32,
    pub(super) live_failures: u32,
    pub(super) last_live: Option<Instant>,
}

#[derive(Default)]
pub(super) struct Verdict {
    /// Restart the container, for this reason.
    pub(super) kill: Option<String>,
}

pub(super) fn secs(v: Option<i32>, default: i32) -> u64 {
    v.unwrap_or(default).max(0) as u64
}

impl Probes {
    pub(super) fn new(c: &Container) -> Probes {
        Probes {
            t0: Instant::now(),
            started: c.startup_probe.is_none(),
            ready: c.readiness_probe.is_none(),
            startup_failures: 0,
            ready_failures: 0,
            live_failures: 0,
            last_live: None,
        }
    }

    /// Called about once a second.
    pub(super) async fn step(&mut self, c: &Container, ip: Ipv4Addr) -> Verdict {
        let up = self.t0.elapsed();
        let due = |p: &Probe| up >= Duration::from_secs(secs(p.initial_delay_seconds, 0));
        if !self.started {
            let Some(p) = &c.startup_probe else {
                self.started = true;
                return Verdict::default();
            };
            if !due(p) {
                return Verdict::default();
            }
            match probe(p, c, ip).await {
                Ok(()) => self.started = true,
                Err(e) => {
                    self.startup_failures += 1;
                    // Polled each second: allow failureThreshold × periodSeconds of them.
                    let allowed = secs(p.failure_threshold, 3) * secs(p.period_seconds, 10).max(1);
                    if u64::from(self.startup_failures) >= allowed {
                        return Verdict {
                            kill: Some(format!("Startup probe failed: {e}")),
                        };
                    }
                    return Verdict::default();
                }
            }
        }
        if let Some(p) = &c.readiness_probe {
            if due(p) {
                match probe(p, c, ip).await {
                    Ok(()) => {
                        self.ready = true;
                        self.ready_failures = 0;
                    }
                    Err(_) => {
                        self.ready_failures += 1;
                        if u64::from(self.ready_failures) >= secs(p.failure_threshold, 3).max(1) {
                            self.ready = false;
                        }
                    }
                }
            }
        }
        if let Some(p) = &c.liveness_probe {
            let period = Duration::from_secs(secs(p.period_seconds, 10).clamp(1, 10));
            if due(p) && self.last_live.is_none_or(|t| t.elapsed() >= period) {
                self.last_live = Some(Instant::now());
                match probe(p, c, ip).await {
                    Ok(()) => self.live_failures = 0,
                    Err(e) => {
                        self.live_failures += 1;
                        if u64::from(self.live_failures) >= secs(p.failure_threshold, 3).max(1) {
                            return Verdict {
                                kill: Some(format!("Liveness probe failed: {e}")),
                            };
                        }
                    }
                }
            }
        }
        Verdict::default()
    }
}

pub(super) fn probe_port(port: &IntOrString, c: &Container) -> Result<u16, String> {
    let n = match port {
        IntOrString::Int(n) => *n,
        IntOrString::String(s) => match s.parse::<i32>() {
            Ok(n) => n,
            Err(_) => c
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(s.as_str()))
                .map(|p| p.container_port)
                .ok_or_else(|| format!("the container has no port named {s:?}"))?,
        },
    };
    u16::try_from(n).map_err(|_| format!("bad port {n}"))
}

pub(super) async fn tcp_check(host: &str, port: u16, timeout: Duration) -> Result<(), String> {
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect((host, port))).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("dial tcp {host}:{port}: {e}")),
        Err(_) => Err(format!("dial tcp {host}:{port}: timeout")),
    }
}

/// One probe against the pod's address.
pub(super) async fn probe(p: &Probe, c: &Container, ip: Ipv4Addr) -> Result<(), String> {
    let timeout = Duration::from_secs(secs(p.timeout_seconds, 1).max(1));
    let ip = ip.to_string();
    if let Some(h) = &p.http_get {
        let port = probe_port(&h.port, c)?;
        let host = h.host.clone().filter(|h| !h.is_empty()).unwrap_or(ip);
        // Like the kubelet, an HTTPS probe does not verify the server's certificate.
        let scheme = match h.scheme.as_deref() {
            Some("HTTPS") => "https",
            _ => "http",
        };
        let mut path = h.path.clone().unwrap_or_default();
        if !path.starts_with('/') {
            path.insert(0, '/');
        }
        let url = format!("{scheme}://{host}:{port}{path}");
        let headers: Vec<(&str, String)> = h
            .http_headers
            .iter()
            .flatten()
            .map(|x| (x.name.as_str(), x.value.clone()))
            .collect();
        let get = crate::http::request_with("GET", &url, None, &headers, bytes::Bytes::new());
        return match tokio::time::timeout(timeout, get).await {
            Ok(Ok((status, _))) if (200..400).contains(&status) => Ok(()),
            Ok(Ok((status, _))) => Err(format!("HTTP probe failed with statuscode: {status}")),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(format!("GET {url}: timeout")),
        };
    }
    if let Some(t) = &p.tcp_socket {
        let port = probe_port(&t.port, c)?;
        let host = t.host.clone().filter(|h| !h.is_empty()).unwrap_or(ip);
        return tcp_check(&host, port, timeout).await;
    }
    if let Some(g) = &p.grpc {
        let port = u16::try_from(g.port).map_err(|_| format!("bad port {}", g.port))?;
        return tcp_check(&ip, port, timeout).await;
    }
    // exec probes are not run: there is no container to run them in.
    Ok(())
}
