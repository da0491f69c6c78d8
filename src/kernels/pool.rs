//! pool launchers.
