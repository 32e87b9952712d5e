//! Flares per forecast window by one sweep: the catalogue is sorted once and two
//! pointers follow the issue times, so no window scans the catalogue.

use crate::catalog::Flare;
use chrono::{Duration, NaiveDateTime};
use std::ops::Range;

/// The flares of one window, as a span of the labeller's time order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Window {
    pub issue: NaiveDateTime,
    span: Range<usize>,
}

impl Window {
    pub fn len(&self) -> usize {
        self.span.len()
    }

    pub fn is_empty(&self) -> bool {
        self.span.is_empty()
    }
}

/// A catalogue in start-time order (catalogue order among equal starts).
pub struct Labeller<'a> {
    flares: &'a [Flare],
    /// Catalogue indices sorted by start time.
    order: Vec<usize>,
    starts: Vec<NaiveDateTime>,
}

impl<'a> Labeller<'a> {
    pub fn new(flares: &'a [Flare]) -> Self {
        let mut order: Vec<usize> = (0..flares.len()).collect();
        order.sort_by_key(|&i| flares[i].start);
        let starts = order.iter().map(|&i| flares[i].start).collect();
        Labeller {
            flares,
            order,
            starts,
        }
    }

    /// The window of each issue time t: flares with t < start <= t + window - 1 s (the
    /// reference's (t, t+23:59:59] for 24 h). Issue times should ascend; a step back is
    /// handled by a binary search.
    pub fn windows(&self, issues: &[NaiveDateTime], window: Duration) -> Vec<Window> {
        let reach = window - Duration::seconds(1);
        let (mut lo, mut hi) = (0usize, 0usize);
        let mut prev: Option<NaiveDateTime> = None;
        let mut out = Vec::with_capacity(issues.len());
        for &t in issues {
            let last = t + reach;
            if prev.is_some_and(|p| t < p) {
                lo = self.starts.partition_point(|&s| s <= t);
                hi = self.starts.partition_point(|&s| s <= last);
            }
            while lo < self.starts.len() && self.starts[lo] <= t {
                lo += 1;
            }
            hi = hi.max(lo);
            while hi < self.starts.len() && self.starts[hi] <= last {
                hi += 1;
            }
            out.push(Window {
                issue: t,
                span: lo..hi,
            });
            prev = Some(t);
        }
        out
    }

