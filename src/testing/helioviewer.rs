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

const GET_CLOSEST_IMAGE: &str = "/v2/getClosestImage";

/// Images served by id, as the forecast asks for them: `getClosestImage?date=&sourceId=`
/// names the image nearest the date, before or after it as Helioviewer does, in
/// Helioviewer's JSON (`{"id": ..., "date": "YYYY-MM-DD HH:MM:SS", ...}`), and
/// `getJP2Image?id=` returns that image's JP2.
pub struct Images {
    /// In time order; image k has id `FIRST_ID + k`.
    images: Vec<(NaiveDateTime, Arc<Vec<u8>>)>,
}

impl Images {
    /// Id of the first image (ids are large and not indices, as Helioviewer's are).
    pub const FIRST_ID: u64 = 34_205_701;

    pub fn new(mut images: Vec<(NaiveDateTime, Arc<Vec<u8>>)>) -> Arc<Self> {
        images.sort_by_key(|(t, _)| *t);
        Arc::new(Images { images })
    }

    /// The id the image observed at `t` is served under.
    pub fn id_of(&self, t: NaiveDateTime) -> Option<u64> {
        self.images
            .iter()
            .position(|(o, _)| *o == t)
            .map(|k| Self::FIRST_ID + k as u64)
    }

    /// The `getClosestImage` route.
    pub fn closest_route(self: &Arc<Self>) -> Route {
        let images = self.clone();
        Route::handler(GET_CLOSEST_IMAGE, move |req| images.closest(req))
    }

    /// The `getJP2Image?id=` route (requests without an id are not its own).
    pub fn by_id_route(self: &Arc<Self>) -> Route {
        let images = self.clone();
        Route::handler(GET_JP2_IMAGE, move |req| images.by_id(req)).without_param("date")
    }

    /// Both routes.
    pub fn routes(self: &Arc<Self>) -> Vec<Route> {
        vec![self.closest_route(), self.by_id_route()]
    }

    fn closest(&self, req: &Request) -> Answer {
        let t = req.param("date").and_then(|d| {
            NaiveDateTime::parse_from_str(d.trim_end_matches('Z'), "%Y-%m-%dT%H:%M:%S").ok()
        });
        let Some(t) = t else {
            return Answer::json(r#"{"error":"Invalid date"}"#);
        };
        let Some(k) = (0..self.images.len()).min_by_key(|&k| (self.images[k].0 - t).abs()) else {
            return Answer::json(r#"{"error":"No images found"}"#);
        };
        Answer::json(format!(
            "{{\"id\":{},\"date\":\"{}\",\"scale\":0.504492,\"width\":4096,\"height\":4096,\
             \"refPixelX\":2048.5,\"refPixelY\":2048.5,\"rsun\":1900,\
             \"sunCenterOffsetParams\":[],\"layeringOrder\":1}}",
            Self::FIRST_ID + k as u64,
            self.images[k].0.format("%Y-%m-%d %H:%M:%S")
        ))
    }

    fn by_id(&self, req: &Request) -> Answer {
        let k = req
            .param("id")
            .and_then(|id| id.parse::<u64>().ok())
            .and_then(|id| id.checked_sub(Self::FIRST_ID))
            .filter(|&k| (k as usize) < self.images.len());
        match k {
            Some(k) => Answer::ok("image/jp2", self.images[k as usize].1.as_ref().clone()),
            None => Answer::json(r#"{"error":"Invalid image id"}"#),
        }
    }
}
