//! Deliver stage, SMTP: the relay's URL read into [`SmtpSettings`] — host,
//! port, [`Security`], user. May import std, url and percent-encoding;
//! nothing from the rest of the crate.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use url::Url;

/// How the connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// Plain text (`smtp://`, `?tls=none`): catchers such as MailHog.
    Plain,
    /// STARTTLS when the server offers it, plain otherwise (`smtp://` default).
    Opportunistic,
    /// STARTTLS or fail (`?tls=required`).
    Required,
    /// TLS from the first byte (`smtps://`).
    Implicit,
}

/// Where and how to send, from `smtp://user@host:port?tls=…`.
#[derive(Debug, Clone)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub security: Security,
    pub user: Option<String>,
    pub(super) password: Option<String>,
    pub timeout: Duration,
    /// A PEM certificate trusted besides the usual roots: the unit tests'
    /// self-signed servers.
    #[cfg(test)]
    pub(super) extra_root: Option<Vec<u8>>,
}

impl SmtpSettings {
    /// Reads an SMTP URL; the password comes from `password`
    /// (`GAZETTE_SMTP_PASSWORD`), never from the URL.
    pub fn parse(text: &str, password: Option<String>, timeout: Duration) -> Result<SmtpSettings> {
        let url =
            Url::parse(text.trim()).with_context(|| format!("'{text}' is not an SMTP URL"))?;
        if url.password().is_some() {
            bail!("put the SMTP password in GAZETTE_SMTP_PASSWORD, not in the URL");
        }
        let implicit = match url.scheme() {
            "smtp" => false,
            "smtps" => true,
            other => bail!("SMTP URL must start with smtp:// or smtps://, not {other}://"),
        };
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .with_context(|| format!("SMTP URL '{text}' has no host"))?
            .trim_matches(['[', ']'])
            .to_string();
        let tls = url
            .query_pairs()
            .find(|(k, _)| k == "tls")
            .map(|(_, v)| v.into_owned());
        let security = match (implicit, tls.as_deref()) {
            (true, None) => Security::Implicit,
            (false, None | Some("opportunistic")) => Security::Opportunistic,
            (false, Some("required")) => Security::Required,
            (false, Some("none")) => Security::Plain,
            (_, Some(other)) => bail!(
                "SMTP URL: tls={other} is not known; use tls=required, tls=opportunistic or tls=none (smtps:// is always TLS)"
            ),
        };
        let port = url.port().unwrap_or(if implicit { 465 } else { 25 });
        let user = (!url.username().is_empty()).then(|| user_name(url.username()));
        Ok(SmtpSettings {
            host,
            port,
            security,
            user,
            password,
            timeout,
            #[cfg(test)]
            extra_root: None,
        })
    }

    /// `smtp://host:port` as shown in messages (no user, no password).
    pub fn shown(&self) -> String {
        let scheme = if self.security == Security::Implicit {
            "smtps"
        } else {
            "smtp"
        };
        format!("{scheme}://{}:{}", self.host, self.port)
    }
}

/// The user name as the relay knows it, from the URL's percent-encoded
/// form. Percent-decoding, not form-decoding: a `+` in a user name (API
/// keys, `apikey+news`) is a plus, not a space.
fn user_name(encoded: &str) -> String {
    percent_encoding::percent_decode_str(encoded)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<SmtpSettings> {
        SmtpSettings::parse(text, None, Duration::from_secs(30))
    }

    #[test]
    fn urls_say_host_port_security_and_user() {
        let s = parse("smtp://localhost:1025").unwrap();
        assert_eq!(
            (s.host.as_str(), s.port, s.security),
            ("localhost", 1025, Security::Opportunistic)
        );
        let s = parse("smtp://mail.example.com:587?tls=required").unwrap();
        assert_eq!(s.security, Security::Required);
        let s = parse("smtps://bob%40x@mail.example.com").unwrap();
        assert_eq!(
            (s.port, s.security, s.user.as_deref()),
            (465, Security::Implicit, Some("bob@x"))
        );
        assert_eq!(
            parse("smtp://h?tls=none").unwrap().security,
            Security::Plain
        );
        assert!(
            parse("smtp://u:secret@h")
                .unwrap_err()
                .to_string()
                .contains("GAZETTE_SMTP_PASSWORD")
        );
        assert!(parse("http://h").is_err());
        assert!(parse("smtp://h?tls=maybe").is_err());
        assert_eq!(parse("smtp://[::1]:2525").unwrap().host, "::1");
    }

    #[test]
    fn the_user_name_is_percent_decoded_and_a_plus_stays_a_plus() {
        let user = |url: &str| parse(url).unwrap().user;
        assert_eq!(user("smtp://h").as_deref(), None);
        assert_eq!(user("smtp://apikey+news@h").as_deref(), Some("apikey+news"));
        assert_eq!(user("smtp://bob%40x.org@h").as_deref(), Some("bob@x.org"));
        assert_eq!(user("smtp://a%2Bb@h").as_deref(), Some("a+b"));
        assert_eq!(user("smtp://a%20b@h").as_deref(), Some("a b"));
        // Non-ASCII, typed as is (the URL parser encodes it) or encoded.
        assert_eq!(user("smtp://jörg@h").as_deref(), Some("jörg"));
        assert_eq!(user("smtp://j%C3%B6rg@h").as_deref(), Some("jörg"));
    }
}
