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
use crate::lease::Lease;
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

/// The revision of detcd's last finished compaction, -1 if none.
pub(super) fn finished_compaction(tables: &Buckets) -> Result<i64, MigrateError> {
    match tables.get(&b"meta"[..]).and_then(|m| m.get(FINISHED)) {
        Some(v) => Ok(u64_of(v, "finishedCompactRev")? as i64 - 1),
        None => Ok(-1),
    }
}

/// Whether a `key` table entry goes into etcd's database. detcd's compaction keeps a
/// delete exactly at the compaction revision (for watchers starting there); etcd's
/// removes it, and its HashKV would count it if left.
pub(super) fn exported(key: &[u8], finished: i64) -> Result<bool, MigrateError> {
    let (rev, tombstone) = revision(key)?;
    Ok(!(tombstone && rev.main <= finished))
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
    let finished = finished_compaction(tables)?;
    for (k, v) in bucket(tables, "key") {
        if exported(k, finished)? {
            put("key", k, v);
        }
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

/// etcd's membership.Member as encoding/json writes it: its fields in Go's order, the
/// `omitempty` ones left out when empty.
#[derive(serde::Serialize)]
struct MemberJson<'a> {
    id: u64,
    #[serde(rename = "peerURLs")]
    peer_urls: &'a [String],
    #[serde(rename = "isLearner", skip_serializing_if = "std::ops::Not::not")]
    is_learner: bool,
    #[serde(skip_serializing_if = "str::is_empty")]
    name: &'a str,
    #[serde(rename = "clientURLs", skip_serializing_if = "<[String]>::is_empty")]
    client_urls: &'a [String],
}

fn member_json(m: &Member) -> String {
    serde_json::to_string(&MemberJson {
        id: m.id,
        peer_urls: &m.peer_ur_ls,
        is_learner: m.is_learner,
        name: &m.name,
        client_urls: &m.client_ur_ls,
    })
    .expect("plain struct")
}

/// An entry of a detcd table: the table's name, a key and its value.
pub type Entry = (&'static str, Vec<u8>, Vec<u8>);

/// One entry of etcd's database as detcd stores it: the table, key and value, or `None`
/// for what import leaves out (membership, the consistent index, the term). Checked, so
/// that nothing undecodable reaches the store.
pub fn import_entry(bucket: &[u8], k: &[u8], v: &[u8]) -> Result<Option<Entry>, MigrateError> {
    let keep = |t: &'static str, v: Vec<u8>| Ok(Some((t, k.to_vec(), v)));
    match bucket {
        b"key" => {
            let (rev, tombstone) = revision(k)?;
            let kv =
                KeyValue::decode(v).map_err(|e| bad(format!("key bucket: value at {rev}: {e}")))?;
            if kv.key.is_empty() || (!tombstone && kv.mod_revision != rev.main) {
                return Err(bad(format!("key bucket: value at {rev} does not match")));
            }
            keep("key", v.to_vec())
        }
        b"meta" if k == SCHEDULED || k == FINISHED => {
            let (rev, _) = revision(v)?;
            keep("meta", (rev.main as u64 + 1).to_be_bytes().to_vec())
        }
        b"lease" => {
            let l = LeasePb::decode(v).map_err(|e| bad(format!("lease: {e}")))?;
            if u64_of(k, "lease id")? != l.id as u64 || l.id <= 0 {
                return Err(bad(format!("lease {:x}: id does not match its key", l.id)));
            }
            let record: Vec<u8> = [l.id, l.ttl, l.remaining_ttl]
                .iter()
                .flat_map(|x| x.to_be_bytes())
                .collect();
            // A TTL the member would refuse at boot is refused here, before it is stored.
            Lease::decode(&record).map_err(bad)?;
            keep("lease", record)
        }
        b"auth" if k == b"authEnabled" => keep(
            "auth",
            u64::from(v.first() == Some(&1)).to_be_bytes().to_vec(),
        ),
        b"auth" if k == b"authRevision" => {
            keep("auth", u64_of(v, "authRevision")?.to_be_bytes().to_vec())
        }
        b"authUsers" => {
            User::decode(v).map_err(|e| bad(format!("user {k:?}: {e}")))?;
            keep("authUsers", v.to_vec())
        }
        b"authRoles" => {
            Role::decode(v).map_err(|e| bad(format!("role {k:?}: {e}")))?;
            keep("authRoles", v.to_vec())
        }
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// detcd's tables from etcd's buckets, in memory ([`import_entry`] for each entry).
    pub fn import(etcd: &Buckets) -> Result<Buckets, MigrateError> {
        let mut out = Buckets::new();
        for (name, kvs) in etcd {
            for (k, v) in kvs {
                if let Some((t, k, v)) = import_entry(name, k, v)? {
                    out.entry(t.as_bytes().to_vec()).or_default().insert(k, v);
                }
            }
        }
        Ok(out)
    }

    fn table(kvs: &[(&[u8], Vec<u8>)]) -> BTreeMap<Vec<u8>, Vec<u8>> {
        kvs.iter().map(|(k, v)| (k.to_vec(), v.clone())).collect()
    }

    /// detcd's tables holding one of everything.
    fn detcd_tables() -> Buckets {
        let put = KeyValue {
            key: b"k".to_vec(),
            create_revision: 2,
            mod_revision: 2,
            version: 1,
            value: b"v".to_vec(),
            lease: 7,
        };
        let tomb = KeyValue {
            key: b"k".to_vec(),
            ..Default::default()
        };
        let cs = ConfState {
            voters: vec![10],
            ..Default::default()
        };
        let member = Member {
            id: 10,
            name: "m".into(),
            peer_ur_ls: vec!["http://a:2380".into()],
            ..Default::default()
        };
        let lease: Vec<u8> = [7i64, 60, 0].iter().flat_map(|x| x.to_be_bytes()).collect();
        let user = User {
            name: b"alice".to_vec(),
            roles: vec!["r".into()],
            ..Default::default()
        };
        let mut t = Buckets::new();
        let r2 = Revision::new(2, 0).to_key(false);
        let r3 = Revision::new(3, 0).to_key(true);
        t.insert(
            b"key".to_vec(),
            table(&[(&r2, put.encode_to_vec()), (&r3, tomb.encode_to_vec())]),
        );
        t.insert(
            b"meta".to_vec(),
            table(&[
                (b"consistent_index", 9u64.to_be_bytes().to_vec()),
                (SCHEDULED, 3u64.to_be_bytes().to_vec()),
                (FINISHED, 3u64.to_be_bytes().to_vec()),
                (b"confState", cs.encode_to_vec()),
                (b"memberID", 10u64.to_be_bytes().to_vec()),
                (b"alarm_nospace", 1u64.to_be_bytes().to_vec()),
            ]),
        );
        t.insert(b"lease".to_vec(), table(&[(&7i64.to_be_bytes(), lease)]));
        t.insert(
            b"auth".to_vec(),
            table(&[
                (b"authEnabled", 1u64.to_be_bytes().to_vec()),
                (b"authRevision", 4u64.to_be_bytes().to_vec()),
            ]),
        );
        t.insert(
            b"authUsers".to_vec(),
            table(&[(b"alice", user.encode_to_vec())]),
        );
        t.insert(
            b"authRoles".to_vec(),
            table(&[(
                b"r",
                Role {
                    name: b"r".to_vec(),
                    ..Default::default()
                }
                .encode_to_vec(),
            )]),
        );
        t.insert(
            b"members".to_vec(),
            table(&[(&10u64.to_be_bytes(), member.encode_to_vec())]),
        );
        t.insert(
            b"members_removed".to_vec(),
            table(&[(&11u64.to_be_bytes(), vec![])]),
        );
        t
    }

    fn get<'a>(b: &'a Buckets, bucket: &str, key: &[u8]) -> Option<&'a [u8]> {
        b.get(bucket.as_bytes())?.get(key).map(Vec::as_slice)
    }

    /// The encodings etcd 3.5 reads (its schema package), value by value.
    #[test]
    fn export_writes_etcds_encodings() {
        let e = export(&detcd_tables()).unwrap();
        assert_eq!(
            get(&e, "meta", SCHEDULED),
            Some(&Revision::new(2, 0).to_key(false)[..])
        );
        assert_eq!(
            get(&e, "meta", b"consistent_index"),
            Some(&9u64.to_be_bytes()[..])
        );
        assert_eq!(
            get(&e, "meta", b"confState"),
            Some(&br#"{"voters":[10],"learners":null,"voters_outgoing":null,"learners_next":null,"auto_leave":false}"#[..])
        );
        let lease = LeasePb {
            id: 7,
            ttl: 60,
            remaining_ttl: 0,
        }
        .encode_to_vec();
        assert_eq!(get(&e, "lease", &7i64.to_be_bytes()), Some(&lease[..]));
        assert_eq!(get(&e, "auth", b"authEnabled"), Some(&[1u8][..]));
        assert_eq!(
            get(&e, "members", b"a"),
            Some(&br#"{"id":10,"peerURLs":["http://a:2380"],"name":"m"}"#[..])
        );
        assert_eq!(get(&e, "members_removed", b"b"), Some(&b"removed"[..]));
        assert_eq!(get(&e, "cluster", b"clusterVersion"), Some(CLUSTER_VERSION));
        let alarm = AlarmMember {
            member_id: 10,
            alarm: AlarmType::Nospace as i32,
        };
        assert_eq!(get(&e, "alarm", &alarm.encode_to_vec()), Some(&[][..]));
        assert_eq!(e[&b"key"[..]], detcd_tables()[&b"key"[..]]);
    }

    /// A delete detcd's compaction kept at the compaction revision is not exported.
    #[test]
    fn export_drops_the_delete_at_the_compaction_revision() {
        let mut t = detcd_tables();
        let meta = t.get_mut(&b"meta"[..]).unwrap();
        meta.insert(FINISHED.to_vec(), 4u64.to_be_bytes().to_vec()); // compacted at 3
        let e = export(&t).unwrap();
        assert_eq!(
            e[&b"key"[..]].keys().collect::<Vec<_>>(),
            [&Revision::new(2, 0).to_key(false)]
        );
    }

    /// Import takes back the data export gave out, membership and indexes aside.
    #[test]
    fn import_inverts_export_on_the_data() {
        let t = detcd_tables();
        let back = import(&export(&t).unwrap()).unwrap();
        for name in ["key", "lease", "auth", "authUsers", "authRoles"] {
            assert_eq!(back[name.as_bytes()], t[name.as_bytes()], "{name}");
        }
        let meta = &back[&b"meta"[..]];
        assert_eq!(meta.keys().collect::<Vec<_>>(), [FINISHED, SCHEDULED]);
        assert_eq!(meta[FINISHED], t[&b"meta"[..]][FINISHED]);
        assert!(!back.contains_key(&b"members"[..]));
    }

    #[test]
    fn import_refuses_what_the_store_could_not_read() {
        let good = export(&detcd_tables()).unwrap();
        let with = |bucket: &str, k: &[u8], v: &[u8]| {
            let mut b = good.clone();
            b.get_mut(bucket.as_bytes())
                .unwrap()
                .insert(k.to_vec(), v.to_vec());
            import(&b).unwrap_err().to_string()
        };
        assert!(with("key", b"short", b"").contains("revision key"));
        let r9 = Revision::new(9, 0).to_key(false);
        assert!(with("key", &r9, b"\xff\xff").contains("value at 9.0"));
        let other = LeasePb {
            id: 8,
            ttl: 1,
            remaining_ttl: 0,
        }
        .encode_to_vec();
        assert!(with("lease", &7i64.to_be_bytes(), &other).contains("does not match"));
        assert!(with("meta", FINISHED, b"x").contains("revision key"));
    }
}
