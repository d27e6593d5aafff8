//! etcd reads every flag from an `ETCD_*` variable too, and refuses a flag given both ways.
//! One test per process: the environment is global.

use detcd::server::config::{Flags, ServerConfig};

#[test]
fn environment_sets_flags_and_conflicts_are_refused() {
    std::env::set_var("ETCD_NAME", "from-env");
    std::env::set_var("ETCD_SNAPSHOT_COUNT", "42");
    let flags = Flags::parse_from(["detcd"]).unwrap();
    let config = ServerConfig::from_flags(&flags).unwrap();
    assert_eq!(config.name, "from-env");
    assert_eq!(config.snapshot_count, 42);
    assert_eq!(config.data_dir.to_str(), Some("from-env.detcd"));

    let err = Flags::parse_from(["detcd", "--name", "flag"]).unwrap_err();
    assert!(
        err.to_string().contains(
            "conflicting environment variable \"ETCD_NAME\" is shadowed by corresponding command-line flag"
        ),
        "{err}"
    );
    std::env::remove_var("ETCD_NAME");
    let flags = Flags::parse_from(["detcd", "--name", "flag"]).unwrap();
    assert_eq!(flags.name, "flag");
}
