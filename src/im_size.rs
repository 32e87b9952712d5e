//! The side of the square network input: one type, one range, checked where a value
//! comes in (a flag, a checkpoint's metadata, a config), so everything past that point
//! holds a side the networks can run.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A network input side in [`ImSize::MIN`]..=[`ImSize::MAX`] pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "i64")]
pub struct ImSize(u32);

impl ImSize {
    /// Smallest side: below 192 the 3x3/stride-3 block and the 2x2/stride-2 dense layer
    /// leave nothing to convolve.
    pub const MIN: u32 = 192;
    /// Largest side: twice the paper's largest (512). The attention network holds 64
    /// float32 channels at full resolution, 1 GiB per image at this size already.
    pub const MAX: u32 = 2048;
    /// The paper's input side (its `Resize(256)`), and PyTorch checkpoints' without metadata.
    pub const PAPER: ImSize = ImSize(256);

    /// The side `side`, or an error naming it and the range.
    pub fn new(side: i64) -> anyhow::Result<ImSize> {
        if !(Self::MIN as i64..=Self::MAX as i64).contains(&side) {
            anyhow::bail!("image size {side} is outside {}..={}", Self::MIN, Self::MAX);
        }
        Ok(ImSize(side as u32))
    }

    /// The side a setting gives (a flag, a config value): refused as the setting `im_size`,
    /// which the command line names `--im-size`.
    pub fn of_setting(side: i64) -> anyhow::Result<ImSize> {
        ImSize::new(side).map_err(|e| crate::setting::bad("im_size", e.to_string()))
    }

    pub const fn get(self) -> u32 {
        self.0
    }

    pub fn as_i64(self) -> i64 {
        self.0 as i64
    }

    pub fn as_usize(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for ImSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for ImSize {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<ImSize> {
        let side: i64 = s
            .trim()
            .parse()
            .map_err(|_| anyhow::anyhow!("image size {s:?} is not a whole number"))?;
        ImSize::new(side)
    }
}

impl TryFrom<i64> for ImSize {
    type Error = anyhow::Error;

    fn try_from(side: i64) -> anyhow::Result<ImSize> {
        ImSize::new(side)
    }
}

impl From<ImSize> for i64 {
    fn from(s: ImSize) -> i64 {
        s.as_i64()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_range_for_every_way_in() {
        assert_eq!(ImSize::new(192).unwrap().get(), 192);
        assert_eq!(ImSize::new(2048).unwrap().get(), 2048);
        for bad in [191, 2049, 0, -256, 100_000, i64::MAX] {
            let err = ImSize::new(bad).unwrap_err().to_string();
            assert!(
                err.contains(&bad.to_string()) && err.contains("192..=2048"),
                "{err}"
            );
        }
        assert_eq!("256".parse::<ImSize>().unwrap(), ImSize::PAPER);
        assert!("256px".parse::<ImSize>().is_err());
        assert!("100000".parse::<ImSize>().is_err());
        let json: ImSize = serde_json::from_str("512").unwrap();
        assert_eq!(json.get(), 512);
        assert!(serde_json::from_str::<ImSize>("64").is_err());
        assert_eq!(serde_json::to_string(&ImSize::PAPER).unwrap(), "256");
    }
}
