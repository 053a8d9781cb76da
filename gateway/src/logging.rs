//! Log output setup.
