//! A small HTTP/1.1 fixture server on 127.0.0.1: a table of routes, each matched on the
//! path and query parameters and answered with a canned answer (or one computed from the
//! request), optionally misbehaving, with a log of every request received.
//!
//! Standing in for a web service is a route table:
//!
//! ```no_run
//! use flarecast::testing::http::{Answer, Fault, Route, Server};
//! let server = Server::start(vec![
//!     Route::answer("/api/list", Answer::ok("text/html", "<a href=\"x.csv\">x.csv</a>")),
//!     Route::answer("/api/x.csv", Answer::ok("text/csv", "a,b\n1,2\n")).fault(Fault::ServerError(2)),
//!     Route::answer("/api/page", Answer::json(r#"{"page":2}"#)).param("page", "2"),
//! ])?;
//! let url = format!("{}/api/list", server.url);
//! # anyhow::Ok(())
//! ```

use anyhow::{Context, Result};
use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A request as received: the path and the decoded query parameters, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub query: Vec<(String, String)>,
}

impl Request {
    /// The first value of query parameter `key`.
    pub fn param(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn parse(request_line: &str) -> Self {
        let mut words = request_line.split_whitespace();
        let method = words.next().unwrap_or("").to_string();
        let target = words.next().unwrap_or("");
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        Request {
            method,
            path: path.to_string(),
            query: form_urlencoded::parse(query.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        }
    }
}

/// A complete HTTP answer.
#[derive(Clone, Debug)]
pub struct Answer {
    pub status: u16,
    /// Sent as given; `Content-Length` and `Connection: close` are added.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn new(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        Answer {
            status,
            headers: vec![("Content-Type".into(), content_type.into())],
            body: body.into(),
        }
    }

    /// Status 200.
    pub fn ok(content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        Self::new(200, content_type, body)
    }

    /// Status 200, `application/json`.
    pub fn json(body: impl Into<Vec<u8>>) -> Self {
        Self::new(200, "application/json", body)
    }

