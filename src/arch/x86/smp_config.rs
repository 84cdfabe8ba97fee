//! What the firmware's tables say about the CPUs, whichever table said
//! it: the ACPI MADT (acpi.rs) or the MP table (mpparse.rs).

/// Most CPUs the kernel keeps track of (Linux 2.4's NR_CPUS is 32).
pub const NR_CPUS: usize = 8;

/// One CPU the firmware enabled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuEntry {
    /// Its local APIC ID: the address of INIT and SIPI.
    pub apic_id: u8,
    /// The CPU the firmware booted (the one running this code).
    pub boot: bool,
}

/// Which table named the CPUs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Madt,
    MpTable,
}

impl Source {
    pub fn name(self) -> &'static str {
        match self {
            Source::Madt => "ACPI MADT",
            Source::MpTable => "MP table",
        }
    }
}

/// The CPUs one table lists.
#[derive(Clone, Copy, Debug)]
pub struct SmpConfig {
    pub source: Source,
    /// The local APIC's physical address, as the table gives it.
    pub lapic_phys: u32,
    cpus: [CpuEntry; NR_CPUS],
    n: usize,
    /// Entries the firmware marked disabled.
    pub disabled: usize,
    /// Enabled entries beyond NR_CPUS, not kept.
    pub dropped: usize,
}

impl SmpConfig {
    pub fn new(source: Source, lapic_phys: u32) -> Self {
        SmpConfig {
            source,
            lapic_phys,
            cpus: [CpuEntry {
                apic_id: 0,
                boot: false,
            }; NR_CPUS],
            n: 0,
            disabled: 0,
            dropped: 0,
        }
    }

    pub fn push(&mut self, c: CpuEntry) {
        if self.n < NR_CPUS {
            self.cpus[self.n] = c;
            self.n += 1;
        } else {
            self.dropped += 1;
        }
    }

    pub fn cpus(&self) -> &[CpuEntry] {
        &self.cpus[..self.n]
    }
}
