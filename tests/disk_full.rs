//! A member whose disk refuses to grow its files stops with the file and the errno named,
//! without a panic, and boots again once the disk is fixed with every write it
//! acknowledged. RLIMIT_FSIZE stands in for the full disk: the kernel refuses to extend a
//! file past it (EFBIG) as a full disk refuses with ENOSPC, and no privileges or mounts
//! are needed.

#![cfg(not(madsim))]

mod common;

use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::time::Duration;

use common::maint::wait_exit;
use common::{ready_client, Member, Process};

/// Largest file the limited member may write: past its empty backend (1.1 MB) and a few
/// hundred kilobytes of values.
const FILE_LIMIT: u64 = 2 << 20;
const VALUE: usize = 64 << 10;

/// Starts `m` with files capped at [`FILE_LIMIT`]; its stderr goes to `log`.
fn start_capped(m: &Member, log: &std::path::Path) -> Process {
    let mut command = m.command(
        env!("CARGO_BIN_EXE_detcd"),
        None,
        &["--experimental-wal-segment-bytes=16384"],
    );
    command
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap());
    // SAFETY: between fork and exec only async-signal-safe calls (signal, setrlimit).
    unsafe {
        command.pre_exec(|| {
            // A write past the limit then fails with EFBIG instead of killing the process.
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let limit = libc::rlimit {
                rlim_cur: FILE_LIMIT,
                rlim_max: FILE_LIMIT,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Process(command.spawn().unwrap())
}

#[tokio::test]
async fn a_member_out_of_space_stops_naming_the_file_and_keeps_what_it_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let m = Member::new("m1", dir.path());
    let log = dir.path().join("capped.log");
    let mut p = start_capped(&m, &log);
    let mut c = ready_client(m.client_port).await;
    let mut acknowledged = Vec::new();
    for i in 0..200u32 {
        let (key, value) = (format!("k{i}"), vec![i as u8; VALUE]);
        match tokio::time::timeout(Duration::from_secs(5), c.put(key.clone(), value, None)).await {
            Ok(Ok(_)) => acknowledged.push(key),
            _ => break,
        }
    }
    assert!(
        acknowledged.len() < 200,
        "{} puts of {VALUE} bytes fit under a {FILE_LIMIT}-byte file limit",
        acknowledged.len()
    );
    let status = wait_exit(&mut p, Duration::from_secs(20)).expect("the member stops");
    let stderr = std::fs::read_to_string(&log).unwrap();
    assert_eq!(status.code(), Some(1), "{stderr}");
    let data_dir = m.data_dir.to_str().unwrap();
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.contains(data_dir) && last.contains("File too large (os error 27)"),
        "the exit names neither the file nor the errno: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    drop(p);

    // The disk is fixed: the member boots and has every acknowledged write.
    let _p = m.start(None);
    let mut c = ready_client(m.client_port).await;
    for (i, key) in acknowledged.iter().enumerate() {
        let got = c.get(key.as_str(), None).await.unwrap();
        let kv = got.kvs().first().unwrap_or_else(|| panic!("{key} is lost"));
        assert_eq!(kv.value(), vec![i as u8; VALUE].as_slice(), "{key}");
    }
    eprintln!("{} writes acknowledged before: {last}", acknowledged.len());
}
