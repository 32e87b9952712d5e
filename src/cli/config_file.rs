//! `--config FILE.toml` for `train` and `experiment run`: a file of the command's flags by
//! name (`epochs = 30`, `batch-size = 128`, `arch = "resnet34"`), read as if given before
//! the command line's flags, so a flag given there overrides the file. Each value is
//! checked by its flag's own parser; an unknown key or a wrong type is refused naming the
//! file, the line and the key. The same names serve `--print-config` and the resolved
//! config each run writes beside its checkpoints, so a written file is a valid `--config`.

use anyhow::{anyhow, bail, Context, Result};
use clap::{Arg, ArgAction, ArgMatches, Command};
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::Path;
use std::sync::OnceLock;
use toml::{Spanned, Value};

/// The table a written config records what the run ran on in; `--config` skips it.
use flarecast::train::run_config::RAN_ON;

/// Flags that are not settings of a run: never read from a file nor written to one.
const NOT_SETTINGS: [&str; 5] = ["help", "config", "print-config", "resume", "json"];

/// The commands that take `--config`, as the words that name them.
const CONFIGURABLE: [&[&str]; 2] = [&["train"], &["experiment", "run"]];

/// The settings the command line resolved to, as TOML (set by `expand_and_resolve`).
static RESOLVED: OnceLock<String> = OnceLock::new();

/// The resolved settings of this process's `train` or `experiment run`, as a config file.
pub fn resolved() -> Option<&'static str> {
    RESOLVED.get().map(String::as_str)
}

/// The words naming a configurable subcommand at the start of `args` (after the program
/// name), and that subcommand.
fn configurable<'c>(root: &'c Command, args: &[OsString]) -> Option<(usize, &'c Command)> {
    'next: for words in CONFIGURABLE {
        let mut cmd = root;
        for (k, word) in words.iter().enumerate() {
            if args.get(1 + k).and_then(|a| a.to_str()) != Some(word) {
                continue 'next;
            }
            cmd = cmd.find_subcommand(word)?;
        }
        return Some((words.len(), cmd));
    }
    None
}

/// The value of `--config` among `args`, if given.
fn config_path(args: &[OsString]) -> Option<OsString> {
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let s = a.to_string_lossy();
        if s == "--config" {
            return it.next().cloned();
        }
        if let Some(v) = s.strip_prefix("--config=") {
            return Some(v.into());
        }
        if s == "--" {
            break;
        }
    }
    None
}

/// `args` with the flags of `--config`'s file inserted before the command line's own, and
/// the resolved settings kept for `resolved()`.
pub fn expand_and_resolve(root: &Command, args: Vec<OsString>) -> Result<Vec<OsString>> {
    let Some((words, sub)) = configurable(root, &args) else {
        return Ok(args);
    };
    let mut origins = Vec::new();
    let args = match config_path(&args) {
        None => args,
        Some(path) => {
            let (flags, trailing, from) = read(Path::new(&path), sub)?;
            origins = from;
            let rest = &args[words + 1..];
            // A flag the command line gives replaces the file's (a list too, which the
            // parser would otherwise add to).
            let on_line = given_longs(sub, rest);
            let mut expanded: Vec<OsString> = args[..=words].to_vec();
            expanded.extend(flags.into_iter().filter(|f| {
                let long = f.to_string_lossy();
                let long = long
                    .trim_start_matches("--")
                    .split('=')
                    .next()
                    .unwrap_or("");
                !on_line.contains(long)
            }));
            // The file's trailing values (after `--`) go before the command line's.
            match rest.iter().position(|a| a == "--") {
                Some(dash) => {
                    expanded.extend(rest[..=dash].iter().cloned());
                    expanded.extend(trailing);
                    expanded.extend(rest[dash + 1..].iter().cloned());
                }
                None => {
                    expanded.extend(rest.iter().cloned());
                    if !trailing.is_empty() {
                        expanded.push("--".into());
                        expanded.extend(trailing);
                    }
                }
            }
            expanded
        }
    };
    // Settings resolve only on a command line that parses; one that does not is left
    // for the parser to report, but for a value of the file's its flag refuses.
    let parsed = root.clone().try_get_matches_from(&args);
    if let Err(e) = &parsed {
        if let Some(o) = refused_origin(e, &origins) {
            bail!("{}: {}", o.at, clap_message(e));
        }
    }
    if let Ok(matches) = parsed {
        let mut m = &matches;
        for k in 0..words {
            let word = args[1 + k].to_string_lossy();
            match m.subcommand_matches(&word) {
                Some(s) => m = s,
                None => return Ok(args),
            }
        }
        let _ = RESOLVED.set(to_toml(sub, m));
    }
    Ok(args)
}

