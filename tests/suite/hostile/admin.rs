//! Hostile admin: see the attacks of issue 12.
