//! Safe fetching of the image bytes referenced by an OpenAI chat request's
//! `image_url.url`.
//!
//! Supported forms:
//!
//! * `data:[<mediatype>][;base64],<data>` — base64 only; the media type, when
//!   present, must be `image/*`.
//! * `http://` / `https://` — the host is resolved by this module and every
//!   resolved address must be public (unless private addresses are allowed).
//!   The connection is made to exactly the addresses that were checked (a
//!   custom [`reqwest::dns::Resolve`] implementation does the check), so DNS
//!   rebinding cannot swap in a private address after validation; redirects
//!   go through the same resolver and are additionally limited in number and
//!   scheme.
//! * `file://` — only below the directory given by
//!   `--allowed-local-media-path`, after resolving symlinks and `..`.
//!
//! All fetches are bounded in time ([`ImageFetchPolicy::timeout`]) and size
//! ([`ImageFetchPolicy::max_bytes`]). Decoding the bytes is done elsewhere.

use std::collections::HashMap;
use std::error::Error as StdError;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Component, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;
use tokio::io::AsyncReadExt;
use url::{Host, Url};

/// Default limit on the whole fetch of one image.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default limit on the size of one image, in bytes (20 MiB).
pub const DEFAULT_MAX_BYTES: usize = 20 * 1024 * 1024;
/// Default limit on the number of HTTP redirects followed for one image.
pub const DEFAULT_MAX_REDIRECTS: usize = 3;

/// Longest prefix of a `data:` URL that is ever echoed in a message.
const DATA_URL_DISPLAY_CHARS: usize = 64;
/// Longest prefix of any other URL that is echoed in a message.
const URL_DISPLAY_CHARS: usize = 256;

/// Limits and permissions applied to every image fetch.
#[derive(Debug, Clone)]
pub struct ImageFetchPolicy {
    /// Time limit for the whole fetch (DNS, connect, redirects and body).
    pub timeout: Duration,
    /// Largest accepted image, in bytes.
    pub max_bytes: usize,
    /// Most HTTP redirects followed before giving up.
    pub max_redirects: usize,
    /// Allow URLs whose host is or resolves to a loopback, private,
    /// link-local or otherwise non-public address
    /// (`--allow-private-image-urls`).
    pub allow_private: bool,
    /// Directory below which `file://` URLs may be read
    /// (`--allowed-local-media-path`); `None` refuses all `file://` URLs.
    pub allowed_local_path: Option<PathBuf>,
}

impl Default for ImageFetchPolicy {
    fn default() -> Self {
        Self {
            timeout: DEFAULT_TIMEOUT,
            max_bytes: DEFAULT_MAX_BYTES,
            max_redirects: DEFAULT_MAX_REDIRECTS,
            allow_private: false,
            allowed_local_path: None,
        }
    }
}

/// Why an [`ImageFetcher`] could not be created (a startup/configuration
/// error, not a per-request one).
#[derive(Debug, thiserror::Error)]
pub enum ImageFetcherInitError {
    /// The `--allowed-local-media-path` directory could not be resolved.
    #[error("--allowed-local-media-path {}: {source}", path.display())]
    AllowedLocalPath {
        /// The configured path.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The `--allowed-local-media-path` path is not a directory.
    #[error("--allowed-local-media-path {} is not a directory", path.display())]
    AllowedLocalPathNotDir {
        /// The configured path.
        path: PathBuf,
    },
    /// The HTTP client could not be built.
    #[error("failed to build the HTTP client for image fetching: {0}")]
    Client(#[source] reqwest::Error),
}

/// Why fetching an image failed. Every message says what was wrong; URLs in
/// messages are truncated (`data:` URLs to 64 characters).
#[derive(Debug, thiserror::Error)]
pub enum ImageFetchError {
    /// The URL is not `data:`, `http(s)://` or `file://`.
    #[error(
        "unsupported URL scheme in image URL `{url}`: expected data:, http://, https:// or file://"
    )]
    UnsupportedScheme {
        /// The (truncated) URL.
        url: String,
    },
    /// The URL has a supported scheme but cannot be parsed or used.
    #[error("invalid image URL `{url}`: {reason}")]
    InvalidUrl {
        /// The (truncated) URL.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A malformed `data:` URL.
    #[error("invalid data: URL `{url}`: {reason}")]
    InvalidDataUrl {
        /// The (truncated) URL.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A `data:` URL whose media type is not `image/*`.
    #[error("data: URL media type `{media_type}` is not an image type (expected image/*)")]
    NotAnImage {
        /// The media type given in the URL.
        media_type: String,
    },
    /// The image is over [`ImageFetchPolicy::max_bytes`].
    #[error("image is larger than {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The host is, or resolves to, a non-public address and private
    /// addresses are not allowed.
    #[error("image URL host `{host}` resolves to a private address ({addr}, {kind}); pass --allow-private-image-urls to allow it")]
    PrivateAddress {
        /// The host as written in the URL (or redirect target).
        host: String,
        /// The offending address.
        addr: IpAddr,
        /// What kind of address it is (e.g. "loopback").
        kind: &'static str,
    },
    /// DNS resolution of the host failed.
    #[error("could not resolve image URL host `{host}`: {detail}")]
    Dns {
        /// The host.
        host: String,
        /// The resolver's message.
        detail: String,
    },
    /// More redirects than [`ImageFetchPolicy::max_redirects`].
    #[error("too many redirects (more than {limit}) fetching {url}")]
    TooManyRedirects {
        /// The redirect limit.
        limit: usize,
        /// The (truncated) URL that was requested.
        url: String,
    },
    /// A redirect to a target that is not allowed (e.g. a non-HTTP scheme).
    #[error("refusing redirect to `{target}` while fetching {url}: {reason}")]
    BadRedirect {
        /// The (truncated) URL that was requested.
        url: String,
        /// The (truncated) redirect target.
        target: String,
        /// Why it is refused.
        reason: String,
    },
    /// The fetch took longer than [`ImageFetchPolicy::timeout`].
    #[error("timed out after {} fetching {url}", DisplayDuration(*timeout))]
    Timeout {
        /// The time limit.
        timeout: Duration,
        /// The (truncated) URL.
        url: String,
    },
    /// The server answered with a non-2xx status.
    #[error("HTTP {status} fetching {url}")]
    HttpStatus {
        /// The status received.
        status: reqwest::StatusCode,
        /// The (truncated) URL that was requested.
        url: String,
    },
    /// Any other HTTP/transport failure (connection refused, TLS, …).
    #[error("error fetching {url}: {detail}")]
    Http {
        /// The (truncated) URL.
        url: String,
        /// The error and its causes, flattened into one line.
        detail: String,
        /// The underlying error.
        #[source]
        source: reqwest::Error,
    },
    /// A `file://` URL but no `--allowed-local-media-path` was configured.
    #[error("file:// image URLs are disabled; pass --allowed-local-media-path <DIR> to allow images from a local directory")]
    LocalFilesDisabled,
    /// A `file://` URL outside the allowed directory.
    #[error("local image path {} is outside the allowed local media directory", path.display())]
    LocalPathNotAllowed {
        /// The path from the URL.
        path: PathBuf,
    },
    /// A `file://` URL naming something that is not a regular file.
    #[error("local image path {} is not a regular file", path.display())]
    NotAFile {
        /// The path from the URL.
        path: PathBuf,
    },
    /// Reading a local image failed.
    #[error("cannot read local image {}: {source}", path.display())]
    LocalIo {
        /// The path from the URL.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
}

impl ImageFetchError {
    /// Whether the fetch failed because it ran past the time limit.
    pub fn is_timeout(&self) -> bool {
        match self {
            ImageFetchError::Timeout { .. } => true,
            ImageFetchError::Http { source, .. } => source.is_timeout(),
            _ => false,
        }
    }
}

/// Formats a duration as "10 s" / "300 ms".
struct DisplayDuration(Duration);

impl fmt::Display for DisplayDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        if d.subsec_nanos() == 0 {
            write!(f, "{} s", d.as_secs())
        } else if d.as_nanos().is_multiple_of(1_000_000) {
            write!(f, "{} ms", d.as_millis())
        } else {
            write!(f, "{d:?}")
        }
    }
}

/// Fetches image bytes from `data:`, `http(s)://` and `file://` URLs under an
/// [`ImageFetchPolicy`]. Cheap to share (`Arc`) across requests; it holds one
/// connection-pooling HTTP client.
pub struct ImageFetcher {
    client: reqwest::Client,
    policy: ImageFetchPolicy,
    guard: Arc<AddressGuard>,
    allowed_dir: Option<AllowedDir>,
}

impl fmt::Debug for ImageFetcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImageFetcher")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

/// The allowed local directory, as configured and canonicalized.
#[derive(Debug)]
struct AllowedDir {
    configured: PathBuf,
    canonical: PathBuf,
}

impl ImageFetcher {
    /// Builds a fetcher: canonicalizes `allowed_local_path` (which must be an
    /// existing directory) and builds the HTTP client once.
    pub fn new(policy: ImageFetchPolicy) -> Result<Self, ImageFetcherInitError> {
        let guard = AddressGuard {
            allow_private: policy.allow_private,
            classify: non_public_ip_reason,
            static_hosts: HashMap::new(),
        };
        Self::with_guard(policy, guard)
    }

