//! Paths shared by the integration tests: the real data and golden outputs that live
//! beside the repository (never inside it).
#![allow(dead_code)]

use std::path::PathBuf;

fn beside_repo(var: &str, name: &str) -> PathBuf {
    match std::env::var_os(var) {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../shared")
            .join(name),
    }
}

/// `../shared/realdata` (or `$FLARECAST_REALDATA`).
pub fn realdata() -> PathBuf {
    beside_repo("FLARECAST_REALDATA", "realdata")
}

/// `../shared/golden` (or `$FLARECAST_GOLDEN`).
pub fn golden() -> PathBuf {
    beside_repo("FLARECAST_GOLDEN", "golden")
}

/// The real HMI magnetogram JP2 and its reference 512x512 JPG conversion.
pub fn magnetogram_jp2() -> PathBuf {
    realdata().join("images/2022_08_02__10_47_53_000__SDO_HMI_HMI_magnetogram.jp2")
}

pub fn magnetogram_jpg() -> PathBuf {
    realdata().join("images/derived/HMI.m2022.08.02_10.47.53.jpg")
}

/// The built `flarecast` binary, ready for arguments.
pub fn flarecast() -> assert_cmd::Command {
    assert_cmd::Command::cargo_bin("flarecast").expect("flarecast binary")
}
