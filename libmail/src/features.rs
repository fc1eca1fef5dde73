//! What this build implements, for `postconf -m`, `-a` and `-A`. A table
//! type or SASL plugin is listed here by the change that makes it work, so
//! these lists never promise more than the programs do.

/// Lookup table types (`type:name` in main.cf).
pub const TABLE_TYPES: &[&str] = &[
    "btree", "cdb", "cidr", "hash", "inline", "mysql", "pcre", "proxy", "regexp", "static",
    "texthash", "unix",
];

/// SASL server plugin types (smtpd_sasl_type).
pub const SASL_SERVER_TYPES: &[&str] = &[];

/// SASL client plugin types (smtp_sasl_type).
pub const SASL_CLIENT_TYPES: &[&str] = &[];
