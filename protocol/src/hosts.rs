//! A static host table in `/etc/hosts` format, consulted before the system resolver whenever
//! a node's peer transport (or the operator, reaching another cluster's nodes) dials a
//! `host:port` address: name resolution where cluster DNS is not available (tests,
//! air-gapped hosts). `tally-node --hosts-file` and `tally-operator --hosts-file` (env
//! `TALLY_HOSTS_FILE`) install it.
//!
//! The file is re-read when it changes (modification time, size or inode: an atomic rename
//! counts), so names added while the node runs resolve at the next dial. A missing or
//! unreadable file is an empty table: every name then goes to the system resolver. Only the
//! address that is dialled changes; TLS still verifies the peer's certificate against the name
//! in the address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::SystemTime;

use std::sync::Mutex;

/// Parses `/etc/hosts` text: `<address> <name> [<alias>...]` per line, `#` starts a comment.
/// Names are matched without regard to case and to a trailing dot; when a name appears on
/// several lines the first one wins (as the C library does). Lines whose first field is no IP
/// address are skipped.
pub fn parse(text: &str) -> HashMap<String, IpAddr> {
    let mut table = HashMap::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("");
        let mut fields = line.split_whitespace();
        let Some(addr) = fields.next() else { continue };
        let Ok(ip) = addr.parse::<IpAddr>() else {
            continue;
        };
        for name in fields {
            table.entry(normalize(name)).or_insert(ip);
        }
    }
    table
}

fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// What identifies one version of the file on disk.
type Stamp = (SystemTime, u64, u64);

fn stamp(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len(), m.ino()))
}

/// A hosts file, re-read when it changes.
pub struct HostsFile {
    path: PathBuf,
    cache: Mutex<(Option<Stamp>, HashMap<String, IpAddr>)>,
}

impl HostsFile {
    pub fn new(path: impl Into<PathBuf>) -> HostsFile {
        HostsFile {
            path: path.into(),
            cache: Mutex::new((None, HashMap::new())),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The address of `name` in the file as it is now, if it lists it.
    pub fn lookup(&self, name: &str) -> Option<IpAddr> {
        let now = stamp(&self.path);
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.0 != now {
            let table = match now {
                Some(_) => match std::fs::read_to_string(&self.path) {
                    Ok(text) => parse(&text),
                    // Unreadable is empty: names go to the system resolver.
                    Err(_) => HashMap::new(),
                },
                None => HashMap::new(),
            };
            *cache = (now, table);
        }
        cache.1.get(&normalize(name)).copied()
    }
}

static GLOBAL: OnceLock<HostsFile> = OnceLock::new();

/// Makes `path` the host table of this process (once; later calls are ignored). Whether the
/// file exists yet is the caller's to report.
pub fn install(path: PathBuf) {
    let _ = GLOBAL.set(HostsFile::new(path));
}

/// The address to dial for `addr` (`host:port` or `[v6]:port`): the host replaced by its entry
/// in `table`, else `addr` unchanged (IP addresses and names the table lacks).
pub fn dial_target(addr: &str, table: Option<&HostsFile>) -> String {
    let Some(table) = table else {
        return addr.to_string();
    };
    let Some((host, port)) = addr.rsplit_once(':') else {
        return addr.to_string();
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.parse::<IpAddr>().is_ok() {
        return addr.to_string();
    }
    match (table.lookup(host), port.parse::<u16>()) {
        (Some(ip), Ok(port)) => std::net::SocketAddr::new(ip, port).to_string(),
        _ => addr.to_string(),
    }
}

/// [`dial_target`] with the table [`install`]ed in this process.
pub fn resolve(addr: &str) -> String {
    dial_target(addr, GLOBAL.get())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_aliases_comments_and_first_wins() {
        let t = parse(
            "# comment line\n\
             127.61.0.1 tally-0.tally.ns.svc.cluster.local tally-0.tally.ns.svc tally-0.tally # trailing\n\
             \n\
             127.61.0.2\tTally-1.Tally.NS.svc.cluster.local.\n\
             127.61.0.9 tally-0.tally\n\
             not-an-ip some.name\n\
             ::1 ip6-localhost\n\
             127.61.0.3\n",
        );
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            t.get("tally-0.tally.ns.svc.cluster.local"),
            Some(&ip("127.61.0.1"))
        );
        assert_eq!(t.get("tally-0.tally.ns.svc"), Some(&ip("127.61.0.1")));
        // The first line naming it wins.
        assert_eq!(t.get("tally-0.tally"), Some(&ip("127.61.0.1")));
        // Case and a trailing dot do not matter.
        assert_eq!(
            t.get("tally-1.tally.ns.svc.cluster.local"),
            Some(&ip("127.61.0.2"))
        );
        assert_eq!(t.get("ip6-localhost"), Some(&ip("::1")));
        assert!(!t.contains_key("some.name"));
        assert!(!t.contains_key("trailing"));
        assert_eq!(t.len(), 5);
    }

    #[test]
    fn dial_target_replaces_listed_hosts_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hosts");
        let table = HostsFile::new(&path);
        // No file yet: nothing changes.
        assert_eq!(dial_target("a.b:7052", Some(&table)), "a.b:7052");

        std::fs::write(&path, "127.61.0.7 a.b A.C\n").unwrap();
        assert_eq!(dial_target("a.b:7052", Some(&table)), "127.61.0.7:7052");
        assert_eq!(dial_target("a.c.:7052", Some(&table)), "127.61.0.7:7052");
        assert_eq!(dial_target("x.y:7052", Some(&table)), "x.y:7052");
        assert_eq!(dial_target("10.0.0.1:1", Some(&table)), "10.0.0.1:1");
        assert_eq!(dial_target("[::1]:1", Some(&table)), "[::1]:1");
        assert_eq!(dial_target("a.b", Some(&table)), "a.b");
        assert_eq!(dial_target("a.b:7052", None), "a.b:7052");

        // Replaced by an atomic rename: the new contents are seen at the next lookup.
        let tmp = dir.path().join("hosts.tmp");
        std::fs::write(&tmp, "127.61.0.8 a.b\n::1 v6.host\n").unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        assert_eq!(dial_target("a.b:7052", Some(&table)), "127.61.0.8:7052");
        assert_eq!(dial_target("v6.host:7052", Some(&table)), "[::1]:7052");
        assert_eq!(dial_target("a.c:7052", Some(&table)), "a.c:7052");

        std::fs::remove_file(&path).unwrap();
        assert_eq!(dial_target("a.b:7052", Some(&table)), "a.b:7052");
    }
}
