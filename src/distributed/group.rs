//! A c10d process group as Rust sees it: joined through the C++ shim, every collective
//! bounded by the group's timeout, and a watchdog that ends the process with one line if
//! a wait outlives that timeout anyway (a bare c10d rendezvous can hang).

use super::launch::Launch;
use crate::bounded::{days, secs, Span};
use anyhow::{bail, Result};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tch::{Device, Kind, Tensor};

/// Why distributed training is missing from this build (None where it is built in).
pub const UNAVAILABLE: Option<&str> = if cfg!(flarecast_c10d) {
    None
} else {
    Some(
        "this flarecast was built without Gloo's headers (Debian's libgloo-dev; scripts/setup.sh \
         installs it), so distributed training is unavailable: install them and rebuild",
    )
};

/// Which c10d backend carries the collectives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// CPU tensors; CUDA tensors are staged through host memory.
    Gloo,
    /// CUDA tensors, where the build found NCCL and a CUDA toolkit.
    Nccl,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Gloo => "gloo",
            Backend::Nccl => "nccl",
        }
    }

    /// NCCL for a CUDA device where this build has it, else Gloo.
    pub fn for_device(device: Device) -> Backend {
        if device.is_cuda() && nccl_built() {
            Backend::Nccl
        } else {
            Backend::Gloo
        }
    }
}

/// Whether this build can form NCCL groups.
pub fn nccl_built() -> bool {
    #[cfg(flarecast_c10d)]
    {
        // SAFETY: a constant query of the shim.
        unsafe { ffi::fc_nccl_built() != 0 }
    }
    #[cfg(not(flarecast_c10d))]
    {
        false
    }
}

/// What the watchdog watches: the wait in progress and when it began.
#[derive(Default)]
struct Watch {
    current: Option<(String, Instant)>,
    closed: bool,
}

/// One rank's membership of a process group.
pub struct Group {
    #[cfg(flarecast_c10d)]
    raw: ffi::Raw,
    rank: usize,
    world: usize,
    backend: Backend,
    /// Where collectives run: the rank's GPU for NCCL, the host for Gloo.
    device: Device,
    timeout: Duration,
    watch: Arc<Mutex<Watch>>,
    /// Serialises calls into the group (c10d collectives are issued in one order).
    calls: Mutex<()>,
}

impl std::fmt::Debug for Group {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Group")
            .field("rank", &self.rank)
            .field("world", &self.world)
            .field("backend", &self.backend)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// The extra time the watchdog grants c10d's own timeout to report first.
fn grace(timeout: Duration) -> Duration {
    (timeout / 4).max(Duration::from_secs(5))
}

impl Group {
    /// How long any wait of the group may last: c10d counts it in milliseconds from a
    /// steady clock whose nanoseconds overflow at 292 years, and a week outlasts any queue.
    pub const TIMEOUT: Span = Span::new("dist_timeout", "group timeout", secs(1), days(7));

    /// Joins the group `launch` describes for a rank training on `device`: rendezvous in
    /// the TCPStore at MASTER_ADDR:MASTER_PORT (hosted by rank 0 unless torchrun's agent
    /// hosts it), then the backend's connections to every other rank, all within
    /// `timeout`. NCCL carries CUDA tensors where this build has it, else Gloo.
    pub fn join(launch: &Launch, device: Device, timeout: Duration) -> Result<Group> {
        let backend = Backend::for_device(device);
        let device = match backend {
            Backend::Nccl => device,
            Backend::Gloo => Device::Cpu,
        };
        if let Some(why) = UNAVAILABLE {
            bail!("{why}");
        }
        Self::TIMEOUT.check(timeout)?;
        let watch = Arc::new(Mutex::new(Watch::default()));
        let (rank, world) = (launch.rank, launch.world);
        spawn_watchdog(Arc::clone(&watch), rank, world, timeout + grace(timeout));
        let what = format!(
            "waiting to join the group of {world} at {}:{} ({}, {})",
            launch.master_addr,
            launch.master_port,
            launch.launcher.name(),
            backend.name()
        );
        set_watch(&watch, Some(&what));
        let joined = Group::connect(launch, backend, timeout);
        set_watch(&watch, None);
        #[cfg(flarecast_c10d)]
        {
            let raw = joined.map_err(|e| fault(rank, world, &what, &e))?;
            Ok(Group {
                raw,
                rank,
                world,
                backend,
                device,
                timeout,
                watch,
                calls: Mutex::new(()),
            })
        }
        #[cfg(not(flarecast_c10d))]
        {
            let _ = (joined, device);
            unreachable!("UNAVAILABLE is set without the shim")
        }
    }

