//! Hostile lua: see the attacks of issue 12.
