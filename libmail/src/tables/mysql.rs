//! `mysql:` tables (mysql_table(5)): each lookup is one SQL query, made
//! from the `query` template with the key SQL-quoted into it, and sent to
//! the first MySQL or MariaDB server in `hosts` that answers.
//!
//! One connection is kept open across lookups. A server that fails is left
//! alone for `retry_interval` seconds while the next one is tried; when no
//! server answers, the lookup is a temporary failure, never "not found".
//! The first connection waits for the first lookup, so that a server that
//! is down when a program starts defers mail instead of stopping it.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mysql::prelude::Queryable;
use mysql::{Conn, DriverError, OptsBuilder, Value};

use super::{Dict, Lookup, LookupError, Table, TableError};
use crate::config::main_cf::{logical_lines, printable, split_name_value};
use crate::msg;

/// How long to wait for a TCP connection. Postfix leaves this to the
/// client library, which may wait minutes for a host that is gone.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long to wait for one read or write on an open connection.
const IO_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_PORT: u16 = 3306;
/// Where `hosts = localhost` connects: like the MySQL client library,
/// Postfix takes localhost to mean the server's default UNIX socket; this
/// is where Debian's server puts it.
const DEFAULT_SOCKET: &str = "/run/mysqld/mysqld.sock";
/// Postfix's default for `retry_interval` and `idle_interval`.
const DEFAULT_INTERVAL: u64 = 60;
/// Settings that ask for TLS. This build cannot speak TLS, and sending
/// the password in the clear instead would be worse than not starting.
const TLS_SETTINGS: &[&str] = &["tls_cert_file", "tls_key_file", "tls_CAfile", "tls_CApath"];
/// `/file` lists in `domain` may name further files, but not forever.
const MAX_LIST_DEPTH: usize = 8;

/// An open `mysql:` table.
pub struct MysqlTable {
    /// `mysql:/path`, as messages name the table.
    table: String,
    query: Vec<Piece>,
    result_format: Vec<Piece>,
    needs: Needs,
    domain: Option<Vec<DomainRule>>,
    expansion_limit: usize,
    require_result_set: bool,
    servers: Servers,
}

impl MysqlTable {
    /// Reads the configuration file `name`. No server is contacted yet.
    pub fn open(name: &str) -> Result<MysqlTable, TableError> {
        let settings = Settings::read(name)?;
        settings.refuse_tls()?;
        if settings.get("option_file").is_some() {
            msg::warning(settings.error("option_file is not supported: ignored"));
        }
        let mut needs = Needs::default();
        let query = parse_template(&settings.query_text()?, true, &mut needs)
            .map_err(|reason| settings.error(reason))?;
        let format = settings.get("result_format").unwrap_or("%s");
        let result_format =
            parse_template(format, false, &mut needs).map_err(|reason| settings.error(reason))?;
        let domain = match settings.get("domain") {
            Some(list) => Some(parse_domains(list, true, 0)?),
            None => None,
        };
        Ok(MysqlTable {
            table: settings.table.clone(),
            query,
            result_format,
            needs,
            domain,
            expansion_limit: settings.number("expansion_limit", 0)? as usize,
            require_result_set: settings.boolean("require_result_set", true)?,
            servers: Servers::new(&settings)?,
        })
    }

    /// Postfix's domain optimization: with a `domain` list, only
    /// `user@domain` keys whose domain is on the list are queried.
    fn domain_allows(&mut self, key: &Address) -> Result<bool, LookupError> {
        let Some(rules) = self.domain.as_mut() else {
            return Ok(true);
        };
        match key.domain {
            Some(domain) if !key.local.is_empty() => match_domain(rules, domain),
            _ => Ok(false),
        }
        .map_err(|reason| LookupError {
            table: self.table.clone(),
            reason,
        })
    }

    /// Joins the values that `result_format` accepts with commas, as
    /// Postfix does; more than `expansion_limit` of them is an error.
    fn format_result(&self, key: &Address, values: &[Option<String>]) -> Lookup {
        let mut out = String::new();
        let mut count = 0;
        for value in values.iter().flatten() {
            if value.is_empty() {
                msg::warning(format!(
                    "table \"{}\": empty lookup result for: \"{}\" -- ignored",
                    self.table,
                    printable(key.whole)
                ));
                continue;
            }
            let value = Address::new(value);
            if !self.needs.value_fits(&value) {
                continue;
            }
            count += 1;
            if self.expansion_limit > 0 && count > self.expansion_limit {
                return Err(self.too_many(key));
            }
            if !out.is_empty() {
                out.push(',');
            }
            expand(&self.result_format, key, &value, None, &mut out);
        }
        Ok((!out.is_empty()).then_some(out))
    }

    fn too_many(&self, key: &Address) -> LookupError {
        let reason = format!(
            "Expansion limit exceeded for key: '{}'",
            printable(key.whole)
        );
        msg::warning(format!("{}: {reason}", self.table));
        LookupError {
            table: self.table.clone(),
            reason,
        }
    }
}

