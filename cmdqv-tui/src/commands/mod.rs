//! One file per `cmdqv` subcommand: its flags (a clap `Args` struct) and its `run`. The live
//! targets (`sim`, `qemu`, `host`, `record`) start their target and hand it to the one live runner
//! (the runner module); `replay` shows its summary through the same output and UI link.

pub mod bench_hook;
pub mod bench_probes;
pub mod bench_serve;
pub mod completions;
pub mod config;
pub mod diff;
pub mod doctor;
pub mod export;
pub mod host;
pub mod model;
pub mod qemu;
pub mod record;
pub mod replay;
pub mod report;
pub mod sample;
pub mod serve;
pub mod sim;
pub mod sim_vmm;
