//! Environment variables, `$(VAR)` expansion and the files that stand for volumes.

use super::*;

/// Environment variables in definition order.
#[derive(Default)]
pub(super) struct Env {
    pub(super) order: Vec<String>,
    pub(super) map: HashMap<String, String>,
}

impl Env {
    pub(super) fn set(&mut self, k: &str, v: String) {
        if self.map.insert(k.to_string(), v).is_none() {
            self.order.push(k.to_string());
        }
    }
}

/// The kubelet's `$(VAR)` expansion: `$(NAME)` becomes the variable's value when it is
/// defined and stays as written when not; `$$` is a literal `$`.
pub(super) fn expand(s: &str, vars: &HashMap<String, String>) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(r) = after.strip_prefix('$') {
            out.push('$');
            rest = r;
        } else if let Some(r) = after.strip_prefix('(') {
            match r.find(')') {
                Some(end) => {
                    let name = &r[..end];
                    match vars.get(name) {
                        Some(v) => out.push_str(v),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &r[end + 1..];
                }
                None => {
                    out.push_str("$(");
                    rest = r;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// Replaces each mount path (`mounts` sorted longest first) that starts a path in `s` (at
/// its start, or after `=`, `:`, `,`, `;`, a quote or white space) and ends at a `/` or where
/// the path ends, by the folder standing for it.
pub(super) fn rewrite_paths(s: &str, mounts: &[(String, PathBuf)]) -> String {
    let is_sep = |c: char| matches!(c, '=' | ':' | ',' | ';' | '"' | '\'') || c.is_whitespace();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    let mut prev: Option<char> = None;
    while i < s.len() {
        let rest = &s[i..];
        if rest.starts_with('/') && prev.is_none_or(is_sep) {
            let hit = mounts.iter().find(|(mp, _)| {
                rest.starts_with(mp.as_str())
                    && rest[mp.len()..]
                        .chars()
                        .next()
                        .is_none_or(|c| c == '/' || is_sep(c))
            });
            if let Some((mp, target)) = hit {
                out.push_str(&target.display().to_string());
                i += mp.len();
                prev = mp.chars().last();
                continue;
            }
        }
        let Some(c) = rest.chars().next() else { break };
        out.push(c);
        prev = Some(c);
        i += c.len_utf8();
    }
    out
}

pub(super) struct VolFile {
    pub(super) path: String,
    pub(super) data: Vec<u8>,
    pub(super) mode: i32,
}

/// The files of a configMap or secret source: every key, or the listed `items` (a missing key
/// is an error, returned as the key, unless the source is optional).
pub(super) fn select_items(
    all: BTreeMap<String, Vec<u8>>,
    items: Option<&[KeyToPath]>,
    optional: bool,
    mode: i32,
) -> Result<Vec<VolFile>, String> {
    match items {
        None => Ok(all
            .into_iter()
            .map(|(k, data)| VolFile {
                path: k,
                data,
                mode,
            })
            .collect()),
        Some(items) => {
            let mut out = Vec::new();
            for it in items {
                match all.get(&it.key) {
                    Some(data) => out.push(VolFile {
                        path: it.path.clone(),
                        data: data.clone(),
                        mode: it.mode.unwrap_or(mode),
                    }),
                    None if optional => {}
                    None => return Err(it.key.clone()),
                }
            }
            Ok(out)
        }
    }
}

/// Makes `dir` hold exactly `files` (rewriting only what changed, each by a rename).
pub(super) fn write_files(dir: &Path, files: &[VolFile]) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)?;
    let mut keep = HashSet::new();
    for f in files {
        let rel = Path::new(&f.path);
        if rel
            .components()
            .any(|c| !matches!(c, std::path::Component::Normal(_)))
        {
            return Err(std::io::Error::other(format!("bad file path {:?}", f.path)));
        }
        let p = dir.join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)?;
        }
        if std::fs::read(&p).ok().as_deref() != Some(f.data.as_slice()) {
            write_atomic(&p, &f.data)?;
        }
        let mode = (f.mode as u32) & 0o777;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode))?;
        keep.insert(p);
    }
    remove_others(dir, &keep)
}

