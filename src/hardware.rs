//! What the processor can do: native bf16 arithmetic (AVX-512 BF16 or AMX on the CPU,
//! compute capability 8.0+ on CUDA), the instruction-set cap set for oneDNN and ATen, and
//! the float32 peak the benchmarks measure themselves against.

use tch::Device;

/// The cores this process may use (1 where the system does not say): the default number
/// of worker threads.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// oneDNN's instruction-set levels, lowest first (`ONEDNN_MAX_CPU_ISA` values).
const ONEDNN_ISAS: [&str; 13] = [
    "SSE41",
    "AVX",
    "AVX2",
    "AVX2_VNNI",
    "AVX2_VNNI_2",
    "AVX512_CORE",
    "AVX512_CORE_VNNI",
    "AVX512_CORE_BF16",
    "AVX10_1_512",
    "AVX512_CORE_FP16",
    "AVX10_1_512_AMX",
    "AVX10_1_512_AMX_FP16",
    "AVX10_2_512",
];

fn onednn_rank(isa: &str) -> Option<usize> {
    let isa = isa.trim().to_ascii_uppercase();
    let isa = match isa.as_str() {
        "AVX512_CORE_AMX" => "AVX10_1_512_AMX",
        "AVX512_CORE_AMX_FP16" => "AVX10_1_512_AMX_FP16",
        other => other,
    };
    ONEDNN_ISAS.iter().position(|&i| i == isa)
}

/// The instruction-set caps in the environment, as libtorch applies them: oneDNN's
/// (convolutions, matmuls) and ATen's (elementwise kernels, BatchNorm, pooling).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IsaCap {
    /// `ONEDNN_MAX_CPU_ISA` (or the older `DNNL_MAX_CPU_ISA`), upper-cased.
    pub onednn: Option<String>,
    /// `ATEN_CPU_CAPABILITY`, lower-cased.
    pub aten: Option<String>,
}

impl IsaCap {
    pub fn from_env() -> Self {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        IsaCap {
            onednn: var("ONEDNN_MAX_CPU_ISA")
                .or_else(|| var("DNNL_MAX_CPU_ISA"))
                .map(|v| v.trim().to_ascii_uppercase()),
            aten: var("ATEN_CPU_CAPABILITY").map(|v| v.trim().to_ascii_lowercase()),
        }
    }

    /// Whether oneDNN may use `level` (unknown or `ALL`/`DEFAULT` caps nothing, as in oneDNN).
    fn onednn_allows(&self, level: &str) -> bool {
        match self.onednn.as_deref().and_then(onednn_rank) {
            Some(cap) => onednn_rank(level).is_some_and(|l| l <= cap),
            None => true,
        }
    }

    /// Whether ATen's kernels may use AVX-512.
    fn aten_allows_avx512(&self) -> bool {
        !matches!(self.aten.as_deref(), Some("default" | "avx2"))
    }

    /// The setting that keeps 512-bit vectors off, for messages.
    fn avx512_blocker(&self) -> Option<String> {
        if !self.onednn_allows("AVX512_CORE") {
            Some(format!(
                "ONEDNN_MAX_CPU_ISA={}",
                self.onednn.as_deref().unwrap_or("")
            ))
        } else if !self.aten_allows_avx512() {
            Some(format!(
                "ATEN_CPU_CAPABILITY={}",
                self.aten.as_deref().unwrap_or("")
            ))
        } else {
            None
        }
    }

    pub fn describe(&self) -> String {
        match (&self.onednn, &self.aten) {
            (None, None) => "none".into(),
            (o, a) => [
                o.as_ref().map(|v| format!("ONEDNN_MAX_CPU_ISA={v}")),
                a.as_ref().map(|v| format!("ATEN_CPU_CAPABILITY={v}")),
            ]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" "),
        }
    }
}

/// The CPU's vector and bf16 features (x86-64; other processors report none).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuFeatures {
    pub avx2: bool,
    pub fma: bool,
    pub avx512f: bool,
    pub avx512_bf16: bool,
    pub amx_bf16: bool,
    /// AMD family (0x19: Zen 3/4, whose 512-bit FMAs run on 256-bit units; 0x1A: Zen 5).
    pub amd_family: Option<u32>,
}

