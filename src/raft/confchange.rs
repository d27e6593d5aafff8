//! Membership changes: simple one-voter changes and joint consensus (thesis 4.3),
//! computed on a copy of the tracker so that an invalid change leaves it untouched.

use super::tracker::{Inflights, Progress, ProgressMap, ProgressTracker, TrackerConfig};
use crate::proto::raftpb::{
    ConfChange, ConfChangeSingle, ConfChangeTransition, ConfChangeType, ConfChangeV2, ConfState,
};

/// Why a configuration change cannot be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration change: {0}")]
pub struct ConfChangeError(pub String);

pub(crate) type ChangeResult = Result<(TrackerConfig, ProgressMap), ConfChangeError>;

fn err<T>(msg: impl Into<String>) -> Result<T, ConfChangeError> {
    Err(ConfChangeError(msg.into()))
}

/// The V2 form of a legacy single change.
pub fn conf_change_to_v2(cc: &ConfChange) -> ConfChangeV2 {
    ConfChangeV2 {
        transition: ConfChangeTransition::Auto as i32,
        changes: vec![ConfChangeSingle {
            r#type: cc.r#type,
            node_id: cc.node_id,
        }],
        context: cc.context.clone(),
    }
}

/// Whether `cc` leaves a joint configuration (an empty V2 change does).
pub fn leaves_joint(cc: &ConfChangeV2) -> bool {
    cc.changes.is_empty() && cc.transition() == ConfChangeTransition::Auto
}

/// `Some(auto_leave)` if `cc` enters a joint configuration: more than one change, or an
/// explicit joint transition.
pub fn enters_joint(cc: &ConfChangeV2) -> Option<bool> {
    if cc.transition() == ConfChangeTransition::Auto && cc.changes.len() <= 1 {
        return None;
    }
    Some(cc.transition() != ConfChangeTransition::JointExplicit)
}

/// Applies changes to a copy of a tracker's configuration.
pub struct Changer<'a> {
    pub tracker: &'a ProgressTracker,
    /// New members start replicating from here.
    pub last_index: u64,
    /// The current tick, when new members were last heard from.
    pub now: u64,
}

