//! Linux's init/: `start_kernel`, the boot order of the whole kernel.
pub mod main;
