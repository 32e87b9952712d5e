//! A local stand-in for the Helioviewer API v2 on 127.0.0.1, for tests and for
//! `flarecast bench download`: it answers `getJP2Image` (URI in text or JSON form, or the
//! JP2 bytes) from a list of observations, with optional latency and injected faults.

use anyhow::{Context, Result};
use chrono::NaiveDateTime;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The two kinds of request the downloader makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `jpip=true`: where is the closest image?
    Uri,
    /// The JP2 bytes.
    Image,
}

/// A misbehaviour for requests of one kind at one requested date.
#[derive(Clone, Debug)]
pub enum Fault {
    /// HTTP 500 on the first `n` requests, then normal answers.
    ServerError(u32),
    /// HTTP 429 with `Retry-After: secs` on the first request, then normal answers.
    TooManyRequests { retry_after_s: u64 },
    /// Announces the full length, sends a third of the body and closes, on the first `n`.
    DropMidBody(u32),
    /// A complete HTTP answer whose body is the first half of the JP2, always.
    TruncatedHalf,
    /// An HTML error page with status 200, always.
    HtmlPage,
    /// Waits this long before answering, on the first `n` requests.
    Slow(Duration, u32),
    /// HTTP 404, always.
    NotFound,
}

/// How `jpip=true` answers are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UriStyle {
    Jpip,
    Jpips,
    /// `{"uri":"jpip:\/\/..."}` as PHP's json_encode writes it (after `&json=true`, or always).
    Json,
}

#[derive(Clone)]
pub struct Config {
    /// Observation times and the JP2 served for each.
    pub observations: Vec<NaiveDateTime>,
    pub jp2: Arc<Vec<u8>>,
    /// Added before every answer.
    pub latency: Duration,
    pub uri_style: UriStyle,
    /// Keyed by the requested date as sent (`YYYY-MM-DDTHH:MM:SSZ`).
    pub faults: HashMap<(String, Kind), Fault>,
}

/// HMI file name of an observation: `YYYY_MM_DD__HH_MM_SS_mmm__SDO_HMI_HMI_magnetogram.jp2`.
pub fn hmi_name(t: NaiveDateTime) -> String {
    format!(
        "{}__SDO_HMI_HMI_magnetogram.jp2",
        t.format("%Y_%m_%d__%H_%M_%S_%3f")
    )
}

