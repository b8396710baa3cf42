//! The live ratatui dashboard (in progress).
