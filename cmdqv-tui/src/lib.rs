//! The `cmdqv` application as a library, so integration tests and benches can drive its pieces:
//! the live terminal UI ([`tui`]), the eBPF loader and the command-line front end.

pub mod tui;