impl Table for MysqlTable {
    fn lookup(&mut self, key: &str) -> Lookup {
        if key.is_empty() {
            msg::warning(format!(
                "table \"{}\": empty query string -- ignored",
                self.table
            ));
            return Ok(None);
        }
        let address = Address::new(key);
        if !self.domain_allows(&address)? || !self.needs.key_fits(&address) {
            return Ok(None);
        }
        let query = &self.query;
        let sql = |no_backslash_escapes: bool| {
            let mut text = String::new();
            expand(
                query,
                &address,
                &address,
                Some(no_backslash_escapes),
                &mut text,
            );
            text
        };
        let values = self
            .servers
            .query(&self.table, sql, self.require_result_set)?;
        self.format_result(&address, &values)
    }
}

// --- configuration file --------------------------------------------------

/// The configuration file's `name = value` settings; a later one wins and
/// an empty value counts as unset.
struct Settings {
    table: String,
    values: HashMap<String, String>,
}

impl Settings {
    fn read(path: &str) -> Result<Settings, TableError> {
        let text = super::read_text(path)?;
        let mut values = HashMap::new();
        for (line, logical) in logical_lines(&text) {
            let Some((name, value)) = split_name_value(&logical) else {
                // Only the first word: the line may be a password.
                let name = logical.split_whitespace().next().unwrap_or("");
                return Err(TableError::Syntax {
                    path: path.to_string(),
                    line,
                    reason: format!("missing '=' after attribute name: \"{name}\""),
                });
            };
            values.insert(name.to_string(), value.to_string());
        }
        Ok(Settings {
            table: format!("mysql:{path}"),
            values,
        })
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.values
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    fn error(&self, reason: impl std::fmt::Display) -> TableError {
        TableError::Other(format!("{}: {reason}", self.table))
    }

    fn number(&self, name: &str, default: u64) -> Result<u64, TableError> {
        match self.get(name) {
            None => Ok(default),
            Some(text) => text
                .parse()
                .map_err(|_| self.error(format!("bad numerical configuration: {name} = {text}"))),
        }
    }

    /// A time in seconds; Postfix's s/m/h/d/w suffixes are accepted too.
    fn seconds(&self, name: &str, default: u64) -> Result<Duration, TableError> {
        let Some(text) = self.get(name) else {
            return Ok(Duration::from_secs(default));
        };
        crate::config::value::parse_time(name, text, 's')
            .map(Duration::from_secs)
            .map_err(|_| self.error(format!("bad time configuration: {name} = {text}")))
    }

    fn boolean(&self, name: &str, default: bool) -> Result<bool, TableError> {
        match self.get(name).map(str::to_ascii_lowercase).as_deref() {
            None => Ok(default),
            Some("yes" | "true") => Ok(true),
            Some("no" | "false") => Ok(false),
            Some(text) => Err(self.error(format!("bad boolean configuration: {name} = {text}"))),
        }
    }

    fn refuse_tls(&self) -> Result<(), TableError> {
        let wanted = TLS_SETTINGS.iter().find(|name| self.get(name).is_some());
        match wanted {
            Some(name) => Err(self.error(format!(
                "{name} is set, but this build has no TLS support for mysql: tables"
            ))),
            None if self.boolean("tls_verify_cert", false)? => Err(self.error(
                "tls_verify_cert = yes, but this build has no TLS support for mysql: tables",
            )),
            None => Ok(()),
        }
    }

    /// `query`, or the one that the legacy `select_field`, `table`,
    /// `where_field` and `additional_conditions` settings describe.
    fn query_text(&self) -> Result<String, TableError> {
        if let Some(query) = self.get("query") {
            return Ok(query.to_string());
        }
        let required = |name: &str| {
            self.get(name)
                .ok_or_else(|| self.error(format!("'{name}' parameter not defined")))
        };
        Ok(format!(
            "SELECT {} FROM {} WHERE {}='%s' {}",
            required("select_field")?,
            required("table")?,
            required("where_field")?,
            self.get("additional_conditions").unwrap_or("")
        ))
    }
}

// --- query and result templates ------------------------------------------

/// Which part of an address a `%` directive inserts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    /// `%s`: all of it.
    Whole,
    /// `%u`: the local part, or all of it when there is no `@`.
    Local,
    /// `%d`: the domain.
    Domain,
    /// `%1`..`%9`: a domain label counted from the right.
    Label(usize),
}

/// A parsed template: literal text, or a part of the lookup key or of
/// the result value.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Key(Part),
    Value(Part),
}

/// What keys and result values must have for the templates to expand.
/// A key that lacks a part is not queried at all (Postfix's suppressed
/// query); a value that lacks one is skipped.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Needs {
    key_local: bool,
    key_domain: bool,
    key_labels: usize,
    value_local: bool,
    value_domain: bool,
}

impl Needs {
    fn key_fits(&self, key: &Address) -> bool {
        let domain = key.domain.filter(|d| !d.is_empty());
        if (self.key_domain && domain.is_none()) || (self.key_local && key.has_empty_local()) {
            return false;
        }
        self.key_labels == 0 || domain.is_some_and(|d| has_labels(d, self.key_labels))
    }

    fn value_fits(&self, value: &Address) -> bool {
        let no_domain = value.domain.filter(|d| !d.is_empty()).is_none();
        !(self.value_domain && no_domain || self.value_local && value.has_empty_local())
    }