    /// The window's largest flare by flux; ties go to the earlier catalogue row.
    pub fn largest(&self, w: &Window) -> Option<&'a Flare> {
        let mut best: Option<usize> = None;
        for &i in &self.order[w.span.clone()] {
            best = match best {
                Some(b) if !self.beats(i, b) => Some(b),
                _ => Some(i),
            };
        }
        best.map(|i| &self.flares[i])
    }

    /// All flares of the window, largest first (ties in catalogue order).
    pub fn ranked(&self, w: &Window) -> Vec<&'a Flare> {
        let mut idx: Vec<usize> = self.order[w.span.clone()].to_vec();
        idx.sort_by(|&a, &b| {
            self.flares[b]
                .class
                .cmp(&self.flares[a].class)
                .then(a.cmp(&b))
        });
        idx.into_iter().map(|i| &self.flares[i]).collect()
    }

    /// Whether catalogue row `a` outranks row `b`.
    fn beats(&self, a: usize, b: usize) -> bool {
        let (ca, cb) = (&self.flares[a].class, &self.flares[b].class);
        ca > cb || (ca == cb && a < b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::GoesClass;

    fn t(s: &str) -> NaiveDateTime {
        crate::instant::parse_time(s).unwrap()
    }

    fn flare(start: &str, class: &str) -> Flare {
        Flare {
            start: t(start),
            class: class.parse::<GoesClass>().unwrap(),
            lon: None,
            lat: None,
            satellite: None,
            scale: crate::catalog::FluxScale::Operational,
        }
    }

    fn classes(l: &Labeller, w: &Window) -> Vec<String> {
        l.ranked(w).iter().map(|f| f.class.to_string()).collect()
    }

    #[test]
    fn window_edges() {
        let issue = t("2012-03-06T00:00:00");
        let flares = vec![
            flare("2012-03-06T00:00:00", "X1.0"), // exactly at t: excluded
            flare("2012-03-06T23:59:59", "M1.0"), // t+23:59:59: included
            flare("2012-03-07T00:00:00", "X5.4"), // t+24h: excluded
            flare("2012-03-06T00:00:01", "C1.0"), // just after t: included
        ];
        let l = Labeller::new(&flares);
        let w = &l.windows(&[issue], Duration::hours(24))[0];
        assert_eq!(w.len(), 2);
        assert_eq!(classes(&l, w), ["M1.0", "C1.0"]);
        assert_eq!(l.largest(w).unwrap().class.as_str(), "M1.0");
        // One hour later the X5.4 enters, the M1.0 stays and the C1.0 (before t) leaves.
        let w = &l.windows(&[t("2012-03-06T01:00:00")], Duration::hours(24))[0];
        assert_eq!(classes(&l, w), ["X5.4", "M1.0"]);
    }

    #[test]
    fn largest_by_flux_with_catalogue_order_ties() {
        let flares = vec![
            flare("2014-01-01T02:00:00", "M9.9"),
            flare("2014-01-01T03:00:00", "X2.0"),
            flare("2014-01-01T01:00:00", "X10"),
            flare("2014-01-01T04:00:00", "M10"),
            flare("2014-01-01T05:00:00", "X2.0"),
        ];
        let l = Labeller::new(&flares);
        let w = &l.windows(&[t("2014-01-01T00:00:00")], Duration::hours(24))[0];
        assert!(std::ptr::eq(l.largest(w).unwrap(), &flares[2]));
        assert_eq!(classes(&l, w), ["X10", "X2.0", "X2.0", "M10", "M9.9"]);
        // The two X2.0 keep catalogue order (row 1 before row 4).
        let r = l.ranked(w);
        assert!(std::ptr::eq(r[1], &flares[1]) && std::ptr::eq(r[2], &flares[4]));
        // Equal classes: the earlier catalogue row wins even when it starts later.
        let tie = vec![
            flare("2014-01-01T05:00:00", "M1.0"),
            flare("2014-01-01T01:00:00", "M1.0"),
        ];
        let l = Labeller::new(&tie);
        let w = &l.windows(&[t("2014-01-01T00:00:00")], Duration::hours(24))[0];
        assert!(std::ptr::eq(l.largest(w).unwrap(), &tie[0]));
    }

    #[test]
    fn empty_windows_and_empty_catalogue() {
        let flares = vec![flare("2011-06-07T06:16:00", "M2.5")];
        let l = Labeller::new(&flares);
        let issues = [
            t("2011-06-05T00:00:00"),
            t("2011-06-06T06:16:00"),
            t("2011-06-06T06:17:00"),
            t("2011-06-07T06:16:00"),
        ];
        let ws = l.windows(&issues, Duration::hours(24));
        let lens: Vec<usize> = ws.iter().map(Window::len).collect();
        assert_eq!(lens, [0, 0, 1, 0]);
        assert!(l.largest(&ws[0]).is_none());
        assert!(l.ranked(&ws[3]).is_empty());
        let none: Vec<Flare> = Vec::new();
        let l = Labeller::new(&none);
        assert!(l
            .windows(&issues, Duration::hours(24))
            .iter()
            .all(Window::is_empty));
    }

    #[test]
    fn sweep_matches_a_scan_for_any_issue_order() {
        let flares: Vec<Flare> = (0..200)
            .map(|k| {
                let start = t("2013-01-01T00:00:00") + Duration::minutes(k * 97 % 5000);
                flare(
                    &start.format("%Y-%m-%dT%H:%M:%S").to_string(),
                    ["C1.0", "M1.0", "X1.0"][k as usize % 3],
                )
            })
            .collect();
        let l = Labeller::new(&flares);
        let mut issues: Vec<NaiveDateTime> = (0..100)
            .map(|h| t("2012-12-31T00:00:00") + Duration::hours(h))
            .collect();
        issues.swap(10, 60); // a step back
        let window = Duration::hours(24);
        for w in l.windows(&issues, window) {
            let scan = flares
                .iter()
                .filter(|f| f.start > w.issue && f.start <= w.issue + window - Duration::seconds(1))
                .count();
            assert_eq!(w.len(), scan, "{}", w.issue);
        }
    }
}