/// The flags (by long name, aliases resolved) given among `args` before any `--`.
fn given_longs(cmd: &Command, args: &[OsString]) -> std::collections::HashSet<String> {
    let mut longs = std::collections::HashSet::new();
    for a in args {
        let a = a.to_string_lossy();
        if a == "--" {
            break;
        }
        let Some(name) = a.strip_prefix("--") else {
            continue;
        };
        let name = name.split('=').next().unwrap_or(name);
        let found = cmd.get_arguments().find(|arg| {
            arg.get_long() == Some(name)
                || arg.get_all_aliases().is_some_and(|al| al.contains(&name))
        });
        if let Some(long) = found.and_then(Arg::get_long) {
            longs.insert(long.to_string());
        }
    }
    longs
}

/// The line of byte `offset` in `text`, from 1.
fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// The name a setting has in a file: the flag's long name, or for the values after `--`
/// (`experiment run -- TRAIN FLAGS`) its id in kebab case.
fn key_of(arg: &Arg) -> Option<String> {
    match arg.get_long() {
        Some(long) => (!NOT_SETTINGS.contains(&long)).then(|| long.to_string()),
        None => arg
            .is_last_set()
            .then(|| arg.get_id().as_str().replace('_', "-")),
    }
}

/// The flag a key names, with `_` read as `-`.
fn arg_of<'c>(cmd: &'c Command, key: &str) -> Option<&'c Arg> {
    let key = key.replace('_', "-");
    cmd.get_arguments()
        .find(|a| key_of(a).as_deref() == Some(key.as_str()))
}

/// Whether a flag takes no value (`--no-augment`).
fn is_switch(arg: &Arg) -> bool {
    matches!(arg.get_action(), ArgAction::SetTrue | ArgAction::SetFalse)
}

/// Where a value given to the parser came from: the file, its line and key.
struct Origin {
    long: String,
    value: String,
    at: String,
}

/// A file's flags as command-line arguments, the values that go after `--`, and where
/// each value came from (so a value its flag's parser refuses is named by key and line).
fn read(path: &Path, cmd: &Command) -> Result<(Vec<OsString>, Vec<OsString>, Vec<Origin>)> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the config file {}", path.display()))?;
    let table: BTreeMap<Spanned<String>, Spanned<Value>> = toml::from_str(&text).map_err(|e| {
        anyhow!(
            "{}: not a TOML file of settings: {}",
            path.display(),
            e.to_string().trim_end()
        )
    })?;
    let (mut out, mut trailing, mut origins) = (Vec::new(), Vec::new(), Vec::new());
    for (key, value) in &table {
        let line = line_of(&text, key.span().start);
        let at = || format!("{}:{line}: {}", path.display(), key.get_ref());
        if key.get_ref() == RAN_ON {
            continue;
        }
        let Some(arg) = arg_of(cmd, key.get_ref()) else {
            bail!(
                "{}: unknown setting (`flarecast {} --help` lists the flags)",
                at(),
                cmd.get_name()
            );
        };
        let long = key_of(arg).expect("found by its key");
        let given = match value.get_ref() {
            Value::Boolean(on) if is_switch(arg) => {
                if *on {
                    out.push(format!("--{long}").into());
                }
                continue;
            }
            _ if is_switch(arg) => bail!("{}: expected true or false", at()),
            Value::Boolean(_) | Value::Table(_) | Value::Datetime(_) => {
                bail!(
                    "{}: expected a value for --{long}, got {}",
                    at(),
                    value.get_ref().type_str()
                )
            }
            Value::Array(items) => {
                let mut parts = Vec::new();
                for item in items {
                    parts.push(scalar(item).ok_or_else(|| {
                        anyhow!(
                            "{}: a list of {} is not a value for --{long}",
                            at(),
                            item.type_str()
                        )
                    })?);
                }
                parts
            }
            other => vec![scalar(other).expect("a scalar")],
        };
        let takes_a_list = arg.get_value_delimiter().is_some()
            || arg.get_num_args().is_some_and(|n| n.max_values() > 1)
            || matches!(arg.get_action(), ArgAction::Append);
        if given.len() > 1 && !takes_a_list {
            bail!("{}: --{long} takes one value, got a list", at());
        }
        for v in &given {
            origins.push(Origin {
                long: long.clone(),
                value: v.clone(),
                at: at(),
            });
        }
        if arg.get_long().is_none() {
            trailing.extend(given.into_iter().map(OsString::from));
            continue;
        }
        let joined = match arg.get_value_delimiter() {
            Some(d) => vec![given.join(&d.to_string())],
            None => given,
        };
        for v in joined {
            out.push(format!("--{long}={v}").into());
        }
    }
    Ok((out, trailing, origins))
}

