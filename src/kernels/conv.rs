//! conv launchers.