    fn note(&mut self, piece: &Piece) {
        match *piece {
            Piece::Key(Part::Local) => self.key_local = true,
            Piece::Key(Part::Domain) => self.key_domain = true,
            Piece::Key(Part::Label(n)) => {
                self.key_domain = true;
                self.key_labels = self.key_labels.max(n);
            }
            Piece::Value(Part::Local) => self.value_local = true,
            Piece::Value(Part::Domain) => self.value_domain = true,
            _ => {}
        }
    }
}

/// Whether the `count` right-most labels of `domain` are all there and
/// not empty (`a..com`, `example.com.` lack some).
fn has_labels(domain: &str, count: usize) -> bool {
    let labels: Vec<&str> = domain.split('.').collect();
    labels.len() >= count && labels[labels.len() - count..].iter().all(|l| !l.is_empty())
}

/// Parses a `query` (`is_query`) or `result_format` template. In a query
/// every directive names the key; in a result format the lower-case ones
/// name the result value and `%S %U %D %1-9` the key.
fn parse_template(text: &str, is_query: bool, needs: &mut Needs) -> Result<Vec<Piece>, String> {
    let invalid = || {
        let what = if is_query { "query" } else { "result" };
        format!("invalid {what} template: {text}")
    };
    let mut pieces = Vec::new();
    let mut literal = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            literal.push(c);
            continue;
        }
        match chars.next() {
            Some('%') => literal.push('%'),
            Some(spec) => {
                let piece = directive(spec, is_query).ok_or_else(invalid)?;
                needs.note(&piece);
                if !literal.is_empty() {
                    pieces.push(Piece::Text(std::mem::take(&mut literal)));
                }
                pieces.push(piece);
            }
            None => return Err(invalid()),
        }
    }
    if !literal.is_empty() {
        pieces.push(Piece::Text(literal));
    }
    Ok(pieces)
}

fn directive(spec: char, is_query: bool) -> Option<Piece> {
    let part = match spec.to_ascii_lowercase() {
        's' => Part::Whole,
        'u' => Part::Local,
        'd' => Part::Domain,
        '1'..='9' => Part::Label(spec as usize - '0' as usize),
        _ => return None,
    };
    if !is_query && spec.is_ascii_lowercase() {
        Some(Piece::Value(part))
    } else {
        Some(Piece::Key(part))
    }
}

/// A key or result value split at its last `@`, as Postfix splits them.
struct Address<'a> {
    whole: &'a str,
    local: &'a str,
    domain: Option<&'a str>,
}

impl<'a> Address<'a> {
    fn new(whole: &'a str) -> Address<'a> {
        match whole.rsplit_once('@') {
            Some((local, domain)) => Address {
                whole,
                local,
                domain: Some(domain),
            },
            None => Address {
                whole,
                local: whole,
                domain: None,
            },
        }
    }

    /// `@domain`: there is an `@` and nothing before it.
    fn has_empty_local(&self) -> bool {
        self.domain.is_some() && self.local.is_empty()
    }

    /// The text a directive inserts; `Needs` has checked that it exists.
    fn part(&self, part: Part) -> &'a str {
        let domain = self.domain.unwrap_or("");
        match part {
            Part::Whole => self.whole,
            Part::Local => self.local,
            Part::Domain => domain,
            Part::Label(n) => domain.rsplit('.').nth(n - 1).unwrap_or(""),
        }
    }
}

/// Expands a template after `out`. Query text passes `quoting`: whether
/// the server runs with NO_BACKSLASH_ESCAPES; result text is not quoted.
fn expand(
    pieces: &[Piece],
    key: &Address,
    value: &Address,
    quoting: Option<bool>,
    out: &mut String,
) {
    for piece in pieces {
        let text = match piece {
            Piece::Text(text) => {
                out.push_str(text);
                continue;
            }
            Piece::Key(part) => key.part(*part),
            Piece::Value(part) => value.part(*part),
        };
        match quoting {
            Some(no_backslash_escapes) => quote(text, no_backslash_escapes, out),
            None => out.push_str(text),
        }
    }
}