    #[cfg(flarecast_c10d)]
    fn connect(launch: &Launch, backend: Backend, timeout: Duration) -> Result<ffi::Raw, String> {
        // Gloo binds where the others can reach it: loopback for a one-machine group, the
        // interface GLOO_SOCKET_IFNAME names, else this machine's hostname (as torch does).
        let iface = std::env::var("GLOO_SOCKET_IFNAME").ok();
        let bind_host = if launch.is_loopback() {
            Some("127.0.0.1".to_string())
        } else {
            None
        };
        ffi::Raw::new(
            &launch.master_addr,
            launch.master_port,
            launch.rank,
            launch.world,
            launch.serves_store(),
            &launch.store_prefix(),
            backend == Backend::Nccl,
            timeout,
            iface.as_deref(),
            bind_host.as_deref(),
        )
    }

    #[cfg(not(flarecast_c10d))]
    fn connect(_: &Launch, _: Backend, _: Duration) -> Result<(), String> {
        Err(UNAVAILABLE.unwrap_or_default().to_string())
    }

    pub fn rank(&self) -> usize {
        self.rank
    }

    pub fn world(&self) -> usize {
        self.world
    }

    /// Rank 0 alone writes files.
    pub fn is_root(&self) -> bool {
        self.rank == 0
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// A contiguous copy of `t` where the backend needs one (Gloo reads host memory),
    /// None where `t` itself can take part.
    fn staged(&self, t: &Tensor) -> Option<Tensor> {
        let on_host = self.backend == Backend::Gloo;
        if (on_host && t.device() != Device::Cpu) || !t.is_contiguous() {
            let dev = if on_host { Device::Cpu } else { t.device() };
            Some(t.to_device(dev).contiguous())
        } else {
            None
        }
    }

    /// Sums `t` over every rank, in place. `what` says what is being waited for (it
    /// names the wait in the error if a rank fails to take part).
    pub fn all_reduce_sum(&self, t: &mut Tensor, what: &str) -> Result<()> {
        match self.staged(t) {
            None => self.call(what, |g| g.all_reduce(t)),
            Some(mut s) => {
                self.call(what, |g| g.all_reduce(&mut s))?;
                tch::no_grad(|| t.f_copy_(&s))?;
                Ok(())
            }
        }
    }

    /// Copies rank `root`'s `t` into every rank's `t`.
    pub fn broadcast(&self, t: &mut Tensor, root: usize, what: &str) -> Result<()> {
        match self.staged(t) {
            None => self.call(what, |g| g.bcast(t, root)),
            Some(mut s) => {
                self.call(what, |g| g.bcast(&mut s, root))?;
                tch::no_grad(|| t.f_copy_(&s))?;
                Ok(())
            }
        }
    }

    /// Rank 0's bytes on every rank (`bytes` is read on rank 0 only).
    pub fn broadcast_bytes(&self, bytes: &[u8], what: &str) -> Result<Vec<u8>> {
        let dev = self.device();
        let mut len = Tensor::from_slice(&[bytes.len() as i64]).to_device(dev);
        self.broadcast(&mut len, 0, what)?;
        let n = len.int64_value(&[0]);
        if !(0..=(1 << 32)).contains(&n) {
            bail!("rank {}: rank 0 announced {n} bytes", self.rank);
        }
        let mut data = if self.is_root() {
            Tensor::from_slice(bytes).to_device(dev)
        } else {
            Tensor::zeros([n], (Kind::Uint8, dev))
        };
        self.broadcast(&mut data, 0, what)?;
        Ok(Vec::<u8>::try_from(data.to_device(Device::Cpu))?)
    }

    /// Waits until every rank has reached this point.
    pub fn barrier(&self, what: &str) -> Result<()> {
        let mut t = Tensor::ones([1], (Kind::Float, self.device()));
        self.all_reduce_sum(&mut t, what)
    }

    /// The device the group's own small tensors live on.
    fn device(&self) -> Device {
        self.device
    }

    /// Runs one collective under the watchdog, turning a failure into one line naming
    /// this rank and the wait.
    fn call(&self, what: &str, f: impl FnOnce(&Self) -> Result<(), String>) -> Result<()> {
        let _serial = self.calls.lock().unwrap_or_else(|p| p.into_inner());
        set_watch(&self.watch, Some(what));
        let r = f(self);
        set_watch(&self.watch, None);
        r.map_err(|e| fault(self.rank, self.world, what, &e))
    }

    #[cfg(flarecast_c10d)]
    fn all_reduce(&self, t: &mut Tensor) -> Result<(), String> {
        self.raw.all_reduce_sum(t)
    }

    #[cfg(flarecast_c10d)]
    fn bcast(&self, t: &mut Tensor, root: usize) -> Result<(), String> {
        self.raw.broadcast(t, root)
    }

    #[cfg(not(flarecast_c10d))]
    fn all_reduce(&self, _: &mut Tensor) -> Result<(), String> {
        Err(UNAVAILABLE.unwrap_or_default().to_string())
    }

    #[cfg(not(flarecast_c10d))]
    fn bcast(&self, _: &mut Tensor, _: usize) -> Result<(), String> {
        Err(UNAVAILABLE.unwrap_or_default().to_string())
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        if let Ok(mut w) = self.watch.lock() {
            w.closed = true;
        }
    }
}

fn fault(rank: usize, world: usize, what: &str, err: &str) -> anyhow::Error {
    anyhow::anyhow!("rank {rank} of {world}: gave up {what}: {err}")
}

fn set_watch(watch: &Mutex<Watch>, what: Option<&str>) {
    let mut w = watch.lock().unwrap_or_else(|p| p.into_inner());
    w.current = what.map(|s| (s.to_string(), Instant::now()));
}

/// Ends the process with one line when a wait outlives `limit`: c10d should have failed
/// it by then, and a rank stuck for ever would hold the whole group.
fn spawn_watchdog(watch: Arc<Mutex<Watch>>, rank: usize, world: usize, limit: Duration) {
    let _ = std::thread::Builder::new()
        .name("dist-watchdog".into())
        .spawn(move || loop {
            std::thread::sleep(Duration::from_millis(200));
            let w = watch.lock().unwrap_or_else(|p| p.into_inner());
            if w.closed {
                return;
            }
            if let Some((what, since)) = &w.current {
                if since.elapsed() > limit {
                    eprintln!(
                        "flarecast: error: rank {rank} of {world}: gave up {what}: no answer within {}",
                        humantime::format_duration(Duration::from_secs(limit.as_secs()))
                    );
                    std::process::exit(1);
                }
            }
        });
}

#[cfg(flarecast_c10d)]
mod ffi {
    use std::ffi::{c_char, c_int, c_longlong, c_void, CStr, CString};
    use std::time::Duration;
    use tch::Tensor;

