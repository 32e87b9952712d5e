//! Where a rank learns its place: the variables `torchrun` exports, else SLURM's.

use crate::bounded::Count;
use anyhow::{anyhow, bail, Context, Result};

/// Who started the ranks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Launcher {
    /// `torchrun` (or anything that exports RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT).
    Torchrun,
    /// `srun`: SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID, SLURM_JOB_NODELIST.
    Slurm,
}

impl Launcher {
    pub fn name(self) -> &'static str {
        match self {
            Launcher::Torchrun => "torchrun",
            Launcher::Slurm => "SLURM",
        }
    }
}

/// One rank's place in the group and where the group meets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Launch {
    pub launcher: Launcher,
    pub rank: usize,
    pub world: usize,
    /// The rank among those on this machine: it picks the GPU.
    pub local_rank: usize,
    pub master_addr: String,
    pub master_port: u16,
    /// torchrun's agent already serves the store: rank 0 connects to it as a client.
    pub agent_store: bool,
    /// torchrun's restart count: a restarted group keys its rendezvous apart from the
    /// failed one's leftovers in the agent's store.
    pub attempt: usize,
}

/// Ranks in a group: c10d counts them in a C int, and no job here has more than 65536.
pub const WORLD: Count<usize> = Count::new("world", "group size", 1, 65_536);
/// A rank's number, on the machine or in the group.
pub const RANK: Count<usize> = Count::new("rank", "rank", 0, 65_535);
/// torchrun's restarts of a group.
pub const RESTARTS: Count<usize> = Count::new("restarts", "restart count", 0, 1_000_000);

/// The port SLURM ranks meet on when MASTER_PORT is not set: derived from the job id so
/// two jobs sharing a node do not collide.
pub fn slurm_port(job_id: u64) -> u16 {
    (20000 + job_id % 20000) as u16
}

impl Launch {
    /// The launch this process's environment describes, if it is one rank of a group.
    pub fn from_env() -> Result<Option<Launch>> {
        Launch::from_vars(|k| std::env::var(k).ok())
    }

    /// As [`Launch::from_env`], reading variables through `get`. torchrun's variables
    /// win; SLURM's count only for more than one task (a batch script's single step is
    /// one process, not a group).
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Result<Option<Launch>> {
        // Refused naming the variable, never a flag: these come from the launcher.
        let num = |k: &str, range: Count<usize>| -> Result<Option<usize>> {
            get(k)
                .map(|v| {
                    range
                        .parse(&v)
                        .map_err(|e| anyhow!("environment variable {k}={v:?}: {e}"))
                })
                .transpose()
        };
        let job_id = |k: &str| -> Result<Option<u64>> {
            get(k)
                .map(|v| {
                    v.trim()
                        .parse::<u64>()
                        .with_context(|| format!("environment variable {k}={v:?} is not a job id"))
                })
                .transpose()
        };
        let port = |k: &str| -> Result<Option<u16>> {
            get(k)
                .map(|v| {
                    v.trim().parse::<u16>().with_context(|| {
                        format!("environment variable {k}={v:?} is not a port number")
                    })
                })
                .transpose()
        };
        let check = |l: Launch| -> Result<Option<Launch>> {
            if l.world == 0 || l.rank >= l.world {
                bail!(
                    "{}: rank {} is not one of the {} ranks of the group",
                    l.launcher.name(),
                    l.rank,
                    l.world
                );
            }
            Ok(Some(l))
        };
        if let (Some(rank), Some(world)) = (num("RANK", RANK)?, num("WORLD_SIZE", WORLD)?) {
            let master_addr = get("MASTER_ADDR")
                .filter(|s| !s.trim().is_empty())
                .context("RANK and WORLD_SIZE are set but MASTER_ADDR is not")?;
            let master_port = port("MASTER_PORT")?
                .context("RANK and WORLD_SIZE are set but MASTER_PORT is not")?;
            return check(Launch {
                launcher: Launcher::Torchrun,
                rank,
                world,
                local_rank: num("LOCAL_RANK", RANK)?.unwrap_or(0),
                master_addr: master_addr.trim().to_string(),
                master_port,
                agent_store: get("TORCHELASTIC_USE_AGENT_STORE").as_deref() == Some("True"),
                attempt: num("TORCHELASTIC_RESTART_COUNT", RESTARTS)?.unwrap_or(0),
            });
        }
        if let (Some(rank), Some(world)) = (num("SLURM_PROCID", RANK)?, num("SLURM_NTASKS", WORLD)?)
        {
            if world < 2 {
                return Ok(None);
            }
            let master_addr = match get("MASTER_ADDR").filter(|s| !s.trim().is_empty()) {
                Some(a) => a.trim().to_string(),
                None => {
                    let list = get("SLURM_JOB_NODELIST")
                        .or_else(|| get("SLURM_NODELIST"))
                        .context("SLURM_NTASKS > 1 but neither MASTER_ADDR nor SLURM_JOB_NODELIST is set")?;
                    first_host(&list)?
                }
            };
            let master_port =
                match port("MASTER_PORT")? {
                    Some(p) => p,
                    None => slurm_port(job_id("SLURM_JOB_ID")?.context(
                        "SLURM_NTASKS > 1 but neither MASTER_PORT nor SLURM_JOB_ID is set",
                    )?),
                };
            return check(Launch {
                launcher: Launcher::Slurm,
                rank,
                world,
                local_rank: num("SLURM_LOCALID", RANK)?.unwrap_or(0),
                master_addr,
                master_port,
                agent_store: false,
                attempt: 0,
            });
        }
        Ok(None)
    }