impl CpuFeatures {
    #[cfg(target_arch = "x86_64")]
    pub fn detect() -> Self {
        use std::arch::x86_64::{__cpuid, __cpuid_count};
        // Leaf 7 is read only when the maximum basic leaf reaches it.
        let (max_leaf, leaf7, vendor, family) = {
            let l0 = __cpuid(0);
            let l7 = if l0.eax >= 7 {
                __cpuid_count(7, 0)
            } else {
                __cpuid(0)
            };
            let l1 = __cpuid(1);
            let base = (l1.eax >> 8) & 0xf;
            let family = if base == 0xf {
                base + ((l1.eax >> 20) & 0xff)
            } else {
                base
            };
            (l0.eax, l7, [l0.ebx, l0.edx, l0.ecx], family)
        };
        let is_amd = vendor == [0x6874_7541, 0x6974_6e65, 0x444d_4163]; // "AuthenticAMD"
        let avx512f = std::arch::is_x86_feature_detected!("avx512f");
        CpuFeatures {
            avx2: std::arch::is_x86_feature_detected!("avx2"),
            fma: std::arch::is_x86_feature_detected!("fma"),
            avx512f,
            avx512_bf16: std::arch::is_x86_feature_detected!("avx512bf16"),
            // AMX-BF16: CPUID.(7,0):EDX[22] (oneDNN asks the kernel for the tile state).
            amx_bf16: max_leaf >= 7 && (leaf7.edx >> 22) & 1 == 1 && avx512f,
            amd_family: is_amd.then_some(family),
        }
    }

    #[cfg(not(target_arch = "x86_64"))]
    pub fn detect() -> Self {
        CpuFeatures::default()
    }
}

/// Whether oneDNN's convolutions may use AVX-512 on this CPU: it has AVX-512F and no
/// `ONEDNN_MAX_CPU_ISA` caps it below.
pub fn cpu_convolutions_avx512() -> bool {
    CpuFeatures::detect().avx512f && IsaCap::from_env().onednn_allows("AVX512_CORE")
}

/// Whether bf16 runs natively on `device`: `Ok(feature)` naming the hardware that does
/// it, or `Err(why not)` naming what is missing or what caps it.
pub fn bf16_support(device: Device) -> Result<String, String> {
    match device {
        Device::Cuda(i) => match cuda_compute_capability(i) {
            Some((major, minor)) if major >= 8 => {
                Ok(format!("CUDA compute capability {major}.{minor}"))
            }
            Some((major, minor)) => Err(format!(
                "cuda:{i} has compute capability {major}.{minor}; bf16 arithmetic needs 8.0 or newer"
            )),
            None => Err(format!("the compute capability of cuda:{i} could not be read")),
        },
        _ => cpu_bf16_support(&CpuFeatures::detect(), &IsaCap::from_env()),
    }
}

/// Whether bf16 is the faster arithmetic on `device`, as `--precision auto` asks: where
/// bf16 is native (see [`bf16_support`]), except on an Intel CPU that has AVX512_BF16 and
/// no AMX-BF16, where bf16 measured slower than f32.
pub fn bf16_faster(device: Device) -> Result<String, String> {
    let native = bf16_support(device)?;
    match device {
        Device::Cuda(_) => Ok(native),
        _ => cpu_bf16_faster(&CpuFeatures::detect(), native),
    }
}

fn cpu_bf16_faster(cpu: &CpuFeatures, native: String) -> Result<String, String> {
    // An Emerald Rapids Xeon (AVX512_BF16, two 512-bit FMA units, AMX not exposed by the
    // hypervisor) ran every bf16 step at 0.71-0.91x its f32 speed, in flarecast and in
    // PyTorch alike; the AMD cores with AVX512_BF16 (512-bit f32 FMAs as two halves) ran
    // bf16 at about twice f32.
    if native == "AVX512_BF16" && cpu.amd_family.is_none() {
        return Err(
            "this Intel CPU has AVX512_BF16 but no AMX-BF16, where bf16 measured slower than f32"
                .into(),
        );
    }
    Ok(native)
}

