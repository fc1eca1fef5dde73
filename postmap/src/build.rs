//! Building indexed tables from source files (or stdin with `-i`), and
//! `-d` deletions. Every change rewrites the table into a temporary file
//! under a lock and renames it into place (libmail::tables::hash), so
//! readers never see half a table and concurrent runs lose nothing.

use std::io::{self, BufRead, Read};
use std::os::unix::fs::MetadataExt;

use libmail::msg::{info, warning};
use libmail::tables::source::{
    alias_lines, looks_like_alias, map_lines, AliasLine, Duplicates, MapLine, Records,
};
use libmail::tables::{build_indexed, split_spec, BuildOptions, IndexedKind, TYPES};

use crate::{Failure, Format, Options};

/// The indexed type and source file name of `spec`, or why it cannot be
/// built.
fn indexed(spec: &str) -> Result<(IndexedKind, &str), Failure> {
    let (kind, name) = split_spec(spec).map_err(|err| err.to_string())?;
    match IndexedKind::from_type(kind) {
        Some(indexed) => Ok((indexed, name)),
        None if TYPES.contains(&kind) => Err(Failure::Fatal(format!(
            "unsupported dictionary type: {kind} does not support bulk-mode creation."
        ))),
        None => Err(Failure::Fatal(format!(
            "unsupported dictionary type: {kind}"
        ))),
    }
}

pub fn build_all(format: Format, options: &Options, specs: &[String]) -> Result<(), Failure> {
    for spec in specs {
        build_one(format, options, spec)?;
    }
    Ok(())
}

fn build_one(format: Format, options: &Options, spec: &str) -> Result<(), Failure> {
    let (kind, name) = indexed(spec)?;
    let db_path = kind.db_path(name);
    let (text, label, build_options) = if options.incremental {
        (
            read_stdin()?,
            "stdin".to_string(),
            existing_db_options(options, &db_path),
        )
    } else {
        let (text, meta) = read_source(name)?;
        (text, name.to_string(), source_options(options, &meta))
    };
    if options.verbose {
        info(format!("building {spec} from {label}"));
    }
    build_indexed(kind, name, build_options, |old| {
        let mut records = Records::new(old);
        // One pass, so that warnings come out in source line order.
        parse(format, options, &text, &label, &mut |key, value| {
            add(&mut records, key, value, options.duplicates, &db_path)
        });
        if format == Format::Alias && !options.incremental {
            // Sendmail's "database is complete" marker, which programs
            // that read alias databases directly look for.
            records.add("@".into(), "@".into(), Duplicates::KeepFirst);
        }
        Ok(records)
    })
    .map_err(|err| Failure::Fatal(err.to_string()))
}

fn add(records: &mut Records, key: String, value: String, policy: Duplicates, db_path: &str) {
    let quoted = format!("{db_path}: duplicate entry: \"{key}\"");
    if !records.add(key, value, policy) && policy == Duplicates::WarnKeepFirst {
        warning(quoted);
    }
}

fn read_source(name: &str) -> Result<(String, std::fs::Metadata), Failure> {
    let open_error =
        |err: io::Error| Failure::Fatal(format!("open {name}: {}", libmail::error::strerror(&err)));
    let bytes = std::fs::read(name).map_err(open_error)?;
    let meta = std::fs::metadata(name).map_err(open_error)?;
    Ok((libmail::tables::source::text_of(bytes), meta))
}

fn read_stdin() -> Result<String, Failure> {
    let mut bytes = Vec::new();
    io::stdin()
        .read_to_end(&mut bytes)
        .map_err(|err| format!("read standard input: {}", libmail::error::strerror(&err)))?;
    Ok(libmail::tables::source::text_of(bytes))
}

fn running_as_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A new table takes the source file's mode (unless `-p`) and, when root
/// builds it, the source file's owner (unless `-o`): Postfix builds as the
/// source file's owner for the same effect.
fn source_options(options: &Options, source: &std::fs::Metadata) -> BuildOptions {
    BuildOptions {
        null_terminate: options.null_terminate,
        mode: (!options.default_mode).then_some(source.mode() & 0o7777),
        owner: (running_as_root() && !options.keep_root).then_some((source.uid(), source.gid())),
        keep_old: false,
    }
}

/// A changed table keeps its own mode and owner.
fn existing_db_options(options: &Options, db_path: &str) -> BuildOptions {
    let meta = std::fs::metadata(db_path).ok();
    BuildOptions {
        null_terminate: options.null_terminate,
        mode: meta.as_ref().map(|m| m.mode() & 0o7777),
        owner: meta
            .filter(|_| running_as_root())
            .map(|m| (m.uid(), m.gid())),
        keep_old: true,
    }
}

fn fold(options: &Options, key: String) -> String {
    match options.open_options().fold_key(&key) {
        std::borrow::Cow::Borrowed(_) => key,
        std::borrow::Cow::Owned(folded) => folded,
    }
}

/// Where parsed entries go.
type Sink<'a> = &'a mut dyn FnMut(String, String);

/// Gives each entry of a source text to `sink`, warning about lines that
/// are skipped.
fn parse(format: Format, options: &Options, text: &str, label: &str, sink: Sink) {
    match format {
        Format::Map => parse_map(options, text, label, sink),
        Format::Alias => parse_aliases(options, text, label, sink),
    }
}

fn parse_map(options: &Options, text: &str, label: &str, sink: Sink) {
    for line in map_lines(text) {
        match line {
            MapLine::MissingValue { line } => warning(format!(
                "{label}, line {line}: expected format: key whitespace value"
            )),
            MapLine::Entry { line, key, value } => {
                if looks_like_alias(&key) {
                    warning(format!(
                        "{label}, line {line}: record is in \"key: value\" format; is this an alias file?"
                    ));
                }
                sink(fold(options, key), value);
            }
        }
    }
}

fn parse_aliases(options: &Options, text: &str, label: &str, sink: Sink) {
    for line in alias_lines(text) {
        match line {
            AliasLine::NeedPair { line } => {
                warning(format!("{label}, line {line}: need name:value pair"))
            }
            AliasLine::Entry { name, value, .. } => sink(fold(options, name), value),
        }
    }
}

/// `-d KEY` or `-d -`: removes the keys from every table; succeeds when
/// any key was removed from any table.
pub fn delete(
    _format: Format,
    options: &Options,
    specs: &[String],
    key: &str,
) -> Result<(), Failure> {
    let keys: Vec<String> = if key == "-" {
        io::stdin()
            .lock()
            .lines()
            .collect::<Result<_, _>>()
            .map_err(|err| format!("read standard input: {err}"))?
    } else {
        vec![key.to_string()]
    };
    let keys: Vec<String> = keys.into_iter().map(|k| fold(options, k)).collect();
    let mut removed_any = false;
    for spec in specs {
        let (kind, name) = indexed(spec)?;
        let db_path = kind.db_path(name);
        if let Err(err) = std::fs::metadata(&db_path) {
            let reason = libmail::error::strerror(&err);
            return Err(Failure::Fatal(format!("open database {db_path}: {reason}")));
        }
        build_indexed(kind, name, existing_db_options(options, &db_path), |old| {
            let mut records = Records::new(old);
            for key in &keys {
                removed_any |= records.remove(key);
            }
            Ok(records)
        })
        .map_err(|err| Failure::Fatal(err.to_string()))?;
    }
    if removed_any {
        Ok(())
    } else {
        Err(Failure::NotFound)
    }
}