/// Quotes text for use between quotes in a query, as
/// mysql_real_escape_string() does: with backslash escapes, or, when the
/// server takes backslashes literally (sql_mode NO_BACKSLASH_ESCAPES), by
/// doubling the single quote. The connection's character set is utf8mb4,
/// in which no character's bytes can hide a quote or backslash.
fn quote(text: &str, no_backslash_escapes: bool, out: &mut String) {
    for c in text.chars() {
        if no_backslash_escapes {
            if c == '\'' {
                out.push('\'');
            }
            out.push(c);
            continue;
        }
        match c {
            '\0' => out.push_str("\\0"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '"' => out.push_str("\\\""),
            '\x1a' => out.push_str("\\Z"),
            _ => out.push(c),
        }
    }
}

// --- the domain list -----------------------------------------------------

/// One entry of the `domain` list: a name or a table, and what a match
/// means (`!name` excludes).
enum DomainRule {
    Name { name: String, allow: bool },
    Table { dict: Dict, allow: bool },
}

/// Parses a Postfix string list: names, `type:name` tables, `/file`s of
/// more entries, any of them negated with `!`.
fn parse_domains(list: &str, allow: bool, depth: usize) -> Result<Vec<DomainRule>, TableError> {
    let mut rules = Vec::new();
    for word in list_words(list) {
        let pattern = word.trim_start_matches('!');
        let allow = allow ^ ((word.len() - pattern.len()) % 2 == 1);
        if pattern.is_empty() {
            return Err(TableError::Other(format!(
                "domain: no pattern after '!': {list}"
            )));
        } else if pattern.starts_with('/') {
            rules.extend(parse_domain_file(pattern, allow, depth)?);
        } else if !pattern.starts_with('[') && pattern.contains(':') {
            let dict = super::open(pattern)?;
            rules.push(DomainRule::Table { dict, allow });
        } else {
            let name = pattern.to_ascii_lowercase();
            rules.push(DomainRule::Name { name, allow });
        }
    }
    Ok(rules)
}

/// Splits a list at white space and commas, except inside `{...}`, so
/// that `inline:{a=b, c=d}` stays one word.
fn list_words(list: &str) -> Vec<&str> {
    let mut words = Vec::new();
    let mut depth = 0usize;
    let mut start = None;
    for (at, c) in list.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            ' ' | ',' | '\t' | '\r' | '\n' if depth == 0 => {
                if let Some(from) = start.take() {
                    words.push(&list[from..at]);
                }
                continue;
            }
            _ => {}
        }
        start.get_or_insert(at);
    }
    words.extend(start.map(|from| &list[from..]));
    words
}

fn parse_domain_file(path: &str, allow: bool, depth: usize) -> Result<Vec<DomainRule>, TableError> {
    if depth >= MAX_LIST_DEPTH {
        return Err(TableError::Other(format!(
            "{path}: domain files nested too deep"
        )));
    }
    let text = super::read_text(path)?;
    let mut rules = Vec::new();
    for line in text.lines().filter(|l| !l.trim_start().starts_with('#')) {
        rules.extend(parse_domains(line, allow, depth + 1)?);
    }
    Ok(rules)
}

/// The first entry that matches decides; none matching excludes.
fn match_domain(rules: &mut [DomainRule], domain: &str) -> Result<bool, String> {
    for rule in rules.iter_mut() {
        match rule {
            DomainRule::Name { name, allow } => {
                if name.eq_ignore_ascii_case(domain) {
                    return Ok(*allow);
                }
            }
            DomainRule::Table { dict, allow } => match dict.lookup(domain) {
                Ok(Some(_)) => return Ok(*allow),
                Ok(None) => {}
                Err(err) => return Err(format!("domain list lookup: {err}")),
            },
        }
    }
    Ok(false)
}

// --- servers ---------------------------------------------------------------

/// Where a server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Endpoint {
    Unix(String),
    /// A host name or address (IPv6 in brackets) and a port.
    Inet(String, u16),
}

/// One entry of `hosts`.
struct Host {
    /// As written in `hosts`, for messages.
    label: String,
    endpoint: Endpoint,
    /// Skipped until then after a failure.
    retry_at: Option<Instant>,
}

/// Parses `hosts`: `unix:/path`, `[inet:]host[:port]`; localhost when
/// empty.
fn parse_hosts(list: &str) -> Result<Vec<Host>, String> {
    let words: Vec<&str> = list
        .split([' ', ',', '\t', '\r', '\n'])
        .filter(|w| !w.is_empty())
        .collect();
    let words = if words.is_empty() {
        vec!["localhost"]
    } else {
        words
    };
    words
        .into_iter()
        .map(|word| {
            Ok(Host {
                label: word.to_string(),
                endpoint: parse_endpoint(word)?,
                retry_at: None,
            })
        })
        .collect()
}

fn parse_endpoint(word: &str) -> Result<Endpoint, String> {
    if let Some(path) = word.strip_prefix("unix:") {
        return Ok(Endpoint::Unix(path.to_string()));
    }
    let address = word.strip_prefix("inet:").unwrap_or(word);
    let (host, port) = split_host_port(address)?;
    if host.eq_ignore_ascii_case("localhost") {
        return Ok(Endpoint::Unix(DEFAULT_SOCKET.to_string()));
    }
    if host.is_empty() {
        return Err(format!("hosts: missing host name in \"{word}\""));
    }
    let port = match port {
        Some(port) => {
            parse_port(port).ok_or_else(|| format!("hosts: unknown service: {port}/tcp"))?
        }
        None => DEFAULT_PORT,
    };
    Ok(Endpoint::Inet(host.to_string(), port))
}

/// `host:port` split at the last colon, or `[v6 address]:port`.
fn split_host_port(address: &str) -> Result<(&str, Option<&str>), String> {
    if address.starts_with('[') {
        let Some(end) = address.find(']') else {
            return Err(format!("hosts: missing ']' in \"{address}\""));
        };
        let rest = &address[end + 1..];
        let port = match rest.strip_prefix(':') {
            Some(port) => Some(port),
            None if rest.is_empty() => None,
            None => return Err(format!("hosts: bad address \"{address}\"")),
        };
        return Ok((&address[..=end], port));
    }
    Ok(match address.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (address, None),
    })
}

