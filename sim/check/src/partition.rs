//! Splitting a history into independently checkable parts (P-compositionality, Horn &
//! Kroening): a history is linearizable exactly when each per-key sub-history is, for
//! models whose operations each touch one key and whose keys do not interact. Within a
//! part, `info` writes nobody could have observed are dropped ([`info::drop_unobserved`]).

use std::collections::BTreeMap;

use super::history::{History, Id};
use super::info;
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
            info::drop_unobserved(h, model, &mut ops);
            Partition {
                key: Some(key),
                ops,
            }
        })
        .collect()
}