/// A running server; stops when dropped.
pub struct LocalServer {
    pub url: String,
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<Vec<(Kind, String)>>>,
    addr: std::net::SocketAddr,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl LocalServer {
    pub fn start(config: Config) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").context("cannot bind a local port")?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(Vec::new()));
        let state = Arc::new(State {
            config,
            counts: Mutex::new(HashMap::new()),
            log: log.clone(),
        });
        let stop2 = stop.clone();
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let state = state.clone();
                std::thread::spawn(move || {
                    let _ = state.serve(conn);
                });
            }
        });
        Ok(LocalServer {
            url: format!("http://{addr}"),
            stop,
            log,
            addr,
            thread: Some(thread),
        })
    }

    /// Every request received so far: kind and requested date.
    pub fn requests(&self) -> Vec<(Kind, String)> {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn count(&self, kind: Kind) -> usize {
        self.requests().iter().filter(|(k, _)| *k == kind).count()
    }

    pub fn count_for(&self, kind: Kind, date: &str) -> usize {
        self.requests()
            .iter()
            .filter(|(k, d)| *k == kind && d == date)
            .count()
    }
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct State {
    config: Config,
    counts: Mutex<HashMap<(String, Kind), u32>>,
    log: Arc<Mutex<Vec<(Kind, String)>>>,
}

impl State {
    fn serve(&self, mut conn: TcpStream) -> std::io::Result<()> {
        conn.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut reader = BufReader::new(conn.try_clone()?);
        let mut request_line = String::new();
        reader.read_line(&mut request_line)?;
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h)? == 0 || h == "\r\n" || h == "\n" {
                break;
            }
        }
        let target = request_line
            .split_whitespace()
            .nth(1)
            .unwrap_or("")
            .to_string();
        let (path, query) = target.split_once('?').unwrap_or((&target, ""));
        let params: HashMap<&str, &str> = query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .collect();
        if !path.trim_end_matches('/').ends_with("/v2/getJP2Image") {
            return respond(&mut conn, 404, "text/plain", &[], b"unknown endpoint");
        }
        let Some(date) = params.get("date").map(|d| d.to_string()) else {
            return respond(&mut conn, 400, "text/plain", &[], b"missing date");
        };
        let kind = if params.get("jpip") == Some(&"true") {
            Kind::Uri
        } else {
            Kind::Image
        };
        let json = params.get("json") == Some(&"true");
        let n = {
            let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
            let e = c.entry((date.clone(), kind)).or_insert(0);
            *e += 1;
            *e
        };
        self.log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((kind, date.clone()));
        std::thread::sleep(self.config.latency);

        let Some(obs) = self.closest(&date) else {
            return respond(
                &mut conn,
                400,
                "application/json",
                &[],
                br#"{"error":"Invalid date"}"#,
            );
        };
        let body: Vec<u8> = match kind {
            Kind::Uri => self.uri_answer(obs, json).into_bytes(),
            Kind::Image => self.config.jp2.as_ref().clone(),
        };
        let ctype = if kind == Kind::Image {
            "image/jp2"
        } else {
            "text/plain"
        };
        match self.config.faults.get(&(date, kind)) {
            Some(Fault::ServerError(k)) if n <= *k => respond(&mut conn, 500, "text/html", &[], b"<html>Internal error</html>"),
            Some(Fault::TooManyRequests { retry_after_s }) if n == 1 => {
                let ra = retry_after_s.to_string();
                respond(&mut conn, 429, "text/plain", &[("Retry-After", &ra)], b"slow down")
            }
            Some(Fault::DropMidBody(k)) if n <= *k => {
                write!(conn, "HTTP/1.1 200 OK\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len())?;
                conn.write_all(&body[..body.len() / 3])?;
                conn.flush()?;
                conn.shutdown(Shutdown::Both)
            }
            Some(Fault::TruncatedHalf) => respond(&mut conn, 200, ctype, &[], &body[..body.len() / 2]),
            Some(Fault::HtmlPage) => respond(
                &mut conn,
                200,
                "text/html; charset=UTF-8",
                &[],
                b"<!DOCTYPE html><html><head><title>Helioviewer - maintenance</title></head><body>Back soon</body></html>",
            ),
            Some(Fault::Slow(d, k)) if n <= *k => {
                std::thread::sleep(*d);
                respond(&mut conn, 200, ctype, &[], &body)
            }
            Some(Fault::NotFound) => respond(&mut conn, 404, "text/plain", &[], b"not found"),
            _ => respond(&mut conn, 200, ctype, &[], &body),
        }
    }

    fn closest(&self, date: &str) -> Option<NaiveDateTime> {
        let t =
            NaiveDateTime::parse_from_str(date.trim_end_matches('Z'), "%Y-%m-%dT%H:%M:%S").ok()?;
        self.config
            .observations
            .iter()
            .copied()
            .min_by_key(|o| (*o - t).abs())
    }

    fn uri_answer(&self, obs: NaiveDateTime, json: bool) -> String {
        let path = format!(
            "/HMI/{}/magnetogram/{}",
            obs.format("%Y/%m/%d"),
            hmi_name(obs)
        );
        match (self.config.uri_style, json) {
            (UriStyle::Json, _) | (_, true) => {
                format!(
                    "{{\"uri\":\"jpip:\\/\\/127.0.0.1:8090{}\"}}",
                    path.replace('/', "\\/")
                )
            }
            (UriStyle::Jpips, false) => format!("jpips://127.0.0.1:8090{path}"),
            (UriStyle::Jpip, false) => format!("jpip://127.0.0.1:8090{path}"),
        }
    }
}

fn respond(
    conn: &mut TcpStream,
    status: u16,
    ctype: &str,
    extra: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        429 => "Too Many Requests",
        _ => "Internal Server Error",
    };
    let mut head = format!("HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n", body.len());
    for (k, v) in extra {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    conn.write_all(head.as_bytes())?;
    conn.write_all(body)?;
    conn.flush()
}
