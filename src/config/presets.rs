//! Fly's machine size presets, as flyctl and fly-go map them to guests
//! (superfly/fly-go `machine_types.go`, `MachinePresets`): a shared CPU
//! comes with 256 MB, a performance CPU with 2048 MB. A `[[vm]]` with a
//! `size` takes its CPU kind, CPUs and memory from the preset; `cpu_kind`,
//! `cpus` and `memory` given beside it win.

/// `(size, cpu_kind, cpus, memory_mb)` of every preset without a GPU.
pub const PRESETS: [(&str, &str, u32, u32); 9] = [
    ("shared-cpu-1x", "shared", 1, 256),
    ("shared-cpu-2x", "shared", 2, 512),
    ("shared-cpu-4x", "shared", 4, 1024),
    ("shared-cpu-8x", "shared", 8, 2048),
    ("performance-1x", "performance", 1, 2048),
    ("performance-2x", "performance", 2, 4096),
    ("performance-4x", "performance", 4, 8192),
    ("performance-8x", "performance", 8, 16384),
    ("performance-16x", "performance", 16, 32768),
];

/// The guest of a preset: CPU kind, CPUs, memory in MB.
pub fn preset(size: &str) -> Option<(&'static str, u32, u32)> {
    PRESETS
        .iter()
        .find(|(name, ..)| *name == size)
        .map(|(_, kind, cpus, mb)| (*kind, *cpus, *mb))
}

/// The memory per CPU Fly accepts for a CPU kind, in MB: at least and at
/// most (fly-go `machine_types.go`: `MIN_MEMORY_MB_PER_SHARED_CPU`,
/// `MAX_MEMORY_MB_PER_SHARED_CPU`, `MIN_MEMORY_MB_PER_CPU`,
/// `MAX_MEMORY_MB_PER_CPU`).
pub fn memory_per_cpu(cpu_kind: &str) -> Option<(u32, u32)> {
    match cpu_kind {
        "shared" => Some((256, 2048)),
        "performance" => Some((2048, 8192)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_are_fly_gos_minimum_memory_per_cpu() {
        assert_eq!(preset("performance-2x"), Some(("performance", 2, 4096)));
        assert_eq!(preset("shared-cpu-1x"), Some(("shared", 1, 256)));
        for (_, kind, cpus, mb) in PRESETS {
            let per_cpu = if kind == "shared" { 256 } else { 2048 };
            assert_eq!(mb, cpus * per_cpu);
        }
        assert_eq!(preset("a100-40gb"), None);
    }
}
