//! Hostile rhai: see the attacks of issue 12.
