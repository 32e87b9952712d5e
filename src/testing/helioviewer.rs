//! A stand-in for the Helioviewer API v2: it answers `getJP2Image` (the URI in text or
//! JSON form with `jpip=true`, otherwise the JP2 bytes) from a list of observations, with
//! optional latency and faults per requested date.

use super::http::{Answer, Request, Route, Server};
use anyhow::Result;
use chrono::NaiveDateTime;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

pub use super::http::Fault;

const GET_JP2_IMAGE: &str = "/v2/getJP2Image";

/// The two kinds of request the downloader makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `jpip=true`: where is the closest image?
    Uri,
    /// The JP2 bytes.
    Image,
}

impl Kind {
    fn of(req: &Request) -> Self {
        if req.param("jpip") == Some("true") {
            Kind::Uri
        } else {
            Kind::Image
        }
    }

    /// Restricts `route` to requests of this kind.
    fn only(self, route: Route) -> Route {
        match self {
            Kind::Uri => route.param("jpip", "true"),
            Kind::Image => route.without_param("jpip"),
        }
    }
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

/// A running stand-in; stops when dropped.
pub struct LocalServer {
    pub url: String,
    server: Server,
}

impl LocalServer {
    pub fn start(config: Config) -> Result<Self> {
        let archive = Arc::new(Archive {
            observations: config.observations,
            jp2: config.jp2,
            uri_style: config.uri_style,
        });
        let route = |archive: &Arc<Archive>| {
            let archive = archive.clone();
            Route::handler(GET_JP2_IMAGE, move |req| archive.answer(req))
        };
        // Faulty dates first: the first matching route answers.
        let mut routes: Vec<Route> = config
            .faults
            .into_iter()
            .map(|((date, kind), fault)| {
                kind.only(route(&archive).param("date", &date)).fault(fault)
            })
            .collect();
        routes.push(route(&archive));
        let server = Server::start_with_latency(routes, config.latency)?;
        Ok(LocalServer {
            url: server.url.clone(),
            server,
        })
    }

    /// Every `getJP2Image` request with a date received so far: kind and requested date.
    pub fn requests(&self) -> Vec<(Kind, String)> {
        self.server
            .requests()
            .iter()
            .filter(|r| r.path.trim_end_matches('/').ends_with(GET_JP2_IMAGE))
            .filter_map(|r| Some((Kind::of(r), r.param("date")?.to_string())))
            .collect()
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

struct Archive {
    observations: Vec<NaiveDateTime>,
    jp2: Arc<Vec<u8>>,
    uri_style: UriStyle,
}

impl Archive {
    fn answer(&self, req: &Request) -> Answer {
        let Some(date) = req.param("date") else {
            return Answer::text(400, "missing date");
        };
        let Some(obs) = self.closest(date) else {
            return Answer::new(400, "application/json", r#"{"error":"Invalid date"}"#);
        };
        match Kind::of(req) {
            Kind::Uri => Answer::ok(
                "text/plain",
                self.uri_answer(obs, req.param("json") == Some("true")),
            ),
            Kind::Image => Answer::ok("image/jp2", self.jp2.as_ref().clone()),
        }
    }

    fn closest(&self, date: &str) -> Option<NaiveDateTime> {
        let t =
            NaiveDateTime::parse_from_str(date.trim_end_matches('Z'), "%Y-%m-%dT%H:%M:%S").ok()?;
        self.observations
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
        match (self.uri_style, json) {
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
