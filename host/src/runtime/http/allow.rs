//! The `allowed_hosts` list of a plugin's manifest: which scheme, host and port an outbound
//! request may go to. Entries look like `https://api.example.com`, `https://*.example.org:8443`
//! or `http://127.0.0.1:9000`: a scheme (`http` or `https`), a host (a name, `*.` followed by a
//! name for any of its subdomains, or an IP address) and an optional port (443 for https, 80
//! for http). Nothing else: no path, no user, no query.

use std::fmt;
use std::net::IpAddr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }

    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostRule {
    /// A name, lowercase, without a trailing dot.
    Name(String),
    /// `*.suffix`: any name ending in `.suffix` (not `suffix` itself).
    Subdomains(String),
    /// An address written literally: the only way to reach a private or loopback address.
    Address(IpAddr),
}

/// One entry of `allowed_hosts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowRule {
    scheme: Scheme,
    host: HostRule,
    port: u16,
    /// As written in the manifest, for messages.
    text: String,
}

/// Where one request goes, taken from its URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    pub scheme: Scheme,
    /// Lowercase name or IP address text (IPv6 without brackets).
    pub host: String,
    pub port: u16,
}

impl Destination {
    /// `host:port` with brackets around an IPv6 address: the metrics label and log text.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The address, when the host is written as one.
    pub fn address(&self) -> Option<IpAddr> {
        self.host.parse().ok()
    }
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme.as_str(), self.authority())
    }
}

impl AllowRule {
    /// Parse one entry; the error says what is wrong with it and what a good one looks like.
    pub fn parse(text: &str) -> Result<AllowRule, String> {
        let bad = |why: &str| {
            format!(
                "`allowed_hosts` entry {text:?} {why}; write scheme://host[:port], such as \
                 \"https://api.example.com\", \"https://*.example.org:8443\" or \
                 \"http://127.0.0.1:9000\""
            )
        };
        let (scheme, rest) = match text.split_once("://") {
            Some(("https", rest)) => (Scheme::Https, rest),
            Some(("http", rest)) => (Scheme::Http, rest),
            Some((other, _)) => {
                return Err(bad(&format!(
                    "has scheme `{other}`; only http and https are supported"
                )));
            }
            None => return Err(bad("has no scheme")),
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains(['/', '?', '#', '@']) {
            return Err(bad(
                "has a path, query or user; only the host and port count",
            ));
        }
        let (host, port) = split_host_port(rest).map_err(|why| bad(&why))?;
        let port = port.unwrap_or(scheme.default_port());
        let host = if let Ok(ip) = host.parse::<IpAddr>() {
            HostRule::Address(ip)
        } else {
            let name = host.trim_end_matches('.').to_ascii_lowercase();
            match name.strip_prefix("*.") {
                Some(suffix) => {
                    check_name(suffix).map_err(|why| bad(&why))?;
                    HostRule::Subdomains(suffix.to_string())
                }
                None => {
                    check_name(&name).map_err(|why| bad(&why))?;
                    HostRule::Name(name)
                }
            }
        };
        Ok(AllowRule {
            scheme,
            host,
            port,
            text: text.to_string(),
        })
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn matches(&self, to: &Destination) -> bool {
        if self.scheme != to.scheme || self.port != to.port {
            return false;
        }
        match &self.host {
            HostRule::Name(name) => *name == to.host,
            HostRule::Subdomains(suffix) => to
                .host
                .strip_suffix(suffix.as_str())
                .is_some_and(|head| head.len() > 1 && head.ends_with('.')),
            HostRule::Address(ip) => to.address() == Some(*ip),
        }
    }

    /// True when the entry names an address itself, which lifts the private-address check.
    pub fn is_literal_address(&self) -> bool {
        matches!(self.host, HostRule::Address(_))
    }
}

/// `allowed_hosts` as a whole. Empty (the default) allows nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList {
    rules: Vec<AllowRule>,
}

impl AllowList {
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<AllowList, String> {
        let rules = entries
            .iter()
            .map(|e| AllowRule::parse(e.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(AllowList { rules })
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The first entry that allows `to`.
    pub fn find(&self, to: &Destination) -> Option<&AllowRule> {
        self.rules.iter().find(|r| r.matches(to))
    }
}

/// Destination of a request URI; None when it has no host or an unknown scheme.
pub fn destination(uri: &http::Uri) -> Option<Destination> {
    let scheme = match uri.scheme_str()? {
        "https" => Scheme::Https,
        "http" => Scheme::Http,
        _ => return None,
    };
    let host = uri.host()?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    if host.is_empty() {
        return None;
    }
    Some(Destination {
        scheme,
        host,
        port: uri.port_u16().unwrap_or(scheme.default_port()),
    })
}

fn split_host_port(s: &str) -> Result<(&str, Option<u16>), String> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let Some((host, after)) = rest.split_once(']') else {
            return Err("has an unclosed `[`".into());
        };
        match after {
            "" => (host, None),
            _ => match after.strip_prefix(':') {
                Some(p) => (host, Some(p)),
                None => return Err(format!("has `{after}` after the address")),
            },
        }
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => (h, Some(p)),
            Some(_) => return Err("has an IPv6 address without [brackets]".into()),
            None => (s, None),
        }
    };
    if host.is_empty() {
        return Err("has no host".into());
    }
    let port = match port {
        None => None,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => Some(n),
            _ => return Err(format!("has port `{p}`, not a number from 1 to 65535")),
        },
    };
    Ok((host, port))
}

