//! Loading [`crate::Config`] from flags, environment and file.
