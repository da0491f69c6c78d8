//! loss launchers.
