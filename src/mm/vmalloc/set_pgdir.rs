//! `vmalloc_fault=set_pgdir`: how Linux up to 2.4.0-test10-pre1 gave a new
//! kernel PGD entry to every address space, eagerly, from vmalloc itself
//! (mm/vmalloc.c and include/asm-i386/pgalloc.h, commit 3f51b44787 of the
//! history mirror).  `vmalloc_area_pages` calls it for each PGD slot whose
//! entry the walk changed, after mapping that slot's part of the area:
//!
//! ```c
//! pgd_t olddir = *dir;
//! pmd = pmd_alloc_kernel(dir, address);
//! ...
//! if (alloc_area_pmd(pmd, address, end - address, gfp_mask, prot))
//!         return -ENOMEM;
//! if (pgd_val(olddir) != pgd_val(*dir))
//!         set_pgdir(address, *dir);
//! ```
//!
//! and `set_pgdir` writes the entry into every task's directory and every
//! directory in the pgd quicklists:
//!
//! ```c
//! read_lock(&tasklist_lock);
//! for_each_task(p) {
//!         if (!p->mm)
//!                 continue;
//!         *pgd_offset(p->mm,address) = entry;
//! }
//! read_unlock(&tasklist_lock);
//! ...
//! /* To pgd_alloc/pgd_free, one holds master kernel lock and so does our callee, so we can
//!    modify pgd caches of other CPUs as well. -jj */
//! for (i = 0; i < NR_CPUS; i++)
//!         for (pgd = (pgd_t *)cpu_data[i].pgd_quick; pgd; pgd = (pgd_t *)*(unsigned long *)pgd)
//!                 pgd[address >> PGDIR_SHIFT] = entry;
//! ```
//!
//! Here every directory is in `pgd_list` from the moment `mm_alloc`
//! copies the kernel part (under the list's lock, as 5.8's `pgd_alloc`
//! does), so this kernel's `set_pgdir` cannot miss one.  test10-pre1's
//! task list learned of a new directory much later, at `do_fork`'s
//! `SET_LINKS`: the lab's `fork2400` model runs that order, and the race
//! it opens is measured there (race.md, scenario 8).  The quicklist loop
//! has nothing to walk on i386: test10-pre1's `pgd_free` is
//! `free_pgd_slow` (`#define pgd_free(pgd) free_pgd_slow(pgd)`), and
//! nothing calls `free_pgd_fast`, so no directory is ever recycled
//! through `pgd_quick`.  PAE never gets here: the kernel's PMD page is
//! shared, so `olddir` always equals `*dir`.

use core::sync::atomic::{AtomicU32, Ordering};

use super::{sets_pgdir, sync_kernel_pgd_slot};
use crate::mm::pgtable::{geometry, is_pae};

/// Directories `set_pgdir` wrote an entry into.
static SET_PGDIR_SYNCS: AtomicU32 = AtomicU32::new(0);

pub fn set_pgdir_syncs() -> u32 {
    SET_PGDIR_SYNCS.load(Ordering::Relaxed)
}

/// `set_pgdir(address, *dir)`: `init_mm`'s entry for the slot of
/// `address`, into every other directory, with interrupts on and no lock
/// but the list's (test10-pre1's `read_lock(&tasklist_lock)`).
fn set_pgdir(address: u32) {
    sync_kernel_pgd_slot(address, &SET_PGDIR_SYNCS);
}

/// Where a page-by-page walk owes a `set_pgdir`: the slot whose PGD
/// entry it created, synced once the area's last page in that slot is
/// mapped (`alloc_area_pmd` returns before `set_pgdir` runs).  Inert
/// unless the booted version is `set_pgdir` on a two-level kernel, and
/// for thread stacks, whose slots are synced at once (`vmalloc_stack`).
pub(super) struct SlotSync {
    on: bool,
    unsynced: Option<u32>,
}

impl SlotSync {
    pub(super) fn new(stack: bool) -> Self {
        SlotSync {
            on: sets_pgdir() && !is_pae() && !stack,
            unsynced: None,
        }
    }

    /// Before mapping `va`: a slot the walk has left is done.
    pub(super) fn next_page(&mut self, va: u32) {
        let g = geometry();
        if let Some(slot) = self.unsynced.filter(|&s| g.pgd_index(s) != g.pgd_index(va)) {
            set_pgdir(slot);
            self.unsynced = None;
        }
    }

    /// `va` is mapped; `new_table`: its PGD entry is new.
    pub(super) fn mapped(&mut self, va: u32, new_table: bool) {
        if self.on && new_table {
            self.unsynced = Some(va);
        }
    }

    /// The whole area is mapped.  (A walk that fails stops without it, as
    /// test10-pre1's `return -ENOMEM;` does.)
    pub(super) fn done(self) {
        if let Some(slot) = self.unsynced {
            set_pgdir(slot);
        }
    }
}
