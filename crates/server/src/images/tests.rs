//! Tests of image fetching: data URLs, SSRF refusals, redirects, limits, local files.

use super::*;
use base64::engine::general_purpose::STANDARD;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

/// A valid 1×1 RGBA PNG.
const PNG: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4,
    0x89, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0xf8, 0xcf, 0xc0, 0xf0,
    0x1f, 0x00, 0x05, 0x00, 0x01, 0xff, 0x89, 0x99, 0x3d, 0x1d, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45,
    0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
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
        "/redirect-evil" => redirect(&mut stream, &format!("http://evil.test:{port}/png")).await,
        "/redirect-good" => redirect(&mut stream, &format!("http://good.test:{port}/png")).await,
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
        let path = std::env::temp_dir().join(format!("imgfetch-test-{}-{n}", std::process::id()));
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