fn parse_port(text: &str) -> Option<u16> {
    match text {
        "mysql" => Some(DEFAULT_PORT),
        _ => text.parse().ok().filter(|&port| port != 0),
    }
}

/// How to log in once connected.
struct Login {
    user: Option<String>,
    password: Option<String>,
    dbname: String,
}

impl Login {
    fn connect(&self, endpoint: &Endpoint) -> Result<Conn, mysql::Error> {
        let builder = OptsBuilder::new()
            .user(self.user.as_deref())
            .pass(self.password.as_deref())
            .db_name(Some(&self.dbname))
            // The crate would otherwise move a loopback TCP connection
            // onto the server's socket: `hosts` says which one to use.
            .prefer_socket(false)
            .tcp_connect_timeout(Some(CONNECT_TIMEOUT))
            .read_timeout(Some(IO_TIMEOUT))
            .write_timeout(Some(IO_TIMEOUT));
        let builder = match endpoint {
            Endpoint::Unix(path) => builder.socket(Some(path)),
            Endpoint::Inet(host, port) => builder.ip_or_hostname(Some(host)).tcp_port(*port),
        };
        Conn::new(builder)
    }

    /// A client error as text: the server's own message where there is
    /// one. The password is never part of one, but is masked regardless,
    /// since these lines go to logs that many can read.
    fn describe(&self, err: &mysql::Error) -> String {
        let text = match err {
            mysql::Error::MySqlError(err) => err.message.clone(),
            mysql::Error::IoError(err) => crate::error::strerror(err),
            // The address is in the message already.
            mysql::Error::DriverError(DriverError::CouldNotConnect(Some((_, text, _)))) => {
                text.split(" (os error ").next().unwrap_or(text).to_string()
            }
            mysql::Error::DriverError(err) => err.to_string(),
            other => other.to_string(),
        };
        match self.password.as_deref() {
            Some(secret) if secret.len() >= 4 => text.replace(secret, "********"),
            _ => text,
        }
    }
}

/// An open connection.
struct Active {
    host: usize,
    conn: Conn,
    last_used: Instant,
    /// Opened for an earlier lookup: the server may have closed it since.
    reused: bool,
}

/// The servers of one table, with the connection in use.
struct Servers {
    hosts: Vec<Host>,
    login: Login,
    retry_interval: Duration,
    idle_interval: Duration,
    active: Option<Active>,
}

/// The state of one lookup's search for a server.
struct Attempt {
    tried: Vec<bool>,
    /// A host whose kept connection broke: connect to it again first.
    again: Option<usize>,
    last_error: Option<String>,
}

impl Servers {
    fn new(settings: &Settings) -> Result<Servers, TableError> {
        let hosts = parse_hosts(settings.get("hosts").unwrap_or(""))
            .map_err(|reason| settings.error(reason))?;
        let dbname = settings
            .get("dbname")
            .ok_or_else(|| settings.error("'dbname' parameter not defined"))?;
        Ok(Servers {
            hosts,
            login: Login {
                user: settings.get("user").map(String::from),
                password: settings.get("password").map(String::from),
                dbname: dbname.to_string(),
            },
            retry_interval: settings.seconds("retry_interval", DEFAULT_INTERVAL)?,
            idle_interval: settings.seconds("idle_interval", DEFAULT_INTERVAL)?,
            active: None,
        })
    }

    /// Runs the query that `sql` makes (given the server's escaping mode)
    /// on the first server that answers; returns the first result set's
    /// values, row by row, NULL as None.
    fn query(
        &mut self,
        table: &str,
        sql: impl Fn(bool) -> String,
        require_result_set: bool,
    ) -> Result<Vec<Option<String>>, LookupError> {
        let mut attempt = Attempt {
            tried: vec![false; self.hosts.len()],
            again: None,
            last_error: None,
        };
        while let Some(mut active) = self.connection(table, &mut attempt) {
            let text = sql(active.conn.no_backslash_escape());
            let reason = match fetch(&mut active.conn, &text) {
                Ok(Some(values)) => return Ok(self.keep(active, values)),
                Ok(None) if !require_result_set => return Ok(self.keep(active, Vec::new())),
                Ok(None) => "query returned no result set (require_result_set = yes)".to_string(),
                // Servers close idle connections and restart: a kept
                // connection that fails gets one fresh try first.
                Err(_) if active.reused => {
                    attempt.again = Some(active.host);
                    continue;
                }
                Err(err) => format!("query failed: {}", self.login.describe(&err)),
            };
            self.fail(table, active.host, reason, &mut attempt);
        }
        Err(LookupError {
            table: table.to_string(),
            reason: self.unavailable(attempt.last_error),
        })
    }

    /// Keeps the connection for the next lookup.
    fn keep(&mut self, mut active: Active, values: Vec<Option<String>>) -> Vec<Option<String>> {
        active.last_used = Instant::now();
        active.reused = true;
        self.active = Some(active);
        values
    }

