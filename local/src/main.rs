#![forbid(unsafe_code)]
//! local(8), being built.
fn main() {}