    extern "C" {
        pub fn fc_nccl_built() -> c_int;
        #[allow(clippy::too_many_arguments)]
        fn fc_group_new(
            host: *const c_char,
            port: c_int,
            rank: c_int,
            world: c_int,
            serve_store: c_int,
            nccl: c_int,
            timeout_ms: c_longlong,
            prefix: *const c_char,
            gloo_iface: *const c_char,
            gloo_host: *const c_char,
            err: *mut *mut c_char,
        ) -> *mut c_void;
        fn fc_group_free(group: *mut c_void);
        fn fc_error_free(err: *mut c_char);
        fn fc_allreduce_sum(
            group: *mut c_void,
            tensor: *mut c_void,
            err: *mut *mut c_char,
        ) -> c_int;
        fn fc_broadcast(
            group: *mut c_void,
            tensor: *mut c_void,
            root: c_int,
            err: *mut *mut c_char,
        ) -> c_int;
    }

    /// The shim's group: a TCPStore and a backend.
    pub struct Raw(*mut c_void);

    // SAFETY: c10d groups are used from any thread; `Group` serialises the calls.
    unsafe impl Send for Raw {}
    unsafe impl Sync for Raw {}

    fn take_error(err: *mut c_char) -> String {
        if err.is_null() {
            return "failed without a message".into();
        }
        // SAFETY: the shim hands back a NUL-terminated string it allocated.
        let s = unsafe { CStr::from_ptr(err) }
            .to_string_lossy()
            .into_owned();
        unsafe { fc_error_free(err) };
        s
    }

