//! Deliver stage, SMTP: the envelope for a relay that does not offer
//! SMTPUTF8 (RFC 6531). An internationalized domain goes as its A-labels
//! (punycode: `bücher.de` is `xn--bcher-kva.de`), which every relay takes;
//! a UTF-8 local part has no ASCII form, so that message waits (deferred)
//! for a relay that offers SMTPUTF8 — it is never a bounce: nothing was
//! refused. Pure: may import lettre's `Address`, idna and the reply's
//! [`Outcome`].

use lettre::Address;

use super::reply::{Outcome, RelayProblem};

/// The sender and the recipient as a relay without SMTPUTF8 can take
/// them; the message's outcome when one of them cannot be written so.
pub(super) fn ascii_envelope(from: &Address, to: &Address) -> Result<(Address, Address), Outcome> {
    let sender = ascii_form(from).map_err(|why| {
        Outcome::RelayProblem(RelayProblem {
            reply: format!("the relay does not offer SMTPUTF8, and the sender {from} {why}"),
            at: "EHLO",
            permanent: true,
        })
    })?;
    let recipient = ascii_form(to).map_err(|why| match why {
        NotAscii::LocalPart => Outcome::Deferred(format!(
            "the relay does not offer SMTPUTF8, and {to} {why}: deferred until a relay that does"
        )),
        NotAscii::Domain(_) => Outcome::Refused(format!("{to} {why}")),
    })?;
    Ok((sender, recipient))
}

/// Why an address has no ASCII form.
#[derive(Debug, Clone, PartialEq, Eq)]
enum NotAscii {
    LocalPart,
    /// The domain is not a valid internationalized name (IDNA says why).
    Domain(String),
}

impl std::fmt::Display for NotAscii {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotAscii::LocalPart => f.write_str("has a UTF-8 local part, which has no ASCII form"),
            NotAscii::Domain(why) => write!(f, "has a domain with no ASCII form ({why})"),
        }
    }
}

/// `address` with its domain in A-labels (an ASCII domain as it is).
fn ascii_form(address: &Address) -> Result<Address, NotAscii> {
    if !address.user().is_ascii() {
        return Err(NotAscii::LocalPart);
    }
    if address.domain().is_ascii() {
        return Ok(address.clone());
    }
    let domain =
        idna::domain_to_ascii(address.domain()).map_err(|err| NotAscii::Domain(err.to_string()))?;
    Address::new(address.user(), domain).map_err(|err| NotAscii::Domain(err.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address(text: &str) -> Address {
        text.parse().unwrap()
    }

    #[test]
    fn an_idn_domain_goes_as_punycode_and_an_ascii_one_as_it_is() {
        let from = address("News@Example.com");
        let (sender, recipient) = ascii_envelope(&from, &address("user@bücher.de")).unwrap();
        assert_eq!(sender, from);
        assert_eq!(recipient.to_string(), "user@xn--bcher-kva.de");
    }

    #[test]
    fn a_utf8_local_part_is_deferred_never_failed() {
        let from = address("news@example.com");
        let outcome = ascii_envelope(&from, &address("josé@example.com")).unwrap_err();
        assert!(
            matches!(&outcome, Outcome::Deferred(why) if why.contains("SMTPUTF8") && why.contains("josé@example.com")),
            "{outcome:?}"
        );
    }

    #[test]
    fn a_utf8_sender_is_the_relays_problem() {
        let outcome =
            ascii_envelope(&address("josé@example.com"), &address("ana@example.com")).unwrap_err();
        assert!(
            matches!(&outcome, Outcome::RelayProblem(problem) if problem.permanent && problem.at == "EHLO"),
            "{outcome:?}"
        );
    }
}

#[cfg(test)]
mod on_the_wire {
    use std::time::Duration;

    use lettre::Address;

    use crate::deliver::smtp::Outcome;
    use crate::deliver::smtp::test_servers::{chunk_keeper, open_plain};

    #[tokio::test]
    async fn a_relay_without_smtputf8_gets_the_a_label_and_never_a_utf8_local_part() {
        // The chunk keeper offers no SMTPUTF8.
        let (port, chunks) = chunk_keeper(false).await;
        let mut session = open_plain(port).await;
        let from: Address = "news@example.com".parse().unwrap();
        let timeout = Duration::from_secs(5);
        let message = b"Subject: hi\r\n\r\nHello.\r\n";
        let to: Address = "user@bücher.de".parse().unwrap();
        let sent = session
            .send(&from, &to, message, timeout, async { true })
            .await;
        assert_eq!(sent, Outcome::Sent("250 queued".into()));
        let to: Address = "josé@example.com".parse().unwrap();
        let deferred = session
            .send(&from, &to, message, timeout, async { true })
            .await;
        assert!(matches!(deferred, Outcome::Deferred(_)), "{deferred:?}");
        assert!(!session.is_broken());
        let seen = chunks.lock().unwrap().concat();
        assert!(
            seen.contains("RCPT TO:<user@xn--bcher-kva.de>\r\n"),
            "{seen}"
        );
        assert!(!seen.contains("SMTPUTF8"), "{seen}");
        assert_eq!(seen.matches("MAIL FROM").count(), 1, "{seen}");
    }
}
