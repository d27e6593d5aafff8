//! detcdutl: the offline tool, as etcdutl is for etcd. `snapshot status` reads a snapshot
//! saved from detcd or etcd (`etcdctl snapshot save`); `snapshot restore` turns one into
//! a new member's data directory, from which `detcd` started with the same flags forms a
//! new cluster holding the snapshot's keys, revisions, leases and users. `defrag` and
//! `hashkv` work on the data directory of a stopped member.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use detcd::backend::bolt::Source;
use detcd::backend::Backend;
use detcd::migrate::{self, Prefix, Status};
use detcd::mvcc::{self, KvStore};
use detcd::runtime::RealDisk;

/// Entries restored per backend commit: bounds the memory of one write transaction.
const RESTORE_BATCH: usize = 10_000;

#[derive(Parser)]
#[command(
    name = "detcdutl",
    about = "An offline tool for detcd data and snapshots"
)]
struct Cli {
    /// Output format, as etcdutl's.
    #[arg(short = 'w', long = "write-out", value_enum, default_value_t = Format::Simple, global = true)]
    write_out: Format,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Simple,
    Json,
    Table,
}

#[derive(Subcommand)]
enum Command {
    /// Manages snapshots.
    #[command(subcommand)]
    Snapshot(Snapshot),
    /// Defragments the backend of a data directory not in use by detcd.
    Defrag {
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// Prints the KV history hash (etcd's HashKV) of a data directory not in use.
    Hashkv {
        #[arg(long)]
        data_dir: PathBuf,
        /// Maximum revision to hash (0: the latest).
        #[arg(long, default_value_t = 0)]
        rev: i64,
    },
}

#[derive(Subcommand)]
enum Snapshot {
    /// Gets the hash, revision, total keys and size of a snapshot file.
    Status { file: PathBuf },
    /// Restores a snapshot into a new data directory.
    Restore {
        file: PathBuf,
        #[arg(long, default_value = "default")]
        name: String,
        #[arg(long)]
        data_dir: Option<PathBuf>,
        #[arg(long, default_value = "default=http://localhost:2380")]
        initial_cluster: String,
        #[arg(long, default_value = "etcd-cluster")]
        initial_cluster_token: String,
        #[arg(long, default_value = "http://localhost:2380")]
        initial_advertise_peer_urls: String,
        /// Accept a file without (or with a wrong) sha256 trailer.
        #[arg(long)]
        skip_hash_check: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Snapshot(Snapshot::Status { file }) => status(&file, cli.write_out),
        Command::Defrag { data_dir } => defrag(&data_dir),
        Command::Hashkv { data_dir, rev } => hashkv(&data_dir, rev, cli.write_out),
        Command::Snapshot(Snapshot::Restore {
            file,
            name,
            data_dir,
            initial_cluster,
            initial_cluster_token: _,
            initial_advertise_peer_urls,
            skip_hash_check,
        }) => {
            let data_dir = data_dir.unwrap_or_else(|| PathBuf::from(format!("{name}.detcd")));
            check_cluster_flags(&name, &initial_cluster, &initial_advertise_peer_urls)
                .and_then(|()| restore(&file, &data_dir, skip_hash_check))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A file read in place by the bolt reader: databases can be larger than memory.
struct FileSource(std::fs::File, u64);

impl Source for FileSource {
    fn size(&self) -> u64 {
        self.1
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        std::os::unix::fs::FileExt::read_exact_at(&self.0, buf, offset)
    }
}

fn open(file: &Path) -> Result<FileSource, String> {
    let f = std::fs::File::open(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let len = f
        .metadata()
        .map_err(|e| format!("{}: {e}", file.display()))?
        .len();
    Ok(FileSource(f, len))
}

fn status(file: &Path, format: Format) -> Result<(), String> {
    let src = open(file)?;
    let s = migrate::status(&src).map_err(|e| format!("{}: {e}", file.display()))?;
    print!("{}", render(&s, format));
    Ok(())
}

/// etcdutl's status row: hash (hex), revision, total keys and size (humanized).
fn render(s: &Status, format: Format) -> String {
    let row = [
        format!("{:x}", s.hash),
        s.revision.to_string(),
        s.total_key.to_string(),
        humanize_bytes(s.total_size),
    ];
    let json = serde_json::to_string(s).expect("plain struct");
    print_row(
        &["hash", "revision", "total keys", "total size"],
        &row,
        json,
        format,
    )
}

/// etcdutl's printers of one row: `simple` joins it with commas, `json` is the message,
/// `table` is tablewriter's (headers upper-case and centred, cells right-aligned).
fn print_row(hdr: &[&str], row: &[String], json: String, format: Format) -> String {
    match format {
        Format::Simple => format!("{}\n", row.join(", ")),
        Format::Json => format!("{json}\n"),
        Format::Table => {
            let hdr: Vec<String> = hdr.iter().map(|h| h.to_uppercase()).collect();
            let widths: Vec<usize> = hdr
                .iter()
                .zip(row)
                .map(|(h, r)| h.len().max(r.len()) + 2)
                .collect();
            let line: String = widths
                .iter()
                .map(|w| format!("+{}", "-".repeat(*w)))
                .collect::<String>()
                + "+\n";
            let centered: String = hdr
                .iter()
                .zip(&widths)
                .map(|(h, w)| {
                    let left = (w - h.len()) / 2;
                    format!("|{}{h}{}", " ".repeat(left), " ".repeat(w - h.len() - left))
                })
                .collect::<String>()
                + "|\n";
            let right: String = row
                .iter()
                .zip(&widths)
                .map(|(r, w)| format!("|{:>width$} ", r, width = w - 1))
                .collect::<String>()
                + "|\n";
            format!("{line}{centered}{line}{right}{line}")
        }
    }
}

/// The backend of a data directory, which must exist.
fn backend_path(data_dir: &Path) -> Result<PathBuf, String> {
    let db = data_dir.join("member").join("snap").join("db");
    if !db.is_file() {
        return Err(format!("{}: no such file", db.display()));
    }
    Ok(db)
}

fn defrag(data_dir: &Path) -> Result<(), String> {
    let failed = |e: String| {
        format!(
            "Failed to defragment etcd data[{}] ({e})",
            data_dir.display()
        )
    };
    let db = backend_path(data_dir).map_err(failed)?;
    let mut backend = Backend::open(&RealDisk, &db).map_err(|e| failed(e.to_string()))?;
    backend
        .defragment(&RealDisk)
        .map_err(|e| failed(e.to_string()))?;
    Ok(())
}

/// etcdutl 3.6's `hashkv`, on a detcd data directory.
fn hashkv(data_dir: &Path, rev: i64, format: Format) -> Result<(), String> {
    let db = backend_path(data_dir)?;
    let kv = KvStore::open(&RealDisk, &db, mvcc::Config::default()).map_err(|e| e.to_string())?;
    let h = kv.hash_kv(rev).map_err(|e| e.to_string())?;
    /// etcdutl's HashKV, in its field order.
    #[derive(serde::Serialize)]
    #[serde(rename_all = "camelCase")]
    struct HashKv {
        hash: u32,
        hash_revision: i64,
        compact_revision: i64,
    }
    let json = serde_json::to_string(&HashKv {
        hash: h.hash,
        hash_revision: h.hash_revision,
        compact_revision: h.compact_revision,
    })
    .expect("plain struct");
    let row = [
        h.hash.to_string(),
        h.hash_revision.to_string(),
        h.compact_revision.to_string(),
    ];
    print!(
        "{}",
        print_row(
            &["hash", "hash revision", "compact revision"],
            &row,
            json,
            format
        )
    );
    Ok(())
}

/// go-humanize's Bytes: SI units, one decimal below 10.
fn humanize_bytes(n: u64) -> String {
    if n < 10 {
        return format!("{n} B");
    }
    let units = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    let e = ((n as f64).ln() / 1000f64.ln()).floor() as usize;
    let val = (n as f64 / 1000f64.powi(e as i32) * 10.0 + 0.5).floor() / 10.0;
    if val < 10.0 {
        format!("{val:.1} {}", units[e])
    } else {
        format!("{val:.0} {}", units[e])
    }
}

/// The member must be in the initial cluster, at the peer URLs it advertises (etcd's check).
fn check_cluster_flags(name: &str, cluster: &str, advertise: &str) -> Result<(), String> {
    let mut urls: Vec<&str> = cluster
        .split(',')
        .filter_map(|m| m.split_once('='))
        .filter(|(n, _)| *n == name)
        .map(|(_, u)| u)
        .collect();
    if urls.is_empty() {
        return Err(format!(
            "couldn't find local name {name:?} in the initial cluster configuration"
        ));
    }
    let mut advertised: Vec<&str> = advertise.split(',').collect();
    urls.sort_unstable();
    advertised.sort_unstable();
    if urls != advertised {
        return Err(format!(
            "--initial-cluster has {name}={} but missing from --initial-advertise-peer-urls={advertise}",
            urls.join(",")
        ));
    }
    Ok(())
}

/// Writes the snapshot's data as a detcd backend into a directory beside `data_dir`, then
/// renames it into place: a failure leaves nothing half-written.
fn restore(file: &Path, data_dir: &Path, skip_hash_check: bool) -> Result<(), String> {
    if std::fs::read_dir(data_dir).is_ok_and(|mut d| d.next().is_some()) {
        return Err(format!(
            "data-dir {:?} not empty or could not be read",
            data_dir.display().to_string()
        ));
    }
    let src = open(file)?;
    migrate::check_trailer(&src, skip_hash_check)
        .map_err(|e| format!("{}: {e}", file.display()))?;
    let db = Prefix(&src, migrate::db_len(src.size()));
    let staging = data_dir.with_extension("restoring");
    let _ = std::fs::remove_dir_all(&staging);
    let written = (|| -> Result<(), String> {
        let path = staging.join("member").join("snap").join("db");
        let mut backend = Backend::open(&RealDisk, &path).map_err(|e| e.to_string())?;
        let mut batch = 0;
        migrate::import_each(&db, |table, k, v| {
            backend.insert(table, k, v)?;
            batch += 1;
            if batch == RESTORE_BATCH {
                backend.commit()?;
                batch = 0;
            }
            Ok(())
        })
        .map_err(|e| format!("{}: {e}", file.display()))?;
        backend.commit().map_err(|e| e.to_string())?;
        drop(backend);
        if data_dir.exists() {
            std::fs::remove_dir(data_dir).map_err(|e| e.to_string())?;
        }
        std::fs::rename(&staging, data_dir).map_err(|e| e.to_string())
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(e);
    }
    eprintln!(
        "restored snapshot {} into {}",
        file.display(),
        data_dir.display()
    );
    Ok(())
}
