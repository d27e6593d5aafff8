//! etcd's configuration file (`--config-file`): YAML whose keys are the flags' names, with
//! the TLS settings in `client-transport-security` and `peer-transport-security` sections
//! (`peer-transport-security: {cert-file: …}` is `--peer-cert-file`). The file becomes
//! the command line it stands for, so a key means exactly what its flag means.
//!
//! Stricter than etcd, which drops keys it does not know: a key etcd 3.5 does not know is
//! an error naming it. A key etcd knows and detcd does not serve is ignored with a warning,
//! except transport security set to something: a member must not serve plaintext when its
//! file asks for TLS.

use serde_norway::Value;

/// etcd 3.5's configuration keys that no detcd flag takes.
const ETCD_ONLY: &[&str] = &[
    "auto-tls",
    "backend-batch-interval",
    "backend-batch-limit",
    "backend-bbolt-freelist-type",
    "cert-file",
    "cipher-suites",
    "client-cert-auth",
    "client-cert-file",
    "client-key-file",
    "cors",
    "discovery",
    "discovery-fallback",
    "discovery-proxy",
    "discovery-srv",
    "discovery-srv-name",
    "enable-grpc-gateway",
    "enable-log-rotation",
    "enable-pprof",
    "enable-v2",
    "experimental-bootstrap-defrag-threshold-megabytes",
    "experimental-distributed-tracing-address",
    "experimental-distributed-tracing-instance-id",
    "experimental-distributed-tracing-service-name",
    "experimental-downgrade-check-time",
    "experimental-enable-distributed-tracing",
    "experimental-enable-v2v3",
    "experimental-memory-mlock",
    "experimental-txn-mode-write-with-shared-buffer",
    "experimental-warning-apply-duration",
    "host-whitelist",
    "initial-election-tick-advance",
    "key-file",
    "log-outputs",
    "log-rotation-config-json",
    "max-snapshots",
    "max-wals",
    "metrics",
    "pre-vote",
    "proxy",
    "proxy-dial-timeout",
    "proxy-failure-wait",
    "proxy-read-timeout",
    "proxy-refresh-interval",
    "proxy-write-timeout",
    "self-signed-cert-validity",
    "trusted-ca-file",
    "v2-deprecation",
    "wal-dir",
];

/// The sections holding transport security, and the prefix their keys take as flags.
const SECURITY_SECTIONS: &[(&str, &str)] = &[
    ("client-transport-security", ""),
    ("peer-transport-security", "peer-"),
];

/// The command-line arguments `yaml` stands for; `has_flag` says whether detcd has a flag
/// by that long name.
pub(super) fn args(yaml: &str, has_flag: impl Fn(&str) -> bool) -> Result<Vec<String>, String> {
    let doc: Value = serde_norway::from_str(yaml).map_err(|e| e.to_string())?;
    let map = match doc {
        Value::Mapping(map) => map,
        Value::Null => return Ok(Vec::new()),
        _ => return Err("the file is not a mapping of keys to values".into()),
    };
    let mut args = Vec::new();
    for (key, value) in map {
        let key = scalar(&key).ok_or("a key that is not a string")?;
        let section = SECURITY_SECTIONS.iter().find(|(s, _)| *s == key);
        match (section, value) {
            (Some(_), Value::Null) => {}
            (Some((_, prefix)), Value::Mapping(fields)) => {
                for (field, value) in fields {
                    let field = scalar(&field).ok_or("a key that is not a string")?;
                    let flag = format!("{prefix}{field}");
                    let named = format!("{key}.{field}");
                    if !ETCD_ONLY.contains(&field.as_str()) && !has_flag(&flag) {
                        return Err(format!("unknown key {named:?}"));
                    }
                    push(&mut args, &flag, &named, &value, &has_flag, true)?;
                }
            }
            (Some(_), _) => return Err(format!("{key:?} must be a mapping")),
            (None, value) => {
                if !ETCD_ONLY.contains(&key.as_str()) && !has_flag(&key) {
                    return Err(format!("unknown key {key:?}"));
                }
                push(&mut args, &key, &key, &value, &has_flag, false)?;
            }
        }
    }
    Ok(args)
}

/// Adds `--flag=value` for the key `named`, or warns that detcd ignores it. Security
/// settings detcd does not take are refused unless empty.
fn push(
    args: &mut Vec<String>,
    flag: &str,
    named: &str,
    value: &Value,
    has_flag: impl Fn(&str) -> bool,
    security: bool,
) -> Result<(), String> {
    let text = match value {
        Value::Null => return Ok(()),
        Value::Sequence(items) => items
            .iter()
            .map(|v| scalar(v).ok_or_else(|| format!("{named:?} must hold plain values")))
            .collect::<Result<Vec<_>, _>>()?
            .join(","),
        v => scalar(v).ok_or_else(|| format!("{named:?} must be a plain value"))?,
    };
    if has_flag(flag) {
        args.push(format!("--{flag}={text}"));
    } else if security && !matches!(text.as_str(), "" | "false") {
        return Err(format!("{named:?} is not served by detcd"));
    } else {
        tracing::warn!("config file: {named:?} is not served by detcd; ignored");
    }
    Ok(())
}

/// A scalar as its flag value.
fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::args;

    fn detcd_flag(name: &str) -> bool {
        matches!(
            name,
            "name" | "data-dir" | "heartbeat-interval" | "peer-cert-file"
        )
    }

    #[test]
    fn keys_become_flags() {
        let yaml = "name: 'infra1'\ndata-dir: /var/lib/etcd\nheartbeat-interval: 100\n\
                    wal-dir:\nlog-outputs: [stderr]\nenable-v2: true\n\
                    client-transport-security:\n  cert-file:\n  client-cert-auth: false\n\
                    peer-transport-security:\n  cert-file: /p.crt\n";
        assert_eq!(
            args(yaml, detcd_flag).unwrap(),
            [
                "--name=infra1",
                "--data-dir=/var/lib/etcd",
                "--heartbeat-interval=100",
                "--peer-cert-file=/p.crt"
            ]
        );
        assert_eq!(args("", detcd_flag).unwrap(), Vec::<String>::new());
    }

    #[test]
    fn what_the_file_cannot_say() {
        for (yaml, error) in [
            ("nmae: x", r#"unknown key "nmae""#),
            (
                "peer-transport-security:\n  cert: x",
                r#"unknown key "peer-transport-security.cert""#,
            ),
            (
                "client-transport-security:\n  cert-file: /c.crt",
                r#""client-transport-security.cert-file" is not served by detcd"#,
            ),
            (
                "client-transport-security: x",
                r#""client-transport-security" must be a mapping"#,
            ),
            ("name: {a: b}", r#""name" must be a plain value"#),
            ("- name", "the file is not a mapping of keys to values"),
        ] {
            assert_eq!(args(yaml, detcd_flag).unwrap_err(), error, "{yaml}");
        }
        assert!(args("name: [", detcd_flag).is_err());
    }
}
