//! Splitting a history into independently checkable parts (P-compositionality, Horn &
//! Kroening): a history is linearizable exactly when each per-key sub-history is, for
//! models whose operations each touch one key and whose keys do not interact. Within a
//! part, `info` writes nobody could have observed are dropped (see [`drop_unobserved`]).

use std::collections::{BTreeMap, BTreeSet};

use super::history::{Call, History, Id, Status, Val};
use super::model::Model;
use super::wgl::relevant;

/// The operations (history indices, invocation order) one search checks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Partition {
    /// The key, when the model is checked per key.
    pub key: Option<Id>,
    pub ops: Vec<usize>,
}

/// Relevant operations grouped per key for per-key models, else all in one partition;
/// ordered by key id so that results do not depend on hashing.
pub fn partitions(h: &History, model: Model) -> Vec<Partition> {
    let ops = (0..h.ops.len()).filter(|&i| relevant(h, i));
    if !model.per_key() {
        return vec![Partition {
            key: None,
            ops: ops.collect(),
        }];
    }
    let mut by_key: BTreeMap<Id, Vec<usize>> = BTreeMap::new();
    for i in ops {
        by_key.entry(h.ops[i].key).or_default().push(i);
    }
    by_key
        .into_iter()
        .map(|(key, mut ops)| {
            drop_unobserved(h, model, &mut ops);
            Partition {
                key: Some(key),
                ops,
            }
        })
        .collect()
}

/// Removes `info` writes of one key whose value no remaining operation reads or expects.
///
/// Such a write may as well never have happened: in any linearization that includes it, the
/// operations between it and the next write neither read nor expect its value, so there are
/// none but writes, and dropping it changes nothing anyone saw. This holds while only values
/// are observed, so it is skipped when versions or revisions are (a dropped put would shift
/// them). Each pending `info` write otherwise doubles the configurations the search may
/// have to explore.
pub fn drop_unobserved(h: &History, model: Model, ops: &mut Vec<usize>) {
    let versions = ops.iter().any(|&i| h.ops[i].out.version.is_some());
    if model == Model::Etcd || (model == Model::Kv && versions) {
        return;
    }
    loop {
        let observed: BTreeSet<Val> = ops
            .iter()
            .filter_map(|&i| match (h.ops[i].call, h.ops[i].status) {
                (Call::Get, _) => Some(h.ops[i].out.value),
                (Call::Cas { expect, .. }, _) => Some(expect),
                _ => None,
            })
            .collect();
        let before = ops.len();
        ops.retain(|&i| {
            let op = &h.ops[i];
            let written = match op.call {
                Call::Put { value } | Call::Cas { value, .. } => Some(value),
                Call::Delete => None,
                Call::Get => return true,
            };
            op.status != Status::Info || observed.contains(&written)
        });
        if ops.len() == before {
            return;
        }
    }
}
