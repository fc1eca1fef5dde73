//! STARTTLS for the SMTP client on OpenSSL, per smtp_tls_security_level:
//! `none` never, `may` when offered (without checking the certificate,
//! and in plaintext again if the handshake fails), `encrypt` always
//! (unchecked certificate), `verify` and `secure` always with the
//! certificate checked against smtp_tls_CAfile/CApath and the name.

use std::net::TcpStream;

use openssl::ssl::{SslConnector, SslMethod, SslStream, SslVerifyMode};
use openssl::x509::X509VerifyResult;

/// smtp_tls_security_level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    None,
    May,
    Encrypt,
    Verify,
    Secure,
}

impl Level {
    /// `dane` without DNSSEC-validated TLSA records is `may`, as in
    /// Postfix when the resolver does not validate.
    pub fn parse(text: &str) -> Option<Level> {
        match text.to_ascii_lowercase().as_str() {
            "none" => Some(Level::None),
            "may" | "dane" => Some(Level::May),
            "encrypt" => Some(Level::Encrypt),
            "verify" => Some(Level::Verify),
            "secure" => Some(Level::Secure),
            _ => None,
        }
    }

    /// TLS is required: no plaintext delivery.
    pub fn mandatory(self) -> bool {
        matches!(self, Level::Encrypt | Level::Verify | Level::Secure)
    }

    fn checks_certificate(self) -> bool {
        matches!(self, Level::Verify | Level::Secure)
    }
}

#[derive(Debug, Clone)]
pub struct TlsPolicy {
    pub level: Level,
    pub ca_file: String,
    pub ca_path: String,
    pub loglevel: i64,
}

/// What a finished handshake was like, for the log.
#[derive(Debug, Clone)]
pub struct Summary {
    /// Anonymous, Untrusted, Trusted or Verified, as Postfix says.
    pub trust: &'static str,
    pub version: String,
    pub cipher: String,
    pub bits: i32,
}

impl Summary {
    /// `Untrusted TLS connection established to H[A]:25: TLSv1.3 with
    /// cipher TLS_AES_256_GCM_SHA384 (256/256 bits)`.
    pub fn line(&self, relay: &str) -> String {
        format!(
            "{} TLS connection established to {relay}: {} with cipher {} ({}/{} bits)",
            self.trust, self.version, self.cipher, self.bits, self.bits
        )
    }
}

/// The OpenSSL client context, made once per process.
pub struct Tls {
    connector: SslConnector,
    level: Level,
}

impl Tls {
    pub fn new(policy: &TlsPolicy) -> Result<Tls, String> {
        let mut builder =
            SslConnector::builder(SslMethod::tls_client()).map_err(|e| e.to_string())?;
        if !policy.ca_file.is_empty() {
            builder
                .set_ca_file(&policy.ca_file)
                .map_err(|e| format!("cannot load CA file {}: {e}", policy.ca_file))?;
        }
        if !policy.ca_path.is_empty() {
            let store = builder.cert_store_mut();
            let lookup = store
                .add_lookup(openssl::x509::store::X509Lookup::hash_dir())
                .map_err(|e| e.to_string())?;
            lookup
                .add_dir(&policy.ca_path, openssl::ssl::SslFiletype::PEM)
                .map_err(|e| format!("cannot use CA path {}: {e}", policy.ca_path))?;
        }
        builder.set_verify(match policy.level.checks_certificate() {
            true => SslVerifyMode::PEER,
            false => SslVerifyMode::NONE,
        });
        Ok(Tls {
            connector: builder.build(),
            level: policy.level,
        })
    }

    /// The handshake on a connection whose STARTTLS was accepted;
    /// `name` is what the certificate must match at verify/secure.
    pub fn handshake(
        &self,
        stream: TcpStream,
        name: &str,
    ) -> Result<(SslStream<TcpStream>, Summary), String> {
        let mut config = self.connector.configure().map_err(|e| e.to_string())?;
        config.set_verify_hostname(self.level.checks_certificate());
        config.set_use_server_name_indication(name.parse::<std::net::IpAddr>().is_err());
        let stream = config.connect(name, stream).map_err(|e| match e {
            openssl::ssl::HandshakeError::Failure(mid) => {
                let verify = mid.ssl().verify_result();
                match verify == X509VerifyResult::OK {
                    true => format!("handshake failure: {}", mid.error()),
                    false => format!("Server certificate not verified: {}", verify.error_string()),
                }
            }
            other => format!("handshake failure: {other}"),
        })?;
        let summary = summarize(&stream, self.level);
        Ok((stream, summary))
    }
}

fn summarize(stream: &SslStream<TcpStream>, level: Level) -> Summary {
    let ssl = stream.ssl();
    let trust = match (
        ssl.peer_certificate(),
        ssl.verify_result() == X509VerifyResult::OK,
    ) {
        (None, _) => "Anonymous",
        (Some(_), false) => "Untrusted",
        (Some(_), true) if level.checks_certificate() => "Verified",
        (Some(_), true) => "Trusted",
    };
    let cipher = ssl.current_cipher();
    Summary {
        trust,
        version: ssl.version_str().to_string(),
        cipher: cipher.map(|c| c.name().to_string()).unwrap_or_default(),
        bits: cipher.map(|c| c.bits().secret).unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels() {
        assert_eq!(Level::parse("MAY"), Some(Level::May));
        assert_eq!(Level::parse("dane"), Some(Level::May));
        assert!(Level::parse("encrypt").unwrap().mandatory());
        assert!(!Level::parse("may").unwrap().mandatory());
        assert_eq!(Level::parse("fingerprint"), None);
    }

    #[test]
    fn a_context_is_made_for_each_level() {
        for level in [Level::May, Level::Encrypt, Level::Verify] {
            let policy = TlsPolicy {
                level,
                ca_file: String::new(),
                ca_path: String::new(),
                loglevel: 0,
            };
            assert!(Tls::new(&policy).is_ok());
        }
        let missing = TlsPolicy {
            level: Level::Verify,
            ca_file: "/nonexistent/ca.pem".into(),
            ca_path: String::new(),
            loglevel: 0,
        };
        match Tls::new(&missing) {
            Err(why) => assert!(why.contains("/nonexistent/ca.pem"), "{why}"),
            Ok(_) => panic!("a missing CA file was accepted"),
        }
    }
}
