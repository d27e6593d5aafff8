//! etcd 3.5's buckets and their encodings, against detcd's tables (see
//! `backend::layout`). Integers are big-endian in both.
//!
//! | bucket | etcd | detcd |
//! | --- | --- | --- |
//! | `key` | revision key (main, `_`, sub; `t` after a tombstone) to `mvccpb.KeyValue` | the same |
//! | `meta` | `consistent_index`, `term` (u64; detcd exports no term); `scheduledCompactRev`, `finishedCompactRev` (revision keys, sub 0); `confState` (JSON) | u64s, compaction revisions stored plus one; `confState` a `raftpb.ConfState` |
//! | `lease` | id (i64) to `leasepb.Lease` | id to id, TTL, remaining TTL (3 × i64) |
//! | `auth` | `authEnabled` (one byte), `authRevision` (u64) | both u64 |
//! | `authUsers`, `authRoles` | name to `authpb.User` / `authpb.Role` | the same |
//! | `members` | hex id to JSON member | id (u64) to `etcdserverpb.Member` |
//! | `members_removed` | hex id to `removed` | id to nothing |
//! | `cluster` | `clusterVersion` | (none) |
//! | `alarm` | `etcdserverpb.AlarmMember` to nothing | `meta` flag `alarm_nospace` |
//!
//! Import keeps the data (keys, leases, auth, compaction) and leaves membership and the
//! consistent index out: as after `etcdutl snapshot restore`, the restored member starts a
//! new cluster from its flags, with the data's revisions.

use std::collections::BTreeMap;

use prost::Message;

use super::MigrateError;
use crate::backend::bolt::Buckets;
use crate::mvcc::revision::{MARKED_REV_BYTES, REV_BYTES};
use crate::mvcc::Revision;
use crate::proto::authpb::{Role, User};
use crate::proto::etcdserverpb::{AlarmMember, AlarmType, Member};
use crate::proto::mvccpb::KeyValue;
use crate::proto::raftpb::ConfState;

/// etcd's `leasepb.Lease`, as its lease bucket stores it.
#[derive(Clone, PartialEq, Message)]
struct LeasePb {
    #[prost(int64, tag = "1")]
    id: i64,
    #[prost(int64, tag = "2")]
    ttl: i64,
    #[prost(int64, tag = "3")]
    remaining_ttl: i64,
}

/// The cluster version etcd 3.5 records, as detcd's `/version` reports it.
const CLUSTER_VERSION: &[u8] = b"3.5.0";
const SCHEDULED: &[u8] = b"scheduledCompactRev";
const FINISHED: &[u8] = b"finishedCompactRev";

fn bad(what: impl Into<String>) -> MigrateError {
    MigrateError::NotEtcd(what.into())
}

/// A `key` bucket key as a revision and whether it is a tombstone, checked.
pub fn revision(k: &[u8]) -> Result<(Revision, bool), MigrateError> {
    let ok = (k.len() == REV_BYTES || (k.len() == MARKED_REV_BYTES && k[REV_BYTES] == b't'))
        && k[8] == b'_'
        && k[0] & 0x80 == 0
        && k[9] & 0x80 == 0;
    if !ok {
        return Err(bad(format!("key bucket: revision key {k:?}")));
    }
    Ok(Revision::from_key(k))
}

fn u64_of(v: &[u8], what: &str) -> Result<u64, MigrateError> {
    let b: [u8; 8] = v
        .try_into()
        .map_err(|_| bad(format!("{what}: {} bytes, want 8", v.len())))?;
    Ok(u64::from_be_bytes(b))
}

fn bucket<'a>(b: &'a Buckets, name: &str) -> impl Iterator<Item = (&'a Vec<u8>, &'a Vec<u8>)> {
    b.get(name.as_bytes()).into_iter().flatten()
}

