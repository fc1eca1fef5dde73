#![forbid(unsafe_code)]
//! postmap: build, query, list and edit lookup tables from postmap source
//! files (`key whitespace value`).

fn main() -> std::process::ExitCode {
    postmap::main(postmap::Format::Map)
}
