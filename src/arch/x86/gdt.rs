//! The global descriptor table: flat 4 GiB kernel code and data segments
//! (like Linux 2.4's __KERNEL_CS/__KERNEL_DS) and two TSS descriptors, one
//! for the running kernel and one for the double-fault task.

use x86::dtables::{lgdt, DescriptorTablePointer};
use x86::segmentation::{
    self, BuildDescriptor, CodeSegmentType, DataSegmentType, Descriptor, DescriptorBuilder,
    GateDescriptorBuilder, SegmentDescriptorBuilder, SegmentSelector,
};
use x86::Ring;

use crate::racy_cell::RacyCell;

pub const KERNEL_CS: u16 = 0x08;
pub const KERNEL_DS: u16 = 0x10;
pub const TSS_SEL: u16 = 0x18;
pub const DF_TSS_SEL: u16 = 0x20;

const ENTRIES: usize = 5;

#[repr(C, align(8))]
struct Gdt([Descriptor; ENTRIES]);

static GDT: RacyCell<Gdt> = RacyCell::new(Gdt([Descriptor::NULL; ENTRIES]));

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

/// Build the GDT, load it and reload every segment register.
pub fn init(tss: (u32, u32), df_tss: (u32, u32)) {
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
    // SAFETY: called once at boot with interrupts off; nothing else uses the
    // GDT until it is loaded below.
    let gdt = unsafe { &mut *GDT.get() };
    gdt.0 = [
        Descriptor::NULL,
        code,
        data,
        tss_descriptor(tss.0, tss.1),
        tss_descriptor(df_tss.0, df_tss.1),
    ];
    load();
}

/// Load the GDT and reload every segment register: the boot CPU from
/// `init`, a secondary CPU in `start_secondary` (one table for all CPUs,
/// as Linux 2.4's `gdt_table`).
pub fn load() {
    // SAFETY: written once by `init`, before any CPU loads it.
    let gdt = unsafe { &*GDT.get() };
    let ptr = DescriptorTablePointer::new_from_slice(&gdt.0);
    let cs = SegmentSelector::from_raw(KERNEL_CS);
    let ds = SegmentSelector::from_raw(KERNEL_DS);
    // SAFETY: the table lives in a static and its code/data descriptors are
    // flat, so reloading the segment registers keeps every address valid.
    unsafe {
        lgdt(&ptr);
        segmentation::load_cs(cs);
        segmentation::load_ds(ds);
        segmentation::load_es(ds);
        segmentation::load_fs(ds);
        segmentation::load_gs(ds);
        segmentation::load_ss(ds);
    }
}
