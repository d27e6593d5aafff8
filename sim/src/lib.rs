//! Deterministic simulation of a detcd cluster. Built with `--cfg madsim`.
