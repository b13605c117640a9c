//! Which addresses an image URL may reach, and the resolver that enforces it on every
//! connection (redirects included), so DNS rebinding cannot bypass the check.

use std::error::Error as StdError;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use super::*;

/// Returns why `ip` is not a public unicast address (e.g. `"loopback"`,
/// `"private"`), or `None` when it is public. IPv4-mapped, NAT64 and 6to4
/// IPv6 addresses are judged by the IPv4 address they embed.
pub fn non_public_ip_reason(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => ipv4_reason(v4),
        IpAddr::V6(v6) => ipv6_reason(v6),
    }
}

pub(super) fn ipv4_reason(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    match (a, b, c) {
        _ if ip.is_unspecified() => Some("unspecified"),
        (0, _, _) => Some("\"this network\" 0.0.0.0/8"),
        (10, _, _) => Some("private"),
        (100, 64..=127, _) => Some("carrier-grade NAT"),
        (127, _, _) => Some("loopback"),
        (169, 254, _) => Some("link-local"),
        (172, 16..=31, _) => Some("private"),
        (192, 0, 0) => Some("IETF protocol assignment"),
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => Some("documentation"),
        (192, 88, 99) => Some("6to4 relay anycast"),
        (192, 168, _) => Some("private"),
        (198, 18..=19, _) => Some("benchmarking"),
        (224..=239, _, _) => Some("multicast"),
        _ if ip.is_broadcast() => Some("broadcast"),
        (240..=255, _, _) => Some("reserved"),
        _ => None,
    }
}

pub(super) fn ipv6_reason(ip: Ipv6Addr) -> Option<&'static str> {
    if ip.is_unspecified() {
        return Some("unspecified");
    }
    if ip.is_loopback() {
        return Some("loopback");
    }
    if let Some(v4) = ip.to_ipv4_mapped() {
        return ipv4_reason(v4);
    }
    let s = ip.segments();
    let embedded_v4 = |hi: u16, lo: u16| {
        let [a, b] = hi.to_be_bytes();
        let [c, d] = lo.to_be_bytes();
        Ipv4Addr::new(a, b, c, d)
    };
    // NAT64 well-known prefix 64:ff9b::/96: judge the embedded IPv4 address.
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
        return ipv4_reason(embedded_v4(s[6], s[7]));
    }
    if s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1 {
        return Some("local-use NAT64");
    }
    // Only 2000::/3 is global unicast.
    if s[0] & 0xe000 != 0x2000 {
        return Some(match s[0] {
            0x0000..=0x00ff => "reserved (::/8, incl. IPv4-compatible)",
            0x0100 if s[1..4] == [0, 0, 0] => "discard-only",
            0xfc00..=0xfdff => "private (unique local)",
            0xfe80..=0xfebf => "link-local",
            0xfec0..=0xfeff => "site-local",
            0xff00..=0xffff => "multicast",
            _ => "reserved",
        });
    }
    if s[0] == 0x2001 && s[1] == 0x0db8 {
        return Some("documentation");
    }
    if s[0] == 0x3fff && s[1] < 0x1000 {
        return Some("documentation");
    }
    if s[0] == 0x2001 && s[1] < 0x0200 {
        return Some("IETF special-purpose (Teredo, ORCHID, …)");
    }
    if s[0] == 0x2002 {
        // 6to4: judge the embedded IPv4 address.
        return ipv4_reason(embedded_v4(s[1], s[2]));
    }
    None
}

/// A refusal raised inside reqwest (resolver or redirect policy); carried
/// through reqwest's error chain and turned back into an [`ImageFetchError`].
#[derive(Debug, Clone)]
pub(super) enum Rejection {
    Private {
        host: String,
        addr: IpAddr,
        kind: &'static str,
    },
    Dns {
        host: String,
        detail: String,
    },
    TooManyRedirects,
    BadRedirect {
        target: String,
        reason: String,
    },
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejection::Private { host, addr, kind } => {
                write!(f, "host `{host}` resolves to a {kind} address ({addr})")
            }
            Rejection::Dns { host, detail } => write!(f, "could not resolve `{host}`: {detail}"),
            Rejection::TooManyRedirects => f.write_str("too many redirects"),
            Rejection::BadRedirect { target, reason } => {
                write!(f, "refusing redirect to `{target}`: {reason}")
            }
        }
    }
}

