//! The method settings a run can use, refused up front with the value named (as
//! `setting::bad`, so the command line names its flag), before any map is computed.

use super::Options;
use crate::bounded::Count;
use crate::im_size::ImSize;
use crate::setting;
use anyhow::Result;

/// `1`, `2`, `3` or `all`: the attention estimators drawn.
pub fn parse_estimators(spec: &str) -> Result<Vec<usize>> {
    match spec.trim() {
        "all" => Ok(vec![1, 2, 3]),
        "1" => Ok(vec![1]),
        "2" => Ok(vec![2]),
        "3" => Ok(vec![3]),
        other => Err(setting::bad(
            "estimator",
            format!("estimator must be 1, 2, 3 or all, got {other:?}"),
        )),
    }
}

impl Options {
    /// Integrated Gradients' path points: each is a forward and a backward pass.
    pub const STEPS: Count<usize> = Count::new("steps", "integration steps", 2, 10_000);
    /// Occlusion window and stride a setting may give; [`Options::check`] holds them to
    /// the image too.
    pub const WINDOW: Count<i64> = Count::new("window", "occlusion window", 1, ImSize::MAX as i64);
    pub const STRIDE: Count<i64> = Count::new("stride", "occlusion stride", 1, ImSize::MAX as i64);
    /// The standard CNN's blocks Grad-CAM reads: conv_block5 and conv_block6.
    pub const GRADCAM_BLOCK: Count<usize> = Count::new("gradcam_block", "Grad-CAM block", 5, 6);

    /// Refuses settings no explanation of an `h` x `w` image can use: fewer than 2
    /// integration steps, an occlusion window or stride of 0 or larger than the image, a
    /// batch of 0 (occluded copies or path points), a Grad-CAM block other than 5 or 6, an estimator outside 1..=3.
    pub fn check(&self, h: i64, w: i64) -> Result<()> {
        Self::STEPS.check(self.steps)?;
        let side = h.min(w);
        for (name, v) in [("window", self.window), ("stride", self.stride)] {
            if !(1..=side).contains(&v) {
                return Err(setting::bad(
                    name,
                    format!("occlusion {name} {v} is outside 1..={side} (the image is {w}x{h})"),
                ));
            }
        }
        crate::inference::BATCH_SIZE.check(self.batch)?;
        if let Some(rows) = self.internal_batch {
            super::integrated::INTERNAL_BATCH.check(rows)?;
        }
        Self::GRADCAM_BLOCK.check(self.gradcam_block)?;
        if let Some(k) = self.estimators.iter().find(|k| !(1..=3).contains(*k)) {
            return Err(setting::bad(
                "estimator",
                format!("attention estimators are 1, 2 and 3, got {k}"),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(opts: Options) -> (String, String) {
        let err = opts.check(256, 256).unwrap_err();
        let name = setting::find(&err).unwrap().setting.to_string();
        (name, err.to_string())
    }

    #[test]
    fn refuses_zero_and_oversized_settings_by_name_and_value() {
        assert!(Options::default().check(256, 256).is_ok());
        let o = Options::default;
        assert_eq!(refused(Options { steps: 0, ..o() }).0, "steps");
        let (name, msg) = refused(Options { window: 0, ..o() });
        assert_eq!(name, "window");
        assert!(msg.contains("window 0 is outside 1..=256"), "{msg}");
        let (name, msg) = refused(Options { stride: 300, ..o() });
        assert_eq!(name, "stride");
        assert!(msg.contains("stride 300"), "{msg}");
        assert_eq!(refused(Options { batch: 0, ..o() }).0, "batch_size");
        assert_eq!(
            refused(Options {
                gradcam_block: 4,
                ..o()
            })
            .0,
            "gradcam_block"
        );
        assert_eq!(parse_estimators("all").unwrap(), vec![1, 2, 3]);
        let err = parse_estimators("4").unwrap_err();
        assert_eq!(setting::find(&err).unwrap().setting, "estimator");
    }
}
