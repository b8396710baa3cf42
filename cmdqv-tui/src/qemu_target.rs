//! `cmdqv qemu`: attach to a running or launched QEMU (in progress).
