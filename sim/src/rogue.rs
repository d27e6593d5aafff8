//! A rogue process on the peer network. It reads what any client can (the cluster ID and
//! the members' IDs from a Status header, the leader and its term), then for the whole run
//! sends every member lies through the real peer transport: messages from strangers, and
//! messages under real members' IDs that no honest member sends (a proposal without
//! entries, a heartbeat committing past the log or `u64::MAX`, an append with a gap or with
//! terms out of order, an acknowledgement of an entry the leader never had, terms of zero
//! or past the cap, local message types, a MsgSnap on the stream, a message for another
//! member or from the receiver itself), and snapshots that must be refused (a bad checksum,
//! an oversized total, garbage for a database, a database with a row that does not decode,
//! index 0). Every lie is one a member must refuse without changing its log, so the
//! cluster must stay linearizable, and no member may panic or stop.

use std::path::Path;
use std::time::Duration;

use detcd::backend::{Backend, LEASE};
use detcd::proto::etcdserverpb::maintenance_client::MaintenanceClient;
use detcd::proto::etcdserverpb::StatusRequest;
use detcd::proto::peerpb::peer_client::PeerClient;
use detcd::proto::peerpb::{PeerMessage, SnapshotChunk};
use detcd::proto::raftpb::{ConfState, Entry, Message, MessageType, Snapshot, SnapshotMetadata};
use detcd::raft::MAX_INDEX_OR_TERM;
use detcd::runtime::{seeded_rng, Clock, Disk, OpenMode, SimDisk};
use rand::seq::IndexedRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::kv_cluster::{client_url, peer_url};

/// What the rogue knows of the cluster.
struct Intel {
    cluster_id: u64,
    /// Member IDs by position.
    ids: Vec<u64>,
    leader: u64,
    term: u64,
}

async fn spy(members: usize) -> Option<Intel> {
    let mut ids = Vec::new();
    let (mut cluster_id, mut leader, mut term) = (0, 0, 0);
    for i in 0..members {
        let mut m = MaintenanceClient::connect(client_url(i)).await.ok()?;
        let s = m.status(StatusRequest {}).await.ok()?.into_inner();
        let header = s.header?;
        cluster_id = header.cluster_id;
        ids.push(header.member_id);
        if s.raft_term >= term {
            (leader, term) = (s.leader, s.raft_term);
        }
    }
    Some(Intel {
        cluster_id,
        ids,
        leader,
        term,
    })
}

fn message(t: MessageType, from: u64, to: u64, term: u64) -> Message {
    let mut m = Message {
        from,
        to,
        term,
        ..Message::default()
    };
    m.set_type(t);
    m
}

/// One lie for the member with ID `to`.
fn lie(rng: &mut ChaCha8Rng, intel: &Intel, to: u64) -> Message {
    let others: Vec<u64> = intel.ids.iter().copied().filter(|&id| id != to).collect();
    let from = *others.choose(rng).expect("three members");
    let term = intel.term;
    let far = rng.random_range(1_000_000..MAX_INDEX_OR_TERM);
    let mut m;
    match rng.random_range(0..14) {
        0 => {
            // A stranger: anything at all.
            m = message(MessageType::MsgApp, rng.random(), to, rng.random());
            m.r#type = rng.random_range(0..19);
            m.index = rng.random();
            m.commit = rng.random();
        }
        1 => m = message(MessageType::MsgProp, from, to, 0),
        2 => {
            m = message(MessageType::MsgHeartbeat, intel.leader, to, term);
            m.commit = if rng.random() { u64::MAX } else { far };
        }
        3 | 4 => {
            m = message(MessageType::MsgApp, intel.leader, to, term);
            m.index = rng.random_range(0..1000);
            m.log_term = term;
            let gap = rng.random_range(2..5);
            let (first, first_term) = if rng.random_range(0..2) == 0 {
                (m.index + gap, term)
            } else {
                (m.index + 1, term + 1)
            };
            m.entries = (0..3)
                .map(|i| Entry {
                    index: first + i,
                    term: first_term,
                    data: vec![0xee; 8],
                    ..Entry::default()
                })
                .collect();
        }
        5 => {
            m = message(MessageType::MsgAppResp, from, intel.leader, term);
            m.index = far;
        }
        6 => m = message(MessageType::MsgVote, from, to, MAX_INDEX_OR_TERM + far),
        7 => {
            let t = [
                MessageType::MsgApp,
                MessageType::MsgHeartbeat,
                MessageType::MsgVote,
            ];
            m = message(*t.choose(rng).unwrap(), from, to, 0);
        }
        8 => {
            m = message(MessageType::MsgPreVote, from, to, term + 1);
            m.log_term = term + 2;
        }
        9 => {
            let t = [
                MessageType::MsgHup,
                MessageType::MsgBeat,
                MessageType::MsgCheckQuorum,
                MessageType::MsgSnapStatus,
                MessageType::MsgUnreachable,
            ];
            m = message(*t.choose(rng).unwrap(), from, to, term);
        }
        10 => {
            m = message(MessageType::MsgHeartbeat, from, to, term);
            m.r#type = rng.random_range(19..1000);
        }
        11 => {
            m = message(
                MessageType::MsgHeartbeat,
                from,
                *others.choose(rng).unwrap(),
                term,
            )
        }
        12 => m = message(MessageType::MsgHeartbeat, to, to, term),
        _ => {
            m = message(MessageType::MsgSnap, intel.leader, to, term);
            m.snapshot = Some(snapshot(far, term, &intel.ids));
        }
    }
    m
}

