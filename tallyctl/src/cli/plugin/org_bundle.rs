//! `kubectl tally org export|import`: an organization's public bundle (CA certificates, nodes
//! with Raft ids and reachable addresses; never a key) written from one cluster and turned
//! into an external member of a Consortium in another. `org create|issue|...` are tallyctl's.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use tally_api::bundle::OrganizationBundle;
use tally_api::cluster;
use tally_api::consortium::{Approvals, CaMode, Consortium, Organization};
use tally_api::peer::Peer;

#[derive(Subcommand, Debug)]
pub enum OrgCmd {
    /// Write ORG's public bundle for members in other clusters: its CA certificates and its
    /// nodes' Raft ids and reachable addresses (from the Peers' status). No key is included.
    Export(ExportArgs),
    /// Add (or update) the organization of a bundle as a member whose nodes run elsewhere:
    /// a Secret with its CA certificate and an entry in `spec.organizations` with
    /// `ca.mode: Secret`, `approvals: External` and its nodes as `externalPeers`.
    Import(ImportArgs),
    /// tallyctl's other `org` commands (create, issue, revoke, add-ca, remove-ca).
    #[command(external_subcommand)]
    Tallyctl(Vec<OsString>),
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// The organization.
    org: String,
    /// The Consortium; the only one in the namespace when absent.
    #[arg(long)]
    consortium: Option<String>,
    #[arg(long, short = 'o', value_enum, default_value_t = BundleFormat::Yaml)]
    output: BundleFormat,
    /// Write the bundle to FILE instead of standard output.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Export Peers without `spec.exposure` too: their addresses are cluster-internal, so
    /// only members that can resolve and reach this cluster's Service names can use them.
    #[arg(long)]
    allow_internal: bool,
}

#[derive(Args, Debug)]
pub struct ImportArgs {
    /// The bundle (YAML or JSON) that `org export` wrote.
    file: PathBuf,
    /// The Consortium; the only one in the namespace when absent.
    #[arg(long)]
    consortium: Option<String>,
    /// Print the Secret and the organization entry that would be written; change nothing.
    #[arg(long)]
    dry_run: bool,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum BundleFormat {
    Yaml,
    Json,
}

/// The Secret an imported organization's CA certificate goes to. Not the operator's own
/// `<consortium>-<org>-ca` (which holds a generated CA's key): this one never holds a key,
/// and the suffix says so to whoever lists Secrets.
pub fn public_ca_secret(consortium: &str, org: &str) -> String {
    format!("{consortium}-{org}-ca-public")
}

const MANAGER: &str = "kubectl-tally";

/// The Consortium named, or the only one of the namespace.
pub fn choose_consortium(
    all: Vec<Consortium>,
    wanted: Option<&str>,
    ns: &str,
) -> Result<Consortium> {
    let names: Vec<String> = all.iter().filter_map(|c| c.metadata.name.clone()).collect();
    let listed = || {
        if names.is_empty() {
            "none".to_string()
        } else {
            names.join(", ")
        }
    };
    match wanted {
        Some(w) => match all.iter().find(|c| c.metadata.name.as_deref() == Some(w)) {
            Some(c) => Ok(c.clone()),
            None => bail!(
                "no Consortium {w:?} in namespace {ns} (there: {})",
                listed()
            ),
        },
        None if all.len() == 1 => Ok(all.into_iter().next().expect("one")),
        None if all.is_empty() => bail!("no Consortium in namespace {ns}"),
        None => bail!(
            "namespace {ns} holds several Consortia ({}): name one with --consortium",
            listed()
        ),
    }
}

/// The PEM certificates in `text`, each from its BEGIN to its END line.
pub fn pem_certificates(text: &str) -> Vec<String> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(b) = rest.find(BEGIN) {
        let Some(e) = rest[b..].find(END) else { break };
        let mut end = b + e + END.len();
        // The certificate's own line ending is kept (CRLF PEMs stay byte for byte).
        let eol = ["\r\n", "\n"]
            .into_iter()
            .find(|eol| rest[end..].starts_with(eol));
        let mut pem = rest[b..end].to_string();
        match eol {
            Some(eol) => {
                pem.push_str(eol);
                end += eol.len();
            }
            None => pem.push('\n'),
        }
        out.push(pem);
        rest = &rest[end..];
    }
    out
}