    /// The kept connection while it is fresh, else a new one to the next
    /// host not skipped: UNIX sockets first, each kind in random order.
    fn connection(&mut self, table: &str, attempt: &mut Attempt) -> Option<Active> {
        if let Some(active) = self.active.take() {
            if active.last_used.elapsed() < self.idle_interval {
                return Some(active);
            }
        }
        let order = match attempt.again.take() {
            Some(host) => vec![host],
            None => self.candidates(&attempt.tried),
        };
        for host in order {
            attempt.tried[host] = true;
            match self.login.connect(&self.hosts[host].endpoint) {
                Ok(conn) => {
                    self.hosts[host].retry_at = None;
                    let last_used = Instant::now();
                    let reused = false;
                    return Some(Active {
                        host,
                        conn,
                        last_used,
                        reused,
                    });
                }
                Err(err) => {
                    let reason = format!(
                        "connect to mysql server {}: {}",
                        self.hosts[host].label,
                        self.login.describe(&err)
                    );
                    self.fail(table, host, reason, attempt);
                }
            }
        }
        None
    }

    fn candidates(&self, tried: &[bool]) -> Vec<usize> {
        let now = Instant::now();
        let usable =
            |&i: &usize| !tried[i] && !matches!(self.hosts[i].retry_at, Some(t) if t > now);
        let is_unix = |&i: &usize| matches!(self.hosts[i].endpoint, Endpoint::Unix(_));
        let (mut unix, mut inet): (Vec<usize>, Vec<usize>) =
            (0..self.hosts.len()).filter(usable).partition(is_unix);
        shuffle(&mut unix);
        shuffle(&mut inet);
        unix.extend(inet);
        unix
    }

    /// Logs a failure and skips the host for `retry_interval`.
    fn fail(&mut self, table: &str, host: usize, reason: String, attempt: &mut Attempt) {
        msg::warning(format!("{table}: {reason}"));
        self.hosts[host].retry_at = Some(Instant::now() + self.retry_interval);
        attempt.last_error = Some(reason);
    }

    fn unavailable(&self, last_error: Option<String>) -> String {
        match last_error {
            Some(reason) => format!("no mysql server available: {reason}"),
            None => format!(
                "no mysql server available: every host failed less than {}s ago",
                self.retry_interval.as_secs()
            ),
        }
    }
}

/// Runs `sql` and returns the values of its first result set, row by
/// row; None when the statement has no result set (an UPDATE, say).
fn fetch(conn: &mut Conn, sql: &str) -> Result<Option<Vec<Option<String>>>, mysql::Error> {
    let mut result = conn.query_iter(sql)?;
    let Some(mut set) = result.iter() else {
        return Ok(None);
    };
    let has_columns = !set.columns().as_ref().is_empty();
    let mut values = Vec::new();
    for row in set.by_ref() {
        let mut row = row?;
        values.extend((0..row.len()).map(|i| row.take::<Value, _>(i).and_then(text_of)));
    }
    Ok(has_columns.then_some(values))
}

/// A column's value as text: the text protocol sends bytes or NULL.
fn text_of(value: Value) -> Option<String> {
    match value {
        Value::NULL => None,
        Value::Bytes(bytes) => Some(String::from_utf8_lossy(&bytes).into_owned()),
        other => Some(other.as_sql(true).trim_matches('\'').to_string()),
    }
}