    /// The prefix of the group's keys in the store.
    pub fn store_prefix(&self) -> String {
        format!("flarecast/attempt{}/", self.attempt)
    }

    /// Whether this rank hosts the TCPStore the group meets in.
    pub fn serves_store(&self) -> bool {
        self.rank == 0 && !self.agent_store
    }

    /// Whether every rank runs on this machine (the Gloo transport then binds loopback).
    pub fn is_loopback(&self) -> bool {
        let a = self.master_addr.as_str();
        a == "localhost" || a == "::1" || a.starts_with("127.")
    }
}

/// The first host of a SLURM node list: `gpu[03-05,09],cpu1` -> `gpu03`.
pub fn first_host(list: &str) -> Result<String> {
    // The first entry: up to the first comma outside brackets.
    let mut depth = 0;
    let mut end = list.len();
    for (i, c) in list.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            ',' if depth == 0 => {
                end = i;
                break;
            }
            _ => {}
        }
    }
    let entry = list[..end].trim();
    // Each bracketed range becomes its first value.
    let mut host = String::new();
    let mut rest = entry;
    while let Some(open) = rest.find('[') {
        let close = rest[open..]
            .find(']')
            .map(|c| open + c)
            .with_context(|| format!("SLURM node list {list:?} has an unclosed '['"))?;
        host.push_str(&rest[..open]);
        let first = rest[open + 1..close]
            .split([',', '-'])
            .next()
            .unwrap_or_default();
        host.push_str(first);
        rest = &rest[close + 1..];
    }
    host.push_str(rest);
    if host.is_empty() || host.contains(['[', ']']) {
        bail!("SLURM node list {list:?} names no host");
    }
    Ok(host)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn launch(vars: &[(&str, &str)]) -> Result<Option<Launch>> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Launch::from_vars(|k| map.get(k).cloned())
    }

    #[test]
    fn reads_torchrun_variables() {
        let l = launch(&[
            ("RANK", "3"),
            ("WORLD_SIZE", "4"),
            ("LOCAL_RANK", "1"),
            ("LOCAL_WORLD_SIZE", "2"),
            ("MASTER_ADDR", "10.0.0.7"),
            ("MASTER_PORT", "29500"),
            ("TORCHELASTIC_USE_AGENT_STORE", "True"),
            ("SLURM_PROCID", "0"),
            ("SLURM_NTASKS", "2"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(l.launcher, Launcher::Torchrun);
        assert_eq!((l.rank, l.world, l.local_rank), (3, 4, 1));
        assert_eq!((l.master_addr.as_str(), l.master_port), ("10.0.0.7", 29500));
        assert!(l.agent_store && !l.serves_store() && !l.is_loopback());
    }

    #[test]
    fn reads_slurm_variables() {
        let l = launch(&[
            ("SLURM_PROCID", "5"),
            ("SLURM_NTASKS", "8"),
            ("SLURM_LOCALID", "1"),
            ("SLURM_JOB_NODELIST", "gpu[03-05,09],cpu1"),
            ("SLURM_JOB_ID", "123456"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(l.launcher, Launcher::Slurm);
        assert_eq!((l.rank, l.world, l.local_rank), (5, 8, 1));
        assert_eq!(l.master_addr, "gpu03");
        assert_eq!(l.master_port, 23456);
        let l = launch(&[
            ("SLURM_PROCID", "0"),
            ("SLURM_NTASKS", "2"),
            ("SLURM_JOB_NODELIST", "n1"),
            ("MASTER_PORT", "4000"),
        ])
        .unwrap()
        .unwrap();
        assert!(l.serves_store());
        assert_eq!((l.master_addr.as_str(), l.master_port), ("n1", 4000));
        // One task is a plain process.
        assert_eq!(
            launch(&[("SLURM_PROCID", "0"), ("SLURM_NTASKS", "1")]).unwrap(),
            None
        );
    }

    #[test]
    fn no_variables_is_no_group_and_bad_ones_are_named() {
        assert_eq!(launch(&[]).unwrap(), None);
        let err = launch(&[("RANK", "0"), ("WORLD_SIZE", "2"), ("MASTER_PORT", "1")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("MASTER_ADDR"), "{err}");
        let err = format!(
            "{:#}",
            launch(&[("RANK", "x"), ("WORLD_SIZE", "2")]).unwrap_err()
        );
        assert!(err.contains("RANK=\"x\""), "{err}");
        let err = launch(&[
            ("RANK", "2"),
            ("WORLD_SIZE", "2"),
            ("MASTER_ADDR", "a"),
            ("MASTER_PORT", "1"),
        ])
        .unwrap_err()
        .to_string();
        assert!(err.contains("rank 2 is not one of the 2 ranks"), "{err}");
    }

    #[test]
    fn counts_beyond_their_range_are_refused_naming_the_variable_and_value() {
        let group = |k: &'static str, v: &'static str| {
            let mut vars = vec![
                ("RANK", "0"),
                ("WORLD_SIZE", "2"),
                ("MASTER_ADDR", "a"),
                ("MASTER_PORT", "1"),
            ];
            vars.retain(|(name, _)| *name != k);
            vars.push((k, v));
            format!("{:#}", launch(&vars).unwrap_err())
        };
        assert_eq!(
            group("WORLD_SIZE", "4294967297"),
            "environment variable WORLD_SIZE=\"4294967297\": group size 4294967297 is outside \
             1..=65536"
        );
        assert!(group("WORLD_SIZE", "0").contains("group size 0 is outside"));
        assert!(group("RANK", "4294967296").contains("RANK=\"4294967296\": rank 4294967296"));
        assert!(group("LOCAL_RANK", "-1").contains("LOCAL_RANK=\"-1\": rank -1 is outside"));
        let err = format!(
            "{:#}",
            launch(&[
                ("SLURM_PROCID", "0"),
                ("SLURM_NTASKS", "18446744073709551617")
            ])
            .unwrap_err()
        );
        assert!(
            err.contains("SLURM_NTASKS=\"18446744073709551617\""),
            "{err}"
        );
    }

    #[test]
    fn first_hosts_of_node_lists() {
        assert_eq!(first_host("node01").unwrap(), "node01");
        assert_eq!(first_host("a,b").unwrap(), "a");
        assert_eq!(first_host("gpu[3]").unwrap(), "gpu3");
        assert_eq!(first_host("rack1-n[001-004]-ib").unwrap(), "rack1-n001-ib");
        assert_eq!(first_host("x[7,9-10],y[1-2]").unwrap(), "x7");
        assert!(first_host("bad[1-2").is_err());
        assert!(first_host("").is_err());
    }
}
