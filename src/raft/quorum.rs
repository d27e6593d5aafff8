//! Majority and joint quorums: which index is committed and who won a vote.

use std::collections::{BTreeMap, BTreeSet};

/// Outcome of counting votes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VoteResult {
    /// Neither a quorum of yes nor of no votes yet.
    Pending,
    /// A quorum voted no.
    Lost,
    /// A quorum voted yes.
    Won,
}

/// A set of voters deciding by simple majority.
pub type MajorityConfig = BTreeSet<u64>;

/// The highest index acknowledged by a majority of `voters`. `acked` reports each
/// voter's acknowledged index (missing voters count as 0). An empty config returns
/// `u64::MAX` so that it never constrains a joint config.
pub fn majority_committed(voters: &MajorityConfig, acked: impl Fn(u64) -> Option<u64>) -> u64 {
    if voters.is_empty() {
        return u64::MAX;
    }
    let mut idx: Vec<u64> = voters.iter().map(|&id| acked(id).unwrap_or(0)).collect();
    idx.sort_unstable();
    // With n voters sorted ascending, n/2+1 of them acked at least idx[n - (n/2+1)].
    idx[idx.len() - (idx.len() / 2 + 1)]
}

/// Counts `votes` among `voters`; missing votes are pending. An empty config wins.
pub fn majority_vote(voters: &MajorityConfig, votes: &BTreeMap<u64, bool>) -> VoteResult {
    if voters.is_empty() {
        return VoteResult::Won;
    }
    let (mut yes, mut missing) = (0, 0);
    for id in voters {
        match votes.get(id) {
            Some(true) => yes += 1,
            Some(false) => {}
            None => missing += 1,
        }
    }
    let q = voters.len() / 2 + 1;
    if yes >= q {
        VoteResult::Won
    } else if yes + missing >= q {
        VoteResult::Pending
    } else {
        VoteResult::Lost
    }
}

/// The incoming and outgoing majority configs; outside joint consensus the outgoing
/// one is empty (thesis 4.3).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JointConfig {
    pub incoming: MajorityConfig,
    pub outgoing: MajorityConfig,
}

impl JointConfig {
    /// An index is committed only when both majorities acknowledged it.
    pub fn committed(&self, acked: impl Fn(u64) -> Option<u64>) -> u64 {
        majority_committed(&self.incoming, &acked).min(majority_committed(&self.outgoing, &acked))
    }

    /// A joint vote needs both majorities.
    pub fn vote_result(&self, votes: &BTreeMap<u64, bool>) -> VoteResult {
        match (
            majority_vote(&self.incoming, votes),
            majority_vote(&self.outgoing, votes),
        ) {
            (VoteResult::Won, VoteResult::Won) => VoteResult::Won,
            (VoteResult::Lost, _) | (_, VoteResult::Lost) => VoteResult::Lost,
            _ => VoteResult::Pending,
        }
    }

    /// All voters of either half.
    pub fn ids(&self) -> BTreeSet<u64> {
        self.incoming.union(&self.outgoing).copied().collect()
    }

    pub fn contains(&self, id: u64) -> bool {
        self.incoming.contains(&id) || self.outgoing.contains(&id)
    }

    pub fn is_joint(&self) -> bool {
        !self.outgoing.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The obvious definition: the largest index some majority has acknowledged.
    fn naive_committed(voters: &MajorityConfig, acked: &BTreeMap<u64, u64>) -> u64 {
        if voters.is_empty() {
            return u64::MAX;
        }
        let candidates = voters.iter().map(|id| acked.get(id).copied().unwrap_or(0));
        candidates
            .filter(|&c| {
                let n = voters
                    .iter()
                    .filter(|id| acked.get(id).copied().unwrap_or(0) >= c)
                    .count();
                n > voters.len() / 2
            })
            .max()
            .unwrap_or(0)
    }

    fn naive_vote(voters: &MajorityConfig, votes: &BTreeMap<u64, bool>) -> VoteResult {
        if voters.is_empty() {
            return VoteResult::Won;
        }
        let count = |v: Option<bool>| {
            voters
                .iter()
                .filter(|id| votes.get(id).copied() == v)
                .count()
        };
        let q = voters.len() / 2 + 1;
        if count(Some(true)) >= q {
            VoteResult::Won
        } else if count(Some(false)) >= q || voters.len() - count(Some(false)) < q {
            VoteResult::Lost
        } else {
            VoteResult::Pending
        }
    }

    proptest! {
        #[test]
        fn committed_matches_naive_model(
            voters in proptest::collection::btree_set(1u64..10, 0..8),
            acked in proptest::collection::btree_map(1u64..10, 0u64..20, 0..10),
        ) {
            prop_assert_eq!(
                majority_committed(&voters, |id| acked.get(&id).copied()),
                naive_committed(&voters, &acked)
            );
        }

        #[test]
        fn vote_matches_naive_model(
            voters in proptest::collection::btree_set(1u64..10, 0..8),
            votes in proptest::collection::btree_map(1u64..10, any::<bool>(), 0..10),
        ) {
            prop_assert_eq!(majority_vote(&voters, &votes), naive_vote(&voters, &votes));
        }

        #[test]
        fn joint_committed_is_min_of_halves(
            a in proptest::collection::btree_set(1u64..10, 1..6),
            b in proptest::collection::btree_set(1u64..10, 0..6),
            acked in proptest::collection::btree_map(1u64..10, 0u64..20, 0..10),
        ) {
            let j = JointConfig { incoming: a.clone(), outgoing: b.clone() };
            let c = j.committed(|id| acked.get(&id).copied());
            prop_assert_eq!(c, naive_committed(&a, &acked).min(naive_committed(&b, &acked)));
        }
    }

    #[test]
    fn even_sized_majority_needs_more_than_half() {
        // Four voters: two acknowledgements are not a majority (the 2+2 split).
        let voters: MajorityConfig = [1, 2, 3, 4].into();
        let acked: BTreeMap<u64, u64> = [(1, 5), (2, 5)].into();
        assert_eq!(majority_committed(&voters, |id| acked.get(&id).copied()), 0);
        let votes: BTreeMap<u64, bool> = [(1, true), (2, true), (3, false), (4, false)].into();
        assert_eq!(majority_vote(&voters, &votes), VoteResult::Lost);
    }

    #[test]
    fn joint_vote_needs_both_halves() {
        let j = JointConfig {
            incoming: [1, 2, 3].into(),
            outgoing: [3, 4, 5].into(),
        };
        let votes: BTreeMap<u64, bool> = [(1, true), (2, true), (3, false)].into();
        assert_eq!(j.vote_result(&votes), VoteResult::Pending);
        let votes: BTreeMap<u64, bool> = [(1, true), (2, true), (4, false), (5, false)].into();
        assert_eq!(j.vote_result(&votes), VoteResult::Lost);
        let votes: BTreeMap<u64, bool> = [(1, true), (2, true), (4, true), (5, true)].into();
        assert_eq!(j.vote_result(&votes), VoteResult::Won);
    }
}
