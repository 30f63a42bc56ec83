//! Hostile manifests: see the attacks of issue 12.
