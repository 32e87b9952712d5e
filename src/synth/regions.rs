//! Active regions: a population of bipoles that emerge, grow, decay and rotate.
//!
//! Each region carries a fixed random layout (spots, plage fragments, delta pairs,
//! satellite bipoles) whose scale and strength follow the region's flux profile, so the
//! same region looks alike from hour to hour while it evolves.

use super::sun;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// One Gaussian flux element on the surface: heliographic position, width, radial field.
#[derive(Clone, Copy, Debug)]
pub struct Blob {
    pub lon: f64,
    pub lat: f64,
    /// Gaussian width in heliographic degrees.
    pub sigma: f64,
    /// Peak radial field in gauss (signed).
    pub amp: f64,
}

/// A plage fragment: polarity relative to the leading spot and standard-normal offsets.
#[derive(Clone, Copy, Debug)]
struct Fragment {
    leading: bool,
    u: f64,
    v: f64,
    weight: f64,
    drift: f64,
}

/// An opposite-polarity pair with a steep inversion line between them (delta spot).
#[derive(Clone, Copy, Debug)]
struct DeltaPair {
    /// Position along the region's axis (0 = centre, 0.5 = leading spot).
    along: f64,
    across: f64,
    angle: f64,
    gap: f64,
    weight: f64,
}

/// A small bipole at a random orientation inside the region (mixed polarity).
#[derive(Clone, Copy, Debug)]
struct Satellite {
    along: f64,
    across: f64,
    angle: f64,
    weight: f64,
}

#[derive(Clone, Debug)]
pub struct Region {
    pub id: u32,
    /// Emergence time, hours after the archive's start (negative: before it).
    pub t0_h: f64,
    /// Stonyhurst longitude at emergence (deg, west positive).
    pub lon0: f64,
    pub lat: f64,
    /// Size parameter: flux grows as size^2, spot separation and strength with size.
    pub size: f64,
    /// 0 = simple bipole, ~0.5 = mixed (beta-gamma), >= 0.75 = delta configuration.
    pub complexity: f64,
    /// Sign of the leading (western) polarity.
    pub lead_sign: f64,
    /// Joy's-law tilt of the axis (deg), leading polarity towards the equator.
    pub tilt: f64,
    pub grow_h: f64,
    pub peak_h: f64,
    pub decay_h: f64,
    fragments: Vec<Fragment>,
    deltas: Vec<DeltaPair>,
    satellites: Vec<Satellite>,
}

/// Whole-Sun emergence rate of the regions (per day): with the lifetimes below it keeps
/// about eight regions on the visible disk, like the Sun near a cycle maximum.
const EMERGENCE_PER_DAY: f64 = 1.05;
/// Regions emerge from this many days before the archive's start, so its first image
/// already shows a populated disk.
pub const SPIN_UP_DAYS: f64 = 45.0;
/// Mean time between emergences of delta regions (days), and the shape of the gamma
/// distribution of the intervals (1 would be Poisson).
const DELTA_INTERVAL_DAYS: f64 = 15.0;
const DELTA_SHAPE: usize = 6;
/// Saturation of a region's flare rate (flares of C1.0 and above per day).
const MAX_FLARES_PER_DAY: f64 = 12.0;

