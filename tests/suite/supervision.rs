//! SPEC §12 supervision: suspension, half-open trials, crash restarts, for every runtime.
