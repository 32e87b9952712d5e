//! Support for tests and for `flarecast bench download`: local stand-ins for the web
//! services flarecast talks to. Not part of the product's API.
//!
//! [`http`] is a generic fixture server (a route table with canned answers, injected
//! faults and a request log); a stand-in for a service is a route table on top of it,
//! as [`helioviewer`] is.

pub mod helioviewer;
pub mod http;
