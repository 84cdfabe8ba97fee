"""vmfault's host tools, one concept per module.  The scripts in tests/host/
(runner.py, bench.py, soak.py, experiments.py, quantum.py, mutants.py,
core_floors.py, gdb_check.py) are thin entry points into them.

  paths        the repository and the build's output directories
  deps         what a fresh machine lacks (apt-get, rustup)
  build        cargo and the kernels it produced
  elf          the kernel's constants, read from its ELF (src/host_abi.rs)
  iso          grub.cfg and grub-mkrescue
  qemu         the QEMU command line, one boot, its verdict
  bochs        the same boot under Bochs 2.7 (EMU=bochs)
  ktap         the KTAP reader
  judge        results, KTAP and expect-* verdicts, the host checks
  matrix       the boots of `make test` and their start order
  gdb          `make gdb` and the batch gdb checks
  floors       what the crates' floors promise, read from the kernels' ELF
  core_floors  the module floors inside the core crate, which the compiler cannot see
  q1           the seed's question 1: its table, grids and control boot
  bench, soak, experiments, quantum, mutants
               `make bench`, `make soak`, `make experiments`, `make quantum`, `make mutants`
  cli          `runner.py test|run|iso|gdb|cargo`

Imports run one way, down this list (cli and the make targets on top, elf
and paths at the bottom): no module imports one that imports it back.
"""
