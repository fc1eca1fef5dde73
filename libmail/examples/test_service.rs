//! A daemon for master's tests (a test fixture, not a product feature):
//! greets each client with its pid, then echoes lines until `quit`. With
//! the master.cf argument `fail-at-start` it exits 1 before serving, which
//! is how a broken daemon looks to master.

use std::io::{BufRead, BufReader, Write};

use libmail::server::{Client, Server};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let server = match Server::start("test_service", &args) {
        Ok(server) => server,
        Err(err) => libmail::msg::fatal(err),
    };
    if args.iter().any(|a| a == "fail-at-start") {
        std::process::exit(1);
    }
    server.serve(|_config, client| match client {
        Client::Tcp(stream) => converse(stream),
        Client::Unix(stream) => converse(stream),
        Client::Trigger(bytes) => {
            libmail::msg::info(format!("trigger {}", String::from_utf8_lossy(&bytes)))
        }
    });
}

fn converse<S: std::io::Read + Write>(stream: S) {
    let mut reader = BufReader::new(stream);
    let greeting = format!("hello from {}\n", std::process::id());
    let _ = reader.get_mut().write_all(greeting.as_bytes());
    let mut line = String::new();
    while reader.read_line(&mut line).unwrap_or(0) > 0 {
        if line.trim() == "quit" {
            return;
        }
        let _ = reader.get_mut().write_all(line.as_bytes());
        line.clear();
    }
}