impl Changer<'_> {
    /// Enters a joint configuration: the current voters become the outgoing half and
    /// `ccs` are applied to the incoming half.
    pub fn enter_joint(&self, auto_leave: bool, ccs: &[ConfChangeSingle]) -> ChangeResult {
        let (mut cfg, mut prs) = self.check_and_copy()?;
        if cfg.voters.is_joint() {
            return err("config is already joint");
        }
        if cfg.voters.incoming.is_empty() {
            return err("can't make a zero-voter config joint");
        }
        cfg.voters.outgoing = cfg.voters.incoming.clone();
        self.apply(&mut cfg, &mut prs, ccs)?;
        cfg.auto_leave = auto_leave;
        check_invariants(&cfg, &prs)?;
        Ok((cfg, prs))
    }

    /// Leaves the joint configuration: drops the outgoing half and turns the voters that
    /// were demoted into learners.
    pub fn leave_joint(&self) -> ChangeResult {
        let (mut cfg, mut prs) = self.check_and_copy()?;
        if !cfg.voters.is_joint() {
            return err("can't leave a non-joint config");
        }
        for id in std::mem::take(&mut cfg.learners_next) {
            cfg.learners.insert(id);
            prs.get_mut(&id)
                .expect("learner_next has progress")
                .is_learner = true;
        }
        for id in std::mem::take(&mut cfg.voters.outgoing) {
            if !cfg.voters.incoming.contains(&id) && !cfg.learners.contains(&id) {
                prs.remove(&id);
            }
        }
        cfg.auto_leave = false;
        check_invariants(&cfg, &prs)?;
        Ok((cfg, prs))
    }

    /// Applies changes that alter at most one voter, outside joint consensus.
    pub fn simple(&self, ccs: &[ConfChangeSingle]) -> ChangeResult {
        let (mut cfg, mut prs) = self.check_and_copy()?;
        if cfg.voters.is_joint() {
            return err("can't apply simple config change in joint config");
        }
        let before = cfg.voters.incoming.clone();
        self.apply(&mut cfg, &mut prs, ccs)?;
        if before.symmetric_difference(&cfg.voters.incoming).count() > 1 {
            return err("more than one voter changed without entering joint config");
        }
        check_invariants(&cfg, &prs)?;
        Ok((cfg, prs))
    }

    fn check_and_copy(&self) -> ChangeResult {
        let cfg = self.tracker.config.clone();
        let prs = self.tracker.progress.clone();
        check_invariants(&cfg, &prs)?;
        Ok((cfg, prs))
    }

    fn apply(
        &self,
        cfg: &mut TrackerConfig,
        prs: &mut ProgressMap,
        ccs: &[ConfChangeSingle],
    ) -> Result<(), ConfChangeError> {
        for cc in ccs.iter().filter(|cc| cc.node_id != 0) {
            match cc.r#type() {
                ConfChangeType::ConfChangeAddNode => self.make_voter(cfg, prs, cc.node_id),
                ConfChangeType::ConfChangeAddLearnerNode => self.make_learner(cfg, prs, cc.node_id),
                ConfChangeType::ConfChangeRemoveNode => remove(cfg, prs, cc.node_id),
                ConfChangeType::ConfChangeUpdateNode => {}
            }
        }
        if cfg.voters.incoming.is_empty() {
            return err("removed all voters");
        }
        Ok(())
    }

    fn new_progress(&self, is_learner: bool) -> Progress {
        let mut pr = Progress::new(
            self.last_index.max(1),
            Inflights::new(
                self.tracker.max_inflight_msgs,
                self.tracker.max_inflight_bytes,
            ),
        );
        pr.is_learner = is_learner;
        // A new member gets a full election timeout before CheckQuorum counts it absent.
        pr.last_active = self.now;
        pr
    }

    fn make_voter(&self, cfg: &mut TrackerConfig, prs: &mut ProgressMap, id: u64) {
        let pr = prs.entry(id).or_insert_with(|| self.new_progress(false));
        pr.is_learner = false;
        cfg.learners.remove(&id);
        cfg.learners_next.remove(&id);
        cfg.voters.incoming.insert(id);
    }

    /// A voter of the outgoing half keeps voting there until the joint config is left,
    /// so it becomes a learner only then (`learners_next`).
    fn make_learner(&self, cfg: &mut TrackerConfig, prs: &mut ProgressMap, id: u64) {
        let Some(pr) = prs.get(&id) else {
            prs.insert(id, self.new_progress(true));
            cfg.learners.insert(id);
            return;
        };
        if pr.is_learner {
            return;
        }
        let pr = pr.clone();
        remove(cfg, prs, id);
        let pr = prs.entry(id).or_insert(pr);
        if cfg.voters.outgoing.contains(&id) {
            cfg.learners_next.insert(id);
        } else {
            pr.is_learner = true;
            cfg.learners.insert(id);
        }
    }
}

fn remove(cfg: &mut TrackerConfig, prs: &mut ProgressMap, id: u64) {
    cfg.voters.incoming.remove(&id);
    cfg.learners.remove(&id);
    cfg.learners_next.remove(&id);
    // An outgoing voter still needs its progress until the joint config is left.
    if !cfg.voters.outgoing.contains(&id) {
        prs.remove(&id);
    }
}