/// etcd's buckets from detcd's tables (as [`crate::backend::tables`] reads them). `term`
/// stays out: detcd keeps none in its backend, and etcd reads an absent one as 0 until
/// `etcdutl snapshot restore` writes it.
pub fn export(tables: &Buckets) -> Result<Buckets, MigrateError> {
    let mut out = Buckets::new();
    for name in [
        "key",
        "meta",
        "lease",
        "auth",
        "authUsers",
        "authRoles",
        "members",
        "members_removed",
        "cluster",
        "alarm",
    ] {
        out.insert(name.as_bytes().to_vec(), BTreeMap::new());
    }
    let mut put = |b: &str, k: &[u8], v: &[u8]| {
        out.get_mut(b.as_bytes())
            .expect("every bucket created")
            .insert(k.to_vec(), v.to_vec());
    };
    for (k, v) in bucket(tables, "key") {
        put("key", k, v);
    }
    let mut member_id = 0;
    let mut nospace = false;
    for (k, v) in bucket(tables, "meta") {
        match k.as_slice() {
            b"consistent_index" => put("meta", k, v),
            SCHEDULED | FINISHED => {
                if let Some(rev) = u64_of(v, "compaction revision")?.checked_sub(1) {
                    put("meta", k, &Revision::new(rev as i64, 0).to_key(false));
                }
            }
            b"confState" => {
                let cs = ConfState::decode(v.as_slice()).map_err(|e| bad(e.to_string()))?;
                put("meta", k, conf_state_json(&cs).as_bytes());
            }
            b"memberID" => member_id = u64_of(v, "memberID")?,
            b"alarm_nospace" => nospace = u64_of(v, "alarm_nospace")? != 0,
            _ => {}
        }
    }
    for (k, v) in bucket(tables, "lease") {
        let int = |r: std::ops::Range<usize>| {
            v.get(r)
                .and_then(|b| b.try_into().ok())
                .map(i64::from_be_bytes)
                .ok_or_else(|| bad("lease record"))
        };
        let lease = LeasePb {
            id: int(0..8)?,
            ttl: int(8..16)?,
            remaining_ttl: int(16..24)?,
        };
        put("lease", k, &lease.encode_to_vec());
    }
    for (k, v) in bucket(tables, "auth") {
        match k.as_slice() {
            b"authEnabled" => put("auth", k, &[(u64_of(v, "authEnabled")? != 0) as u8]),
            _ => put("auth", k, v),
        }
    }
    for (k, v) in bucket(tables, "authUsers") {
        put("authUsers", k, v);
    }
    for (k, v) in bucket(tables, "authRoles") {
        put("authRoles", k, v);
    }
    for (_, v) in bucket(tables, "members") {
        let m = Member::decode(v.as_slice()).map_err(|e| bad(e.to_string()))?;
        put(
            "members",
            format!("{:x}", m.id).as_bytes(),
            member_json(&m).as_bytes(),
        );
    }
    for (k, _) in bucket(tables, "members_removed") {
        let id = u64_of(k, "removed member")?;
        put("members_removed", format!("{id:x}").as_bytes(), b"removed");
    }
    put("cluster", b"clusterVersion", CLUSTER_VERSION);
    if nospace {
        let alarm = AlarmMember {
            member_id,
            alarm: AlarmType::Nospace as i32,
        };
        put("alarm", &alarm.encode_to_vec(), b"");
    }
    Ok(out)
}

/// Go's encoding/json of raftpb.ConfState, as etcd stores it.
fn conf_state_json(cs: &ConfState) -> String {
    let list = |ids: &[u64]| -> serde_json::Value {
        if ids.is_empty() {
            serde_json::Value::Null
        } else {
            ids.into()
        }
    };
    format!(
        r#"{{"voters":{},"learners":{},"voters_outgoing":{},"learners_next":{},"auto_leave":{}}}"#,
        list(&cs.voters),
        list(&cs.learners),
        list(&cs.voters_outgoing),
        list(&cs.learners_next),
        cs.auto_leave
    )
}

/// etcd's membership.Member in JSON (empty fields omitted as its tags say).
fn member_json(m: &Member) -> String {
    let mut j = serde_json::json!({ "id": m.id, "peerURLs": m.peer_ur_ls });
    if m.is_learner {
        j["isLearner"] = true.into();
    }
    if !m.name.is_empty() {
        j["name"] = m.name.clone().into();
    }
    if !m.client_ur_ls.is_empty() {
        j["clientURLs"] = m.client_ur_ls.clone().into();
    }
    j.to_string()
}

/// detcd's tables from etcd's buckets: the data, checked so that nothing undecodable
/// reaches the store; membership and the consistent index left out.
pub fn import(etcd: &Buckets) -> Result<Buckets, MigrateError> {
    let mut out = Buckets::new();
    let mut put = |t: &str, k: &[u8], v: &[u8]| {
        out.entry(t.as_bytes().to_vec())
            .or_default()
            .insert(k.to_vec(), v.to_vec());
    };
    for (k, v) in bucket(etcd, "key") {
        let (rev, tombstone) = revision(k)?;
        let kv = KeyValue::decode(v.as_slice())
            .map_err(|e| bad(format!("key bucket: value at {rev}: {e}")))?;
        if kv.key.is_empty() || (!tombstone && kv.mod_revision != rev.main) {
            return Err(bad(format!("key bucket: value at {rev} does not match")));
        }
        put("key", k, v);
    }
    for (k, v) in bucket(etcd, "meta") {
        if k == SCHEDULED || k == FINISHED {
            let (rev, _) = revision(v)?;
            put("meta", k, &(rev.main as u64 + 1).to_be_bytes());
        }
    }
    for (k, v) in bucket(etcd, "lease") {
        let l = LeasePb::decode(v.as_slice()).map_err(|e| bad(format!("lease: {e}")))?;
        if u64_of(k, "lease id")? != l.id as u64 || l.id <= 0 {
            return Err(bad(format!("lease {:x}: id does not match its key", l.id)));
        }
        let mut record = Vec::with_capacity(24);
        for x in [l.id, l.ttl, l.remaining_ttl] {
            record.extend_from_slice(&x.to_be_bytes());
        }
        put("lease", k, &record);
    }
    for (k, v) in bucket(etcd, "auth") {
        match k.as_slice() {
            b"authEnabled" => put("auth", k, &u64::from(v.first() == Some(&1)).to_be_bytes()),
            b"authRevision" => put("auth", k, &u64_of(v, "authRevision")?.to_be_bytes()),
            _ => {}
        }
    }
    for (k, v) in bucket(etcd, "authUsers") {
        User::decode(v.as_slice()).map_err(|e| bad(format!("user {k:?}: {e}")))?;
        put("authUsers", k, v);
    }
    for (k, v) in bucket(etcd, "authRoles") {
        Role::decode(v.as_slice()).map_err(|e| bad(format!("role {k:?}: {e}")))?;
        put("authRoles", k, v);
    }
    Ok(out)
}
