//! Configuration changes. Each carries the member in its context: the state machine
//! validates and records the membership, Raft applies the change (as a no-op if the state
//! machine refused it), and the transport gains or drops the peer. A member that applies
//! its own removal stops after [`REMOVED_STOP_TICKS`], as etcd's does.

use prost::Message as _;

use crate::proto::etcdserverpb::Member as MemberAttrs;
use crate::proto::raftpb::{ConfChange, ConfChangeType, Entry};
use crate::runtime::CrashPoint;

use super::{Member, MemberError, StateMachine};

/// Ticks a removed member keeps running so that the others learn the commit (etcd waits
/// ten ticks too).
pub(super) const REMOVED_STOP_TICKS: u32 = 10;

impl<S: StateMachine> Member<S> {
    /// Applies a membership change: to the state machine, to Raft (as a no-op if the
    /// state machine refused it), to the transport; answers its proposer.
    pub(super) fn apply_conf_change(&mut self, e: &Entry) -> Result<(), MemberError> {
        self.crash_point(CrashPoint::BeforeApplyOneConfChange)?;
        let Ok(mut cc) = ConfChange::decode(e.data.as_slice()) else {
            tracing::warn!(
                index = e.index,
                "skipping an undecodable configuration change"
            );
            return Ok(());
        };
        let outcome = self.sm.apply_conf_change(e.index, &cc)?;
        if outcome.is_err() {
            cc.node_id = 0;
        }
        let cs = self.node.apply_conf_change_v1(&cc)?;
        self.sm.save_conf_state(&cs)?;
        let me = self.node.id();
        match cc.r#type() {
            _ if cc.node_id == 0 => {}
            ConfChangeType::ConfChangeRemoveNode if cc.node_id == me => {
                tracing::warn!("this member was removed from the cluster; stopping");
                self.stop_in = Some(REMOVED_STOP_TICKS);
            }
            ConfChangeType::ConfChangeRemoveNode => self.transport.remove_member(cc.node_id),
            _ if cc.node_id == me => {}
            _ => {
                let urls = MemberAttrs::decode(cc.context.as_slice()).map(|m| m.peer_ur_ls);
                if let Some(url) = urls.ok().and_then(|u| u.into_iter().next()) {
                    self.transport.add_peer(cc.node_id, &url);
                }
            }
        }
        if let Some(waiter) = self.conf_waiters.remove(&cc.id) {
            let _ = waiter.send(Ok(outcome));
        }
        Ok(())
    }

    /// Links the transport to the members a restored snapshot names, and only to them;
    /// links already up keep their address (it may be a dial override).
    pub(super) fn follow_membership(&mut self) {
        let me = self.node.id();
        let urls = self.sm.peer_urls();
        for id in self.transport.peers() {
            if !urls.iter().any(|(m, _)| *m == id) {
                self.transport.remove_member(id);
            }
        }
        for (id, url) in urls.iter().filter(|(id, _)| *id != me) {
            if self.transport.peer_url(*id).is_none() {
                self.transport.add_peer(*id, url);
            }
        }
    }
}
