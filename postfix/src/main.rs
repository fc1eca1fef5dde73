#![forbid(unsafe_code)]
//! postfix: the Postfix control command (postfix(1)). Starts, stops and
//! reloads the master daemon, checks the installation and repairs its
//! permissions, as Postfix's postfix command and postfix-script do, with
//! the same verbs, messages (`postfix/postfix-script: ...`, on standard
//! error and in the log) and exit codes. `-c DIR` selects another
//! instance for every verb.

mod check;
mod commands;
mod instance;
mod manifest;
mod master;
mod services;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Arg, ArgAction, Command};
use libmail::config::Config;
use libmail::log::{self, line};
use libmail::msg;

use instance::Instance;

const USAGE: &str = "usage: postfix [-c config_dir] [-Dv] command";

/// What the command line asked for.
#[derive(Debug, PartialEq, Eq)]
pub struct Options {
    pub config_dir: Option<PathBuf>,
    pub verbose: u8,
    pub debug: bool,
    /// The verb and its arguments.
    pub words: Vec<String>,
}

fn command() -> Command {
    Command::new("postfix")
        .disable_help_flag(true)
        .disable_version_flag(true)
        .arg(Arg::new("config_dir").short('c').num_args(1))
        .arg(Arg::new("debug").short('D').action(ArgAction::SetTrue))
        .arg(Arg::new("verbose").short('v').action(ArgAction::Count))
        // Options end at the verb, as with Postfix's getopt.
        .arg(
            Arg::new("words")
                .num_args(0..)
                .action(ArgAction::Append)
                .trailing_var_arg(true),
        )
}

/// Parses the arguments after the program name.
fn parse(args: Vec<String>) -> Result<Options, String> {
    let argv = std::iter::once("postfix".to_string()).chain(args);
    let matches = command()
        .try_get_matches_from(argv)
        .map_err(|_| USAGE.to_string())?;
    let config_dir = matches.get_one::<String>("config_dir").map(PathBuf::from);
    if config_dir.as_ref().is_some_and(|dir| !dir.is_absolute()) {
        return Err("-c requires absolute pathname".to_string());
    }
    let words: Vec<String> = matches
        .get_many::<String>("words")
        .map(|w| w.cloned().collect())
        .unwrap_or_default();
    if words.is_empty() {
        return Err(USAGE.to_string());
    }
    Ok(Options {
        config_dir,
        verbose: matches.get_count("verbose"),
        debug: matches.get_flag("debug"),
        words,
    })
}

/// Reads main.cf and starts logging as `$syslog_name/postfix-script`,
/// the name under which Postfix's own script reports.
fn setup(options: &Options) -> Config {
    let config = Config::load(options.config_dir.as_deref()).unwrap_or_else(|e| msg::fatal(e));
    let syslog_name = config
        .string("syslog_name")
        .unwrap_or_else(|e| msg::fatal(e));
    let tag = line::ident(&syslog_name, "postfix-script");
    msg::set_program(&tag);
    log::set_verbose(u32::from(options.verbose));
    if let Err(err) = log::init(&config, "postfix-script") {
        log::warning(format_args!("{err}: logging to standard error only"));
    }
    for text in &config.warnings {
        log::warning(text);
    }
    config
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let options = parse(args).unwrap_or_else(|reason| msg::fatal(reason));
    let config = setup(&options);
    let instance = Instance::new(config, &options).unwrap_or_else(|reason| log::fatal(reason));
    instance.refuse_strangers();
    commands::run(instance, &options.words)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn options_end_at_the_verb() {
        let options = parse(args(&["-c", "/etc/postfix-out", "-Dv", "start", "-v"])).unwrap();
        assert_eq!(
            options,
            Options {
                config_dir: Some(PathBuf::from("/etc/postfix-out")),
                verbose: 1,
                debug: true,
                words: args(&["start", "-v"]),
            }
        );
    }

    #[test]
    fn refusals() {
        assert_eq!(parse(vec![]).unwrap_err(), USAGE);
        assert_eq!(parse(args(&["-x", "start"])).unwrap_err(), USAGE);
        assert_eq!(
            parse(args(&["-c", "etc", "start"])).unwrap_err(),
            "-c requires absolute pathname"
        );
    }
}