/// The bundle of `org`: its CA certificates (`ca_pem`, the CA Secret's `tls.crt`) and the
/// nodes of its Peers in `cons`, as their status reports them.
pub fn build_bundle(
    cons: &Consortium,
    org: &str,
    ca_pem: &str,
    peers: &[Peer],
    allow_internal: bool,
) -> Result<OrganizationBundle> {
    let cname = cons.metadata.name.as_deref().unwrap_or_default();
    let Some(o) = cons.spec.organizations.iter().find(|o| o.name == org) else {
        let names: Vec<&str> = cons
            .spec
            .organizations
            .iter()
            .map(|o| o.name.as_str())
            .collect();
        bail!(
            "Consortium {cname} has no organization {org:?} (it has: {})",
            names.join(", ")
        );
    };
    let mut b = OrganizationBundle::new(org);
    b.display_name = o.display_name.clone();
    b.ca_certificates = pem_certificates(ca_pem);
    let mut mine: Vec<&Peer> = peers
        .iter()
        .filter(|p| p.spec.consortium == cname && p.spec.organization == org)
        .collect();
    mine.sort_by_key(|p| p.metadata.name.clone());
    for p in mine {
        let pname = p.metadata.name.as_deref().unwrap_or_default();
        if p.spec.exposure.is_none() && !allow_internal {
            bail!(
                "Peer {pname} has no spec.exposure: its nodes' addresses are cluster-internal \
                 and members in other clusters cannot reach them. Run the organization's nodes \
                 in a Peer with spec.exposure (LoadBalancer or NodePort and a DNS domain), or \
                 pass --allow-internal to export these addresses anyway"
            );
        }
        let reported = p
            .status
            .as_ref()
            .map(|s| s.nodes.as_slice())
            .unwrap_or_default();
        for i in 0..p.spec.replicas.max(0) {
            let name = tally_planner::node_name(pname, i);
            let node = reported.iter().find(|n| n.name == name);
            let Some((n, raft_id)) = node
                .and_then(|n| Some((n, n.raft_id?)))
                .filter(|(n, _)| !n.peer_address.is_empty() && !n.api_url.is_empty())
            else {
                bail!(
                    "node {name} of Peer {pname} has no reported Raft id and address yet: \
                     wait until the operator reports them (kubectl get peer {pname} -o \
                     jsonpath='{{.status.nodes}}') and export again"
                );
            };
            b.nodes.push(tally_api::bundle::BundleNode {
                name,
                raft_id,
                role: p.spec.role,
                peer_address: n.peer_address.clone(),
                api_url: n.api_url.clone(),
            });
        }
    }
    b.check()
        .with_context(|| format!("the bundle of {org} read from the cluster"))?;
    Ok(b)
}

/// Whether `import` added the organization or replaced an earlier import.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Merge {
    Added,
    Replaced,
}

/// Puts the bundle's organization into `cons` (CA from `secret`), replacing an earlier
/// import of it; refuses an organization hosted here (`hosting_peers`: the Peers that run its
/// nodes in this namespace) and nodes named like another organization's (`local_nodes`: the
/// nodes of the other organizations' Peers here).
pub fn merge_organization(
    cons: &mut Consortium,
    bundle: &OrganizationBundle,
    secret: &str,
    hosting_peers: &[String],
    local_nodes: &[String],
) -> Result<Merge> {
    let cname = cons.metadata.name.clone().unwrap_or_default();
    let org = &bundle.organization;
    // Channels name nodes consortium-wide: a second node of the same name would be ambiguous.
    for n in &bundle.nodes {
        let elsewhere = cons
            .spec
            .organizations
            .iter()
            .filter(|o| &o.name != org)
            .find(|o| o.external_peers.iter().any(|p| p.name == n.name))
            .map(|o| format!("an external peer of {}", o.name))
            .or_else(|| {
                local_nodes
                    .contains(&n.name)
                    .then(|| "a node of a Peer in this namespace".to_string())
            });
        if let Some(what) = elsewhere {
            bail!(
                "node {} of the bundle of {org} has the name of {what} in Consortium {cname};                  node names are unique in a consortium",
                n.name
            );
        }
    }
    let entry = bundle.to_organization(secret);
    let Some(existing) = cons.spec.organizations.iter_mut().find(|o| &o.name == org) else {
        cons.spec.organizations.push(entry);
        return Ok(Merge::Added);
    };
    let refuse = |why: String| -> Result<Merge> {
        bail!(
            "organization {org} of Consortium {cname} is hosted in this cluster ({why}); \
             an import replaces only organizations imported before. Import the bundle into \
             another Consortium, or remove {org} from this one first"
        )
    };
    if !hosting_peers.is_empty() {
        return refuse(format!("Peers {} run its nodes", hosting_peers.join(", ")));
    }
    if existing.ca.mode == CaMode::Generate {
        return refuse("its CA is generated here: ca.mode Generate".into());
    }
    if existing.approvals == Approvals::Operator {
        return refuse("the operator approves for it: approvals Operator".into());
    }
    *existing = Organization {
        // A display name set here wins over the bundle's.
        display_name: if existing.display_name.is_empty() {
            entry.display_name.clone()
        } else {
            existing.display_name.clone()
        },
        ..entry
    };
    Ok(Merge::Replaced)
}

