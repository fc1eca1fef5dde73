//! `-q key`, `-q -` (keys on stdin) and `-s`: reading tables of any type.

use std::io::{self, BufRead, BufWriter, Write};

use libmail::tables::{open_with, Dict, LookupError};

use crate::{Failure, Format, Options};

fn open(spec: &str, options: &Options) -> Result<Dict, Failure> {
    if options.verbose {
        libmail::msg::info(format!("open {spec}"));
    }
    open_with(spec, options.open_options()).map_err(|err| Failure::Fatal(err.to_string()))
}

fn query_error(spec: &str, err: LookupError) -> Failure {
    Failure::Temporary(format!("table {spec}: query error: {}", err.reason))
}

/// Output errors: a reader that went away (`postmap -s | head`) ends the
/// run quietly; anything else is fatal.
fn output_error(err: io::Error) -> Failure {
    if err.kind() == io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    Failure::Fatal(format!(
        "write standard output: {}",
        libmail::error::strerror(&err)
    ))
}

/// `-q KEY`: the first table that has KEY prints its value. Tables are
/// opened one at a time, so a later broken table does not matter once an
/// earlier one answered.
pub fn query(
    _format: Format,
    options: &Options,
    specs: &[String],
    key: &str,
) -> Result<(), Failure> {
    if key == "-" {
        return query_stdin(options, specs);
    }
    for spec in specs {
        let mut dict = open(spec, options)?;
        if let Some(value) = dict.lookup(key).map_err(|err| query_error(spec, err))? {
            println!("{value}");
            return Ok(());
        }
    }
    Err(Failure::NotFound)
}

/// `-q -`: each key on stdin, `key<TAB>value` for those found; exit 0 when
/// any was found.
fn query_stdin(options: &Options, specs: &[String]) -> Result<(), Failure> {
    let mut dicts = specs
        .iter()
        .map(|spec| open(spec, options))
        .collect::<Result<Vec<_>, _>>()?;
    let stdin = io::stdin();
    let mut input = stdin.lock();
    let mut out = BufWriter::with_capacity(64 * 1024, io::stdout().lock());
    let mut line = String::new();
    let mut found_any = false;
    loop {
        line.clear();
        match input.read_line(&mut line) {
            Ok(0) => break,
            Ok(_) => {}
            Err(err) => return Err(Failure::Fatal(format!("read standard input: {err}"))),
        }
        let key = line.trim_end_matches(['\n', '\r']);
        if let Some(value) = first_found(&mut dicts, key)? {
            found_any = true;
            writeln!(out, "{key}\t{value}").map_err(output_error)?;
        }
    }
    out.flush().map_err(output_error)?;
    if found_any {
        Ok(())
    } else {
        Err(Failure::NotFound)
    }
}

fn first_found(dicts: &mut [Dict], key: &str) -> Result<Option<String>, Failure> {
    for dict in dicts.iter_mut() {
        let spec = dict.spec().to_string();
        if let Some(value) = dict.lookup(key).map_err(|err| query_error(&spec, err))? {
            return Ok(Some(value));
        }
    }
    Ok(None)
}

/// `-s`: every entry of every table, `key<TAB>value` (postalias:
/// `key:<TAB>value`).
pub fn dump(format: Format, options: &Options, specs: &[String]) -> Result<(), Failure> {
    let separator = match format {
        Format::Map => "\t",
        Format::Alias => ":\t",
    };
    let mut out = BufWriter::new(io::stdout().lock());
    for spec in specs {
        let mut dict = open(spec, options)?;
        let entries = dict.entries().ok_or_else(|| {
            Failure::Fatal(format!("table {spec}: sequence operation is not supported"))
        })?;
        for (key, value) in entries.map_err(|err| query_error(spec, err))? {
            writeln!(out, "{key}{separator}{value}").map_err(output_error)?;
        }
    }
    out.flush().map_err(output_error)
}
