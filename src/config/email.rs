//! Config stage: the keys that shape every email — sender and footer
//! (`email:`) and the way out (`unsubscribe:`) — raw and checked.
//!
//! Imports: its sibling `raw` only.

use std::str::FromStr;

use lettre::message::Mailbox;
use serde::Deserialize;
use url::Url;

/// `email:` — who sends, and what every digest carries.
#[derive(Debug, Clone)]
pub struct EmailSettings {
    /// `Name <address>`; required to render or send.
    pub from: Option<Mailbox>,
    pub reply_to: Option<Mailbox>,
    /// The sender's postal address, shown in every footer (required by
    /// anti-spam laws such as CAN-SPAM).
    pub postal_address: String,
    /// A logo shown in the header, instead of the site name alone.
    pub logo: Option<Url>,
    /// How templates greet a reader with no name (`subscriber.greeting_name`).
    pub name_fallback: String,
    /// The preheader (preview text) template, unless a segment has its own.
    pub preheader: String,
    /// UTM parameters appended to post links; none when absent.
    pub utm: Option<Utm>,
}

/// Campaign parameters for post links (`content` is the variant).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Utm {
    pub source: String,
    pub medium: String,
    /// `None`: `digest-<issue id>`.
    pub campaign: Option<String>,
}

/// `unsubscribe:` — the way out every email offers.
#[derive(Debug, Clone)]
pub struct UnsubscribeSettings {
    /// The page a signed token is appended to (`?token=…`); https.
    pub url: Option<Url>,
    /// An address for `List-Unsubscribe: <mailto:…>`.
    pub mailto: Option<String>,
    /// A page where readers manage their interests (token appended too).
    pub preferences_url: Option<Url>,
}

/// The longest unsubscribe page address: with its token it must fit a
/// header line.
const MAX_URL: usize = 500;

/// The preheader used when none is configured.
pub const DEFAULT_PREHEADER: &str = "{{ picks[0].summary }}";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawEmail {
    from: Option<String>,
    reply_to: Option<String>,
    postal_address: String,
    logo: Option<String>,
    name_fallback: String,
    preheader: String,
    utm: Option<RawUtm>,
}

impl Default for RawEmail {
    fn default() -> Self {
        RawEmail {
            from: None,
            reply_to: None,
            postal_address: String::new(),
            logo: None,
            name_fallback: "there".into(),
            preheader: DEFAULT_PREHEADER.into(),
            utm: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUtm {
    #[serde(default = "default_source")]
    source: String,
    #[serde(default = "default_medium")]
    medium: String,
    campaign: Option<String>,
}

fn default_source() -> String {
    "gazette".into()
}

fn default_medium() -> String {
    "email".into()
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawUnsubscribe {
    url: Option<String>,
    mailto: Option<String>,
    preferences_url: Option<String>,
}

impl RawEmail {
    pub fn check(self, fail: &mut impl FnMut(&str, String)) -> EmailSettings {
        let mut mailbox = |key: &str, text: Option<String>| {
            let text = text?;
            match Mailbox::from_str(text.trim()) {
                Ok(mailbox) if !has_control(&text) => Some(mailbox),
                _ => {
                    fail(
                        &format!("email.{key}"),
                        format!(
                            "'{text}' is not an address; write 'Name <name@example.com>' or 'name@example.com'"
                        ),
                    );
                    None
                }
            }
        };
        let from = mailbox("from", self.from);
        let reply_to = mailbox("reply_to", self.reply_to);
        let logo = self.logo.and_then(|text| match Url::parse(text.trim()) {
            Ok(url) if url.scheme() == "https" => Some(url),
            _ => {
                fail(
                    "email.logo",
                    format!("logo must be an https URL, got '{text}'"),
                );
                None
            }
        });
        // Line breaks are fine in a postal address; other controls are not.
        if self
            .postal_address
            .chars()
            .any(|c| c.is_control() && c != '\n')
        {
            fail(
                "email.postal_address",
                "postal_address holds a control character".into(),
            );
        }
        if self.preheader.trim().is_empty() {
            fail("email.preheader", "preheader must not be empty".into());
        }
        let utm = self.utm.map(|utm| Utm {
            source: utm.source,
            medium: utm.medium,
            campaign: utm.campaign,
        });
        EmailSettings {
            from,
            reply_to,
            postal_address: self.postal_address.trim().to_string(),
            logo,
            name_fallback: self.name_fallback,
            preheader: self.preheader,
            utm,
        }
    }
}

impl RawUnsubscribe {
    pub fn check(self, fail: &mut impl FnMut(&str, String)) -> UnsubscribeSettings {
        let mut https = |key: &str, text: Option<String>| {
            let text = text?;
            match Url::parse(text.trim()) {
                Ok(url) if url.scheme() == "https" && url.host().is_some() => Some(url),
                _ => {
                    fail(
                        &format!("unsubscribe.{key}"),
                        format!("{key} must be an https URL, got '{text}'"),
                    );
                    None
                }
            }
        };
        let url = https("url", self.url);
        let preferences_url = https("preferences_url", self.preferences_url);
        let url = url.filter(|url| {
            let long = url.as_str().len() > MAX_URL;
            if long {
                fail(
                    "unsubscribe.url",
                    format!("url must be at most {MAX_URL} characters (a token is added to it)"),
                );
            }
            !long
        });
        let mailto = self.mailto.and_then(|text| {
            let address = text.trim().trim_start_matches("mailto:").to_string();
            // The header must not be RFC 2047-encoded: ASCII only, no query.
            if super::raw::looks_like_email(&address)
                && address.is_ascii()
                && !address.contains(['?', '&', '%'])
            {
                Some(address)
            } else {
                fail(
                    "unsubscribe.mailto",
                    format!(
                        "mailto must be an address such as unsubscribe@example.com, got '{text}'"
                    ),
                );
                None
            }
        });
        UnsubscribeSettings {
            url,
            mailto,
            preferences_url,
        }
    }
}

fn has_control(text: &str) -> bool {
    text.chars().any(char::is_control)
}