    fn with_guard(
        policy: ImageFetchPolicy,
        guard: AddressGuard,
    ) -> Result<Self, ImageFetcherInitError> {
        let allowed_dir = match &policy.allowed_local_path {
            None => None,
            Some(path) => {
                let canonical = std::fs::canonicalize(path).map_err(|source| {
                    ImageFetcherInitError::AllowedLocalPath {
                        path: path.clone(),
                        source,
                    }
                })?;
                if !canonical.is_dir() {
                    return Err(ImageFetcherInitError::AllowedLocalPathNotDir {
                        path: path.clone(),
                    });
                }
                Some(AllowedDir {
                    configured: path.clone(),
                    canonical,
                })
            }
        };

        let guard = Arc::new(guard);
        let redirect_guard = Arc::clone(&guard);
        let max_redirects = policy.max_redirects;
        let redirect_policy = reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() > max_redirects {
                return attempt.error(Rejection::TooManyRedirects);
            }
            let target = attempt.url();
            if !matches!(target.scheme(), "http" | "https") {
                let rejection = Rejection::BadRedirect {
                    target: display_url(target.as_str()),
                    reason: format!(
                        "scheme `{}` is not allowed (only http and https)",
                        target.scheme()
                    ),
                };
                return attempt.error(rejection);
            }
            // Hostnames are checked by the resolver when connecting; literal
            // IPs never reach the resolver, so check them here.
            if let Err(rejection) = redirect_guard.check_literal_host(target) {
                return attempt.error(rejection);
            }
            attempt.follow()
        });

