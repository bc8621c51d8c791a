//! What every node gets: the data volume (`[[mounts]]` or `[mounts]`) with
//! its snapshot policy, and the machine size (`[[vm]]` or `[vm]`).

use super::*;

impl Reader<'_> {
    /// `[[mounts]]` or a single `[mounts]`; one default mount when absent.
    pub(super) fn read_mounts(&mut self, root: &Tbl) -> Vec<MountConfig> {
        let entries = match self.field(root, "mounts") {
            Some(f) => self.tables(&f, true),
            None => Vec::new(),
        };
        let mut out: Vec<MountConfig> = entries.iter().map(|t| self.read_mount(t)).collect();
        if out.is_empty() {
            out.push(default_mount());
        }
        out
    }

    pub(super) fn read_mount(&mut self, t: &Tbl) -> MountConfig {
        self.record(t);
        self.check_keys(t, &keys::MOUNT);
        let mut m = default_mount();
        if let Some(f) = self.field(t, "source") {
            if let Some(s) = self.string(&f) {
                match names::check_volume_name(&s) {
                    Ok(()) => m.source = s,
                    Err(why) => self.invalid(&f, format!("invalid volume name {s:?}: {why}")),
                }
            }
        }
        let destination = self.field(t, "destination");
        if destination.is_none() {
            // flyctl refuses a mount without a destination.
            self.error_help(
                t.span.clone(),
                format!("missing key `destination` in `{}`", t.shown),
                "write the path the volume is mounted at inside the machine, e.g. destination = \"/data\"",
            );
        }
        if let Some(f) = destination {
            if let Some(d) = self.string(&f) {
                let ok = d.starts_with('/')
                    && d.len() > 1
                    && !d.chars().any(|c| c.is_whitespace() || c.is_control());
                if ok {
                    m.destination = d;
                } else {
                    self.invalid(
                        &f,
                        format!(
                            "`{}` must be an absolute path such as \"/data\", found {d:?}",
                            f.path
                        ),
                    );
                }
            }
        }
        if let Some(f) = self.field(t, "initial_size") {
            let size = match f.item.as_value() {
                Some(Value::Integer(n)) => u64::try_from(*n.value()).ok().filter(|n| *n > 0),
                Some(Value::String(s)) => units::parse_size_gb(s.value()),
                _ => None,
            };
            match size {
                Some(gb) => {
                    m.initial_size_gb = gb;
                    m.initial_size_declared = true;
                }
                None => self.invalid_help(
                    &f,
                    format!("`{}` must be a size such as \"10gb\" or \"500mb\"", f.path),
                    "a bare integer is a number of GB",
                ),
            }
        }
        if let Some(f) = self.field(t, "snapshot_retention") {
            if let Some(n) = self.integer(&f) {
                match u32::try_from(n).ok().filter(|n| (1..=60).contains(n)) {
                    Some(days) => m.snapshot_retention = days,
                    None => self.invalid(
                        &f,
                        format!("snapshot_retention must be between 1 and 60 days, found {n}"),
                    ),
                }
            }
        }
        if let Some(b) = self.get_bool(t, "scheduled_snapshots") {
            m.scheduled_snapshots = b;
        }
        if let Some(f) = self.field(t, "snapshot_time") {
            if let Some(s) = self.string(&f) {
                if units::is_hh_mm(&s) {
                    m.snapshot_time = s;
                } else {
                    self.invalid_help(
                        &f,
                        format!(
                            "`{}` must be a UTC time of day \"HH:MM\", found {s:?}",
                            f.path
                        ),
                        "e.g. snapshot_time = \"03:30\"",
                    );
                }
            }
        }
        m
    }

    /// `[[vm]]` or `[vm]`: every entry is checked, the first one sizes the nodes.
    pub(super) fn read_vm(&mut self, root: &Tbl) -> VmConfig {
        let entries = match self.field(root, "vm") {
            Some(f) => self.tables(&f, true),
            None => Vec::new(),
        };
        let mut first = None;
        for (i, t) in entries.iter().enumerate() {
            let vm = self.read_vm_entry(t);
            if i == 0 {
                for key in ["size", "memory", "memory_mb", "cpus", "cpu_kind"] {
                    if let Some(span) = self.spans.get(&t.child(key)) {
                        self.spans.insert(format!("vm.{key}"), span);
                    }
                }
                first = Some(vm);
            } else {
                self.note(
                    t.span.clone(),
                    "flyplan sizes every node with the first [[vm]]; this one is ignored",
                );
            }
        }
        first.unwrap_or_else(default_vm)
    }

    pub(super) fn read_vm_entry(&mut self, t: &Tbl) -> VmConfig {
        self.record(t);
        self.check_keys(t, &keys::VM);
        let mut vm = default_vm();
        if let Some(f) = self.field(t, "size") {
            if let Some(s) = self.string(&f) {
                let ok = !s.is_empty()
                    && s.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
                if ok {
                    if let Some((kind, cpus, memory_mb)) = crate::config::presets::preset(&s) {
                        vm.cpu_kind = kind.to_string();
                        vm.cpus = cpus;
                        vm.memory_mb = memory_mb;
                    }
                    vm.size = s;
                } else {
                    self.invalid_help(
                        &f,
                        format!("invalid VM size {s:?}"),
                        "use a Fly size preset such as \"shared-cpu-1x\" or \"performance-2x\"",
                    );
                }
            }
        }
        let memory = self.field(t, "memory");
        let memory_mb = self.field(t, "memory_mb");
        if let (Some(_), Some(second)) = (&memory, &memory_mb) {
            self.invalid_help(
                second,
                "memory is set twice, by `memory` and `memory_mb`",
                "keep one of them",
            );
        } else if let Some(f) = memory.or(memory_mb) {
            let mb = match f.item.as_value() {
                Some(Value::Integer(n)) => u32::try_from(*n.value()).ok().filter(|n| *n > 0),
                Some(Value::String(s)) if f.path.ends_with(".memory") => {
                    units::parse_memory_mb(s.value())
                }
                _ => None,
            };
            match mb {
                Some(mb) => vm.memory_mb = mb,
                None => self.invalid_help(
                    &f,
                    format!(
                        "`{}` must be an amount of memory such as \"512mb\" or \"2gb\"",
                        f.path
                    ),
                    "a bare integer is a number of MB",
                ),
            }
        }
        if let Some(f) = self.field(t, "cpus") {
            if let Some(n) = self.integer_in(&f, 1, 256) {
                vm.cpus = u32::try_from(n).unwrap_or(1);
            }
        }
        if let Some(kind) = self.get_choice(t, "cpu_kind", &["shared", "performance"]) {
            vm.cpu_kind = kind;
        }
        self.check_memory_per_cpu(t, &vm);
        vm
    }

    /// Fly refuses a guest whose memory per CPU is outside its limits for
    /// the CPU kind, as flyctl does before it asks; so does flyplan, at the
    /// key that set the memory (or the CPUs, or the size).
    fn check_memory_per_cpu(&mut self, t: &Tbl, vm: &VmConfig) {
        let Some((min, max)) = crate::config::presets::memory_per_cpu(&vm.cpu_kind) else {
            return;
        };
        let (lo, hi) = (min * vm.cpus, max * vm.cpus);
        if (lo..=hi).contains(&vm.memory_mb) {
            return;
        }
        let at = ["memory", "memory_mb", "cpus", "size", "cpu_kind"]
            .iter()
            .find_map(|k| self.field(t, k));
        let message = format!(
            "{} MB of memory for {} {} CPU(s) is outside Fly's limits: {lo} to {hi} MB \
             ({min} to {max} MB per {} CPU)",
            vm.memory_mb, vm.cpus, vm.cpu_kind, vm.cpu_kind
        );
        let help = "Fly refuses such a machine (fly-go machine_types.go); change memory or cpus";
        if let Some(f) = at {
            self.invalid_help(&f, message, help);
        }
    }
}

fn default_mount() -> MountConfig {
    MountConfig {
        source: "pg_data".to_string(),
        destination: "/data".to_string(),
        initial_size_gb: 1,
        initial_size_declared: false,
        snapshot_retention: 5,
        scheduled_snapshots: true,
        snapshot_time: "00:00".to_string(),
    }
}

fn default_vm() -> VmConfig {
    VmConfig {
        size: "shared-cpu-1x".to_string(),
        memory_mb: 256,
        cpus: 1,
        cpu_kind: "shared".to_string(),
    }
}