fn check_name(name: &str) -> Result<(), String> {
    let ok_label = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if name.is_empty() || name.len() > 253 || !name.split('.').all(ok_label) {
        return Err(format!(
            "has host `{name}`, which is not a host name (a `*` may only stand as the whole \
             first label, as in `*.example.com`)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn to(url: &str) -> Destination {
        destination(&url.parse().unwrap()).unwrap()
    }

    #[test]
    fn entries_match_scheme_host_and_port() {
        let list = AllowList::parse(&[
            "https://api.example.com",
            "https://*.example.org:8443",
            "http://127.0.0.1:9000",
            "http://[::1]:9001/",
        ])
        .unwrap();
        assert!(list.find(&to("https://api.example.com/v1?x=1")).is_some());
        assert!(list.find(&to("https://API.Example.com.:443/")).is_some());
        assert!(list.find(&to("http://api.example.com/")).is_none());
        assert!(list.find(&to("https://api.example.com:8443/")).is_none());
        assert!(list.find(&to("https://evil-api.example.com/")).is_none());
        assert!(list.find(&to("https://a.example.org:8443/")).is_some());
        assert!(list.find(&to("https://a.b.example.org:8443/")).is_some());
        assert!(list.find(&to("https://example.org:8443/")).is_none());
        assert!(list.find(&to("https://badexample.org:8443/")).is_none());
        assert!(list.find(&to("http://127.0.0.1:9000/x")).is_some());
        assert!(list.find(&to("http://127.0.0.1:9001/x")).is_none());
        assert!(list.find(&to("http://[::1]:9001/")).is_some());
        assert!(
            list.find(&to("http://127.0.0.1:9000/"))
                .unwrap()
                .is_literal_address()
        );
    }

    #[test]
    fn an_empty_list_allows_nothing() {
        let list = AllowList::default();
        assert!(list.is_empty());
        assert!(list.find(&to("https://example.com/")).is_none());
    }

    #[test]
    fn bad_entries_say_what_is_wrong() {
        let err = |s: &str| AllowRule::parse(s).unwrap_err();
        assert!(
            err("api.example.com").contains("has no scheme"),
            "{}",
            err("api.example.com")
        );
        assert!(err("ftp://x.com").contains("only http and https"));
        assert!(err("https://x.com/path").contains("path"));
        assert!(err("https://user@x.com").contains("user"));
        assert!(err("https://x.com:0").contains("not a number from 1 to 65535"));
        assert!(err("https://x.com:http").contains("not a number"));
        assert!(err("https://a.*.com").contains("not a host name"));
        assert!(err("https://*").contains("not a host name"));
        assert!(err("https://::1").contains("brackets"));
        assert!(err("https://").contains("no host"));
    }
}