        let client = reqwest::Client::builder()
            // A proxy would do its own DNS and defeat the address checks.
            .no_proxy()
            .dns_resolver(Arc::new(GuardedResolver(Arc::clone(&guard))))
            .redirect(redirect_policy)
            .connect_timeout(policy.timeout)
            .user_agent(concat!("vlm-server/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(ImageFetcherInitError::Client)?;

        Ok(Self {
            client,
            policy,
            guard,
            allowed_dir,
        })
    }

    /// The policy this fetcher enforces.
    pub fn policy(&self) -> &ImageFetchPolicy {
        &self.policy
    }

    /// Fetches the bytes of the image at `url` (`data:`, `http(s)://` or
    /// `file://`), enforcing the policy's time, size, redirect and address
    /// limits.
    pub async fn fetch(&self, url: &str) -> Result<Vec<u8>, ImageFetchError> {
        let url = url.trim();
        let shown = display_url(url);
        match tokio::time::timeout(self.policy.timeout, self.fetch_inner(url, &shown)).await {
            Ok(result) => result,
            Err(_) => Err(ImageFetchError::Timeout {
                timeout: self.policy.timeout,
                url: shown,
            }),
        }
    }

    async fn fetch_inner(&self, raw: &str, shown: &str) -> Result<Vec<u8>, ImageFetchError> {
        let scheme = url_scheme(raw).map(|s| s.to_ascii_lowercase());
        match scheme.as_deref() {
            Some("data") => decode_data_url(raw, self.policy.max_bytes, shown),
            Some("http") | Some("https") => {
                let url = parse_url(raw, shown)?;
                self.fetch_http(url, shown).await
            }
            Some("file") => {
                let url = parse_url(raw, shown)?;
                self.fetch_file(&url, shown).await
            }
            _ => Err(ImageFetchError::UnsupportedScheme {
                url: shown.to_owned(),
            }),
        }
    }

    async fn fetch_http(&self, url: Url, shown: &str) -> Result<Vec<u8>, ImageFetchError> {
        self.guard
            .check_literal_host(&url)
            .map_err(|r| r.into_error(shown, self.policy.max_redirects))?;

        let mut response = self
            .client
            .get(url)
            .header(reqwest::header::ACCEPT, "image/*")
            .send()
            .await
            .map_err(|e| self.map_reqwest_error(e, shown))?;

        let status = response.status();
        if !status.is_success() {
            return Err(ImageFetchError::HttpStatus {
                status,
                url: shown.to_owned(),
            });
        }

        let max = self.policy.max_bytes;
        let too_large = || ImageFetchError::TooLarge { limit: max };
        let initial_capacity = match response.content_length() {
            Some(len) if len > max as u64 => return Err(too_large()),
            // Trust the header only up to 1 MiB for preallocation.
            Some(len) => usize::try_from(len).unwrap_or(0).min(1 << 20),
            None => 0,
        };

        let mut body = Vec::with_capacity(initial_capacity);
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| self.map_reqwest_error(e, shown))?
        {
            if body.len().saturating_add(chunk.len()) > max {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    /// Turns a reqwest error into an [`ImageFetchError`], recovering our own
    /// rejections (from the resolver or redirect policy) from its causes.
    fn map_reqwest_error(&self, error: reqwest::Error, shown: &str) -> ImageFetchError {
        let mut cause: Option<&(dyn StdError + 'static)> = error.source();
        while let Some(err) = cause {
            if let Some(rejection) = err.downcast_ref::<Rejection>() {
                return rejection
                    .clone()
                    .into_error(shown, self.policy.max_redirects);
            }
            cause = err.source();
        }
        ImageFetchError::Http {
            url: shown.to_owned(),
            detail: error_chain(&error),
            source: error,
        }
    }

    async fn fetch_file(&self, url: &Url, shown: &str) -> Result<Vec<u8>, ImageFetchError> {
        let Some(allowed) = &self.allowed_dir else {
            return Err(ImageFetchError::LocalFilesDisabled);
        };
        let path = url
            .to_file_path()
            .map_err(|()| ImageFetchError::InvalidUrl {
                url: shown.to_owned(),
                reason: "not a local file path (file URLs must not name a remote host)".into(),
            })?;
        let not_allowed = || ImageFetchError::LocalPathNotAllowed { path: path.clone() };

        // Lexical pre-check: never touch paths that are obviously outside.
        let has_parent_dir = path.components().any(|c| matches!(c, Component::ParentDir));
        let lexically_inside =
            path.starts_with(&allowed.canonical) || path.starts_with(&allowed.configured);
        if has_parent_dir || !lexically_inside {
            return Err(not_allowed());
        }

        // Resolve symlinks and re-check.
        let io_error = |source| ImageFetchError::LocalIo {
            path: path.clone(),
            source,
        };
        let canonical = tokio::fs::canonicalize(&path).await.map_err(io_error)?;
        if !canonical.starts_with(&allowed.canonical) {
            return Err(not_allowed());
        }

        let file = tokio::fs::File::open(&canonical).await.map_err(io_error)?;
        let metadata = file.metadata().await.map_err(io_error)?;
        if !metadata.is_file() {
            return Err(ImageFetchError::NotAFile { path: path.clone() });
        }
        let max = self.policy.max_bytes;
        if metadata.len() > max as u64 {
            return Err(ImageFetchError::TooLarge { limit: max });
        }
        let mut bytes = Vec::with_capacity(usize::try_from(metadata.len()).unwrap_or(0));
        // Bound the read as well, in case the file grows meanwhile.
        file.take((max as u64).saturating_add(1))
            .read_to_end(&mut bytes)
            .await
            .map_err(io_error)?;
        if bytes.len() > max {
            return Err(ImageFetchError::TooLarge { limit: max });
        }
        Ok(bytes)
    }
}

/// Returns why `ip` is not a public unicast address (e.g. `"loopback"`,
/// `"private"`), or `None` when it is public. IPv4-mapped, NAT64 and 6to4
/// IPv6 addresses are judged by the IPv4 address they embed.
pub fn non_public_ip_reason(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => ipv4_reason(v4),
        IpAddr::V6(v6) => ipv6_reason(v6),
    }
}

fn ipv4_reason(ip: Ipv4Addr) -> Option<&'static str> {
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

fn ipv6_reason(ip: Ipv6Addr) -> Option<&'static str> {
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
enum Rejection {
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
    fn into_error(self, shown: &str, max_redirects: usize) -> ImageFetchError {
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
struct AddressGuard {
    allow_private: bool,
    classify: fn(IpAddr) -> Option<&'static str>,
    /// Fixed host→address answers consulted before DNS (used by tests).
    static_hosts: HashMap<String, Vec<IpAddr>>,
}

impl AddressGuard {
    fn check(&self, host: &str, addr: IpAddr) -> Result<(), Rejection> {
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
    fn check_literal_host(&self, url: &Url) -> Result<(), Rejection> {
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
    async fn resolve(&self, host: &str) -> Result<Vec<SocketAddr>, Rejection> {
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
struct GuardedResolver(Arc<AddressGuard>);

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

/// Flattens an error and its causes into one line.
fn error_chain(error: &dyn StdError) -> String {
    let mut out = error.to_string();
    let mut cause = error.source();
    while let Some(err) = cause {
        let msg = err.to_string();
        if !out.contains(&msg) {
            out.push_str(": ");
            out.push_str(&msg);
        }
        cause = err.source();
    }
    out
}

/// The scheme of `raw` (without validating the rest), if it has one.
fn url_scheme(raw: &str) -> Option<&str> {
    let (scheme, _) = raw.split_once(':')?;
    let mut chars = scheme.chars();
    let first = chars.next()?;
    let valid = first.is_ascii_alphabetic()
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    valid.then_some(scheme)
}

fn parse_url(raw: &str, shown: &str) -> Result<Url, ImageFetchError> {
    Url::parse(raw).map_err(|e| ImageFetchError::InvalidUrl {
        url: shown.to_owned(),
        reason: e.to_string(),
    })
}

/// A URL shortened for messages: `data:` URLs to 64 characters, others to 256.
fn display_url(raw: &str) -> String {
    let is_data = url_scheme(raw).is_some_and(|s| s.eq_ignore_ascii_case("data"));
    let limit = if is_data {
        DATA_URL_DISPLAY_CHARS
    } else {
        URL_DISPLAY_CHARS
    };
    match raw.char_indices().nth(limit) {
        Some((cut, _)) => format!("{}…", &raw[..cut]),
        None => raw.to_owned(),
    }
}

const BASE64_STANDARD: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);
const BASE64_URL_SAFE: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// Decodes `data:[<mediatype>][;base64],<data>`; only base64 payloads are
/// accepted. Whitespace is ignored and percent-escapes of base64 characters
/// are decoded.
fn decode_data_url(raw: &str, max_bytes: usize, shown: &str) -> Result<Vec<u8>, ImageFetchError> {
    let invalid = |reason: &str| ImageFetchError::InvalidDataUrl {
        url: shown.to_owned(),
        reason: reason.to_owned(),
    };
    // `raw` starts with an ASCII "data:" (checked by the caller).
    let rest = raw.get(5..).ok_or_else(|| invalid("missing data"))?;
    let (header, data) = rest
        .split_once(',')
        .ok_or_else(|| invalid("missing ',' between the header and the data"))?;

    let mut params = header.split(';');
    let media_type = params.next().unwrap_or_default().trim();
    let is_base64 = header.contains(';')
        && header
            .rsplit(';')
            .next()
            .is_some_and(|p| p.trim().eq_ignore_ascii_case("base64"));
    if !media_type.is_empty() && !media_type.to_ascii_lowercase().starts_with("image/") {
        return Err(ImageFetchError::NotAnImage {
            media_type: media_type.chars().take(64).collect(),
        });
    }
    if !is_base64 {
        return Err(invalid(
            "only base64-encoded data is supported (expected `data:image/<type>;base64,<data>`)",
        ));
    }

    // Early size check without allocating: the number of base64 characters
    // gives a lower bound on the decoded size.
    let significant = data.bytes().filter(|b| !b.is_ascii_whitespace()).count();
    let escapes = data.bytes().filter(|&b| b == b'%').count();
    let chars = significant.saturating_sub(2 * escapes);
    if chars.saturating_sub(2) / 4 * 3 > max_bytes {
        return Err(ImageFetchError::TooLarge { limit: max_bytes });
    }

    let mut encoded = Vec::with_capacity(chars);
    let mut bytes = data.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b if b.is_ascii_whitespace() => {}
            b'%' => {
                let hex = [bytes.next(), bytes.next()];
                let decoded = match hex {
                    [Some(h), Some(l)] => hex_val(h).zip(hex_val(l)).map(|(h, l)| h << 4 | l),
                    _ => None,
                };
                match decoded {
                    Some(c) if is_base64_char(c) => encoded.push(c),
                    _ => {
                        return Err(invalid(
                            "percent-encoded data is not base64 (only base64 data is supported)",
                        ))
                    }
                }
            }
            b => encoded.push(b),
        }
    }

    let engine = if encoded.iter().any(|&b| b == b'-' || b == b'_') {
        &BASE64_URL_SAFE
    } else {
        &BASE64_STANDARD
    };
    let decoded = engine
        .decode(&encoded)
        .map_err(|e| invalid(&format!("invalid base64 data: {e}")))?;
    if decoded.len() > max_bytes {
        return Err(ImageFetchError::TooLarge { limit: max_bytes });
    }
    Ok(decoded)
}

fn hex_val(b: u8) -> Option<u8> {
    (b as char).to_digit(16).and_then(|d| u8::try_from(d).ok())
}

fn is_base64_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=' | b'-' | b'_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::STANDARD;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::AsyncWriteExt;
    use tokio::net::{TcpListener, TcpStream};

    /// A valid 1×1 RGBA PNG.
    const PNG: &[u8] = &[
        0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44,
        0x52, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f,
        0x15, 0xc4, 0x89, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0xf8,
        0xcf, 0xc0, 0xf0, 0x1f, 0x00, 0x05, 0x00, 0x01, 0xff, 0x89, 0x99, 0x3d, 0x1d, 0x00, 0x00,
        0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
    ];

    /// Size limit used by the HTTP size tests.
    const SMALL_LIMIT: usize = 1024;

    fn policy() -> ImageFetchPolicy {
        ImageFetchPolicy {
            timeout: Duration::from_secs(5),
            ..ImageFetchPolicy::default()
        }
    }

    fn private_ok_policy() -> ImageFetchPolicy {
        ImageFetchPolicy {
            allow_private: true,
            ..policy()
        }
    }

    fn fetcher(policy: ImageFetchPolicy) -> ImageFetcher {
        ImageFetcher::new(policy).expect("build fetcher")
    }

    /// Treats exactly 127.0.0.1 as public so the local server stands in for
    /// a public one; everything else is classified for real.
    fn test_classify(ip: IpAddr) -> Option<&'static str> {
        if ip == IpAddr::V4(Ipv4Addr::LOCALHOST) {
            None
        } else {
            non_public_ip_reason(ip)
        }
    }

    /// A fetcher whose guard is active but lets 127.0.0.1 through, and which
    /// resolves `good.test` → 127.0.0.1 and `evil.test` → 127.0.0.3.
    fn guarded_test_fetcher() -> ImageFetcher {
        let mut static_hosts = HashMap::new();
        static_hosts.insert(
            "good.test".to_owned(),
            vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
        );
        static_hosts.insert(
            "evil.test".to_owned(),
            vec![IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3))],
        );
        let guard = AddressGuard {
            allow_private: false,
            classify: test_classify,
            static_hosts,
        };
        ImageFetcher::with_guard(policy(), guard).expect("build fetcher")
    }

    // ---------------------------------------------------------------- server

    async fn spawn_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(handle(stream, addr.port()));
            }
        });
        addr
    }

    async fn read_request_path(stream: &mut TcpStream) -> Option<String> {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 1024];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut chunk).await.ok()?;
            if n == 0 || buf.len() > 16 * 1024 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let text = String::from_utf8_lossy(&buf);
        let line = text.lines().next()?;
        line.split_whitespace().nth(1).map(str::to_owned)
    }

    async fn respond(stream: &mut TcpStream, status: &str, headers: &[String], body: &[u8]) {
        let mut head = format!("HTTP/1.1 {status}\r\nConnection: close\r\n");
        for h in headers {
            head.push_str(h);
            head.push_str("\r\n");
        }
        head.push_str("\r\n");
        let _ = stream.write_all(head.as_bytes()).await;
        let _ = stream.write_all(body).await;
        let _ = stream.shutdown().await;
    }

    async fn redirect(stream: &mut TcpStream, location: &str) {
        let headers = [format!("Location: {location}"), "Content-Length: 0".into()];
        respond(stream, "302 Found", &headers, b"").await;
    }

    async fn handle(mut stream: TcpStream, port: u16) {
        let Some(path) = read_request_path(&mut stream).await else {
            return;
        };
        let png_headers = [
            "Content-Type: image/png".to_owned(),
            format!("Content-Length: {}", PNG.len()),
        ];
        match path.as_str() {
            "/png" => respond(&mut stream, "200 OK", &png_headers, PNG).await,
            "/404" => {
                respond(
                    &mut stream,
                    "404 Not Found",
                    &["Content-Length: 0".into()],
                    b"",
                )
                .await
            }
            "/slow" => {
                tokio::time::sleep(Duration::from_secs(3)).await;
                respond(&mut stream, "200 OK", &png_headers, PNG).await;
            }
            "/trickle" => {
                let head = "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nConnection: close\r\n\r\n";
                let _ = stream.write_all(head.as_bytes()).await;
                let _ = stream.write_all(&[0u8; 10]).await;
                tokio::time::sleep(Duration::from_secs(3)).await;
            }
            "/big-cl" => {
                let body = vec![7u8; SMALL_LIMIT * 4];
                let headers = [format!("Content-Length: {}", body.len())];
                respond(&mut stream, "200 OK", &headers, &body).await;
            }
            "/big-stream" => {
                // No Content-Length, body delimited by close; practically
                // endless (bounded at 64 MiB) so that only an early stop on
                // the client side makes the test finish in time.
                let head = "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n";
                if stream.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let chunk = [9u8; 4096];
                for _ in 0..(64 * 1024 * 1024 / chunk.len()) {
                    if stream.write_all(&chunk).await.is_err() {
                        return;
                    }
                }
            }
            "/redirect-ftp" => redirect(&mut stream, "ftp://127.0.0.1/x.png").await,
            "/redirect-literal-private" => {
                redirect(&mut stream, &format!("http://127.0.0.2:{port}/png")).await
            }
            "/redirect-evil" => {
                redirect(&mut stream, &format!("http://evil.test:{port}/png")).await
            }
            "/redirect-good" => {
                redirect(&mut stream, &format!("http://good.test:{port}/png")).await
            }
            p if p.starts_with("/redirect/") => {
                let n: usize = p["/redirect/".len()..].parse().unwrap_or(0);
                let location = if n == 0 {
                    "/png".to_owned()
                } else {
                    format!("/redirect/{}", n - 1)
                };
                redirect(&mut stream, &location).await;
            }
            _ => {
                respond(
                    &mut stream,
                    "404 Not Found",
                    &["Content-Length: 0".into()],
                    b"",
                )
                .await
            }
        }
    }

    // ------------------------------------------------------------- data URLs

    #[tokio::test]
    async fn data_url_ok() {
        let f = fetcher(policy());
        let url = format!("data:image/png;base64,{}", STANDARD.encode(PNG));
        assert_eq!(f.fetch(&url).await.expect("fetch"), PNG);

        // No media type, unpadded, with whitespace and a percent-escaped '='.
        let b64 = STANDARD.encode(b"hello");
        assert_eq!(b64, "aGVsbG8=");
        let bytes = f.fetch("data:;base64,aGVs\n bG8%3D").await.expect("fetch");
        assert_eq!(bytes, b"hello");
        let bytes = f
            .fetch("DATA:image/jpeg;BASE64,aGVsbG8")
            .await
            .expect("fetch");
        assert_eq!(bytes, b"hello");
    }

    #[tokio::test]
    async fn data_url_bad_base64() {
        let f = fetcher(policy());
        let err = f
            .fetch("data:image/png;base64,!!!notbase64!!!")
            .await
            .unwrap_err();
        assert!(
            matches!(err, ImageFetchError::InvalidDataUrl { .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("invalid base64"), "{err}");

        let err = f.fetch("data:image/png;base64").await.unwrap_err();
        assert!(err.to_string().contains("missing ','"), "{err}");

        let err = f.fetch("data:image/png,rawbytes").await.unwrap_err();
        assert!(err.to_string().contains("only base64"), "{err}");

        let err = f.fetch("data:image/png;base64,ab%20cd").await.unwrap_err();
        assert!(err.to_string().contains("not base64"), "{err}");
    }

    #[tokio::test]
    async fn data_url_too_big() {
        let f = fetcher(ImageFetchPolicy {
            max_bytes: 16,
            ..policy()
        });
        // 17 bytes: passes the early estimate, fails after decoding.
        let url = format!("data:image/png;base64,{}", STANDARD.encode([1u8; 17]));
        let err = f.fetch(&url).await.unwrap_err();
        assert!(
            matches!(err, ImageFetchError::TooLarge { limit: 16 }),
            "{err:?}"
        );
        assert_eq!(err.to_string(), "image is larger than 16 bytes");

        // Exactly at the limit is fine.
        let url = format!("data:image/png;base64,{}", STANDARD.encode([1u8; 16]));
        assert_eq!(f.fetch(&url).await.expect("fetch").len(), 16);

        // Far too big: rejected from the encoded length (even if invalid).
        let url = format!("data:image/png;base64,{}", "A".repeat(10_000));
        let err = f.fetch(&url).await.unwrap_err();
        assert!(matches!(err, ImageFetchError::TooLarge { .. }), "{err:?}");
    }

    #[tokio::test]
    async fn data_url_non_image_media_type() {
        let f = fetcher(policy());
        let err = f
            .fetch("data:text/plain;base64,aGVsbG8=")
            .await
            .unwrap_err();
        assert!(
            matches!(&err, ImageFetchError::NotAnImage { media_type } if media_type == "text/plain"),
            "{err:?}"
        );
        assert!(err.to_string().contains("not an image"), "{err}");
    }

    #[tokio::test]
    async fn data_url_is_truncated_in_messages() {
        let f = fetcher(policy());
        let url = format!("data:image/png;base64,{}!", "QUJD".repeat(1000));
        let err = f.fetch(&url).await.unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("data:image/png;base64,QUJD"), "{msg}");
        assert!(msg.len() < 250, "message too long: {} chars", msg.len());
    }

    // ------------------------------------------------------------------ HTTP

    #[tokio::test]
    async fn http_loopback_refused_by_default() {
        let addr = spawn_server().await;
        let f = fetcher(policy());
        let port = addr.port();
        for url in [
            format!("http://127.0.0.1:{port}/png"),
            format!("http://localhost:{port}/png"),
            format!("http://2130706433:{port}/png"),
            format!("http://0x7f.1:{port}/png"),
            format!("http://[::1]:{port}/png"),
            format!("http://[::ffff:127.0.0.1]:{port}/png"),
        ] {
            let err = f.fetch(&url).await.unwrap_err();
            assert!(
                matches!(err, ImageFetchError::PrivateAddress { .. }),
                "{url}: {err:?}"
            );
            let msg = err.to_string();
            assert!(msg.contains("private address"), "{msg}");
            assert!(msg.contains("--allow-private-image-urls"), "{msg}");
            assert!(msg.contains("loopback"), "{msg}");
        }
    }

    #[tokio::test]
    async fn http_loopback_allowed_with_flag() {
        let addr = spawn_server().await;
        let f = fetcher(private_ok_policy());
        let bytes = f
            .fetch(&format!("http://127.0.0.1:{}/png", addr.port()))
            .await
            .expect("fetch");
        assert_eq!(bytes, PNG);
        let bytes = f
            .fetch(&format!("http://localhost:{}/png", addr.port()))
            .await;
        // localhost may resolve to ::1 first where the server isn't listening;
        // reqwest falls back to the next address, so this must succeed too.
        assert_eq!(bytes.expect("fetch via localhost"), PNG);
    }

    #[tokio::test]
    async fn http_redirects_within_limit_followed() {
        let addr = spawn_server().await;
        let f = fetcher(private_ok_policy());
        let url = format!("http://127.0.0.1:{}/redirect/2", addr.port());
        // /redirect/2 -> /redirect/1 -> /redirect/0 -> /png: three redirects.
        assert_eq!(f.fetch(&url).await.expect("fetch"), PNG);
    }

    #[tokio::test]
    async fn http_redirect_limit_exceeded() {
        let addr = spawn_server().await;
        let f = fetcher(private_ok_policy());
        let url = format!("http://127.0.0.1:{}/redirect/3", addr.port());
        let err = f.fetch(&url).await.unwrap_err();
        assert!(
            matches!(err, ImageFetchError::TooManyRedirects { limit: 3, .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("too many redirects"), "{err}");

        let f = fetcher(ImageFetchPolicy {
            max_redirects: 0,
            ..private_ok_policy()
        });
        let url = format!("http://127.0.0.1:{}/redirect/0", addr.port());
        let err = f.fetch(&url).await.unwrap_err();
        assert!(
            matches!(err, ImageFetchError::TooManyRedirects { limit: 0, .. }),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn http_redirect_to_other_scheme_refused() {
        let addr = spawn_server().await;
        let f = fetcher(private_ok_policy());
        let url = format!("http://127.0.0.1:{}/redirect-ftp", addr.port());
        let err = f.fetch(&url).await.unwrap_err();
        assert!(
            matches!(err, ImageFetchError::BadRedirect { .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("scheme `ftp`"), "{err}");
    }

    #[tokio::test]
    async fn http_redirect_targets_are_checked() {
        let addr = spawn_server().await;
        let port = addr.port();
        let f = guarded_test_fetcher();

        // Sanity: 127.0.0.1 counts as public for this fetcher, and good.test
        // is answered by the guarded resolver (pinned to 127.0.0.1).
        let ok = f.fetch(&format!("http://127.0.0.1:{port}/png")).await;
        assert_eq!(ok.expect("direct"), PNG);
        let ok = f
            .fetch(&format!("http://127.0.0.1:{port}/redirect-good"))
            .await;
        assert_eq!(ok.expect("redirect to good.test"), PNG);

        // Redirect to a private IP literal: caught by the redirect policy.
        let err = f
            .fetch(&format!("http://127.0.0.1:{port}/redirect-literal-private"))
            .await
            .unwrap_err();
        assert!(
            matches!(err, ImageFetchError::PrivateAddress { addr, .. } if addr == IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2))),
            "{err:?}"
        );

        // Redirect to a hostname resolving to a private IP: caught by the
        // resolver.
        let err = f
            .fetch(&format!("http://127.0.0.1:{port}/redirect-evil"))
            .await
            .unwrap_err();
        match &err {
            ImageFetchError::PrivateAddress { host, addr, .. } => {
                assert_eq!(host, "evil.test");
                assert_eq!(*addr, IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3)));
            }
            other => panic!("expected PrivateAddress, got {other:?}"),
        }
        assert!(err.to_string().contains("--allow-private-image-urls"));
    }

    #[tokio::test]
    async fn resolver_refuses_private_hostnames() {
        let guard = AddressGuard {
            allow_private: false,
            classify: non_public_ip_reason,
            static_hosts: HashMap::new(),
        };
        let err = guard.resolve("localhost").await.unwrap_err();
        assert!(matches!(err, Rejection::Private { .. }), "{err:?}");
        let open = AddressGuard {
            allow_private: true,
            ..guard
        };
        let addrs = open.resolve("localhost").await.expect("resolve");
        assert!(addrs.iter().all(|a| a.ip().is_loopback()), "{addrs:?}");
    }

    #[tokio::test]
    async fn http_timeout() {
        let addr = spawn_server().await;
        let f = fetcher(ImageFetchPolicy {
            timeout: Duration::from_millis(300),
            ..private_ok_policy()
        });
        for path in ["/slow", "/trickle"] {
            let url = format!("http://127.0.0.1:{}{path}", addr.port());
            let started = std::time::Instant::now();
            let err = f.fetch(&url).await.unwrap_err();
            assert!(started.elapsed() < Duration::from_secs(2), "{path}");
            assert!(err.is_timeout(), "{path}: {err:?}");
            let msg = err.to_string();
            assert!(
                msg.starts_with("timed out after 300 ms fetching http://127.0.0.1:"),
                "{msg}"
            );
        }
        let default_msg = ImageFetchError::Timeout {
            timeout: DEFAULT_TIMEOUT,
            url: "http://x/".into(),
        }
        .to_string();
        assert_eq!(default_msg, "timed out after 10 s fetching http://x/");
    }

    #[tokio::test]
    async fn http_size_limit() {
        let addr = spawn_server().await;
        let f = fetcher(ImageFetchPolicy {
            max_bytes: SMALL_LIMIT,
            ..private_ok_policy()
        });
        for path in ["/big-cl", "/big-stream"] {
            let url = format!("http://127.0.0.1:{}{path}", addr.port());
            let err = f.fetch(&url).await.unwrap_err();
            assert!(
                matches!(err, ImageFetchError::TooLarge { limit: SMALL_LIMIT }),
                "{path}: {err:?}"
            );
            assert_eq!(
                err.to_string(),
                format!("image is larger than {SMALL_LIMIT} bytes")
            );
        }
        // A small image is still fine under the small limit.
        let url = format!("http://127.0.0.1:{}/png", addr.port());
        assert_eq!(f.fetch(&url).await.expect("fetch"), PNG);
    }

    #[tokio::test]
    async fn http_404() {
        let addr = spawn_server().await;
        let f = fetcher(private_ok_policy());
        let url = format!("http://127.0.0.1:{}/404", addr.port());
        let err = f.fetch(&url).await.unwrap_err();
        assert!(
            matches!(err, ImageFetchError::HttpStatus { status, .. } if status.as_u16() == 404),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            format!("HTTP 404 Not Found fetching {url}")
        );
        assert!(!err.is_timeout());
    }

    #[tokio::test]
    async fn http_connection_refused_is_reported() {
        // Bind then drop to get a port that is (very likely) closed.
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        drop(listener);
        let f = fetcher(private_ok_policy());
        let url = format!("http://127.0.0.1:{port}/png");
        let err = f.fetch(&url).await.unwrap_err();
        assert!(matches!(err, ImageFetchError::Http { .. }), "{err:?}");
        assert!(
            err.to_string()
                .starts_with("error fetching http://127.0.0.1:"),
            "{err}"
        );
    }

    // ----------------------------------------------------------------- files

    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> Self {
            static COUNTER: AtomicUsize = AtomicUsize::new(0);
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let path =
                std::env::temp_dir().join(format!("imgfetch-test-{}-{n}", std::process::id()));
            let _ = std::fs::remove_dir_all(&path);
            std::fs::create_dir_all(&path).expect("create temp dir");
            Self(path)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// Layout: `root/allowed/a.png`, `root/secret.png`, and (on unix)
    /// `root/allowed/link.png -> ../secret.png`.
    fn file_fixture() -> (TempDir, PathBuf) {
        let tmp = TempDir::new();
        let allowed = tmp.0.join("allowed");
        std::fs::create_dir_all(allowed.join("sub")).expect("mkdir");
        std::fs::write(allowed.join("a.png"), PNG).expect("write");
        std::fs::write(allowed.join("sub").join("b.png"), PNG).expect("write");
        std::fs::write(allowed.join("big.png"), vec![0u8; 100]).expect("write");
        std::fs::write(tmp.0.join("secret.png"), b"secret").expect("write");
        #[cfg(unix)]
        std::os::unix::fs::symlink(tmp.0.join("secret.png"), allowed.join("link.png"))
            .expect("symlink");
        (tmp, allowed)
    }

    fn file_url(path: &std::path::Path) -> String {
        Url::from_file_path(path).expect("file url").to_string()
    }

    #[tokio::test]
    async fn file_inside_allowed_dir() {
        let (_tmp, allowed) = file_fixture();
        let f = fetcher(ImageFetchPolicy {
            allowed_local_path: Some(allowed.clone()),
            ..policy()
        });
        assert_eq!(
            f.fetch(&file_url(&allowed.join("a.png"))).await.expect("a"),
            PNG
        );
        let b = f.fetch(&file_url(&allowed.join("sub/b.png"))).await;
        assert_eq!(b.expect("sub/b"), PNG);

        // `..` that stays inside is normalized by URL parsing and allowed.
        let url = format!("{}/sub/../a.png", file_url(&allowed));
        assert_eq!(f.fetch(&url).await.expect("dot-dot inside"), PNG);

        // A directory is not a file.
        let err = f.fetch(&file_url(&allowed.join("sub"))).await.unwrap_err();
        assert!(matches!(err, ImageFetchError::NotAFile { .. }), "{err:?}");

        // Missing file.
        let err = f
            .fetch(&file_url(&allowed.join("nope.png")))
            .await
            .unwrap_err();
        assert!(matches!(err, ImageFetchError::LocalIo { .. }), "{err:?}");
    }

    #[tokio::test]
    async fn file_size_limit() {
        let (_tmp, allowed) = file_fixture();
        let f = fetcher(ImageFetchPolicy {
            allowed_local_path: Some(allowed.clone()),
            max_bytes: 99,
            ..policy()
        });
        let err = f
            .fetch(&file_url(&allowed.join("big.png")))
            .await
            .unwrap_err();
        assert!(
            matches!(err, ImageFetchError::TooLarge { limit: 99 }),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn file_outside_allowed_dir_refused() {
        let (tmp, allowed) = file_fixture();
        let f = fetcher(ImageFetchPolicy {
            allowed_local_path: Some(allowed.clone()),
            ..policy()
        });
        let outside = [
            file_url(&tmp.0.join("secret.png")),
            format!("{}/../secret.png", file_url(&allowed)),
            format!("{}/%2e%2e/secret.png", file_url(&allowed)),
            format!("{}/sub/..%2F..%2Fsecret.png", file_url(&allowed)),
            "file:///etc/passwd".to_owned(),
            // Sibling whose name merely starts with the allowed dir's name.
            format!("{}-evil/x.png", file_url(&allowed)),
        ];
        for url in outside {
            let err = f.fetch(&url).await.unwrap_err();
            assert!(
                matches!(err, ImageFetchError::LocalPathNotAllowed { .. }),
                "{url}: {err:?}"
            );
            assert!(err.to_string().contains("outside the allowed"), "{err}");
        }
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn file_symlink_escape_refused() {
        let (_tmp, allowed) = file_fixture();
        let f = fetcher(ImageFetchPolicy {
            allowed_local_path: Some(allowed.clone()),
            ..policy()
        });
        let err = f
            .fetch(&file_url(&allowed.join("link.png")))
            .await
            .unwrap_err();
        assert!(
            matches!(err, ImageFetchError::LocalPathNotAllowed { .. }),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn file_refused_without_allowed_dir() {
        let (_tmp, allowed) = file_fixture();
        let f = fetcher(policy());
        let err = f
            .fetch(&file_url(&allowed.join("a.png")))
            .await
            .unwrap_err();
        assert!(
            matches!(err, ImageFetchError::LocalFilesDisabled),
            "{err:?}"
        );
        assert!(
            err.to_string().contains("--allowed-local-media-path"),
            "{err}"
        );
    }

    #[test]
    fn allowed_dir_must_exist() {
        let err = ImageFetcher::new(ImageFetchPolicy {
            allowed_local_path: Some(PathBuf::from("/definitely/not/here")),
            ..policy()
        })
        .unwrap_err();
        assert!(
            matches!(err, ImageFetcherInitError::AllowedLocalPath { .. }),
            "{err:?}"
        );
    }

    // ----------------------------------------------------------------- other

    #[tokio::test]
    async fn unsupported_schemes() {
        let f = fetcher(private_ok_policy());
        for url in [
            "ftp://127.0.0.1/x.png",
            "",
            "   ",
            "garbage",
            "/abs/path.png",
            "gopher://x",
            "javascript:alert(1)",
        ] {
            let err = f.fetch(url).await.unwrap_err();
            assert!(
                matches!(err, ImageFetchError::UnsupportedScheme { .. }),
                "{url:?}: {err:?}"
            );
            assert!(err.to_string().contains("unsupported URL scheme"), "{err}");
        }
        let err = f.fetch("http://[::1").await.unwrap_err();
        assert!(matches!(err, ImageFetchError::InvalidUrl { .. }), "{err:?}");
    }

    #[test]
    fn address_classifier() {
        let cases: &[(&str, Option<&str>)] = &[
            // IPv4 public
            ("8.8.8.8", None),
            ("1.1.1.1", None),
            ("93.184.216.34", None),
            ("100.63.255.255", None),
            ("100.128.0.0", None),
            ("172.15.255.255", None),
            ("172.32.0.0", None),
            ("192.169.0.1", None),
            ("223.255.255.255", None),
            // IPv4 non-public
            ("0.0.0.0", Some("unspecified")),
            ("0.1.2.3", Some("\"this network\" 0.0.0.0/8")),
            ("127.0.0.1", Some("loopback")),
            ("127.255.255.254", Some("loopback")),
            ("10.0.0.1", Some("private")),
            ("172.16.0.1", Some("private")),
            ("172.31.255.255", Some("private")),
            ("192.168.1.1", Some("private")),
            ("169.254.169.254", Some("link-local")),
            ("100.64.0.1", Some("carrier-grade NAT")),
            ("100.127.255.255", Some("carrier-grade NAT")),
            ("192.0.0.8", Some("IETF protocol assignment")),
            ("192.0.2.1", Some("documentation")),
            ("198.51.100.7", Some("documentation")),
            ("203.0.113.9", Some("documentation")),
            ("198.18.0.1", Some("benchmarking")),
            ("224.0.0.1", Some("multicast")),
            ("239.255.255.250", Some("multicast")),
            ("240.0.0.1", Some("reserved")),
            ("255.255.255.255", Some("broadcast")),
            // IPv6 public
            ("2606:4700:4700::1111", None),
            ("2001:4860:4860::8888", None),
            ("::ffff:8.8.8.8", None),
            ("64:ff9b::808:808", None),
            ("2002:808:808::1", None),
            // IPv6 non-public
            ("::", Some("unspecified")),
            ("::1", Some("loopback")),
            ("::ffff:127.0.0.1", Some("loopback")),
            ("::ffff:10.1.2.3", Some("private")),
            ("::ffff:169.254.169.254", Some("link-local")),
            (
                "::127.0.0.1",
                Some("reserved (::/8, incl. IPv4-compatible)"),
            ),
            ("64:ff9b::a00:1", Some("private")),
            ("64:ff9b:1::1", Some("local-use NAT64")),
            ("2002:7f00:1::1", Some("loopback")),
            ("2002:c0a8:101::1", Some("private")),
            ("fc00::1", Some("private (unique local)")),
            ("fd12:3456::1", Some("private (unique local)")),
            ("fe80::1", Some("link-local")),
            ("febf::1", Some("link-local")),
            ("fec0::1", Some("site-local")),
            ("ff02::1", Some("multicast")),
            ("100::1", Some("discard-only")),
            ("2001:db8::1", Some("documentation")),
            ("3fff::1", Some("documentation")),
            ("2001::1", Some("IETF special-purpose (Teredo, ORCHID, …)")),
            ("4000::1", Some("reserved")),
        ];
        for (text, expected) in cases {
            let ip: IpAddr = text.parse().expect("valid address in table");
            assert_eq!(non_public_ip_reason(ip), *expected, "{text}");
        }
    }

    #[test]
    fn display_url_truncates() {
        let long = format!("data:image/png;base64,{}", "A".repeat(500));
        let shown = display_url(&long);
        assert_eq!(shown.chars().count(), DATA_URL_DISPLAY_CHARS + 1);
        assert!(shown.ends_with('…'));
        assert_eq!(display_url("http://x/y.png"), "http://x/y.png");
        let long_http = format!("http://x/{}", "é".repeat(400));
        assert_eq!(
            display_url(&long_http).chars().count(),
            URL_DISPLAY_CHARS + 1
        );
    }
}