    /// A plain-text answer with any status.
    pub fn text(status: u16, body: impl Into<Vec<u8>>) -> Self {
        Self::new(status, "text/plain", body)
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// A misbehaviour of a route; `n` counts the requests that route has matched.
#[derive(Clone, Debug)]
pub enum Fault {
    /// HTTP 500 on the first `n` requests, then normal answers.
    ServerError(u32),
    /// HTTP 429 with `Retry-After: secs` on the first request, then normal answers.
    TooManyRequests { retry_after_s: u64 },
    /// Announces the full length, sends a third of the body and closes, on the first `n`.
    DropMidBody(u32),
    /// A complete answer whose body is the first half of the normal one, always.
    TruncatedHalf,
    /// An HTML error page with status 200, always.
    HtmlPage,
    /// Waits this long before answering, on the first `n` requests.
    Slow(Duration, u32),
    /// HTTP 404, always.
    NotFound,
    /// Status 200 with the full length announced, then the body one byte every
    /// `interval`, on the first `n` requests: a stalled server that never quite stops.
    Drip { interval: Duration, n: u32 },
}

type Handler = Arc<dyn Fn(&Request) -> Answer + Send + Sync>;

/// One entry of the route table.
pub struct Route {
    path: String,
    /// Parameters that must have a value (`Some`) or be absent (`None`).
    params: Vec<(String, Option<String>)>,
    handler: Handler,
    fault: Option<Fault>,
    hits: AtomicU32,
}

impl Route {
    /// Answers requests for `path` (trailing slashes ignored) with `answer`.
    pub fn answer(path: &str, answer: Answer) -> Self {
        Self::handler(path, move |_| answer.clone())
    }

    /// Answers requests for `path` with what `handler` makes of the request.
    pub fn handler(
        path: &str,
        handler: impl Fn(&Request) -> Answer + Send + Sync + 'static,
    ) -> Self {
        Route {
            path: path.trim_end_matches('/').to_string(),
            params: Vec::new(),
            handler: Arc::new(handler),
            fault: None,
            hits: AtomicU32::new(0),
        }
    }

    /// Matches only requests whose query has `key=value`.
    pub fn param(mut self, key: &str, value: &str) -> Self {
        self.params.push((key.into(), Some(value.into())));
        self
    }

    /// Matches only requests whose query lacks `key`.
    pub fn without_param(mut self, key: &str) -> Self {
        self.params.push((key.into(), None));
        self
    }

    /// Makes the route misbehave.
    pub fn fault(mut self, fault: Fault) -> Self {
        self.fault = Some(fault);
        self
    }

    fn matches(&self, req: &Request) -> bool {
        req.path.trim_end_matches('/') == self.path
            && self
                .params
                .iter()
                .all(|(k, want)| req.param(k) == want.as_deref())
    }
}

/// A running server; stops when dropped.
pub struct Server {
    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub url: String,
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<Vec<Request>>>,
    addr: SocketAddr,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    /// Serves `routes`; the first route that matches a request answers it, a request
    /// no route matches gets a 404.
    pub fn start(routes: Vec<Route>) -> Result<Self> {
        Self::start_with_latency(routes, Duration::ZERO)
    }

    /// As [`Server::start`], waiting `latency` before every answer.
    pub fn start_with_latency(routes: Vec<Route>, latency: Duration) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").context("cannot bind a local port")?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(Vec::new()));
        let table = Arc::new(Table {
            routes,
            latency,
            log: log.clone(),
        });
        let stop2 = stop.clone();
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let table = table.clone();
                std::thread::spawn(move || {
                    let _ = table.serve(conn);
                });
            }
        });
        Ok(Server {
            url: format!("http://{addr}"),
            stop,
            log,
            addr,
            thread: Some(thread),
        })
    }

    /// Every request received so far, in order of arrival.
    pub fn requests(&self) -> Vec<Request> {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// How many requests asked for `path` (trailing slashes ignored).
    pub fn count(&self, path: &str) -> usize {
        let path = path.trim_end_matches('/');
        self.requests()
            .iter()
            .filter(|r| r.path.trim_end_matches('/') == path)
            .count()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Table {
    routes: Vec<Route>,
    latency: Duration,
    log: Arc<Mutex<Vec<Request>>>,
}

impl Table {
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
        let req = Request::parse(&request_line);
        self.log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(req.clone());
        let Some(route) = self.routes.iter().find(|r| r.matches(&req)) else {
            return send(&mut conn, &Answer::text(404, "unknown endpoint"));
        };
        let n = route.hits.fetch_add(1, Ordering::SeqCst) + 1;
        std::thread::sleep(self.latency);
        let answer = (route.handler)(&req);
        match &route.fault {
            Some(Fault::ServerError(k)) if n <= *k => send(
                &mut conn,
                &Answer::new(500, "text/html", "<html>Internal error</html>"),
            ),
            Some(Fault::TooManyRequests { retry_after_s }) if n == 1 => send(
                &mut conn,
                &Answer::text(429, "slow down").header("Retry-After", &retry_after_s.to_string()),
            ),
            Some(Fault::DropMidBody(k)) if n <= *k => {
                conn.write_all(&head(&answer, answer.body.len()))?;
                conn.write_all(&answer.body[..answer.body.len() / 3])?;
                conn.flush()?;
                conn.shutdown(Shutdown::Both)
            }
            Some(Fault::TruncatedHalf) => {
                let half = answer.body.len() / 2;
                send(
                    &mut conn,
                    &Answer {
                        body: answer.body[..half].to_vec(),
                        ..answer
                    },
                )
            }
            Some(Fault::HtmlPage) => send(
                &mut conn,
                &Answer::ok(
                    "text/html; charset=UTF-8",
                    "<!DOCTYPE html><html><head><title>Service maintenance</title></head><body>Back soon</body></html>",
                ),
            ),
            Some(Fault::Slow(d, k)) if n <= *k => {
                std::thread::sleep(*d);
                send(&mut conn, &answer)
            }
            Some(Fault::NotFound) => send(&mut conn, &Answer::text(404, "not found")),
            Some(Fault::Drip { interval, n: k }) if n <= *k => {
                conn.write_all(&head(&answer, answer.body.len()))?;
                conn.flush()?;
                // Until the body is out or the client has gone (the write fails).
                for b in &answer.body {
                    std::thread::sleep(*interval);
                    conn.write_all(std::slice::from_ref(b))?;
                    conn.flush()?;
                }
                Ok(())
            }
            _ => send(&mut conn, &answer),
        }
    }
}

fn head(answer: &Answer, content_length: usize) -> Vec<u8> {
    let reason = match answer.status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        _ => "Status",
    };
    let mut head = format!("HTTP/1.1 {} {reason}\r\n", answer.status);
    for (k, v) in &answer.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!(
        "Content-Length: {content_length}\r\nConnection: close\r\n\r\n"
    ));
    head.into_bytes()
}

