use super::*;

fn parse(args: &[&str]) -> Result<ServerConfig, String> {
    let mut argv = vec!["detcd"];
    argv.extend_from_slice(args);
    let flags = Flags::try_parse_from(argv).map_err(|e| e.to_string())?;
    ServerConfig::from_flags(&flags)
}

/// A bare etcd names itself "default" and gets member 8e9e05c52164694d in cluster
/// cdf818194e3a8c32; deriving IDs the same way gives detcd the same ones.
#[test]
fn defaults_match_etcd() {
    let c = parse(&[]).unwrap();
    assert_eq!(c.name, "default");
    assert_eq!(c.data_dir, PathBuf::from("default.detcd"));
    assert_eq!(c.listen_client_urls[0].to_string(), "http://localhost:2379");
    assert_eq!(c.listen_peer_urls[0].to_string(), "http://localhost:2380");
    assert_eq!(c.initial_cluster.len(), 1);
    assert_eq!(c.initial_cluster_state, ClusterState::New);
    assert_eq!(format!("{:x}", c.member_id()), "8e9e05c52164694d");
    assert_eq!(format!("{:x}", c.cluster_id()), "cdf818194e3a8c32");
    assert_eq!(c.quota_backend_bytes, 2 << 30);
    assert_eq!(c.max_request_bytes, 1_572_864);
    assert_eq!(c.snapshot_count, 100_000);
    assert_eq!(c.snapshot_catchup_entries, 5000);
    assert_eq!(c.wal_segment_bytes, 64 << 20);
    assert_eq!(c.election_ticks(), 10);
}

#[test]
fn wal_segments_have_a_minimum_size() {
    let c = parse(&["--experimental-wal-segment-bytes", "16384"]).unwrap();
    assert_eq!(c.wal_segment_bytes, 16 << 10);
    assert_eq!(
        parse(&["--experimental-wal-segment-bytes", "16383"]).unwrap_err(),
        "--experimental-wal-segment-bytes[16383] must be at least 16384"
    );
}

#[test]
fn three_member_cluster() {
    let cluster = "a=http://127.0.0.1:12380,b=http://127.0.0.1:22380,c=http://127.0.0.1:32380";
    let c = parse(&[
        "--name",
        "b",
        "--initial-advertise-peer-urls",
        "http://127.0.0.1:22380",
        "--initial-cluster",
        cluster,
        "--initial-cluster-token",
        "tok",
        "--data-dir",
        "/tmp/b",
    ])
    .unwrap();
    assert_eq!(c.initial_cluster.len(), 3);
    let b = c.initial_cluster.iter().find(|m| m.name == "b").unwrap();
    assert_eq!(b.id, c.member_id());
    assert!(c.initial_cluster.windows(2).all(|w| w[0].id < w[1].id));
    let a = parse(&[
        "--name",
        "a",
        "--initial-advertise-peer-urls",
        "http://127.0.0.1:12380",
        "--initial-cluster",
        cluster,
        "--initial-cluster-token",
        "tok",
    ])
    .unwrap();
    assert_eq!(
        a.cluster_id(),
        c.cluster_id(),
        "members disagree on the cluster ID"
    );
    assert_ne!(a.member_id(), c.member_id());
}

#[test]
fn name_defaults_the_initial_cluster() {
    let c = parse(&["--name", "n1"]).unwrap();
    assert_eq!(c.initial_cluster[0].name, "n1");
    assert_eq!(c.data_dir, PathBuf::from("n1.detcd"));
}

