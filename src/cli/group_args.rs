//! The options of commands that run as one rank of a c10d process group when torchrun or
//! srun starts them (`train`, `bench train`), defined once.

use anyhow::Result;
use flarecast::distributed::{Group, Launch};
use std::time::Duration;
use tch::Device;

#[derive(clap::Args, Clone, Debug)]
pub struct GroupArgs {
    /// In a process group (torchrun, srun): how long any rank waits for the others (to
    /// meet, or to finish a step) before it ends with an error naming the wait.
    #[arg(long, default_value = "10m", value_parser = Group::TIMEOUT.flag())]
    pub dist_timeout: Duration,
}

impl GroupArgs {
    /// The rank this process is, where a launcher's environment says it is one.
    pub fn launch(&self) -> Result<Option<Launch>> {
        Launch::from_env()
    }

    /// Joins the launcher's group on `device`.
    pub fn join(&self, launch: &Launch, device: Device) -> Result<Group> {
        Group::join(launch, device, self.dist_timeout)
    }
}
