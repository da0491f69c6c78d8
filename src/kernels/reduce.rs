//! reduce launchers.