pub(super) fn remove_others(dir: &Path, keep: &HashSet<PathBuf>) -> std::io::Result<()> {
    for e in std::fs::read_dir(dir)? {
        let p = e?.path();
        if p.is_dir() {
            remove_others(&p, keep)?;
            if std::fs::read_dir(&p)?.next().is_none() {
                std::fs::remove_dir(&p)?;
            }
        } else if !keep.contains(&p) {
            std::fs::remove_file(&p)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(kv: &[(&str, &str)]) -> HashMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn expansion_follows_the_kubelet() {
        let v = vars(&[("POD_IP", "127.61.0.1"), ("NAME", "tally-0")]);
        assert_eq!(expand("$(POD_IP):7051", &v), "127.61.0.1:7051");
        assert_eq!(
            expand("/etc/tally/tls/$(NAME)/tls.crt", &v),
            "/etc/tally/tls/tally-0/tls.crt"
        );
        assert_eq!(expand("$(MISSING)-x", &v), "$(MISSING)-x");
        assert_eq!(expand("$$(NAME)", &v), "$(NAME)");
        assert_eq!(expand("a$b$", &v), "a$b$");
        assert_eq!(expand("$(NAME", &v), "$(NAME");
        assert_eq!(expand("é$(NAME)é", &v), "étally-0é");
    }

    #[test]
    fn mount_paths_are_rewritten_at_path_starts_only() {
        let mounts = vec![
            (
                "/etc/tally/config".to_string(),
                PathBuf::from("/r/v/config"),
            ),
            ("/etc/tally".to_string(), PathBuf::from("/r/v/tally")),
            ("/var/lib/tally".to_string(), PathBuf::from("/r/pvc/data-0")),
        ];
        let r = |s: &str| rewrite_paths(s, &mounts);
        assert_eq!(r("/etc/tally/config/ca.pem"), "/r/v/config/ca.pem");
        assert_eq!(r("/etc/tally/tls/a/tls.crt"), "/r/v/tally/tls/a/tls.crt");
        assert_eq!(
            r("--cert=/etc/tally/tls/x.crt"),
            "--cert=/r/v/tally/tls/x.crt"
        );
        assert_eq!(r("/var/lib/tally"), "/r/pvc/data-0");
        assert_eq!(r("/var/lib/tally/data"), "/r/pvc/data-0/data");
        assert_eq!(r("/var/lib/tallyx/data"), "/var/lib/tallyx/data");
        assert_eq!(r("/opt/etc/tally/x"), "/opt/etc/tally/x");
        assert_eq!(
            r("a:/etc/tally,b /var/lib/tally"),
            "a:/r/v/tally,b /r/pvc/data-0"
        );
        assert_eq!(r("127.61.0.1:7051"), "127.61.0.1:7051");
    }

    #[test]
    fn items_select_and_refuse() {
        let all: BTreeMap<String, Vec<u8>> = [("a".to_string(), b"1".to_vec())].into();
        let item = |k: &str, p: &str| KeyToPath {
            key: k.to_string(),
            path: p.to_string(),
            mode: None,
        };
        let files = select_items(all.clone(), None, false, 0o644).unwrap();
        assert_eq!(files.len(), 1);
        let files = select_items(all.clone(), Some(&[item("a", "x/y")]), false, 0o600).unwrap();
        assert_eq!((files[0].path.as_str(), files[0].mode), ("x/y", 0o600));
        assert_eq!(
            select_items(all.clone(), Some(&[item("b", "b")]), false, 0o644).err(),
            Some("b".to_string())
        );
        assert!(select_items(all, Some(&[item("b", "b")]), true, 0o644)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn write_files_keeps_exactly_the_desired_files() {
        let dir = tempfile::tempdir().unwrap();
        let f = |p: &str, d: &str| VolFile {
            path: p.to_string(),
            data: d.as_bytes().to_vec(),
            mode: 0o600,
        };
        write_files(dir.path(), &[f("a", "1"), f("s/b", "2")]).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("s/b")).unwrap(),
            "2"
        );
        write_files(dir.path(), &[f("a", "3")]).unwrap();
        assert_eq!(std::fs::read_to_string(dir.path().join("a")).unwrap(), "3");
        assert!(!dir.path().join("s").exists());
        assert!(write_files(dir.path(), &[f("../x", "1")]).is_err());
    }
}
