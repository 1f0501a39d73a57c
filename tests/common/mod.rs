//! Shared helpers of the op conformance tests: one CPU client per test binary, module building,
//! running on the CPU plugin, seeded inputs, references and comparisons.
#![allow(dead_code)]
pub mod check;
pub mod inputs;
pub mod reference;
