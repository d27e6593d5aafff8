//! Alarms, etcd's AlarmStore: a member raises one through the log, so every member applies
//! it at the same point and keeps it in the backend's `alarm` table across restarts.
//!
//! NOSPACE is raised by the member that found a write would take its backend past
//! `--quota-backend-bytes`. While any member's NOSPACE alarm is active, every member
//! refuses puts, txns with puts and lease grants ("etcdserver: mvcc: database space
//! exceeded"); reads, deletes and compaction still work, to make room. Disarming clears
//! it once the operator has compacted and defragmented.

use redb::{ReadableTable, TableDefinition};

use crate::backend::{be, corrupt, BackendError};
use crate::mvcc::error::Result;
use crate::mvcc::WatchableStore;
use crate::proto::etcdserverpb::alarm_request::AlarmAction;
use crate::proto::etcdserverpb::request_op::Request as Op;
use crate::proto::etcdserverpb::{AlarmMember, AlarmRequest, AlarmResponse, AlarmType};
use crate::proto::internalpb::internal_raft_request::Request;

/// Active alarms: big-endian member ID then big-endian alarm type, to nothing (etcd's
/// `alarm` bucket, keyed by the member and alarm).
pub(crate) const ALARM: TableDefinition<&[u8], &[u8]> = TableDefinition::new("alarm");

/// etcd's estimate of what storing a key's metadata costs the backend.
const KV_OVERHEAD: u64 = 256;
/// etcd's estimate of what storing a lease costs the backend.
const LEASE_OVERHEAD: u64 = 64;

fn key(m: &AlarmMember) -> [u8; 12] {
    let mut k = [0; 12];
    k[..8].copy_from_slice(&m.member_id.to_be_bytes());
    k[8..].copy_from_slice(&(m.alarm as u32).to_be_bytes());
    k
}

/// The alarm a key names; a key of another length is a damaged row.
pub(crate) fn member_of(k: &[u8]) -> std::result::Result<AlarmMember, BackendError> {
    let parts = k
        .split_first_chunk::<8>()
        .and_then(|(id, rest)| Some((*id, <[u8; 4]>::try_from(rest).ok()?)));
    let Some((id, alarm)) = parts else {
        let what = format!("alarm key of {} bytes, want 12", k.len());
        return Err(corrupt(ALARM, k, what));
    };
    Ok(AlarmMember {
        member_id: u64::from_be_bytes(id),
        alarm: u32::from_be_bytes(alarm) as i32,
    })
}

/// Active alarms of type `of` (every type for NONE), by member ID: for Status, `/health`
/// and the Alarm call.
pub fn active(store: &mut WatchableStore, of: AlarmType) -> Result<Vec<AlarmMember>> {
    let table = store.backend().tx().open_table(ALARM).map_err(be)?;
    let mut out = Vec::new();
    for entry in table.iter().map_err(be)? {
        let m = member_of(entry.map_err(be)?.0.value())?;
        if of == AlarmType::None || m.alarm == of as i32 {
            out.push(m);
        }
    }
    Ok(out)
}

/// Applies an Alarm request from the log, as etcd's applier does: GET lists, ACTIVATE and
/// DEACTIVATE answer with the alarm they changed (or found already active). The first
/// NOSPACE alarm caps writes; removing the last one lifts the cap.
pub fn apply(store: &mut WatchableStore, req: &AlarmRequest) -> Result<AlarmResponse> {
    let of = AlarmType::try_from(req.alarm).unwrap_or(AlarmType::None);
    let m = AlarmMember {
        member_id: req.member_id,
        alarm: req.alarm,
    };
    let mut resp = AlarmResponse::default();
    match AlarmAction::try_from(req.action) {
        Ok(AlarmAction::Get) => resp.alarms = active(store, of)?,
        Ok(AlarmAction::Activate) if of != AlarmType::None => {
            let mut table = store.backend().tx().open_table(ALARM).map_err(be)?;
            let raised = table
                .insert(key(&m).as_slice(), [].as_slice())
                .map_err(be)?
                .is_none();
            drop(table);
            if raised {
                tracing::warn!(alarm = of.as_str_name(), from = %format_args!("{:x}", m.member_id), "alarm raised");
            }
            resp.alarms.push(m);
        }
        Ok(AlarmAction::Deactivate) => {
            let mut table = store.backend().tx().open_table(ALARM).map_err(be)?;
            let removed = table.remove(key(&m).as_slice()).map_err(be)?.is_some();
            drop(table);
            if removed {
                resp.alarms.push(m);
            }
        }
        _ => {}
    }
    let nospace = !active(store, AlarmType::Nospace)?.is_empty();
    if nospace != store.kv().nospace() {
        tracing::warn!(nospace, "alarm {:?}", req);
        store.kv_mut().set_nospace(nospace)?;
    }
    Ok(resp)
}

