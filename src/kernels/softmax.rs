//! softmax launchers.
