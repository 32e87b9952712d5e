//! A polite HTTP client for every remote source (image archive, flare catalogues): a cap
//! on requests per second shared by all workers, retries with exponential backoff and
//! jitter on transient failures, `Retry-After` honoured, and checks that a body is what
//! was asked for (a JP2 must be a complete JP2, never an HTML error page).

use crate::bounded::{days, secs, Count, Span};
use rand::Rng;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Largest JP2 accepted (Helioviewer's 4096x4096 files are about 1-4 MB).
const MAX_JP2_BYTES: usize = 64 << 20;
/// Largest text answer accepted (API answers are under 1 KB, event lists a few MB).
const MAX_TEXT_BYTES: usize = 64 << 20;
/// Longest wait a `Retry-After` may impose.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);

/// What the caller expects in the body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    Text,
    Jp2,
}

/// A request that did not give a usable body.
#[derive(Debug, Clone)]
pub struct FetchError {
    pub reason: String,
    /// Worth another attempt (timeouts, connection errors, 429, 5xx, a cut-off body).
    pub transient: bool,
    /// The server asked for this pause before the next attempt.
    pub retry_after: Option<Duration>,
}

impl FetchError {
    fn transient(reason: String) -> Self {
        FetchError {
            reason,
            transient: true,
            retry_after: None,
        }
    }
    fn permanent(reason: String) -> Self {
        FetchError {
            reason,
            transient: false,
            retry_after: None,
        }
    }
}

/// A failed attempt about to be retried.
#[derive(Debug, Clone)]
pub struct Retry {
    /// The attempt that failed (1 for the first).
    pub attempt: u32,
    /// Attempts allowed in all.
    pub attempts: u32,
    pub reason: String,
    /// The pause before the next attempt.
    pub wait: Duration,
}

impl std::fmt::Display for Retry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "attempt {} of {} failed: {}; retrying in {:.1}s",
            self.attempt,
            self.attempts,
            self.reason,
            self.wait.as_secs_f64()
        )
    }
}

/// A request's limit a setting may give, body included.
pub const TIMEOUT: Span = Span::new(
    "timeout",
    "request timeout",
    Duration::from_millis(1),
    days(1),
);
/// The first wait before a retry a setting may give.
pub const BACKOFF: Span = Span::new(
    "backoff",
    "first retry wait",
    Duration::from_millis(1),
    secs(3600),
);
/// Extra attempts a setting may give.
pub const RETRIES: Count<u32> = Count::new("retries", "retries", 0, 100);

/// Retry policy: `retries` extra attempts, waits of `backoff * 2^k` scaled by a random
/// factor in [0.5, 1.5), capped at `max_backoff`.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    pub retries: u32,
    pub backoff: Duration,
    pub max_backoff: Duration,
}

pub struct Client {
    http: reqwest::blocking::Client,
    timeout: Duration,
    limiter: RateLimiter,
    policy: RetryPolicy,
    requests: AtomicU64,
}

impl Client {
    /// `max_rps` of 0 means no cap.
    pub fn new(
        api_url: &str,
        timeout: Duration,
        max_rps: f64,
        policy: RetryPolicy,
    ) -> anyhow::Result<Self> {
        // The process's TLS provider (ring); an error only means one is installed already.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut b = reqwest::blocking::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(30)))
            .user_agent(concat!("flarecast/", env!("CARGO_PKG_VERSION")));
        if is_loopback(api_url) {
            // A proxy from the environment must not intercept a local test server.
            b = b.no_proxy();
        }
        let http = b
            .build()
            .map_err(|e| anyhow::anyhow!("cannot build the HTTP client: {e}"))?;
        Ok(Client {
            http,
            timeout,
            limiter: RateLimiter::new(max_rps),
            policy,
            requests: AtomicU64::new(0),
        })
    }

    /// Requests sent so far (every attempt counts).
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// GET with retries; the error says how the last attempt failed and how many were made.
    pub fn get(&self, url: &str, expect: Expect) -> Result<Vec<u8>, FetchError> {
        self.get_until(url, expect, None, &mut |_| {})
    }