/// What `request` would add to the backend, as etcd estimates it, for the requests etcd
/// checks against the quota (put, txn, lease grant); `None` for the others.
pub fn quota_cost(request: &Request) -> Option<u64> {
    let put = |key: &[u8], value: &[u8]| KV_OVERHEAD + key.len() as u64 + value.len() as u64;
    let puts = |ops: &[crate::proto::etcdserverpb::RequestOp]| -> u64 {
        ops.iter()
            .map(|op| match &op.request {
                Some(Op::RequestPut(p)) => put(&p.key, &p.value),
                _ => 0,
            })
            .sum()
    };
    match request {
        Request::Put(p) => Some(put(&p.key, &p.value)),
        Request::Txn(t) => Some(puts(&t.success).max(puts(&t.failure))),
        Request::LeaseGrant(_) => Some(LEASE_OVERHEAD),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::mvcc::{Config, KvStore, WatchConfig};
    use crate::runtime::SimDisk;

    fn open(disk: &SimDisk) -> WatchableStore {
        let kv = KvStore::open(disk, Path::new("/m/db"), Config::default()).unwrap();
        WatchableStore::new(kv, WatchConfig::default())
    }

    fn request(action: AlarmAction, member_id: u64, alarm: AlarmType) -> AlarmRequest {
        AlarmRequest {
            action: action as i32,
            member_id,
            alarm: alarm as i32,
        }
    }

    fn member(member_id: u64, alarm: AlarmType) -> AlarmMember {
        AlarmMember {
            member_id,
            alarm: alarm as i32,
        }
    }

    /// etcd's applier: activating twice keeps one alarm, the cap lasts while any member's
    /// NOSPACE alarm does, deactivating what is not active changes nothing, and alarms
    /// outlive a restart.
    #[test]
    fn nospace_caps_until_every_member_is_disarmed() {
        let disk = SimDisk::new(1);
        let mut store = open(&disk);
        let activate = |id| request(AlarmAction::Activate, id, AlarmType::Nospace);
        let deactivate = |id| request(AlarmAction::Deactivate, id, AlarmType::Nospace);
        let raised = apply(&mut store, &activate(7)).unwrap();
        assert_eq!(raised.alarms, [member(7, AlarmType::Nospace)]);
        assert!(store.kv().nospace());
        apply(&mut store, &activate(7)).unwrap();
        apply(&mut store, &activate(9)).unwrap();
        let none = request(AlarmAction::Activate, 9, AlarmType::None);
        assert!(apply(&mut store, &none).unwrap().alarms.is_empty());
        let corrupt = request(AlarmAction::Activate, 3, AlarmType::Corrupt);
        apply(&mut store, &corrupt).unwrap();
        let get = request(AlarmAction::Get, 0, AlarmType::None);
        let all = [
            member(3, AlarmType::Corrupt),
            member(7, AlarmType::Nospace),
            member(9, AlarmType::Nospace),
        ];
        assert_eq!(apply(&mut store, &get).unwrap().alarms, all);
        assert_eq!(active(&mut store, AlarmType::Nospace).unwrap(), all[1..]);

        store.kv_mut().commit().unwrap();
        drop(store);
        let mut store = open(&disk);
        assert_eq!(active(&mut store, AlarmType::None).unwrap(), all);
        assert!(store.kv().nospace());
        assert_eq!(
            apply(&mut store, &deactivate(7)).unwrap().alarms,
            [member(7, AlarmType::Nospace)]
        );
        assert!(apply(&mut store, &deactivate(7)).unwrap().alarms.is_empty());
        assert!(store.kv().nospace(), "member 9's alarm still caps writes");
        apply(&mut store, &deactivate(9)).unwrap();
        assert!(!store.kv().nospace());
        assert_eq!(active(&mut store, AlarmType::None).unwrap(), all[..1]);
    }

    #[test]
    fn quota_costs_are_etcds() {
        use crate::proto::etcdserverpb::{LeaseGrantRequest, PutRequest, RequestOp, TxnRequest};
        let put = |k: &str, v: &str| PutRequest {
            key: k.into(),
            value: v.into(),
            ..Default::default()
        };
        let op = |p| RequestOp {
            request: Some(Op::RequestPut(p)),
        };
        assert_eq!(quota_cost(&Request::Put(put("ab", "cde"))), Some(256 + 5));
        let txn = TxnRequest {
            success: vec![op(put("a", "b"))],
            failure: vec![op(put("a", "b")), op(put("c", "d"))],
            ..Default::default()
        };
        assert_eq!(quota_cost(&Request::Txn(txn)), Some(2 * 258));
        let grant = Request::LeaseGrant(LeaseGrantRequest::default());
        assert_eq!(quota_cost(&grant), Some(64));
        let compaction = Request::Compaction(Default::default());
        assert_eq!(quota_cost(&compaction), None);
    }
}
