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
use std::net::IpAddr;
use std::path::{Component, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;
use tokio::io::AsyncReadExt;
use url::{Host, Url};

mod address;
mod data_url;
#[cfg(test)]
mod tests;

pub use address::non_public_ip_reason;
use address::{AddressGuard, GuardedResolver, Rejection};
use data_url::decode_data_url;

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
