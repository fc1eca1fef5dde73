#![forbid(unsafe_code)]
//! qmgr(8), being built.
fn main() {}
