//! The shape of one entry in the parameter registry: what a main.cf
//! parameter is called, what kind of value it takes, and its Postfix 3.7
//! default.

/// The kind of value a parameter takes; typed accessors and `postconf`
/// validation use it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamType {
    /// Free text, including paths and single table names.
    Str,
    /// `yes` or `no`.
    Bool,
    /// A whole number.
    Int,
    /// A time; a bare number is in the given default unit (s, m, h, d, w).
    Time(char),
    /// A byte count.
    Size,
    /// A list separated by commas and/or white space (tables, domains,
    /// restrictions, networks).
    List,
}

/// Where a parameter's default comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultValue {
    /// A fixed text, `$name` references and conditional expressions included.
    Fixed(&'static str),
    /// Computed from the system at run time (host name, interface addresses,
    /// process id, configuration directory).
    Computed,
}

/// One registry entry.
#[derive(Debug, Clone, Copy)]
pub struct Param {
    pub name: &'static str,
    pub kind: ParamType,
    pub default: DefaultValue,
    pub description: &'static str,
}

impl Param {
    /// A parameter with a fixed default.
    pub const fn new(
        name: &'static str,
        kind: ParamType,
        default: &'static str,
        description: &'static str,
    ) -> Param {
        Param {
            name,
            kind,
            default: DefaultValue::Fixed(default),
            description,
        }
    }

    /// A parameter whose default is computed at run time.
    pub const fn computed(name: &'static str, kind: ParamType, description: &'static str) -> Param {
        Param {
            name,
            kind,
            default: DefaultValue::Computed,
            description,
        }
    }
}