    /// [`Client::get`] that ends by `deadline` (each attempt's timeout shortened to the
    /// time left, no retry started that could not finish before it), telling `on_retry`
    /// about each retry before waiting for it.
    pub fn get_until(
        &self,
        url: &str,
        expect: Expect,
        deadline: Option<Instant>,
        on_retry: &mut dyn FnMut(&Retry),
    ) -> Result<Vec<u8>, FetchError> {
        let mut attempt = 0u32;
        loop {
            let timeout = match deadline {
                None => self.timeout,
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(FetchError::permanent(format!(
                            "the deadline passed before attempt {}",
                            attempt + 1
                        )));
                    }
                    self.timeout.min(left)
                }
            };
            match self.get_once(url, expect, timeout) {
                Ok(body) => return Ok(body),
                Err(e) if e.transient && attempt < self.policy.retries => {
                    let wait = e.retry_after.unwrap_or_else(|| self.backoff(attempt));
                    if deadline.is_some_and(|d| Instant::now() + wait >= d) {
                        return Err(FetchError::permanent(format!(
                            "{} (attempt {}; no time left before the deadline for another)",
                            e.reason,
                            attempt + 1
                        )));
                    }
                    on_retry(&Retry {
                        attempt: attempt + 1,
                        attempts: self.policy.retries + 1,
                        reason: e.reason.clone(),
                        wait,
                    });
                    std::thread::sleep(wait);
                    attempt += 1;
                }
                Err(mut e) => {
                    if attempt > 0 {
                        e.reason = format!("{} (after {} attempts)", e.reason, attempt + 1);
                    }
                    return Err(e);
                }
            }
        }
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let base = self.policy.backoff.saturating_mul(1u32 << attempt.min(16));
        let jitter: f64 = rand::rng().random_range(0.5..1.5);
        base.mul_f64(jitter).min(self.policy.max_backoff)
    }

    fn get_once(
        &self,
        url: &str,
        expect: Expect,
        timeout: Duration,
    ) -> Result<Vec<u8>, FetchError> {
        self.limiter.wait();
        self.requests.fetch_add(1, Ordering::Relaxed);
        // The timeout covers the whole attempt, body included, so a server that drips
        // its answer cannot hold an attempt longer.
        let resp = self
            .http
            .get(url)
            .timeout(timeout)
            .send()
            .map_err(|e| FetchError::transient(describe(&e)))?;
        let status = resp.status();
        if !status.is_success() {
            let retry_after = resp
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_retry_after);
            let reason = format!("HTTP {}", status.as_u16());
            return Err(if status.as_u16() == 429 || status.is_server_error() {
                FetchError {
                    reason,
                    transient: true,
                    retry_after,
                }
            } else {
                FetchError::permanent(reason)
            });
        }
        let content_type = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let body = read_capped(resp, expect)?;
        match expect {
            Expect::Text => Ok(body),
            Expect::Jp2 => check_jp2_body(&body, &content_type).map(|()| body),
        }
    }
}

/// Reads a body of at most the cap for `expect`: a larger announced length is refused
/// before reading, and a body that runs past the cap is cut off there, so an oversized
/// answer never costs more memory than the cap.
fn read_capped(resp: reqwest::blocking::Response, expect: Expect) -> Result<Vec<u8>, FetchError> {
    use std::io::Read;
    let cap = match expect {
        Expect::Text => MAX_TEXT_BYTES,
        Expect::Jp2 => MAX_JP2_BYTES,
    };
    let too_large = |n: String| {
        FetchError::permanent(format!("body of {n} bytes is over the {cap}-byte limit"))
    };
    if let Some(n) = resp.content_length().filter(|&n| n > cap as u64) {
        return Err(too_large(n.to_string()));
    }
    let mut body = Vec::with_capacity(resp.content_length().unwrap_or(0) as usize);
    resp.take(cap as u64 + 1)
        .read_to_end(&mut body)
        .map_err(|e| FetchError::transient(format!("body cut off: {e}")))?;
    if body.len() > cap {
        return Err(too_large(format!("more than {cap}")));
    }
    Ok(body)
}

/// A JP2 body must start with the JP2 signature and be structurally complete. Text in its
/// place (an HTML error page served with 200) is a permanent failure; a JP2 that stops
/// short is a transfer problem worth retrying.
fn check_jp2_body(body: &[u8], content_type: &str) -> Result<(), FetchError> {
    if !crate::jp2::has_signature(body) {
        let text = String::from_utf8_lossy(&body[..body.len().min(200)]);
        let kind = if text.trim_start().starts_with('<') {
            "an HTML/XML page"
        } else {
            "a non-JP2 body"
        };
        let ct = if content_type.is_empty() {
            String::new()
        } else {
            format!(", {content_type}")
        };
        return Err(FetchError::permanent(format!(
            "server sent {kind} instead of a JP2 ({} bytes{ct}): {}",
            body.len(),
            snippet(&text)
        )));
    }
    crate::jp2::validate(body, "download body")
        .map_err(|e| FetchError::transient(format!("{e:#} ({} bytes received)", body.len())))
}