/// The Secret holding an imported organization's CA certificates (`tls.crt` only).
pub fn ca_secret_object(name: &str, bundle: &OrganizationBundle) -> Secret {
    let mut s = Secret {
        type_: Some("Opaque".into()),
        string_data: Some(BTreeMap::from([(
            "tls.crt".to_string(),
            bundle.ca_secret_pem(),
        )])),
        ..Secret::default()
    };
    s.metadata.name = Some(name.to_string());
    s.metadata.labels = Some(BTreeMap::from([
        (
            "app.kubernetes.io/managed-by".to_string(),
            MANAGER.to_string(),
        ),
        (
            "tally.dev/organization".to_string(),
            bundle.organization.clone(),
        ),
    ]));
    s
}

pub async fn run(kube: kube::Client, ns: String, cmd: OrgCmd) -> Result<()> {
    match cmd {
        OrgCmd::Export(a) => export(kube, &ns, a).await,
        OrgCmd::Import(a) => import(kube, &ns, a).await,
        OrgCmd::Tallyctl(_) => Ok(()),
    }
}

async fn consortium(kube: &kube::Client, ns: &str, wanted: Option<&str>) -> Result<Consortium> {
    let all = Api::<Consortium>::namespaced(kube.clone(), ns)
        .list(&ListParams::default())
        .await
        .with_context(|| {
            format!("listing Consortia in namespace {ns} (are Tally's CRDs installed?)")
        })?
        .items;
    choose_consortium(all, wanted, ns)
}

async fn export(kube: kube::Client, ns: &str, a: ExportArgs) -> Result<()> {
    let cons = consortium(&kube, ns, a.consortium.as_deref()).await?;
    let sname = cluster::ca_secret_name(&cons, &a.org);
    let secret = Api::<Secret>::namespaced(kube.clone(), ns)
        .get_opt(&sname)
        .await
        .with_context(|| format!("reading Secret {ns}/{sname}"))?
        .with_context(|| {
            format!(
                "no Secret {ns}/{sname} with {}'s CA certificate yet: with ca.mode Generate the \
                 operator creates it; with ca.mode Secret, create it",
                a.org
            )
        })?;
    let ca_pem = cluster::secret_text(&secret, "tls.crt")
        .with_context(|| format!("Secret {ns}/{sname} has no tls.crt"))?;
    let peers = Api::<Peer>::namespaced(kube, ns)
        .list(&ListParams::default())
        .await
        .with_context(|| format!("listing Peers in namespace {ns}"))?
        .items;
    let bundle = build_bundle(&cons, &a.org, &ca_pem, &peers, a.allow_internal)?;
    let text = match a.output {
        BundleFormat::Yaml => serde_yaml::to_string(&bundle)?,
        BundleFormat::Json => serde_json::to_string_pretty(&bundle)? + "\n",
    };
    match a.out {
        Some(path) => {
            std::fs::write(&path, &text).with_context(|| format!("writing {}", path.display()))?;
            println!(
                "wrote the bundle of {} ({} CA certificate(s), {} node(s)) to {}",
                bundle.organization,
                bundle.ca_certificates.len(),
                bundle.nodes.len(),
                path.display()
            );
        }
        None => print!("{text}"),
    }
    Ok(())
}

