//! Which SIMD kernel set runs: detected once per process from the CPU,
//! overridable with `NETLOOM_KERNELS=avx512|avx2|neon|portable` (for tests
//! and comparisons; a set the CPU lacks falls back to the best it has, with
//! a warning on stderr).
//!
//! | set | CPUs | microkernel (rows × columns) |
//! |---|---|---|
//! | `avx512` | x86-64 with AVX-512F (Zen 4/5, Intel Skylake-SP and later servers, Ice Lake+) | 12 × 32 in 24 zmm accumulators |
//! | `avx2` | x86-64 with AVX2+FMA (Haswell and later, Zen 1–3) | 6 × 16 in 12 ymm accumulators |
//! | `neon` | every aarch64 CPU (Apple Silicon, Graviton, Ampere, Cortex-A) | 6 × 16 in 24 q-register accumulators |
//! | `portable` | anything else | 2 × 16, plain Rust arrays the compiler vectorises |

use std::sync::OnceLock;

/// One family of SIMD kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KernelSet {
    Avx512,
    Avx2,
    Neon,
    Portable,
}

/// The environment variable that forces a kernel set.
pub const ENV_VAR: &str = "NETLOOM_KERNELS";

impl KernelSet {
    pub const ALL: [KernelSet; 4] = [Self::Avx512, Self::Avx2, Self::Neon, Self::Portable];

    /// The name `bench` reports and [`ENV_VAR`] accepts.
    pub fn name(self) -> &'static str {
        match self {
            Self::Avx512 => "avx512",
            Self::Avx2 => "avx2",
            Self::Neon => "neon",
            Self::Portable => "portable",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|s| s.name().eq_ignore_ascii_case(name.trim()))
    }

    /// Whether this CPU can run the set.
    pub fn supported(self) -> bool {
        match self {
            Self::Portable => true,
            #[cfg(target_arch = "x86_64")]
            Self::Avx512 => std::arch::is_x86_feature_detected!("avx512f"),
            #[cfg(target_arch = "x86_64")]
            Self::Avx2 => {
                std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
            }
            #[cfg(target_arch = "aarch64")]
            Self::Neon => std::arch::is_aarch64_feature_detected!("neon"),
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }

    /// Every set this CPU supports, widest first.
    pub fn all_supported() -> Vec<KernelSet> {
        Self::ALL.into_iter().filter(|s| s.supported()).collect()
    }

    /// The widest set this CPU supports.
    pub fn best() -> KernelSet {
        Self::ALL
            .into_iter()
            .find(|s| s.supported())
            .unwrap_or(Self::Portable)
    }
}

impl std::fmt::Display for KernelSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What [`ENV_VAR`] asks for, and why it cannot be honoured if so.
fn choose(requested: Option<&str>) -> (KernelSet, Option<String>) {
    let best = KernelSet::best();
    let Some(req) = requested.filter(|r| !r.trim().is_empty()) else {
        return (best, None);
    };
    match KernelSet::from_name(req) {
        Some(set) if set.supported() => (set, None),
        Some(set) => (
            best,
            Some(format!(
                "{ENV_VAR}={req}: this CPU cannot run the {set} kernels; using {best}"
            )),
        ),
        None => (
            best,
            Some(format!(
                "{ENV_VAR}={req} is not one of avx512, avx2, neon, portable; using {best}"
            )),
        ),
    }
}

/// The kernel set of this process, chosen on first use.
pub fn active() -> KernelSet {
    static ACTIVE: OnceLock<KernelSet> = OnceLock::new();
    *ACTIVE.get_or_init(|| {
        let requested = std::env::var(ENV_VAR).ok();
        let (set, warning) = choose(requested.as_deref());
        if let Some(w) = warning {
            eprintln!("warning: {w}");
        }
        set
    })
}

/// Runs `f` compiled with `set`'s vector extensions, so the plain loops it
/// inlines (the memory-bound kernels: BatchNorm, pooling) vectorise at that
/// set's width instead of baseline x86-64's 4 lanes. Call it inside each
/// parallel task (rayon's closures are not inlined into it). Floating-point
/// results are the same on every set: the compiler does not reassociate or
/// contract `a·b + c` into an FMA, so only the vector width changes.
#[inline(always)]
pub(crate) fn with_set<R>(set: KernelSet, f: impl FnOnce() -> R) -> R {
    match set {
        // SAFETY: `active()` only returns sets the CPU supports.
        #[cfg(target_arch = "x86_64")]
        KernelSet::Avx512 if set.supported() => unsafe { wide_avx512(f) },
        #[cfg(target_arch = "x86_64")]
        KernelSet::Avx2 if set.supported() => unsafe { wide_avx2(f) },
        _ => f(),
    }
}

/// # Safety
/// The CPU supports AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn wide_avx512<R>(f: impl FnOnce() -> R) -> R {
    f()
}

/// # Safety
/// The CPU supports AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn wide_avx2<R>(f: impl FnOnce() -> R) -> R {
    f()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_requests_are_checked() {
        for s in KernelSet::ALL {
            assert_eq!(KernelSet::from_name(s.name()), Some(s));
        }
        assert_eq!(KernelSet::from_name(" AVX2 "), Some(KernelSet::Avx2));
        assert!(KernelSet::Portable.supported());
        assert_eq!(choose(None), (KernelSet::best(), None));
        assert_eq!(choose(Some("portable")), (KernelSet::Portable, None));
        let (set, warn) = choose(Some("sse9"));
        assert_eq!(set, KernelSet::best());
        assert!(warn.is_some_and(|w| w.contains("sse9")));
        for s in KernelSet::ALL.into_iter().filter(|s| !s.supported()) {
            let (set, warn) = choose(Some(s.name()));
            assert_eq!(set, KernelSet::best());
            assert!(warn.is_some_and(|w| w.contains("cannot run")));
        }
    }

    /// Reruns this binary's kernel and gradient tests once per other kernel
    /// set the CPU supports (this process runs the active one), forced by
    /// [`ENV_VAR`]. The child runs with the variable set, so it does not recurse.
    #[test]
    fn kernel_and_gradient_tests_pass_on_every_supported_set() {
        if std::env::var_os(ENV_VAR).is_some() {
            return;
        }
        let exe = std::env::current_exe().expect("test binary path");
        for set in KernelSet::all_supported() {
            if set == active() {
                continue;
            }
            let out = std::process::Command::new(&exe)
                .env(ENV_VAR, set.name())
                .args(["kernels::", "train::backward::", "--quiet"])
                .args([
                    "--skip",
                    "kernel_and_gradient_tests_pass_on_every_supported_set",
                ])
                .output()
                .expect("rerun the test binary");
            assert!(
                out.status.success(),
                "kernel/gradient tests fail with {ENV_VAR}={set}:\n{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                stdout.contains("test result: ok") && !stdout.contains("ok. 0 passed"),
                "no tests ran with {ENV_VAR}={set}: {stdout}"
            );
        }
    }
}