/// A TOML scalar as the text a flag parses.
fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Integer(i) => Some(i.to_string()),
        Value::Float(f) => Some(f.to_string()),
        _ => None,
    }
}

/// The file's value a parse error is about, if it is one of the file's.
fn refused_origin<'o>(e: &clap::Error, origins: &'o [Origin]) -> Option<&'o Origin> {
    use clap::error::{ContextKind, ContextValue};
    let text = |kind| match e.get(kind) {
        Some(ContextValue::String(s)) => Some(s.clone()),
        _ => None,
    };
    let arg = text(ContextKind::InvalidArg)?;
    let value = text(ContextKind::InvalidValue)?;
    // "--epochs <EPOCHS>" names the flag.
    let long = arg
        .split_whitespace()
        .next()?
        .trim_start_matches("--")
        .to_string();
    origins.iter().find(|o| o.long == long && o.value == value)
}

/// clap's message without its `error: ` prefix and usage lines.
fn clap_message(e: &clap::Error) -> String {
    let text = e.to_string();
    let first = text.lines().next().unwrap_or_default();
    first.strip_prefix("error: ").unwrap_or(first).to_string()
}

/// Every setting of `cmd` as `matches` resolved it, default or given, as a config file
/// (`key = value` by flag name; switches as booleans).
pub fn to_toml(cmd: &Command, matches: &ArgMatches) -> String {
    let mut table = toml::Table::new();
    for arg in cmd.get_arguments() {
        let Some(long) = key_of(arg) else { continue };
        if arg.is_hide_set() {
            continue;
        }
        let id = arg.get_id().as_str();
        if is_switch(arg) {
            table.insert(long, Value::Boolean(matches.get_flag(id)));
            continue;
        }
        let Some(raw) = matches.get_raw(id) else {
            continue;
        };
        let values: Vec<Value> = raw.map(|v| typed(&v.to_string_lossy())).collect();
        // One value as itself, several (or the values after `--`) as a list.
        let value = if values.len() == 1 && arg.get_long().is_some() {
            values.into_iter().next().expect("one")
        } else {
            Value::Array(values)
        };
        table.insert(long, value);
    }
    toml::to_string(&table).unwrap_or_default()
}

/// A flag's text as the TOML type that reads back to the same text.
fn typed(s: &str) -> Value {
    if let Ok(i) = s.parse::<i64>() {
        if i.to_string() == s {
            return Value::Integer(i);
        }
    }
    if let Ok(f) = s.parse::<f64>() {
        if f.is_finite() && f.to_string() == s {
            return Value::Float(f);
        }
    }
    Value::String(s.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_count_from_one() {
        assert_eq!(line_of("a = 1\nb = 2\n", 0), 1);
        assert_eq!(line_of("a = 1\nb = 2\n", 6), 2);
    }

    #[test]
    fn values_keep_their_text() {
        assert_eq!(typed("30"), Value::Integer(30));
        assert_eq!(typed("0.001"), Value::Float(0.001));
        assert_eq!(typed("1e-3"), Value::String("1e-3".into()));
        assert_eq!(typed("auto"), Value::String("auto".into()));
        assert_eq!(typed("007"), Value::String("007".into()));
    }
}