#[test]
fn bad_configurations_get_etcds_messages() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["--election-timeout", "400"],
            "--election-timeout[400ms] should be at least as 5 times as --heartbeat-interval[100ms]",
        ),
        (
            &["--election-timeout", "60000", "--heartbeat-interval", "1000"],
            "--election-timeout[60000ms] is too long, and should be set less than 50000ms",
        ),
        (
            &["--initial-cluster", "other=http://localhost:2380"],
            r#"couldn't find local name "default" in the initial cluster configuration"#,
        ),
        (
            &["--initial-cluster", "default=http://localhost:9999"],
            "--initial-cluster has default=http://localhost:9999 but missing from --initial-advertise-peer-urls=http://localhost:2380",
        ),
        (
            &["--listen-client-urls", "localhost:2379"],
            "invalid --listen-client-urls: URL scheme must be http, https, unix, or unixs: localhost:2379",
        ),
        (
            &["--initial-cluster", "default"],
            r#"invalid --initial-cluster entry "default": expected name=url"#,
        ),
        (
            &["--quota-backend-bytes", "-1"],
            "--quota-backend-bytes[-1] must not be negative",
        ),
    ];
    for (args, message) in cases {
        assert_eq!(parse(args).unwrap_err(), *message, "args {args:?}");
    }
}

#[test]
fn malformed_flags_are_refused_by_the_parser() {
    for args in [
        &["--initial-cluster-state", "old"][..],
        &["--snapshot-count", "many"],
        &["--no-such-flag"],
    ] {
        assert!(parse(args).is_err(), "accepted {args:?}");
    }
}

/// A member dials a peer at its override while the peer's ID still comes from the URL it
/// advertises, so a proxy on the link leaves the cluster's IDs unchanged.
#[test]
fn peer_dial_urls_override_where_peers_are_dialed() {
    let cluster = "a=http://127.0.0.1:12380,b=http://127.0.0.1:22380";
    let base = [
        "--name",
        "a",
        "--initial-advertise-peer-urls",
        "http://127.0.0.1:12380",
        "--initial-cluster",
        cluster,
    ];
    let plain = parse(&base).unwrap();
    let with = |dial: &str| {
        let mut args = base.to_vec();
        args.extend(["--experimental-peer-dial-urls", dial]);
        parse(&args)
    };
    let proxied = with("b=http://127.0.0.1:40000").unwrap();
    let b = proxied
        .initial_cluster
        .iter()
        .find(|m| m.name == "b")
        .unwrap();
    let advertised = b.peer_urls[0].to_string();
    assert_eq!(plain.dial_url("b", &advertised), advertised);
    assert_eq!(proxied.dial_url("b", &advertised), "http://127.0.0.1:40000");
    assert_eq!(proxied.cluster_id(), plain.cluster_id());
    assert_eq!(
        with("c=http://127.0.0.1:40000").unwrap_err(),
        r#"--experimental-peer-dial-urls names "c", which --initial-cluster does not"#
    );
    assert_eq!(
        with("b").unwrap_err(),
        r#"invalid --experimental-peer-dial-urls entry "b": expected name=url"#
    );
}

/// `--auth-token`'s forms, as etcd spells them.
#[test]
fn auth_token_types_and_options() {
    assert_eq!(parse(&[]).unwrap().auth_token, AuthToken::Simple);
    let jwt = "jwt,pub-key=k.pub,priv-key=k,sign-method=RS256,ttl=10m";
    assert_eq!(
        parse(&["--auth-token", jwt]).unwrap().auth_token,
        AuthToken::Jwt {
            sign_method: "RS256".into(),
            pub_key: "k.pub".into(),
            priv_key: Some("k".into()),
            ttl: Duration::from_secs(600),
        }
    );
    for (value, error) in [
        ("oauth", "unknown token type: oauth"),
        ("jwt,pub-key=k.pub", "jwt needs sign-method"),
        ("jwt,sign-method=ES256", "jwt needs pub-key"),
        (
            "jwt,pub-key=k,sign-method=ES256,ttl=5x",
            "invalid jwt ttl \"5x\"",
        ),
        ("jwt,colour=blue", "unknown token option: colour=blue"),
    ] {
        assert_eq!(parse(&["--auth-token", value]).unwrap_err(), error);
    }
}