fn normal(rng: &mut ChaCha8Rng) -> f64 {
    // Box-Muller; one value per call keeps the stream simple to reason about.
    let u1: f64 = rng.random::<f64>().max(1e-300);
    let u2: f64 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

fn smoothstep(x: f64) -> f64 {
    let x = x.clamp(0.0, 1.0);
    x * x * (3.0 - 2.0 * x)
}

/// Draws the region population emerging between `SPIN_UP_DAYS` before the start and
/// `end_h` hours after it. `year` is the fractional year of the start (sets the cycle
/// for Hale's law and Spoerer's law).
pub fn populate(rng: &mut ChaCha8Rng, end_h: f64, year: f64) -> Vec<Region> {
    let (cycle, phase) = sun::cycle(year);
    // Hale's law: the leading polarity in the north is positive in odd cycles.
    let north_lead = if cycle % 2 == 1 { 1.0 } else { -1.0 };
    // Spoerer's law: emergence latitudes drift towards the equator through the cycle.
    let mean_lat = (27.0 - 2.0 * phase).clamp(8.0, 27.0);
    let mut regions = Vec::new();
    let start = -SPIN_UP_DAYS * 24.0;
    // Ordinary regions: a Poisson process.
    let mut t = start;
    loop {
        t += -(1.0 - rng.random::<f64>()).ln() / EMERGENCE_PER_DAY * 24.0;
        if t >= end_h {
            break;
        }
        regions.push(draw_region(rng, t, mean_lat, north_lead, false));
    }
    // Delta regions, the big flare producers: a more regular renewal process (gamma
    // intervals), so every few weeks hold one and the flaring rate varies less between
    // seeds and seasons than a Poisson process would make it.
    let mut t = start;
    loop {
        let gamma: f64 = (0..DELTA_SHAPE)
            .map(|_| -(1.0 - rng.random::<f64>()).ln())
            .sum::<f64>();
        t += gamma / DELTA_SHAPE as f64 * DELTA_INTERVAL_DAYS * 24.0;
        if t >= end_h {
            break;
        }
        regions.push(draw_region(rng, t, mean_lat, north_lead, true));
    }
    regions.sort_by(|a, b| a.t0_h.total_cmp(&b.t0_h));
    for (i, r) in regions.iter_mut().enumerate() {
        r.id = i as u32;
    }
    regions
}

fn draw_region(
    rng: &mut ChaCha8Rng,
    t0_h: f64,
    mean_lat: f64,
    north_lead: f64,
    delta: bool,
) -> Region {
    let north = rng.random::<f64>() < 0.5;
    let abs_lat = (mean_lat + 6.0 * normal(rng)).clamp(2.0, 40.0);
    let lat = if north { abs_lat } else { -abs_lat };
    // Delta regions emerge on the Earth-facing side (or just behind the east limb), so
    // that their flaring phase is seen: a synthetic archive wants few wasted ones.
    let lon0 = if delta {
        rng.random_range(-100.0..40.0)
    } else {
        rng.random_range(-180.0..180.0)
    };
    let (median, spread) = if delta { (0.95, 0.3) } else { (0.55, 0.45) };
    let size = (f64::ln(median) + spread * normal(rng))
        .exp()
        .clamp(0.2, 1.6);
    // Delta regions break Hale's law more often than ordinary ones.
    let anti_hale = rng.random::<f64>() < if delta { 0.2 } else { 0.04 };
    let hale = if north { north_lead } else { -north_lead };
    let lead_sign = if anti_hale { -hale } else { hale };
    let p_mixed = 0.2 + 0.2 * (size - 0.5).max(0.0) + if anti_hale { 0.3 } else { 0.0 };
    let complexity = if delta {
        rng.random_range(0.75..1.0)
    } else if rng.random::<f64>() < p_mixed {
        rng.random_range(0.3..0.6)
    } else {
        rng.random_range(0.0..0.2)
    };
    let tilt = 0.5 * abs_lat + 8.0 * normal(rng);
    let grow_h = 24.0 * (0.8 + 2.5 * size) * rng.random_range(0.7..1.3);
    let peak_h = 24.0 * (0.5 + 3.0 * size) * rng.random_range(0.6..1.4);
    let decay_h = 24.0 * (4.0 + 14.0 * size) * rng.random_range(0.7..1.3);
    let n_frag = (50.0 + 110.0 * size) as usize;
    let fragments = (0..n_frag)
        .map(|i| Fragment {
            // The following polarity holds its flux in plage more than the leader.
            leading: i % 5 < 2,
            u: normal(rng),
            v: normal(rng),
            weight: rng.random_range(0.3..1.0),
            drift: rng.random_range(0.5..1.5),
        })
        .collect();
    let n_delta = if complexity >= 0.75 {
        1 + (3.0 * complexity) as usize
    } else {
        0
    };
    let deltas = (0..n_delta)
        .map(|_| DeltaPair {
            along: rng.random_range(0.05..0.45),
            across: 0.12 * normal(rng),
            angle: rng.random_range(0.0..std::f64::consts::TAU),
            gap: rng.random_range(2.2..3.0),
            weight: rng.random_range(0.7..1.0),
        })
        .collect();
    let n_sat = if complexity >= 0.3 {
        1 + (4.0 * complexity) as usize
    } else {
        0
    };
    let satellites = (0..n_sat)
        .map(|_| Satellite {
            along: rng.random_range(-0.5..0.5),
            across: 0.35 * normal(rng),
            angle: rng.random_range(0.0..std::f64::consts::TAU),
            weight: rng.random_range(0.5..1.0),
        })
        .collect();
    Region {
        id: 0,
        t0_h,
        lon0,
        lat,
        size,
        complexity,
        lead_sign,
        tilt,
        grow_h,
        peak_h,
        decay_h,
        fragments,
        deltas,
        satellites,
    }
}

impl Region {
    pub fn end_h(&self) -> f64 {
        self.t0_h + self.grow_h + self.peak_h + self.decay_h
    }

    /// Stonyhurst longitude at time `t_h` (unwrapped to [-180, 180)).
    pub fn lon_at(&self, t_h: f64) -> f64 {
        let lon = self.lon0 + sun::synodic_rate(self.lat) * (t_h - self.t0_h) / 24.0;
        (lon + 180.0).rem_euclid(360.0) - 180.0
    }

    /// Total flux relative to the peak (0..1).
    pub fn flux(&self, t_h: f64) -> f64 {
        let age = t_h - self.t0_h;
        if age <= 0.0 {
            0.0
        } else if age < self.grow_h {
            smoothstep(age / self.grow_h)
        } else if age < self.grow_h + self.peak_h {
            1.0
        } else {
            (1.0 - (age - self.grow_h - self.peak_h) / self.decay_h).max(0.0)
        }
    }

    /// Fraction of the flux in compact spots: spots form with the region and break up
    /// early in the decay, leaving plage.
    pub fn spottedness(&self, t_h: f64) -> f64 {
        let f = self.flux(t_h);
        if t_h - self.t0_h < self.grow_h + self.peak_h {
            f
        } else {
            f.powi(3)
        }
    }

    /// Strength of the complex, sheared part of the region (delta spots, satellite
    /// bipoles): it builds up with the emergence and cancels within a day or two once
    /// the region starts to decay.
    pub fn shear(&self, t_h: f64) -> f64 {
        let after_peak = t_h - self.t0_h - self.grow_h - self.peak_h;
        if after_peak <= 0.0 {
            self.flux(t_h)
        } else {
            (-after_peak / 30.0).exp()
        }
    }

    /// How far the decay has progressed (0 before the decay, 1 at the end).
    fn decay_progress(&self, t_h: f64) -> f64 {
        ((t_h - self.t0_h - self.grow_h - self.peak_h) / self.decay_h).clamp(0.0, 1.0)
    }

    /// Flares of class C1.0 and above per day at `t_h`: a few from the flux held in
    /// spots, most from the sheared, strong-gradient inversion lines of complex regions.
    pub fn flare_rate(&self, t_h: f64) -> f64 {
        let k = self.complexity;
        let rate = 1.2
            * self.size.powf(1.5)
            * (0.03 * self.spottedness(t_h) + 14.0 * k.powi(6) * self.shear(t_h));
        // Even the most productive regions rarely exceed a dozen C-class flares a day.
        MAX_FLARES_PER_DAY * (1.0 - (-rate / MAX_FLARES_PER_DAY).exp())
    }

    /// Power-law index of the flare peak-flux distribution: complex regions make
    /// relatively more large flares.
    pub fn flare_index(&self) -> f64 {
        2.15 - 0.4 * self.complexity
    }

    /// The flux elements of the region at `t_h` (empty before emergence or after decay).
    pub fn blobs(&self, t_h: f64, out: &mut Vec<Blob>) {
        let f = self.flux(t_h);
        if f <= 0.0 {
            return;
        }
        let spots = self.spottedness(t_h);
        let shear = self.shear(t_h);
        let decay = self.decay_progress(t_h);
        let grown = smoothstep((t_h - self.t0_h) / self.grow_h);
        let lon_c = self.lon_at(t_h);
        let coslat = self.lat.to_radians().cos().max(0.2);
        // Axis direction (radians from west towards north); the leader sits nearer the
        // equator.
        let theta = -self.lat.signum() * self.tilt.to_radians();
        let (ay, ax) = theta.sin_cos();
        let sep = (3.0 + 7.0 * self.size) * (0.35 + 0.65 * grown) * (1.0 + 0.4 * decay);
        // Tangent-plane offsets (deg) to heliographic coordinates.
        let place = |dx: f64, dy: f64| (lon_c + dx / coslat, self.lat + dy);
        let along = |s: f64, c: f64| (s * ax - c * ay, s * ay + c * ax);
        let lead = self.lead_sign;
        let spot_amp = 1400.0 + 1400.0 * self.size.min(1.2);
        let spot_sigma = 0.35 + 0.45 * self.size;

        let mut push = |dx: f64, dy: f64, sigma: f64, amp: f64| {
            let (lon, lat) = place(dx, dy);
            out.push(Blob {
                lon,
                lat,
                sigma,
                amp,
            });
        };

        // Leading spot, compact; following polarity in two looser spots.
        if spots > 0.02 {
            let (dx, dy) = along(0.5 * sep, 0.0);
            push(
                dx,
                dy,
                spot_sigma * (0.6 + 0.4 * spots),
                lead * spot_amp * spots,
            );
            for (s, c, w) in [(-0.45, 0.08, 0.65), (-0.6, -0.1, 0.45)] {
                let (dx, dy) = along(s * sep, c * sep);
                push(
                    dx,
                    dy,
                    spot_sigma * 1.2 * (0.6 + 0.4 * spots),
                    -lead * spot_amp * w * spots,
                );
            }
        }
        // Plage: fragments around each polarity's centroid, dispersing as it decays.
        let plage_amp = 1100.0 * (0.4 + 0.6 * f) * (1.0 - 0.4 * decay);
        for fr in &self.fragments {
            let (centre, spread, sign) = if fr.leading {
                (0.5 * sep, 0.18 * sep, lead)
            } else {
                (-0.5 * sep, 0.26 * sep, -lead)
            };
            let spread = spread * (1.0 + 2.5 * decay * fr.drift);
            let (dx, dy) = along(centre + spread * fr.u, spread * fr.v);
            push(
                dx,
                dy,
                0.14 + 0.14 * fr.weight,
                sign * plage_amp * fr.weight * f.sqrt(),
            );
        }
        // Delta spots: opposite polarities pressed together, a steep inversion line.
        for d in &self.deltas {
            let strength = 2600.0 * d.weight * self.complexity * shear;
            if strength < 50.0 {
                continue;
            }
            let (cx, cy) = along(d.along * sep, d.across * sep);
            let (sy, sx) = d.angle.sin_cos();
            let h = 0.5 * d.gap;
            let sigma = 0.4 + 0.35 * self.size;
            push(cx + h * sigma * sx, cy + h * sigma * sy, sigma, strength);
            push(cx - h * sigma * sx, cy - h * sigma * sy, sigma, -strength);
        }
        // Satellite bipoles at random orientations: a mixed-polarity region.
        for s in &self.satellites {
            let strength = 1500.0 * s.weight * self.complexity * shear;
            let (cx, cy) = along(s.along * sep, s.across * sep);
            let (sy, sx) = s.angle.sin_cos();
            let h = 0.12 * sep;
            push(cx + h * sx, cy + h * sy, 0.5, strength);
            push(cx - h * sx, cy - h * sy, 0.5, -strength);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn population_obeys_hale_and_joy() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let regions = populate(&mut rng, 24.0 * 200.0, 2014.2);
        assert!(regions.len() > 150, "{}", regions.len());
        // Cycle 24: leading polarity negative in the north for most regions.
        let north: Vec<_> = regions.iter().filter(|r| r.lat > 0.0).collect();
        let hale = north.iter().filter(|r| r.lead_sign < 0.0).count();
        assert!(hale as f64 > 0.85 * north.len() as f64);
        let mean_tilt = regions.iter().map(|r| r.tilt).sum::<f64>() / regions.len() as f64;
        assert!(mean_tilt > 4.0 && mean_tilt < 12.0, "{mean_tilt}");
    }

    #[test]
    fn regions_rotate_west_and_evolve() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let r = &populate(&mut rng, 24.0 * 30.0, 2014.2)[0];
        let a = r.lon_at(r.t0_h + 24.0);
        let b = r.lon_at(r.t0_h + 48.0);
        let step = (b - a).rem_euclid(360.0);
        assert!(step > 12.0 && step < 13.5, "{step}");
        assert_eq!(r.flux(r.t0_h - 1.0), 0.0);
        assert_eq!(r.flux(r.t0_h + r.grow_h + 1.0), 1.0);
        assert_eq!(r.flux(r.end_h() + 1.0), 0.0);
    }
}
