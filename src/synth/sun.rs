//! Solar geometry: differential rotation, the observer's B0 angle and the
//! orthographic projection of heliographic (Stonyhurst) positions onto the disk.

use chrono::{Datelike, NaiveDateTime, Timelike};

/// Synodic rotation rate (deg/day) of magnetic features at latitude `lat_deg`: the
/// Snodgrass (1983) sidereal magnetic rate minus Earth's mean orbital motion.
pub fn synodic_rate(lat_deg: f64) -> f64 {
    let s2 = lat_deg.to_radians().sin().powi(2);
    14.252 - 1.678 * s2 - 2.401 * s2 * s2 - 0.9856
}

/// Heliographic latitude of the disk centre (deg): zero early June and December,
/// -7.25 early March, +7.25 early September.
pub fn b0_deg(t: NaiveDateTime) -> f64 {
    let doy = t.ordinal0() as f64 + t.num_seconds_from_midnight() as f64 / 86400.0;
    7.25 * (std::f64::consts::TAU * (doy - 158.0) / 365.25).sin()
}

/// Unit vector of a point on the solar surface in the observer frame: x to the west
/// (image right), y to the north (image up), z towards the observer.
pub fn to_observer(lon_deg: f64, lat_deg: f64, b0_deg: f64) -> [f64; 3] {
    let (sl, cl) = lon_deg.to_radians().sin_cos();
    let (sp, cp) = lat_deg.to_radians().sin_cos();
    let (sb, cb) = b0_deg.to_radians().sin_cos();
    [cp * sl, sp * cb - cp * cl * sb, sp * sb + cp * cl * cb]
}

/// Solar cycle number and years since its minimum at `year` (fractional year).
pub fn cycle(year: f64) -> (u32, f64) {
    // Minima (fractional years) of cycles 23, 24, 25 and an estimate for 26.
    const MINIMA: [(u32, f64); 4] = [(23, 1996.4), (24, 2008.9), (25, 2019.9), (26, 2030.9)];
    let mut current = (22, year - 1986.7);
    for (n, start) in MINIMA {
        if year >= start {
            current = (n, year - start);
        }
    }
    current
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_and_projection() {
        // Equatorial features cross the disk in about 13.6 days.
        assert!((180.0 / synodic_rate(0.0) - 13.6).abs() < 0.1);
        assert!(synodic_rate(30.0) < synodic_rate(10.0));
        let c = to_observer(0.0, 0.0, 0.0);
        assert!((c[2] - 1.0).abs() < 1e-12);
        let w = to_observer(90.0, 0.0, 0.0);
        assert!((w[0] - 1.0).abs() < 1e-12 && w[2].abs() < 1e-12);
        // With B0 > 0 the north pole tilts towards the observer.
        assert!(to_observer(0.0, 90.0, 7.0)[2] > 0.1);
        assert_eq!(cycle(2014.2).0, 24);
        assert_eq!(cycle(2022.6).0, 25);
    }
}
