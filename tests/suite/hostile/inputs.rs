//! Hostile inputs: see the attacks of issue 12.
