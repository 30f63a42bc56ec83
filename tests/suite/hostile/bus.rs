//! Hostile bus: see the attacks of issue 12.