fn send(conn: &mut TcpStream, answer: &Answer) -> std::io::Result<()> {
    conn.write_all(&head(answer, answer.body.len()))?;
    conn.write_all(&answer.body)?;
    conn.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn get(url: &str) -> String {
        let rest = url.strip_prefix("http://").unwrap();
        let (addr, target) = rest.split_at(rest.find('/').unwrap());
        let mut conn = TcpStream::connect(addr).unwrap();
        write!(conn, "GET {target} HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
        let mut out = String::new();
        let _ = conn.read_to_string(&mut out);
        out
    }

    #[test]
    fn routes_match_on_path_and_query_and_faults_count_per_route() {
        let server = Server::start(vec![
            Route::answer("/list", Answer::json("[2]")).param("page", "2"),
            Route::answer("/list", Answer::json("[1]"))
                .without_param("page")
                .fault(Fault::ServerError(1)),
            Route::handler("/echo", |r| {
                Answer::ok("text/plain", r.param("q").unwrap_or("-"))
            }),
        ])
        .unwrap();
        let u = &server.url;
        assert!(get(&format!("{u}/list")).starts_with("HTTP/1.1 500 "));
        let second = get(&format!("{u}/list/"));
        assert!(second.starts_with("HTTP/1.1 200 OK\r\n"), "{second}");
        assert!(second.ends_with("\r\n\r\n[1]"), "{second}");
        assert!(get(&format!("{u}/list?page=2")).ends_with("[2]"));
        assert!(get(&format!("{u}/list?page=3")).starts_with("HTTP/1.1 404 "));
        assert!(get(&format!("{u}/echo?q=a%20b")).ends_with("\r\n\r\na b"));
        let log = server.requests();
        assert_eq!(log.len(), 5);
        assert_eq!(log[2].param("page"), Some("2"));
        assert_eq!(server.count("/list"), 4);
    }

    #[test]
    fn retry_after_and_truncation_change_the_normal_answer() {
        let server = Server::start(vec![
            Route::answer("/a", Answer::ok("text/csv", "0123456789"))
                .fault(Fault::TooManyRequests { retry_after_s: 7 }),
            Route::answer("/b", Answer::ok("text/csv", "0123456789")).fault(Fault::TruncatedHalf),
        ])
        .unwrap();
        let first = get(&format!("{}/a", server.url));
        assert!(first.starts_with("HTTP/1.1 429 "), "{first}");
        assert!(first.contains("\r\nRetry-After: 7\r\n"), "{first}");
        assert!(get(&format!("{}/a", server.url)).ends_with("\r\n\r\n0123456789"));
        let half = get(&format!("{}/b", server.url));
        assert!(half.contains("Content-Length: 5\r\n") && half.ends_with("\r\n\r\n01234"));
    }

    #[test]
    fn a_drip_sends_the_whole_answer_a_byte_at_a_time_then_answers_normally() {
        let server = Server::start(vec![Route::answer("/d", Answer::ok("text/plain", "abc"))
            .fault(Fault::Drip {
                interval: Duration::from_millis(100),
                n: 1,
            })])
        .unwrap();
        let t0 = std::time::Instant::now();
        let dripped = get(&format!("{}/d", server.url));
        assert!(
            t0.elapsed() >= Duration::from_millis(300),
            "{:?}",
            t0.elapsed()
        );
        assert!(dripped.starts_with("HTTP/1.1 200 OK\r\n"), "{dripped}");
        assert!(dripped.ends_with("Content-Length: 3\r\nConnection: close\r\n\r\nabc"));
        assert!(get(&format!("{}/d", server.url)).ends_with("\r\n\r\nabc"));
    }
}
