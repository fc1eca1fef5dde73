//! Prints the postconf(5) manual page generated from the parameter
//! registry; `make` installs its output as man5/postconf.5.

fn main() {
    print!(
        "{}",
        libmail::config::manpage::postconf5(env!("CARGO_PKG_VERSION"))
    );
}