fn check_invariants(cfg: &TrackerConfig, prs: &ProgressMap) -> Result<(), ConfChangeError> {
    let members = cfg
        .voters
        .ids()
        .into_iter()
        .chain(cfg.learners.iter().copied())
        .chain(cfg.learners_next.iter().copied());
    for id in members {
        if !prs.contains_key(&id) {
            return err(format!("no progress for {id}"));
        }
    }
    for id in &cfg.learners_next {
        if !cfg.voters.outgoing.contains(id) {
            return err(format!("{id} is in learners_next, but not voters_outgoing"));
        }
        if prs[id].is_learner {
            return err(format!(
                "{id} is in learners_next, but is already a learner"
            ));
        }
    }
    for id in &cfg.learners {
        if cfg.voters.contains(*id) {
            return err(format!("{id} is in learners and voters"));
        }
        if !prs[id].is_learner {
            return err(format!("{id} is in learners, but is not marked as learner"));
        }
    }
    if !cfg.voters.is_joint() && (!cfg.learners_next.is_empty() || cfg.auto_leave) {
        return err("learners_next or auto_leave set outside a joint config");
    }
    Ok(())
}

fn singles(ty: ConfChangeType, ids: &[u64]) -> Vec<ConfChangeSingle> {
    ids.iter()
        .map(|&node_id| ConfChangeSingle {
            r#type: ty as i32,
            node_id,
        })
        .collect()
}

