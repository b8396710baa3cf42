//! cmdqv-core: the pure library behind the `cmdqv` tool.
//!
//! No terminal, no global state, no aya. Side effects (files, ioctls) sit behind small traits at
//! the edges so everything here is testable with plain unit and property tests.
//!
//! Rooms:
//! - [`regs`]: the CMDQV and SMMU register maps as data.
//! - [`command`]: the SMMUv3 command codec (every opcode typed; decoding never fails).
//! - [`queue`]: SMMUv3 queue arithmetic (log2size, index, wrap, empty/full).
//! - [`mem`]: guest memory behind a trait with checked accesses.
//! - [`engine`]: the one command-queue consumer (fetch, decode, execute, error protocol) shared by
//!   VCMDQs and the SMMU's own command queue.
//! - [`model`]: the CMDQV device (one state, many views).
//! - [`smmu`]: the SMMU main-page device, beside the CMDQV and over the same engine.
//! - [`qtest`]: QEMU's qtest text protocol driving the model.
//! - [`host`]: host backends (iommufd, simulated host), passthrough state machine, sampler.
//! - [`event`]: the one event type every source produces.
//! - [`kvm_exit`]: the names of KVM's exit reasons (x86 VMX and SVM, arm64) for `kvm:kvm_exit`.
//! - [`probe_abi`]: the one wire codec: eBPF ABI records ⇄ typed events (ring buffer and trace
//!   file alike; packed fields are unpacked here, once).
//! - [`analysis`]: the summary contract, text rendering, and the collector (correlation and
//!   per-queue statistics with bounded memory).
//! - [`record`]: the trace file format (writer, crash-tolerant reader of versions 2 and 1).
//! - [`export`]: Chrome trace-event JSON export (ui.perfetto.dev, chrome://tracing).
//! - [`perfetto`]: native Perfetto protobuf export (`.pftrace`).
//! - [`report`]: `cmdqv report`, a recording as one self-contained HTML file of plots.
//! - [`diff`]: two runs compared queue by queue, each change judged by a named test.
//! - [`sim`]: the simulated VMM, synthetic guest driver and scenarios.
//! - [`qemu`]: tracing a real QEMU (trace-log parsing, symbol discovery, probe choice).
//! - [`btf`]: a checked reader of the kernel's BTF (function parameters, struct member offsets)
//!   for the host probes.

pub mod analysis;
pub mod btf;
pub mod command;
pub mod diff;
pub mod engine;
pub mod event;
pub mod export;
pub mod host;
pub mod kvm_exit;
pub mod mem;
pub mod model;
pub mod perfetto;
pub mod probe_abi;
pub mod qemu;
pub mod qtest;
pub mod queue;
pub mod record;
pub mod regs;
pub mod report;
pub mod sim;
pub mod smmu;
