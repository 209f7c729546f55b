//! Compile-fail tests of #[workflow].