/// The bf16 peak over the f32 peak [`F32Peak`] counts, where it is known: twice on the
/// AMD cores with AVX512_BF16 (a bf16 dot product does twice an FMA's multiply-adds at
/// the same rate); not modelled for AMX tiles, Intel's AVX512_BF16 or CUDA.
pub fn bf16_peak_factor(device: Device) -> Option<f64> {
    let cpu = CpuFeatures::detect();
    match bf16_support(device) {
        Ok(f) if device == Device::Cpu && f == "AVX512_BF16" && cpu.amd_family.is_some() => {
            Some(2.0)
        }
        _ => None,
    }
}

fn cpu_bf16_support(cpu: &CpuFeatures, cap: &IsaCap) -> Result<String, String> {
    if !cpu.avx512_bf16 && !cpu.amx_bf16 {
        return Err("this CPU has neither AVX512_BF16 nor AMX-BF16".into());
    }
    if let Some(blocker) = cap.avx512_blocker() {
        return Err(format!(
            "{blocker} caps this CPU below AVX512_BF16, so it counts as having no bf16"
        ));
    }
    if cpu.amx_bf16 && cap.onednn_allows("AVX10_1_512_AMX") {
        Ok("AMX-BF16".into())
    } else if cpu.avx512_bf16 && cap.onednn_allows("AVX512_CORE_BF16") {
        Ok("AVX512_BF16".into())
    } else {
        Err(format!(
            "ONEDNN_MAX_CPU_ISA={} caps this CPU below AVX512_CORE_BF16, so it counts as having no bf16",
            cap.onednn.as_deref().unwrap_or("")
        ))
    }
}

/// (major, minor) compute capability of CUDA device `ordinal`, read through the driver
/// API (libtorch does not export it); `None` without a driver.
pub fn cuda_compute_capability(ordinal: usize) -> Option<(i32, i32)> {
    type Init = unsafe extern "C" fn(u32) -> i32;
    type Get = unsafe extern "C" fn(*mut i32, i32) -> i32;
    type Attr = unsafe extern "C" fn(*mut i32, i32, i32) -> i32;
    const MAJOR: i32 = 75; // CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR
    const MINOR: i32 = 76;
    // SAFETY: the symbols are looked up by their documented names and called with the
    // driver API's signatures; the library stays loaded for the process's lifetime.
    unsafe {
        let lib = libc::dlopen(c"libcuda.so.1".as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL);
        if lib.is_null() {
            return None;
        }
        let init = libc::dlsym(lib, c"cuInit".as_ptr());
        let get = libc::dlsym(lib, c"cuDeviceGet".as_ptr());
        let attr = libc::dlsym(lib, c"cuDeviceGetAttribute".as_ptr());
        if init.is_null() || get.is_null() || attr.is_null() {
            return None;
        }
        let init: Init = std::mem::transmute::<*mut libc::c_void, Init>(init);
        let get: Get = std::mem::transmute::<*mut libc::c_void, Get>(get);
        let attr: Attr = std::mem::transmute::<*mut libc::c_void, Attr>(attr);
        let mut dev = 0;
        if init(0) != 0 || get(&mut dev, ordinal as i32) != 0 {
            return None;
        }
        let (mut major, mut minor) = (0, 0);
        if attr(&mut major, MAJOR, dev) != 0 || attr(&mut minor, MINOR, dev) != 0 {
            return None;
        }
        Some((major, minor))
    }
}

/// The float32 peak of `cores` cores: cores x f32 lanes x FMA units x 2 flops x clock.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct F32Peak {
    pub cores: usize,
    /// Vector width the kernels may use, in bits (after the ISA cap).
    pub vector_bits: u32,
    /// FMA instructions of that width issued per cycle and core.
    pub fma_units: u32,
    pub ghz: f64,
    /// Where `ghz` came from: "cpufreq maximum", "measured", "/proc/cpuinfo" or "assumed".
    pub clock_source: &'static str,
    pub gflops: f64,
}

