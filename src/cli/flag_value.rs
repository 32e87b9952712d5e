//! A flag's value that its parser refused (a count outside its range, a duration that is
//! none) is reported as every refused setting is: one line naming the flag and the value,
//! exit 1. clap's own usage errors (an unknown flag, a missing value) keep its usage text.

use clap::error::{ContextKind, ContextValue, ErrorKind};
use flarecast::setting::BadSetting;

/// The line for `err` when it is a refused value, e.g. `--epochs: epochs 0 is outside
/// 1..=100000`.
pub fn refused(err: &clap::Error) -> Option<String> {
    if err.kind() != ErrorKind::ValueValidation {
        return None;
    }
    let text = |kind| match err.get(kind) {
        Some(ContextValue::String(s)) => Some(s.as_str()),
        _ => None,
    };
    // "--epochs <EPOCHS>": the flag is the first word.
    let flag = text(ContextKind::InvalidArg)?.split_whitespace().next()?;
    let value = text(ContextKind::InvalidValue).unwrap_or_default();
    let source = std::error::Error::source(err)?;
    Some(match source.downcast_ref::<BadSetting>() {
        // The bounded parsers' messages name the value already.
        Some(bad) => format!("{flag}: {bad}"),
        None => format!("{flag}: {value:?}: {source}"),
    })
}
