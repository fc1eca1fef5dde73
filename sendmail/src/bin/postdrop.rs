#![forbid(unsafe_code)]
//! postdrop(1): the setgid helper that puts a locally submitted message
//! into the maildrop queue. It reads cleanup requests from sendmail on
//! standard input (`-r`), reports on standard output, and then wakes
//! pickup(8).

use std::io;

use libmail::config::Config;
use libmail::queue::Queue;
use sendmail::postdrop::receive;

fn usage() -> ! {
    libmail::msg::fatal("usage: postdrop [-c config_dir] [-r] [-v]")
}

fn main() {
    libmail::msg::set_program("postdrop");
    let mut args = std::env::args().skip(1);
    let mut config_dir: Option<String> = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-c" => config_dir = Some(args.next().unwrap_or_else(|| usage())),
            "-r" => {}
            "-v" => libmail::log::set_verbose(libmail::log::verbosity() + 1),
            _ => usage(),
        }
    }
    let uid = nix::unistd::getuid().as_raw();
    let dir = config_dir.or_else(|| std::env::var("MAIL_CONFIG").ok());
    if let Some(dir) = &dir {
        check_config_dir(dir, uid);
    }
    let config = Config::load(dir.as_deref().map(std::path::Path::new))
        .unwrap_or_else(|err| libmail::msg::fatal(err));
    let _ = libmail::log::init(&config, "postdrop");
    if let Err(text) = sendmail::check_submit_acl(&config, uid) {
        libmail::msg::fatal(text);
    }
    let queue = Queue::from_config(&config).unwrap_or_else(|err| libmail::msg::fatal(err));
    let limit = config.size("message_size_limit").unwrap_or(0);
    let mut stdout = io::stdout();
    match receive(&queue, &mut io::stdin().lock(), &mut stdout, limit, uid) {
        Ok(_) => {
            let status = sendmail::protocol::DropStatus::Queued.to_message();
            let _ = libmail::ipc::send(&mut stdout, &status);
            wake_pickup(&config);
        }
        Err(err) => {
            let _ = libmail::ipc::send(&mut stdout, &err.status().to_message());
            libmail::msg::fatal(format_args!("uid={uid}: {err}"));
        }
    }
}

/// A setgid program must not let a user pick any configuration: only
/// root, or a directory the default main.cf lists in
/// alternate_config_directories (as Postfix's postdrop).
fn check_config_dir(dir: &str, uid: u32) {
    if uid == 0 {
        return;
    }
    let default = Config::load(Some(std::path::Path::new(
        libmail::config::DEFAULT_CONFIG_DIRECTORY,
    )));
    let trusted = default
        .ok()
        .and_then(|c| c.list("alternate_config_directories").ok())
        .is_some_and(|dirs| dirs.iter().any(|d| d == dir));
    if !trusted && dir != libmail::config::DEFAULT_CONFIG_DIRECTORY {
        libmail::msg::fatal(format_args!(
            "{dir}: untrusted configuration directory; specify it with alternate_config_directories in {}/main.cf",
            libmail::config::DEFAULT_CONFIG_DIRECTORY
        ));
    }
}

/// Tells pickup there is mail; it also looks every 60 seconds, so a
/// failure here loses nothing.
fn wake_pickup(config: &Config) {
    let Ok(name) = config.string("pickup_service_name") else {
        return;
    };
    if let Ok(path) = libmail::trigger::public_service(config, &name) {
        let _ = libmail::trigger::send_to_path(&path, libmail::trigger::WAKEUP);
    }
}