    fn c(s: &str) -> Result<CString, String> {
        CString::new(s).map_err(|_| format!("{s:?} holds a NUL byte"))
    }

    impl Raw {
        #[allow(clippy::too_many_arguments)]
        pub fn new(
            host: &str,
            port: u16,
            rank: usize,
            world: usize,
            serve_store: bool,
            prefix: &str,
            nccl: bool,
            timeout: Duration,
            gloo_iface: Option<&str>,
            gloo_host: Option<&str>,
        ) -> Result<Raw, String> {
            // Launch holds these to its ranges; a C int takes them whole.
            let int = |what: &str, v: usize| {
                c_int::try_from(v).map_err(|_| format!("{what} {v} is beyond a C int"))
            };
            let (rank, world) = (int("rank", rank)?, int("group size", world)?);
            let host = c(host)?;
            let prefix = c(prefix)?;
            let iface = gloo_iface.map(c).transpose()?;
            let bind = gloo_host.map(c).transpose()?;
            let opt = |s: &Option<CString>| s.as_ref().map_or(std::ptr::null(), |s| s.as_ptr());
            let mut err = std::ptr::null_mut();
            // SAFETY: every pointer outlives the call; the shim copies what it keeps.
            let raw = unsafe {
                fc_group_new(
                    host.as_ptr(),
                    c_int::from(port),
                    rank,
                    world,
                    serve_store as c_int,
                    nccl as c_int,
                    timeout.as_millis().min(i64::MAX as u128) as c_longlong,
                    prefix.as_ptr(),
                    opt(&iface),
                    opt(&bind),
                    &mut err,
                )
            };
            if raw.is_null() {
                Err(take_error(err))
            } else {
                Ok(Raw(raw))
            }
        }

        pub fn all_reduce_sum(&self, t: &mut Tensor) -> Result<(), String> {
            let mut err = std::ptr::null_mut();
            // SAFETY: `t` is a live at::Tensor (tch's C_tensor is an at::Tensor*).
            let rc = unsafe { fc_allreduce_sum(self.0, t.as_mut_ptr() as *mut c_void, &mut err) };
            if rc == 0 {
                Ok(())
            } else {
                Err(take_error(err))
            }
        }

        pub fn broadcast(&self, t: &mut Tensor, root: usize) -> Result<(), String> {
            let mut err = std::ptr::null_mut();
            // SAFETY: as in all_reduce_sum.
            let root =
                c_int::try_from(root).map_err(|_| format!("rank {root} is beyond a C int"))?;
            let rc = unsafe { fc_broadcast(self.0, t.as_mut_ptr() as *mut c_void, root, &mut err) };
            if rc == 0 {
                Ok(())
            } else {
                Err(take_error(err))
            }
        }
    }

    impl Drop for Raw {
        fn drop(&mut self) {
            // SAFETY: created by fc_group_new, freed once.
            unsafe { fc_group_free(self.0) }
        }
    }
}
