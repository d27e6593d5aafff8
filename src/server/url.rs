//! The URLs etcd accepts in its URL flags: `scheme://host:port` with scheme http, https,
//! unix or unixs, and no path.

use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Url {
    pub scheme: String,
    pub host: String,
    pub port: u16,
}

impl Url {
    /// Parses one URL with etcd's rules and error messages.
    pub fn parse(s: &str) -> Result<Url, String> {
        let (scheme, rest) = s
            .split_once("://")
            .ok_or_else(|| format!("URL scheme must be http, https, unix, or unixs: {s}"))?;
        if !matches!(scheme, "http" | "https" | "unix" | "unixs") {
            return Err(format!(
                "URL scheme must be http, https, unix, or unixs: {s}"
            ));
        }
        let (authority, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        if !path.is_empty() {
            return Err(format!("URL must not contain a path: {s}"));
        }
        let not_host_port = || format!(r#"URL address does not have the form "host:port": {s}"#);
        let (host, port) = authority.rsplit_once(':').ok_or_else(not_host_port)?;
        let port: u16 = port.parse().map_err(|_| not_host_port())?;
        if host.is_empty()
            || (host.contains(':') && !(host.starts_with('[') && host.ends_with(']')))
        {
            return Err(not_host_port());
        }
        Ok(Url {
            scheme: scheme.to_string(),
            host: host.to_string(),
            port,
        })
    }

    /// Parses a comma-separated list, as etcd's URL flags take.
    pub fn parse_list(s: &str) -> Result<Vec<Url>, String> {
        let urls = s
            .split(',')
            .map(|u| Url::parse(u.trim()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(urls)
    }
}

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}:{}", self.scheme, self.host, self.port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_etcd_style_urls() {
        let u = Url::parse("http://127.0.0.1:2379").unwrap();
        assert_eq!(
            (u.scheme.as_str(), u.host.as_str(), u.port),
            ("http", "127.0.0.1", 2379)
        );
        assert_eq!(u.to_string(), "http://127.0.0.1:2379");
        assert_eq!(Url::parse("https://[::1]:2380").unwrap().host, "[::1]");
        assert_eq!(Url::parse_list("http://a:1, http://b:2").unwrap().len(), 2);
    }

    /// The messages are etcd's (client/pkg/types/urls.go), so scripts that match on them work.
    #[test]
    fn rejects_what_etcd_rejects() {
        let cases = [
            (
                "ftp://a:1",
                "URL scheme must be http, https, unix, or unixs: ftp://a:1",
            ),
            ("a:1", "URL scheme must be http, https, unix, or unixs: a:1"),
            ("http://a:1/x", "URL must not contain a path: http://a:1/x"),
            (
                "http://a",
                r#"URL address does not have the form "host:port": http://a"#,
            ),
            (
                "http://:1",
                r#"URL address does not have the form "host:port": http://:1"#,
            ),
            (
                "http://a:99999",
                r#"URL address does not have the form "host:port": http://a:99999"#,
            ),
        ];
        for (input, message) in cases {
            assert_eq!(Url::parse(input).unwrap_err(), message);
        }
    }
}