fn snapshot(index: u64, term: u64, voters: &[u64]) -> Snapshot {
    Snapshot {
        data: Vec::new(),
        metadata: Some(SnapshotMetadata {
            conf_state: Some(ConfState {
                voters: voters.to_vec(),
                ..ConfState::default()
            }),
            index,
            term,
        }),
    }
}

/// A redb database that opens and is intact, with one lease record of the wrong size.
fn database_with_a_bad_row(seed: u64) -> Vec<u8> {
    let disk = SimDisk::new(seed);
    let path = Path::new("/rogue/db");
    let mut b = Backend::open(&disk, path).expect("a fresh backend");
    let mut t = b.tx().open_table(LEASE).expect("the lease table");
    t.insert([0u8; 8].as_slice(), [1u8; 3].as_slice())
        .expect("an insert");
    drop(t);
    b.commit().expect("a commit");
    drop(b);
    let f = disk.open(path, OpenMode::Existing).expect("the file");
    let mut data = vec![0; f.len().expect("its size") as usize];
    f.read_at(0, &mut data).expect("its bytes");
    data
}

/// A snapshot stream that must be refused.
fn bad_snapshot(rng: &mut ChaCha8Rng, intel: &Intel, to: u64, seed: u64) -> Vec<SnapshotChunk> {
    let index = rng.random_range(1_000_000..MAX_INDEX_OR_TERM);
    let mut m = message(MessageType::MsgSnap, intel.leader, to, intel.term);
    m.snapshot = Some(snapshot(index, intel.term, &intel.ids));
    let mut data = vec![0xab; 8192];
    let mut total = data.len() as u64;
    let mut crc = crc32fast::hash(&data);
    match rng.random_range(0..5) {
        0 => crc ^= 1,
        1 => total = 64 << 30,
        2 => {}
        3 => {
            data = database_with_a_bad_row(seed);
            total = data.len() as u64;
            crc = crc32fast::hash(&data);
        }
        _ => m.snapshot = Some(snapshot(0, intel.term, &intel.ids)),
    }
    vec![SnapshotChunk {
        cluster_id: intel.cluster_id,
        message: Some(m),
        total_size: total,
        crc32: crc,
        data,
    }]
}

/// Lies to the members of a `members`-member cluster until `until` has passed, in rounds:
/// learn the leader and term, then send each member a stream of lies and one snapshot.
pub async fn rogue(seed: u64, members: usize, until: Duration) {
    let mut rng = seeded_rng(seed ^ 0x0bad_c0de);
    let start = Clock.now();
    let (mut lies, mut snapshots) = (0u64, 0u64);
    while start.elapsed() < until {
        Clock
            .sleep(Duration::from_millis(rng.random_range(50..300)))
            .await;
        let Some(intel) = spy(members).await else {
            continue;
        };
        let target = rng.random_range(0..members);
        let to = intel.ids[target];
        let Ok(mut peer) = PeerClient::connect(peer_url(target)).await else {
            continue;
        };
        let batch: Vec<PeerMessage> = (0..rng.random_range(1..20))
            .map(|_| PeerMessage {
                cluster_id: intel.cluster_id,
                message: Some(lie(&mut rng, &intel, to)),
            })
            .collect();
        lies += batch.len() as u64;
        // The stream ends at the first message the transport itself refuses; Raft's
        // refusals are not reported back.
        let _ = peer.stream(futures::stream::iter(batch)).await;
        let chunks = bad_snapshot(&mut rng, &intel, to, seed);
        let refused = peer.snapshot(futures::stream::iter(chunks)).await;
        assert!(refused.is_err(), "member {to:x} accepted a bad snapshot");
        snapshots += 1;
    }
    assert!(
        lies > 100 && snapshots > 10,
        "the rogue told {lies} lies and sent {snapshots} snapshots"
    );
}