/// Rebuilds a tracker's configuration from a [`ConfState`] (after a restart or a
/// snapshot) by replaying the changes that produce it.
pub fn restore(
    tracker: &mut ProgressTracker,
    last_index: u64,
    now: u64,
    cs: &ConfState,
) -> Result<(), ConfChangeError> {
    tracker.config = TrackerConfig::default();
    tracker.progress.clear();
    let (outgoing, mut incoming) = if cs.voters_outgoing.is_empty() {
        (Vec::new(), Vec::new())
    } else {
        (
            singles(ConfChangeType::ConfChangeAddNode, &cs.voters_outgoing),
            singles(ConfChangeType::ConfChangeRemoveNode, &cs.voters_outgoing),
        )
    };
    incoming.extend(singles(ConfChangeType::ConfChangeAddNode, &cs.voters));
    incoming.extend(singles(
        ConfChangeType::ConfChangeAddLearnerNode,
        &cs.learners,
    ));
    incoming.extend(singles(
        ConfChangeType::ConfChangeAddLearnerNode,
        &cs.learners_next,
    ));
    let step = |tracker: &mut ProgressTracker,
                f: &dyn Fn(&Changer) -> ChangeResult|
     -> Result<(), ConfChangeError> {
        let (cfg, prs) = f(&Changer {
            tracker,
            last_index,
            now,
        })?;
        tracker.config = cfg;
        tracker.progress = prs;
        Ok(())
    };
    if outgoing.is_empty() {
        for cc in incoming {
            step(tracker, &|c| c.simple(std::slice::from_ref(&cc)))?;
        }
        return Ok(());
    }
    for cc in outgoing {
        step(tracker, &|c| c.simple(std::slice::from_ref(&cc)))?;
    }
    step(tracker, &|c| c.enter_joint(cs.auto_leave, &incoming))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracker(cs: &ConfState) -> ProgressTracker {
        let mut t = ProgressTracker::new(10, 0);
        restore(&mut t, 10, 0, cs).unwrap();
        t
    }

    fn cc(ty: ConfChangeType, id: u64) -> ConfChangeSingle {
        ConfChangeSingle {
            r#type: ty as i32,
            node_id: id,
        }
    }

    fn voters(ids: &[u64]) -> ConfState {
        ConfState {
            voters: ids.to_vec(),
            ..ConfState::default()
        }
    }

    fn apply(t: &mut ProgressTracker, r: ChangeResult) {
        let (cfg, prs) = r.unwrap();
        t.config = cfg;
        t.progress = prs;
    }

    #[test]
    fn simple_rejects_two_voter_changes() {
        let t = tracker(&voters(&[1, 2, 3]));
        let c = Changer {
            tracker: &t,
            last_index: 10,
            now: 0,
        };
        let two = [
            cc(ConfChangeType::ConfChangeAddNode, 4),
            cc(ConfChangeType::ConfChangeAddNode, 5),
        ];
        assert!(c.simple(&two).is_err());
        // Adding a learner changes no voter, so it may accompany a voter change.
        let ok = [
            cc(ConfChangeType::ConfChangeAddNode, 4),
            cc(ConfChangeType::ConfChangeAddLearnerNode, 5),
        ];
        let (cfg, prs) = c.simple(&ok).unwrap();
        assert_eq!(cfg.voters.incoming, [1, 2, 3, 4].into());
        assert!(prs[&5].is_learner);
        assert_eq!(prs[&4].next_idx, 10);
    }

    #[test]
    fn removing_all_voters_is_refused() {
        let t = tracker(&voters(&[1]));
        let c = Changer {
            tracker: &t,
            last_index: 1,
            now: 0,
        };
        let e = c.simple(&[cc(ConfChangeType::ConfChangeRemoveNode, 1)]);
        assert_eq!(e.unwrap_err().0, "removed all voters");
    }

    #[test]
    fn joint_demotion_goes_through_learners_next() {
        // Replace voter 3 by 4 and demote 2 to learner in one joint change (thesis 4.3).
        let mut t = tracker(&voters(&[1, 2, 3]));
        let ccs = [
            cc(ConfChangeType::ConfChangeRemoveNode, 3),
            cc(ConfChangeType::ConfChangeAddNode, 4),
            cc(ConfChangeType::ConfChangeAddLearnerNode, 2),
        ];
        let r = Changer {
            tracker: &t,
            last_index: 5,
            now: 0,
        }
        .enter_joint(true, &ccs);
        apply(&mut t, r);
        let cs = t.conf_state();
        assert_eq!(cs.voters, vec![1, 4]);
        assert_eq!(cs.voters_outgoing, vec![1, 2, 3]);
        assert_eq!(cs.learners_next, vec![2]);
        assert!(cs.auto_leave);
        assert!(
            t.progress.contains_key(&3),
            "outgoing voter keeps its progress"
        );
        assert_eq!(tracker(&cs).conf_state(), cs, "restore round-trips");

        let c = Changer {
            tracker: &t,
            last_index: 5,
            now: 0,
        };
        assert!(c.enter_joint(false, &[]).is_err(), "already joint");
        assert!(c.simple(&[]).is_err(), "simple change inside joint");
        let r = c.leave_joint();
        apply(&mut t, r);
        let cs = t.conf_state();
        assert_eq!((cs.voters, cs.learners), (vec![1, 4], vec![2]));
        assert!(cs.voters_outgoing.is_empty() && !cs.auto_leave);
        assert!(!t.progress.contains_key(&3));
        assert!(t.progress[&2].is_learner);
    }

    #[test]
    fn learner_promotion_and_transition_kinds() {
        let mut t = tracker(&ConfState {
            voters: vec![1],
            learners: vec![2],
            ..ConfState::default()
        });
        let r = Changer {
            tracker: &t,
            last_index: 3,
            now: 0,
        }
        .simple(&[cc(ConfChangeType::ConfChangeAddNode, 2)]);
        apply(&mut t, r);
        assert_eq!(t.conf_state().voters, vec![1, 2]);
        assert!(!t.progress[&2].is_learner);

        let mut v2 = ConfChangeV2::default();
        assert!(leaves_joint(&v2));
        v2.set_transition(ConfChangeTransition::JointExplicit);
        assert_eq!(enters_joint(&v2), Some(false));
        v2.set_transition(ConfChangeTransition::Auto);
        v2.changes = vec![cc(ConfChangeType::ConfChangeAddNode, 3)];
        assert_eq!(enters_joint(&v2), None);
        v2.changes.push(cc(ConfChangeType::ConfChangeAddNode, 4));
        assert_eq!(enters_joint(&v2), Some(true));
    }
}