/// At most 80 characters of a text, for error messages.
pub fn snippet(text: &str) -> String {
    let one_line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let cut: String = one_line.chars().take(80).collect();
    if one_line.chars().count() > 80 {
        format!("{cut:?}...")
    } else {
        format!("{cut:?}")
    }
}

/// The reqwest error in a few words (the kind, then its source chain).
fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_body() || e.is_decode() {
        "connection dropped while reading the body"
    } else {
        "request failed"
    };
    let mut chain = String::new();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        chain = format!("{s}");
        src = s.source();
    }
    if chain.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}: {chain}")
    }
}

/// `Retry-After` as delay-seconds or an HTTP date.
fn parse_retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    let d = if let Ok(secs) = v.parse::<u64>() {
        Duration::from_secs(secs)
    } else {
        let when = chrono::DateTime::parse_from_rfc2822(v).ok()?;
        (when.with_timezone(&chrono::Utc) - chrono::Utc::now())
            .to_std()
            .unwrap_or(Duration::ZERO)
    };
    Some(d.min(MAX_RETRY_AFTER))
}

fn is_loopback(url: &str) -> bool {
    let rest = url.split("://").nth(1).unwrap_or(url);
    let host = rest.split('/').next().unwrap_or("");
    let host = host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host);
    matches!(host, "localhost" | "127.0.0.1" | "[::1]") || host.starts_with("127.")
}

/// Spaces request starts at least `1 / rps` apart across all threads.
struct RateLimiter {
    interval: Option<Duration>,
    next: Mutex<Instant>,
}

impl RateLimiter {
    fn new(rps: f64) -> Self {
        let interval = (rps > 0.0 && rps.is_finite()).then(|| Duration::from_secs_f64(1.0 / rps));
        RateLimiter {
            interval,
            next: Mutex::new(Instant::now()),
        }
    }

    fn wait(&self) {
        let Some(interval) = self.interval else {
            return;
        };
        let slot = {
            let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            let slot = (*next).max(now);
            *next = slot + interval;
            slot
        };
        let now = Instant::now();
        if slot > now {
            std::thread::sleep(slot - now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_clients_build_with_the_ring_provider() {
        let policy = || RetryPolicy {
            retries: 0,
            backoff: Duration::ZERO,
            max_backoff: Duration::ZERO,
        };
        // Twice: the second finds the provider installed already.
        for _ in 0..2 {
            Client::new(
                "https://api.helioviewer.org/",
                Duration::from_secs(5),
                0.0,
                policy(),
            )
            .unwrap();
        }
    }

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("2"), Some(Duration::from_secs(2)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("99999"), Some(MAX_RETRY_AFTER));
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn rate_limiter_spaces_requests() {
        let l = RateLimiter::new(50.0);
        let t0 = Instant::now();
        for _ in 0..6 {
            l.wait();
        }
        // 6 starts at 20 ms spacing: the last one at >= 100 ms.
        assert!(
            t0.elapsed() >= Duration::from_millis(100),
            "{:?}",
            t0.elapsed()
        );
    }

    #[test]
    fn html_body_is_permanent_truncated_jp2_is_transient() {
        let e = check_jp2_body(
            b"<!DOCTYPE html><html><title>Maintenance</title></html>",
            "text/html",
        )
        .unwrap_err();
        assert!(!e.transient && e.reason.contains("HTML"), "{e:?}");
        let mut half = crate::jp2::SIGNATURE.to_vec();
        half.extend_from_slice(&[0, 0, 0, 200, b'j', b'p', b'2', b'c', 0xff, 0x4f]);
        half.resize(100, 0);
        let e = check_jp2_body(&half, "image/jp2").unwrap_err();
        assert!(e.transient && e.reason.contains("truncated"), "{e:?}");
    }

    #[test]
    fn loopback_hosts() {
        assert!(is_loopback("http://127.0.0.1:4321"));
        assert!(is_loopback("http://localhost/"));
        assert!(!is_loopback("https://api.helioviewer.org"));
    }
}
