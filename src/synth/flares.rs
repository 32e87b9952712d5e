//! The flare model: each region flares as a Poisson process whose rate and size
//! distribution grow with its flux and complexity; peak fluxes follow a power law.

use super::regions::Region;
use chrono::{Duration, NaiveDateTime};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::io::Write;

/// Smallest flare in the catalogue: C1.0 (W/m^2).
const MIN_FLUX: f64 = 1e-6;
/// Largest: X20.
const MAX_FLUX: f64 = 2e-3;
/// Flares from regions up to this far behind the limb still reach GOES.
const VISIBLE_LON: f64 = 95.0;

#[derive(Clone, Debug, PartialEq)]
pub struct Flare {
    pub start: NaiveDateTime,
    /// GOES peak flux (W/m^2).
    pub flux: f64,
    /// Stonyhurst position (deg); `None` when the catalogue gives no location.
    pub location: Option<(f64, f64)>,
    pub region: u32,
}

impl Flare {
    pub fn class(&self) -> String {
        goes_class(self.flux)
    }
}

/// `C2.3`, `M1.0`, `X12.0` for a peak flux in W/m^2 (one decimal, as GOES lists it).
pub fn goes_class(flux: f64) -> String {
    const LETTERS: [(char, f64); 5] = [
        ('A', 1e-8),
        ('B', 1e-7),
        ('C', 1e-6),
        ('M', 1e-5),
        ('X', 1e-4),
    ];
    let mut idx = LETTERS
        .iter()
        .rposition(|&(_, base)| flux >= base * 0.99999)
        .unwrap_or(0);
    let mut mantissa = (flux / LETTERS[idx].1 * 10.0).round() / 10.0;
    if mantissa >= 10.0 && idx + 1 < LETTERS.len() {
        idx += 1;
        mantissa = (flux / LETTERS[idx].1 * 10.0).round() / 10.0;
    }
    format!("{}{mantissa:.1}", LETTERS[idx].0)
}

/// Knuth's Poisson sampler, fine for the small hourly means used here.
fn poisson(rng: &mut ChaCha8Rng, mean: f64) -> u32 {
    let limit = (-mean).exp();
    let mut k = 0;
    let mut p: f64 = rng.random();
    while p > limit {
        k += 1;
        p *= rng.random::<f64>();
    }
    k
}

/// A peak flux from the power law dN/dF ~ F^-index above C1.0, truncated at X20.
fn peak_flux(rng: &mut ChaCha8Rng, index: f64) -> f64 {
    loop {
        let u: f64 = 1.0 - rng.random::<f64>();
        let flux = MIN_FLUX * u.powf(-1.0 / (index - 1.0));
        if flux <= MAX_FLUX {
            return flux;
        }
    }
}

/// Draws every flare starting in `[start, start + hours)`, sorted by start time.
pub fn simulate(
    rng: &mut ChaCha8Rng,
    regions: &[Region],
    start: NaiveDateTime,
    hours: i64,
) -> Vec<Flare> {
    let mut flares = Vec::new();
    for region in regions {
        let first = region.t0_h.max(0.0).floor() as i64;
        let last = region.end_h().ceil().min(hours as f64) as i64;
        for h in first..last {
            let mid = h as f64 + 0.5;
            if region.lon_at(mid).abs() > VISIBLE_LON {
                continue;
            }
            let rate = region.flare_rate(mid) / 24.0;
            if rate <= 0.0 {
                continue;
            }
            for _ in 0..poisson(rng, rate) {
                let second = rng.random_range(0..3600);
                let t_h = h as f64 + second as f64 / 3600.0;
                let flux = peak_flux(rng, region.flare_index());
                // Flares sit on the inversion line near the region's centre.
                let lon = (region.lon_at(t_h) + rng.random_range(-1.5..1.5)).clamp(-90.0, 90.0);
                let lat = region.lat + rng.random_range(-1.5..1.5);
                // Small flares sometimes lack a position in the real lists.
                let unknown = flux < 1e-5 && rng.random::<f64>() < 0.04;
                flares.push(Flare {
                    start: start + Duration::seconds(h * 3600 + second),
                    flux,
                    location: (!unknown).then_some((lon, lat)),
                    region: region.id,
                });
            }
        }
    }
    flares.sort_by(|a, b| a.start.cmp(&b.start).then(a.region.cmp(&b.region)));
    flares
}

/// Writes the catalogue in the integrated GOES format: `start_time,goes_class,fl_lon,fl_lat`.
pub fn write_catalog(w: &mut impl Write, flares: &[Flare]) -> std::io::Result<()> {
    writeln!(w, "start_time,goes_class,fl_lon,fl_lat")?;
    for f in flares {
        let time = f.start.format("%Y-%m-%d %H:%M:%S");
        match f.location {
            Some((lon, lat)) => writeln!(w, "{time},{},{lon:.1},{lat:.1}", f.class())?,
            None => writeln!(w, "{time},{},UNK,UNK", f.class())?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_round_like_goes() {
        assert_eq!(goes_class(1e-6), "C1.0");
        assert_eq!(goes_class(2.34e-5), "M2.3");
        assert_eq!(goes_class(9.96e-6), "M1.0");
        assert_eq!(goes_class(9.94e-6), "C9.9");
        assert_eq!(goes_class(1.2e-3), "X12.0");
        assert_eq!(goes_class(3.1e-7), "B3.1");
    }

    #[test]
    fn poisson_mean() {
        use rand::SeedableRng;
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let n: u32 = (0..20000).map(|_| poisson(&mut rng, 0.3)).sum();
        assert!((n as f64 / 20000.0 - 0.3).abs() < 0.02);
    }
}
