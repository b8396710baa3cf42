#![no_std]
// This file exists so cmdqv-tui can name this crate as a build-dependency (cache invalidation).
