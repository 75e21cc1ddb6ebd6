//! The kinds as the planner reads them: the edge where Kubernetes objects become plain specs.
//!
//! The planner knows nothing of object metadata, schemas or Kubernetes types; everything it
//! needs from a resource is copied here, with the namespace defaulted as `kubectl` would.

use crate::chaincode::Chaincode;
use crate::channel::Channel;
use crate::common::Approval;
use crate::consortium::Consortium;
use crate::manifest::{namespace_of, Resources};
use crate::peer::Peer;
use kube::ResourceExt;
use tally_planner::spec;

fn meta<K: ResourceExt>(r: &K) -> spec::Meta {
    spec::Meta::new(&namespace_of(r), &r.name_any())
}

impl From<&Approval> for spec::Approval {
    fn from(a: &Approval) -> spec::Approval {
        spec::Approval {
            rule: a.rule,
            count: a.count,
        }
    }
}

impl From<&Consortium> for spec::Consortium {
    fn from(c: &Consortium) -> spec::Consortium {
        let s = &c.spec;
        spec::Consortium {
            meta: meta(c),
            display_name: s.display_name.clone(),
            organizations: s
                .organizations
                .iter()
                .map(|o| spec::Organization {
                    name: o.name.clone(),
                    display_name: o.display_name.clone(),
                    ca_mode: o.ca.mode,
                    ca_secret: o.ca.secret_ref.as_ref().map(|r| r.name.clone()),
                    external_peers: o
                        .external_peers
                        .iter()
                        .map(|e| spec::ExternalPeer {
                            name: e.name.clone(),
                            peer_address: e.peer_address.clone(),
                            api_url: e.api_url.clone(),
                            role: e.role,
                            raft_id: e.raft_id,
                        })
                        .collect(),
                })
                .collect(),
            policies: spec::ConsortiumPolicies {
                channel_creators: s.policies.channel_creators.clone(),
                membership_approval: (&s.policies.membership_approval).into(),
                chaincode_approval: (&s.policies.chaincode_approval).into(),
            },
            certificates: spec::Certificates {
                validity: s.certificates.validity.clone(),
                renew_before: s.certificates.renew_before.clone(),
            },
            ordering: spec::Ordering {
                batch_max_transactions: s.ordering.batch_max_transactions,
                batch_max_bytes: s.ordering.batch_max_bytes,
                batch_timeout_ms: s.ordering.batch_timeout_ms,
                snapshot_interval: s.ordering.snapshot_interval,
            },
        }
    }
}

impl From<&Peer> for spec::Peer {
    fn from(p: &Peer) -> spec::Peer {
        spec::Peer {
            meta: meta(p),
            consortium: p.spec.consortium.clone(),
            organization: p.spec.organization.clone(),
            replicas: p.spec.replicas,
            exposure: p.spec.exposure.as_ref().map(|e| spec::Exposure {
                domain: e.domain.clone(),
                node_port_base: match e.type_ {
                    crate::peer::ExposureType::NodePort => e.node_port_base,
                    crate::peer::ExposureType::LoadBalancer => None,
                },
            }),
            role: p.spec.role,
        }
    }
}

impl From<&Channel> for spec::Channel {
    fn from(c: &Channel) -> spec::Channel {
        let s = &c.spec;
        let policies = s
            .policies
            .as_ref()
            .map(|p| spec::ChannelPolicies {
                readers: p.readers.clone(),
                writers: p.writers.clone(),
                admins: p.admins.clone(),
                chaincode_lifecycle: p.chaincode_lifecycle.as_ref().map(Into::into),
            })
            .unwrap_or_default();
        spec::Channel {
            meta: meta(c),
            consortium: s.consortium.clone(),
            members: s.members.clone(),
            consenters: s.consenters.clone(),
            observers: s.observers.clone(),
            policies,
            batch: s.batch.as_ref().map(|b| spec::Batch {
                max_transactions: b.max_transactions,
                max_bytes: b.max_bytes,
                timeout_ms: b.timeout_ms,
            }),
            snapshot_interval: s.snapshot_interval,
        }
    }
}

impl From<&Chaincode> for spec::Chaincode {
    fn from(c: &Chaincode) -> spec::Chaincode {
        let s = &c.spec;
        spec::Chaincode {
            meta: meta(c),
            channel: s.channel.clone(),
            name: s.name.clone(),
            version: s.version.clone(),
            module: spec::ModuleRef {
                config_map: s.source.config_map.name.clone(),
                key: s.source.config_map.key.clone(),
                sha256: s.source.sha256.clone(),
            },
            init: s.init.as_ref().map(|i| spec::InitCall {
                function: i.function.clone(),
                args: i.args.clone(),
            }),
            approval: s.approval.as_ref().map(Into::into),
        }
    }
}

impl Resources {
    /// The Tally resources among these, as the planner reads them.
    pub fn to_plan(&self) -> spec::Resources {
        spec::Resources {
            consortia: self.consortia.iter().map(Into::into).collect(),
            peers: self.peers.iter().map(Into::into).collect(),
            channels: self.channels.iter().map(Into::into).collect(),
            chaincodes: self.chaincodes.iter().map(Into::into).collect(),
        }
    }
}
