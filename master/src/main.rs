#![forbid(unsafe_code)]
//! master: the resident process that runs every other daemon. It opens the
//! listeners that master.cf names, starts children on demand up to each
//! service's process limit, restarts children that exit, throttles a
//! service whose children fail at start-up, runs wakeup timers, re-reads
//! its configuration on SIGHUP and stops on SIGTERM (abort: SIGQUIT).

mod listen;
mod master;
mod service;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use libmail::config::Config;
use libmail::msg;

/// What the command line asked for.
#[derive(Debug, Default, Clone)]
pub struct Options {
    pub config_dir: Option<PathBuf>,
    /// `-d`/`-s`: stay in the foreground.
    pub foreground: bool,
    /// `-t`: only tell whether a master is running.
    pub test: bool,
    /// `-e SECONDS`: exit after that long.
    pub exit_after: Option<Duration>,
    pub verbose: bool,
}

const USAGE: &str = "usage: master [-c config_dir] [-d] [-e exit_time] [-s] [-t] [-v]";

fn parse_options(args: &[String]) -> Result<Options, String> {
    let mut options = Options::default();
    let mut words = args.iter();
    while let Some(word) = words.next() {
        match word.as_str() {
            "-c" => options.config_dir = Some(words.next().ok_or(USAGE)?.into()),
            "-d" | "-s" => options.foreground = true,
            "-t" => options.test = true,
            "-v" => options.verbose = true,
            "-e" => {
                let seconds: u64 = words.next().ok_or(USAGE)?.parse().map_err(|_| USAGE)?;
                options.exit_after = Some(Duration::from_secs(seconds));
            }
            "-D" => {}
            _ => return Err(USAGE.to_string()),
        }
    }
    Ok(options)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let options = match parse_options(&args) {
        Ok(options) => options,
        Err(text) => msg::fatal(text),
    };
    let config = match Config::load(options.config_dir.as_deref()) {
        Ok(config) => config,
        Err(err) => msg::fatal(err),
    };
    let syslog_name = config
        .string("syslog_name")
        .unwrap_or_else(|e| msg::fatal(e));
    msg::set_program(&format!("{syslog_name}/master"));
    let queue_directory = config
        .string("queue_directory")
        .unwrap_or_else(|e| msg::fatal(e));
    let pid_path = libmail::pid_file::path(&queue_directory);
    if options.test {
        return match libmail::pid_file::running(&pid_path) {
            Ok(Some(_)) => ExitCode::FAILURE,
            Ok(None) => ExitCode::SUCCESS,
            Err(reason) => msg::fatal(reason),
        };
    }
    if !options.foreground {
        return master::daemonize(&args, &pid_path);
    }
    master::run(options, config, &pid_path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn options() {
        let o = parse_options(&words(&["-c", "/etc/x", "-d", "-e", "5"])).unwrap();
        assert_eq!(o.config_dir, Some(PathBuf::from("/etc/x")));
        assert!(o.foreground && !o.test);
        assert_eq!(o.exit_after, Some(Duration::from_secs(5)));
        assert!(parse_options(&words(&["-x"])).is_err());
        assert!(parse_options(&words(&["-e"])).is_err());
    }
}