impl F32Peak {
    pub fn detect(cores: usize) -> Self {
        let (ghz, clock_source) = cpu_ghz();
        Self {
            clock_source,
            ..Self::of(&CpuFeatures::detect(), &IsaCap::from_env(), cores, ghz)
        }
    }

    fn of(cpu: &CpuFeatures, cap: &IsaCap, cores: usize, ghz: f64) -> Self {
        let wide = cpu.avx512f && cap.avx512_blocker().is_none();
        // Zen 3/4 (family 0x19) run 512-bit FMAs as two halves on 256-bit units.
        let zen4 = cpu.amd_family == Some(0x19);
        let vector_bits = if wide && !zen4 {
            512
        } else if cpu.avx2 {
            256
        } else {
            128
        };
        // Two FMA pipes on every x86 core with FMA3 since Haswell and Zen; one multiply
        // and one add (no FMA) otherwise, which the factor 2 below counts the same way.
        let fma_units = 2;
        let lanes = vector_bits / 32;
        let gflops = cores as f64 * lanes as f64 * fma_units as f64 * 2.0 * ghz;
        let gflops = if cpu.fma { gflops } else { gflops / 2.0 };
        F32Peak {
            cores,
            vector_bits,
            fma_units,
            ghz,
            clock_source: "given",
            gflops,
        }
    }
}

/// The clock in GHz and where it came from: cpufreq's maximum where the kernel has it;
/// else, on x86-64, the clock measured by timing a chain of dependent additions (virtual
/// machines report only the nominal clock in /proc/cpuinfo, while the cores boost above
/// it, which would put a share of the "peak" above 100 %); else /proc/cpuinfo.
fn cpu_ghz() -> (f64, &'static str) {
    if let Ok(khz) =
        std::fs::read_to_string("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
    {
        if let Ok(k) = khz.trim().parse::<f64>() {
            return (k / 1e6, "cpufreq maximum");
        }
    }
    if let Some(ghz) = measured_ghz() {
        return (ghz, "measured");
    }
    let listed = std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|s| {
        s.lines()
            .find(|l| l.starts_with("cpu MHz"))
            .and_then(|l| l.split(':').nth(1))
            .and_then(|v| v.trim().parse::<f64>().ok())
    });
    match listed {
        Some(mhz) => (mhz / 1e3, "/proc/cpuinfo"),
        None => (2.0, "assumed"),
    }
}

/// Cycles per second of one core running a chain of dependent register-to-register
/// integer additions (one cycle each on every x86-64 core), best of five runs of about
/// 30 ms so that a run shortened by the scheduler does not count. The addend is a
/// register, not an immediate: Intel cores since Golden Cove fold chains of small
/// immediate additions at rename, which ran the chain at more than one add per cycle
/// (an Emerald Rapids Xeon measured "6.24 GHz").
#[cfg(target_arch = "x86_64")]
fn measured_ghz() -> Option<f64> {
    const LOOPS: u64 = 10_000_000;
    const ADDS_PER_LOOP: u64 = 8;
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let start = std::time::Instant::now();
        // SAFETY: register arithmetic only; no memory, stack or flags visible outside.
        unsafe {
            std::arch::asm!(
                "2:",
                "add {x}, {one}", "add {x}, {one}", "add {x}, {one}", "add {x}, {one}",
                "add {x}, {one}", "add {x}, {one}", "add {x}, {one}", "add {x}, {one}",
                "dec {n}",
                "jnz 2b",
                n = inout(reg) LOOPS => _,
                x = inout(reg) 0u64 => _,
                one = in(reg) 1u64,
                options(nomem, nostack),
            );
        }
        best = best.min(start.elapsed().as_secs_f64());
    }
    let ghz = (LOOPS * ADDS_PER_LOOP) as f64 / best / 1e9;
    (0.5..10.0).contains(&ghz).then_some(ghz)
}

