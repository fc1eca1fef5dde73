#![forbid(unsafe_code)]
//! postalias: build, query, list and edit alias databases from aliases(5)
//! files; installed also as `newaliases`, which rebuilds $alias_database.

fn main() -> std::process::ExitCode {
    postmap::main(postmap::Format::Alias)
}