/// Shuffles in place, to spread lookups over the servers. A seed from
/// the clock and the process id is enough for that.
fn shuffle<T>(items: &mut [T]) {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos() as u64);
    let mut state = nanos ^ (u64::from(std::process::id()) << 32) | 1;
    for i in (1..items.len()).rev() {
        // xorshift64
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        items.swap(i, (state % (i as u64 + 1)) as usize);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A file under the temporary directory, removed when dropped.
    struct TempFile(std::path::PathBuf);

    impl TempFile {
        fn new(text: &str) -> TempFile {
            static COUNT: AtomicUsize = AtomicUsize::new(0);
            let n = COUNT.fetch_add(1, Ordering::Relaxed);
            let name = format!("mysql-test-{}-{n}.cf", std::process::id());
            let path = std::env::temp_dir().join(name);
            std::fs::write(&path, text).unwrap();
            TempFile(path)
        }

        fn path(&self) -> String {
            self.0.to_string_lossy().into_owned()
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    /// A port on 127.0.0.1 where nothing listens.
    fn closed_port() -> u16 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    }

    fn table(extra: &str) -> MysqlTable {
        let port = closed_port();
        let text = format!(
            "hosts = 127.0.0.1:{port}\nuser = postfix\npassword = hunter22\ndbname = mail\n{extra}\n"
        );
        let text = if extra.contains("query") {
            text
        } else {
            text + "query = SELECT v FROM t WHERE k='%s'\n"
        };
        MysqlTable::open(&TempFile::new(&text).path()).unwrap()
    }

    fn open_error(text: &str) -> String {
        MysqlTable::open(&TempFile::new(text).path())
            .err()
            .unwrap()
            .to_string()
    }

    /// The query text for `key`, or None when the query is suppressed.
    fn query_for(query: &str, result_format: &str, key: &str) -> Option<String> {
        let mut needs = Needs::default();
        let query = parse_template(query, true, &mut needs).unwrap();
        parse_template(result_format, false, &mut needs).unwrap();
        let key = Address::new(key);
        let mut out = String::new();
        needs
            .key_fits(&key)
            .then(|| expand(&query, &key, &key, Some(false), &mut out))?;
        Some(out)
    }

    fn quoted(text: &str, no_backslash_escapes: bool) -> String {
        let mut out = String::new();
        quote(text, no_backslash_escapes, &mut out);
        out
    }

    #[test]
    fn quotes_mysql_metacharacters() {
        let key = "a'b\"c\\d\0e\nf\rg\x1ah%_";
        assert_eq!(quoted(key, false), r#"a\'b\"c\\d\0e\nf\rg\Zh%_"#);
        assert_eq!(quoted("x' OR '1'='1 --\\", true), "x'' OR ''1''=''1 --\\");
    }

    #[test]
    fn injection_stays_inside_the_string() {
        let sql = query_for("SELECT v FROM t WHERE k='%s'", "%s", "x' OR '1'='1").unwrap();
        assert_eq!(sql, r"SELECT v FROM t WHERE k='x\' OR \'1\'=\'1'");
        let sql = query_for("k='%s'", "%s", "a\\' OR 1=1 -- ").unwrap();
        assert_eq!(sql, r"k='a\\\' OR 1=1 -- '");
    }

    #[test]
    fn query_expansions() {
        let all = "%s|%u|%d|%1|%2|%3|%%|%S|%U|%D";
        assert_eq!(
            query_for(all, "%s", "joe@mail.example.com").unwrap(),
            "joe@mail.example.com|joe|mail.example.com|com|example|mail|%|joe@mail.example.com|joe|mail.example.com"
        );
        assert_eq!(query_for("%u", "%s", "joe").unwrap(), "joe");
        assert_eq!(
            query_for("%s", "%s", "@example.com").unwrap(),
            "@example.com"
        );
        assert_eq!(query_for("%u", "%s", "a@b@example.com").unwrap(), "a@b");
    }

    #[test]
    fn queries_are_suppressed_when_the_key_lacks_a_part() {
        assert_eq!(query_for("%d", "%s", "joe"), None);
        assert_eq!(query_for("%d", "%s", "joe@"), None);
        assert_eq!(query_for("%u", "%s", "@example.com"), None);
        assert_eq!(query_for("%3", "%s", "joe@example.com"), None);
        assert_eq!(query_for("%2", "%s", "joe@example.com."), None);
        assert_eq!(query_for("%1", "%s", "joe"), None);
        // The result format's key parts count too.
        assert_eq!(query_for("%s", "%D", "joe"), None);
        assert_eq!(query_for("%s", "%d", "joe").unwrap(), "joe");
    }

    #[test]
    fn bad_templates_are_refused() {
        for bad in ["%x", "abc%", "%0"] {
            assert!(
                parse_template(bad, true, &mut Needs::default()).is_err(),
                "{bad}"
            );
        }
        let err = open_error("dbname = d\nquery = SELECT '%q'\n");
        assert!(err.contains("invalid query template: SELECT '%q'"), "{err}");
        let err = open_error("dbname = d\nquery = %s\nresult_format = %z\n");
        assert!(err.contains("invalid result template"), "{err}");
    }

    #[test]
    fn result_values_are_formatted_and_joined_with_commas() {
        let key = Address::new("joe@example.com");
        let values = |v: &[Option<&str>]| v.iter().map(|s| s.map(String::from)).collect::<Vec<_>>();
        let plain = table("");
        let got = plain.format_result(&key, &values(&[Some("a"), None, Some(""), Some("b")]));
        assert_eq!(got.unwrap().as_deref(), Some("a,b"));
        assert_eq!(plain.format_result(&key, &values(&[None])).unwrap(), None);
        let smtp = table("result_format = smtp:[%s]");
        let got = smtp.format_result(&key, &values(&[Some("h1"), Some("h2")]));
        assert_eq!(got.unwrap().as_deref(), Some("smtp:[h1],smtp:[h2]"));
        let parts = table("result_format = %u at %d for %U@%D (%1) 100%%");
        let got = parts.format_result(&key, &values(&[Some("ann@x.org"), Some("unqualified")]));
        assert_eq!(
            got.unwrap().as_deref(),
            Some("ann at x.org for joe@example.com (com) 100%")
        );
    }

    #[test]
    fn expansion_limit_is_a_temporary_failure() {
        let key = Address::new("joe");
        let two = [Some("a".to_string()), Some("b".to_string())];
        let limited = table("expansion_limit = 1");
        let err = limited.format_result(&key, &two).unwrap_err();
        assert!(
            err.reason
                .contains("Expansion limit exceeded for key: 'joe'"),
            "{err}"
        );
        assert_eq!(
            limited.format_result(&key, &two[..1]).unwrap().as_deref(),
            Some("a")
        );
        assert_eq!(
            table("expansion_limit = 2")
                .format_result(&key, &two)
                .unwrap()
                .as_deref(),
            Some("a,b")
        );
    }

    #[test]
    fn domain_list_limits_the_keys_queried() {
        let file = TempFile::new("# domains\nexample.org\n!bad.example.net other.net\n");
        let mut t = table(&format!(
            "domain = Example.com, !no.example.com {} inline:{{t.example=yes, u.example=yes}}",
            file.path()
        ));
        for (key, allowed) in [
            ("joe@example.com", true),
            ("joe@EXAMPLE.COM", true),
            ("joe@example.org", true),
            ("joe@other.net", true),
            ("joe@t.example", true),
            ("joe@u.example", true),
            ("joe@no.example.com", false),
            ("joe@bad.example.net", false),
            ("joe@example.net", false),
            ("joe", false),
            ("@example.com", false),
            ("example.com", false),
        ] {
            assert_eq!(
                t.domain_allows(&Address::new(key)).unwrap(),
                allowed,
                "{key}"
            );
        }
        // Keys outside the list are not found without asking a server
        // (there is none at the configured address).
        assert_eq!(t.lookup("joe@elsewhere.com").unwrap(), None);
        let mut negated = table("domain = !example.com, example.com");
        assert!(!negated
            .domain_allows(&Address::new("joe@example.com"))
            .unwrap());
    }

    #[test]
    fn list_words_keep_braces_together() {
        let words = list_words(" a,b\t{x, y} inline:{c=d, e=f},, g ");
        assert_eq!(words, vec!["a", "b", "{x, y}", "inline:{c=d, e=f}", "g"]);
        assert!(list_words(" , ").is_empty());
    }

    #[test]
    fn host_list() {
        let endpoints = |list: &str| -> Vec<Endpoint> {
            parse_hosts(list)
                .unwrap()
                .into_iter()
                .map(|h| h.endpoint)
                .collect()
        };
        let socket = Endpoint::Unix(DEFAULT_SOCKET.to_string());
        assert_eq!(endpoints(""), vec![socket.clone()]);
        assert_eq!(
            endpoints("localhost inet:LOCALHOST:3307"),
            vec![socket.clone(), socket]
        );
        assert_eq!(
            endpoints("db1, db2:3307,\tinet:db3:mysql unix:/run/my.sock inet:[::1]:3308 [::1]"),
            vec![
                Endpoint::Inet("db1".into(), 3306),
                Endpoint::Inet("db2".into(), 3307),
                Endpoint::Inet("db3".into(), 3306),
                Endpoint::Unix("/run/my.sock".into()),
                Endpoint::Inet("[::1]".into(), 3308),
                Endpoint::Inet("[::1]".into(), 3306),
            ]
        );
        for bad in ["db:smtp", "db:0", "db:", "inet::3306", "[::1", "[::1]x"] {
            assert!(parse_hosts(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn open_errors() {
        let missing = std::env::temp_dir().join("mysql-test-no-such-file.cf");
        let err = MysqlTable::open(&missing.to_string_lossy()).err().unwrap();
        assert!(matches!(err, TableError::Open { .. }), "{err}");
        assert!(open_error("query = %s\n").contains("'dbname' parameter not defined"));
        let err = open_error("dbname = d\nselect_field = v\nwhere_field = k\n");
        assert!(err.contains("'table' parameter not defined"), "{err}");
        assert!(
            open_error("dbname = d\nquery = %s\nexpansion_limit = many\n")
                .contains("bad numerical configuration: expansion_limit = many")
        );
        assert!(open_error("dbname = d\nquery = %s\ntls_CAfile = /etc/ca.pem\n").contains("TLS"));
        assert!(open_error("dbname = d\nquery = %s\nhosts = db:nosuch\n").contains("nosuch"));
        let err = open_error("dbname = d\npassword hunter22\n");
        assert!(err.contains("line 2") && !err.contains("hunter22"), "{err}");
    }

    #[test]
    fn legacy_query_settings() {
        let t = table("select_field = v\ntable = t\nwhere_field = k\nadditional_conditions = AND ok = 1\nquery =");
        let key = Address::new("it's");
        let mut sql = String::new();
        expand(&t.query, &key, &key, Some(false), &mut sql);
        assert_eq!(sql, r"SELECT v FROM t WHERE k='it\'s' AND ok = 1");
    }

    #[test]
    fn no_server_is_a_temporary_failure_without_the_password() {
        let mut t = table("");
        let err = t.lookup("joe@example.com").unwrap_err();
        assert!(err.table.starts_with("mysql:/"), "{err}");
        assert!(
            err.reason.contains("connect to mysql server 127.0.0.1:"),
            "{err}"
        );
        assert!(!err.to_string().contains("hunter22"));
        // The host is now skipped for retry_interval: a failure at once.
        let err = t.lookup("joe@example.com").unwrap_err();
        assert!(err.reason.contains("failed less than 60s ago"), "{err}");
    }

    #[test]
    fn error_text_masks_the_password() {
        let t = table("");
        let err = mysql::Error::IoError(std::io::Error::other("login hunter22 refused"));
        assert_eq!(t.servers.login.describe(&err), "login ******** refused");
    }

    #[test]
    fn shuffle_keeps_every_item() {
        let mut items: Vec<usize> = (0..10).collect();
        shuffle(&mut items);
        items.sort_unstable();
        assert_eq!(items, (0..10).collect::<Vec<_>>());
    }
}