#[cfg(not(target_arch = "x86_64"))]
fn measured_ghz() -> Option<f64> {
    None
}

/// The processor's model name as /proc/cpuinfo gives it.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .filter(|l| l.starts_with("model name") || l.starts_with("Model"))
                .find_map(|l| l.split_once(':').map(|(_, v)| v.trim().to_string()))
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| format!("{} processor (model not reported)", std::env::consts::ARCH))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zen5() -> CpuFeatures {
        CpuFeatures {
            avx2: true,
            fma: true,
            avx512f: true,
            avx512_bf16: true,
            amx_bf16: false,
            amd_family: Some(0x1a),
        }
    }

    fn cap(onednn: Option<&str>, aten: Option<&str>) -> IsaCap {
        IsaCap {
            onednn: onednn.map(str::to_string),
            aten: aten.map(str::to_string),
        }
    }

    #[test]
    fn bf16_needs_the_instructions_and_no_cap_below_them() {
        assert_eq!(
            cpu_bf16_support(&zen5(), &cap(None, None)).unwrap(),
            "AVX512_BF16"
        );
        let e = cpu_bf16_support(&zen5(), &cap(Some("AVX2"), None)).unwrap_err();
        assert!(e.contains("ONEDNN_MAX_CPU_ISA=AVX2"), "{e}");
        let e = cpu_bf16_support(&zen5(), &cap(None, Some("avx2"))).unwrap_err();
        assert!(e.contains("ATEN_CPU_CAPABILITY=avx2"), "{e}");
        let e = cpu_bf16_support(&zen5(), &cap(Some("AVX512_CORE_VNNI"), None)).unwrap_err();
        assert!(e.contains("below AVX512_CORE_BF16"), "{e}");
        assert!(cpu_bf16_support(&zen5(), &cap(Some("avx512_core_bf16"), Some("avx512"))).is_ok());
        let avx2_only = CpuFeatures {
            avx512f: false,
            avx512_bf16: false,
            ..zen5()
        };
        let e = cpu_bf16_support(&avx2_only, &cap(None, None)).unwrap_err();
        assert_eq!(e, "this CPU has neither AVX512_BF16 nor AMX-BF16");
        let amx = CpuFeatures {
            amx_bf16: true,
            amd_family: None,
            ..zen5()
        };
        assert_eq!(
            cpu_bf16_support(&amx, &cap(None, None)).unwrap(),
            "AMX-BF16"
        );
        assert_eq!(
            cpu_bf16_support(&amx, &cap(Some("AVX512_CORE_BF16"), None)).unwrap(),
            "AVX512_BF16"
        );
    }

    #[test]
    fn auto_takes_bf16_where_it_measured_faster() {
        assert_eq!(
            cpu_bf16_faster(&zen5(), "AVX512_BF16".into()).unwrap(),
            "AVX512_BF16"
        );
        let intel = CpuFeatures {
            amd_family: None,
            ..zen5()
        };
        let e = cpu_bf16_faster(&intel, "AVX512_BF16".into()).unwrap_err();
        assert!(e.contains("no AMX-BF16"), "{e}");
        assert_eq!(
            cpu_bf16_faster(&intel, "AMX-BF16".into()).unwrap(),
            "AMX-BF16"
        );
    }

    #[test]
    fn peak_counts_cores_lanes_fma_units_and_clock() {
        let p = F32Peak::of(&zen5(), &cap(None, None), 2, 2.5);
        assert_eq!((p.vector_bits, p.fma_units), (512, 2));
        assert_eq!(p.gflops, 2.0 * 16.0 * 2.0 * 2.0 * 2.5);
        let p = F32Peak::of(&zen5(), &cap(Some("AVX2"), Some("avx2")), 2, 2.5);
        assert_eq!(p.vector_bits, 256);
        assert_eq!(p.gflops, 160.0);
        let zen4 = CpuFeatures {
            amd_family: Some(0x19),
            ..zen5()
        };
        assert_eq!(
            F32Peak::of(&zen4, &cap(None, None), 1, 1.0).vector_bits,
            256
        );
    }
}