async fn import(kube: kube::Client, ns: &str, a: ImportArgs) -> Result<()> {
    let text = std::fs::read_to_string(&a.file)
        .with_context(|| format!("reading {}", a.file.display()))?;
    let bundle = OrganizationBundle::parse(&text)
        .with_context(|| format!("{} is not a usable organization bundle", a.file.display()))?;
    let org = bundle.organization.clone();
    let consortia = Api::<Consortium>::namespaced(kube.clone(), ns);
    let peers_api = Api::<Peer>::namespaced(kube.clone(), ns);
    let secrets = Api::<Secret>::namespaced(kube.clone(), ns);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let mut cons = consortium(&kube, ns, a.consortium.as_deref()).await?;
        let cname = cons.metadata.name.clone().unwrap_or_default();
        let peers: Vec<Peer> = peers_api
            .list(&ListParams::default())
            .await
            .with_context(|| format!("listing Peers in namespace {ns}"))?
            .items
            .into_iter()
            .filter(|p| p.spec.consortium == cname)
            .collect();
        let hosting: Vec<String> = peers
            .iter()
            .filter(|p| p.spec.organization == org)
            .filter_map(|p| p.metadata.name.clone())
            .collect();
        let local_nodes: Vec<String> = peers
            .iter()
            .filter(|p| p.spec.organization != org)
            .flat_map(|p| {
                let name = p.metadata.name.clone().unwrap_or_default();
                (0..p.spec.replicas.max(0)).map(move |i| tally_planner::node_name(&name, i))
            })
            .collect();
        let sname = public_ca_secret(&cname, &org);
        let merged = merge_organization(&mut cons, &bundle, &sname, &hosting, &local_nodes)?;
        let entry = cons
            .spec
            .organizations
            .iter()
            .find(|o| o.name == org)
            .cloned()
            .expect("merged");
        let secret = ca_secret_object(&sname, &bundle);
        if a.dry_run {
            print!(
                "# Secret {ns}/{sname} (dry run: nothing written)\n{}---\n# organization \
                 entry of Consortium {ns}/{cname} ({})\n{}",
                serde_yaml::to_string(&secret)?,
                if merged == Merge::Added {
                    "to be added"
                } else {
                    "to replace the earlier import"
                },
                serde_yaml::to_string(&entry)?
            );
            return Ok(());
        }
        if attempt == 1 {
            // Server-side apply: creates the Secret or updates the certificate in place.
            let mut applied = secret.clone();
            applied.data = applied.string_data.take().map(|d| {
                d.into_iter()
                    .map(|(k, v)| (k, ByteString(v.into_bytes())))
                    .collect()
            });
            let mut v = serde_json::to_value(&applied)?;
            v["apiVersion"] = "v1".into();
            v["kind"] = "Secret".into();
            secrets
                .patch(
                    &sname,
                    &PatchParams::apply(MANAGER).force(),
                    &Patch::Apply(&v),
                )
                .await
                .with_context(|| format!("writing Secret {ns}/{sname}"))?;
        }
        // replace() carries the resourceVersion read above: a concurrent change is a conflict.
        match consortia
            .replace(&cname, &PostParams::default(), &cons)
            .await
        {
            Ok(_) => {
                let nodes: Vec<String> = bundle
                    .nodes
                    .iter()
                    .map(|n| format!("{} (raft id {}, {})", n.name, n.raft_id, n.peer_address))
                    .collect();
                println!(
                    "organization {org} {} in Consortium {ns}/{cname}: ca.mode Secret from \
                     Secret {sname}, approvals External, {} external peer(s){}{}",
                    if merged == Merge::Added {
                        "added"
                    } else {
                        "replaced"
                    },
                    nodes.len(),
                    if nodes.is_empty() { "" } else { ": " },
                    nodes.join(", ")
                );
                return Ok(());
            }
            Err(kube::Error::Api(e)) if e.code == 409 && attempt < 5 => {
                tracing::info!(
                    attempt,
                    "Consortium {cname} changed meanwhile; reading it again"
                );
            }
            Err(e) => {
                return Err(e).with_context(|| format!("updating Consortium {ns}/{cname}"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tally_api::bundle::BundleNode;
    use tally_api::peer::PeerRole;

    fn cons(orgs: serde_json::Value) -> Consortium {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "tally.dev/v1alpha1", "kind": "Consortium",
            "metadata": {"name": "c1", "namespace": "ns"},
            "spec": {"organizations": orgs},
        }))
        .expect("a Consortium")
    }

    fn bundle() -> OrganizationBundle {
        let mut b = OrganizationBundle::new("bank");
        b.ca_certificates
            .push("-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n".into());
        b.nodes.push(BundleNode {
            name: "bank-peer-0".into(),
            raft_id: 7,
            role: PeerRole::Consenter,
            peer_address: "bank-peer-0.bank.example:7052".into(),
            api_url: "https://bank-peer-0.bank.example:7051".into(),
        });
        b
    }

    #[test]
    fn pem_blocks_are_split_and_keys_never_taken() {
        let text = "-----BEGIN CERTIFICATE-----\nA\n-----END CERTIFICATE-----\n\
                    -----BEGIN PRIVATE KEY-----\nK\n-----END PRIVATE KEY-----\n\
                    -----BEGIN CERTIFICATE-----\nB\n-----END CERTIFICATE-----\n";
        let certs = pem_certificates(text);
        assert_eq!(certs.len(), 2);
        assert!(certs.iter().all(|c| !c.contains("PRIVATE")));
    }

    #[test]
    fn hosted_organizations_are_not_replaced() {
        let b = bundle();
        let mut c = cons(serde_json::json!([{"name": "bank"}]));
        let e = merge_organization(&mut c, &b, "s", &[], &[]).unwrap_err();
        assert!(e.to_string().contains("ca.mode Generate"), "{e}");
        let mut c = cons(serde_json::json!([{"name": "bank", "approvals": "External",
            "ca": {"mode": "Secret", "secretRef": {"name": "x"}}}]));
        let e = merge_organization(&mut c, &b, "s", &["bank-peer".into()], &[]).unwrap_err();
        assert!(e.to_string().contains("Peers bank-peer"), "{e}");
        let mut c = cons(serde_json::json!([{"name": "bank",
            "ca": {"mode": "Secret", "secretRef": {"name": "x"}}}]));
        let e = merge_organization(&mut c, &b, "s", &[], &[]).unwrap_err();
        assert!(e.to_string().contains("approvals Operator"), "{e}");
    }

    #[test]
    fn an_import_is_added_then_replaced() {
        let mut b = bundle();
        let mut c = cons(serde_json::json!([{"name": "org1"}]));
        assert_eq!(
            merge_organization(&mut c, &b, "c1-bank-ca-public", &[], &[]).unwrap(),
            Merge::Added
        );
        b.nodes[0].peer_address = "elsewhere.example:7052".into();
        assert_eq!(
            merge_organization(&mut c, &b, "c1-bank-ca-public", &[], &[]).unwrap(),
            Merge::Replaced
        );
        assert_eq!(c.spec.organizations.len(), 2);
        assert_eq!(
            c.spec.organizations[1].external_peers[0].peer_address,
            "elsewhere.example:7052"
        );
    }

    #[test]
    fn node_names_stay_unique_in_the_consortium() {
        let b = bundle();
        let mut c = cons(serde_json::json!([{"name": "org1"}]));
        let e = merge_organization(&mut c, &b, "s", &[], &["bank-peer-0".into()]).unwrap_err();
        assert!(
            e.to_string().contains("a node of a Peer in this namespace"),
            "{e}"
        );
        let mut c = cons(
            serde_json::json!([{"name": "other", "approvals": "External",
            "ca": {"mode": "Secret", "secretRef": {"name": "x"}},
            "externalPeers": [{"name": "bank-peer-0", "peerAddress": "x.example:7052",
                               "apiUrl": "https://x.example:7051"}]}]),
        );
        let e = merge_organization(&mut c, &b, "s", &[], &[]).unwrap_err();
        assert!(e.to_string().contains("an external peer of other"), "{e}");
        assert_eq!(c.spec.organizations.len(), 1, "refused, yet changed");
    }

    #[test]
    fn several_consortia_need_a_name() {
        let e = choose_consortium(
            vec![cons(serde_json::json!([])), {
                let mut c = cons(serde_json::json!([]));
                c.metadata.name = Some("c2".into());
                c
            }],
            None,
            "ns",
        )
        .unwrap_err();
        assert!(e.to_string().contains("c1, c2"), "{e}");
    }
}
