//! The global descriptor tables, one per CPU (as Linux from 2.6.22): flat
//! 4 GiB kernel code and data segments (2.4's __KERNEL_CS/__KERNEL_DS),
//! two TSS descriptors, one for the running kernel and one for the
//! double-fault task, and the per-CPU segment (percpu.rs).  The selectors
//! are the same on every CPU, each resolving in that CPU's own table: the
//! IDT's double-fault task gate, shared by all, reaches each CPU's own
//! double-fault task.

use x86::dtables::{lgdt, DescriptorTablePointer};
use x86::segmentation::{
    self, BuildDescriptor, CodeSegmentType, DataSegmentType, Descriptor, DescriptorBuilder,
    GateDescriptorBuilder, SegmentDescriptorBuilder, SegmentSelector,
};
use x86::Ring;

use super::smp_config::NR_CPUS;
use crate::racy_cell::RacyCell;

pub const KERNEL_CS: u16 = 0x08;
pub const KERNEL_DS: u16 = 0x10;
pub const TSS_SEL: u16 = 0x18;
pub const DF_TSS_SEL: u16 = 0x20;
/// The per-CPU data segment, loaded into %gs (defined beside the data it
/// frames, percpu.rs).
pub use super::percpu::PERCPU_SEL;

const ENTRIES: usize = 6;

#[repr(C, align(8))]
struct Gdt([Descriptor; ENTRIES]);

static GDT: [RacyCell<Gdt>; NR_CPUS] =
    [const { RacyCell::new(Gdt([Descriptor::NULL; ENTRIES])) }; NR_CPUS];

fn flat(builder: DescriptorBuilder) -> Descriptor {
    builder
        .present()
        .dpl(Ring::Ring0)
        .limit_granularity_4kb()
        .db()
        .finish()
}

fn tss_descriptor(base: u32, limit: u32) -> Descriptor {
    <DescriptorBuilder as GateDescriptorBuilder<u32>>::tss_descriptor(
        base as u64,
        limit as u64,
        true,
    )
    .present()
    .dpl(Ring::Ring0)
    .finish()
}

/// Build CPU `cpu`'s GDT around its TSSes and per-CPU area, load it and
/// reload every segment register (%gs: the per-CPU segment).  Run by that
/// CPU, with interrupts off.
pub fn init(cpu: usize, tss: (u32, u32), df_tss: (u32, u32), percpu: u32) {
    let code = flat(DescriptorBuilder::code_descriptor(
        0,
        0xFFFFF,
        CodeSegmentType::ExecuteRead,
    ));
    let data = flat(DescriptorBuilder::data_descriptor(
        0,
        0xFFFFF,
        DataSegmentType::ReadWrite,
    ));
    let percpu = DescriptorBuilder::data_descriptor(
        percpu,
        core::mem::size_of::<super::percpu::PerCpu>() as u32 - 1,
        DataSegmentType::ReadWrite,
    )
    .present()
    .dpl(Ring::Ring0)
    .db()
    .finish();
    // SAFETY: only CPU `cpu` builds its table, before it loads it.
    let gdt = unsafe { &mut *GDT[cpu].get() };
    gdt.0 = [
        Descriptor::NULL,
        code,
        data,
        tss_descriptor(tss.0, tss.1),
        tss_descriptor(df_tss.0, df_tss.1),
        percpu,
    ];
    let ptr = DescriptorTablePointer::new_from_slice(&gdt.0);
    let cs = SegmentSelector::from_raw(KERNEL_CS);
    let ds = SegmentSelector::from_raw(KERNEL_DS);
    let gs = SegmentSelector::from_raw(PERCPU_SEL);
    // SAFETY: the table lives in a static and its code/data descriptors are
    // flat, so reloading the segment registers keeps every address valid;
    // %gs gets this CPU's per-CPU segment.
    unsafe {
        lgdt(&ptr);
        segmentation::load_cs(cs);
        segmentation::load_ds(ds);
        segmentation::load_es(ds);
        segmentation::load_fs(ds);
        segmentation::load_gs(gs);
        segmentation::load_ss(ds);
    }
}