impl StdError for Rejection {}

impl Rejection {
    pub(super) fn into_error(self, shown: &str, max_redirects: usize) -> ImageFetchError {
        match self {
            Rejection::Private { host, addr, kind } => {
                ImageFetchError::PrivateAddress { host, addr, kind }
            }
            Rejection::Dns { host, detail } => ImageFetchError::Dns { host, detail },
            Rejection::TooManyRedirects => ImageFetchError::TooManyRedirects {
                limit: max_redirects,
                url: shown.to_owned(),
            },
            Rejection::BadRedirect { target, reason } => ImageFetchError::BadRedirect {
                url: shown.to_owned(),
                target,
                reason,
            },
        }
    }
}

/// Decides which addresses may be connected to.
pub(super) struct AddressGuard {
    pub(super) allow_private: bool,
    pub(super) classify: fn(IpAddr) -> Option<&'static str>,
    /// Fixed host→address answers consulted before DNS (used by tests).
    pub(super) static_hosts: HashMap<String, Vec<IpAddr>>,
}

impl AddressGuard {
    pub(super) fn check(&self, host: &str, addr: IpAddr) -> Result<(), Rejection> {
        if self.allow_private {
            return Ok(());
        }
        match (self.classify)(addr) {
            None => Ok(()),
            Some(kind) => {
                tracing::debug!(host, %addr, kind, "refusing non-public image URL address");
                Err(Rejection::Private {
                    host: host.to_owned(),
                    addr,
                    kind,
                })
            }
        }
    }

    /// Checks a URL whose host is an IP literal (which bypasses DNS).
    pub(super) fn check_literal_host(&self, url: &Url) -> Result<(), Rejection> {
        match url.host() {
            Some(Host::Ipv4(v4)) => self.check(&v4.to_string(), IpAddr::V4(v4)),
            Some(Host::Ipv6(v6)) => self.check(&format!("[{v6}]"), IpAddr::V6(v6)),
            Some(Host::Domain(_)) => Ok(()),
            None => Err(Rejection::BadRedirect {
                target: display_url(url.as_str()),
                reason: "URL has no host".into(),
            }),
        }
    }

    /// Resolves `host` and checks every address; all must pass.
    pub(super) async fn resolve(&self, host: &str) -> Result<Vec<SocketAddr>, Rejection> {
        let ips: Vec<IpAddr> = match self.static_hosts.get(&host.to_ascii_lowercase()) {
            Some(ips) => ips.clone(),
            None => tokio::net::lookup_host((host, 0))
                .await
                .map_err(|e| Rejection::Dns {
                    host: host.to_owned(),
                    detail: e.to_string(),
                })?
                .map(|sa| sa.ip())
                .collect(),
        };
        if ips.is_empty() {
            return Err(Rejection::Dns {
                host: host.to_owned(),
                detail: "no addresses found".into(),
            });
        }
        for ip in &ips {
            self.check(host, *ip)?;
        }
        Ok(ips.into_iter().map(|ip| SocketAddr::new(ip, 0)).collect())
    }
}

/// reqwest resolver that only hands out checked addresses, so the connection
/// goes to exactly the addresses that were validated (no DNS rebinding).
pub(super) struct GuardedResolver(pub(super) Arc<AddressGuard>);

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let guard = Arc::clone(&self.0);
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs = guard
                .resolve(&host)
                .await
                .map_err(|r| Box::new(r) as Box<dyn StdError + Send + Sync>)?;
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}
