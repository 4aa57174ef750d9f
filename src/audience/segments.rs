//! Audience stage: which segment a subscriber belongs to — the first whose
//! rule matches, in config order; `default` (always last) catches the rest.
//! May import `config` (the segment rules) and its sibling `subscribers`.

use super::subscribers::Subscriber;
use crate::config::{AttributeTest, Rule, Segment};

/// The segment `subscriber` belongs to. `segments` ends with the default
/// segment (config guarantees it), which matches everyone.
pub fn segment_of<'c>(subscriber: &Subscriber, segments: &'c [Segment]) -> &'c Segment {
    segments
        .iter()
        .find(|s| matches(&s.rule, subscriber))
        .or(segments.last())
        .expect("config always has a default segment")
}

/// Whether every condition of `rule` holds (an empty rule always does).
pub fn matches(rule: &Rule, subscriber: &Subscriber) -> bool {
    let keys: Vec<&str> = subscriber
        .interests
        .iter()
        .map(|t| t.key.as_str())
        .collect();
    let column = subscriber
        .segment
        .as_deref()
        .map(|s| s.trim().to_lowercase());
    (rule.segment.is_empty() || column.is_some_and(|c| rule.segment.contains(&c)))
        && (rule.interests_any.is_empty()
            || rule
                .interests_any
                .iter()
                .any(|k| keys.contains(&k.as_str())))
        && rule
            .interests_all
            .iter()
            .all(|k| keys.contains(&k.as_str()))
        && rule.attributes.iter().all(|(name, test)| {
            let value = attribute(subscriber, name);
            match (test, value) {
                (AttributeTest::Exists(wanted), value) => *wanted == value.is_some(),
                (AttributeTest::Equals(expected), Some(value)) => same(expected, value),
                (AttributeTest::In(options), Some(value)) => {
                    options.iter().any(|option| same(option, value))
                }
                (_, None) => false,
            }
        })
}

/// The value of column `name` (lower case): a custom attribute, or one of
/// the columns gazette reads itself (`name`, `locale`, `timezone`).
fn attribute<'s>(subscriber: &'s Subscriber, name: &str) -> Option<&'s str> {
    let value = match name {
        "name" => subscriber.name.as_deref(),
        "locale" => subscriber.locale.as_deref(),
        "timezone" => subscriber.timezone.as_ref().map(|tz| tz.name()),
        _ => subscriber
            .attrs
            .iter()
            .find(|(key, _)| key.trim().to_lowercase() == name)
            .map(|(_, value)| value.as_str()),
    };
    value.map(str::trim).filter(|value| !value.is_empty())
}

/// Attribute values compare without regard to case.
fn same(a: &str, b: &str) -> bool {
    a.to_lowercase() == b.to_lowercase()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::audience::subscribers::Status;
    use crate::tag::{Tag, tag_key};

    fn subscriber(segment: Option<&str>, interests: &[&str], attrs: &[(&str, &str)]) -> Subscriber {
        Subscriber {
            email: "a@example.com".into(),
            name: None,
            segment: segment.map(str::to_string),
            interests: interests
                .iter()
                .map(|n| Tag {
                    name: (*n).into(),
                    key: tag_key(n),
                })
                .collect(),
            status: Status::Active,
            timezone: None,
            locale: None,
            personalize: true,
            attrs: attrs
                .iter()
                .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                .collect::<BTreeMap<_, _>>(),
            line: 2,
        }
    }

    fn rule() -> Rule {
        Rule::default()
    }

    #[test]
    fn the_segment_column_matches_case_insensitively() {
        let r = Rule {
            segment: vec!["marketing".into()],
            ..rule()
        };
        assert!(matches(&r, &subscriber(Some(" Marketing "), &[], &[])));
        assert!(!matches(&r, &subscriber(Some("data"), &[], &[])));
        assert!(!matches(&r, &subscriber(None, &[], &[])));
    }

    #[test]
    fn interests_any_and_all() {
        let any = Rule {
            interests_any: vec!["ai".into(), "privacy".into()],
            ..rule()
        };
        let all = Rule {
            interests_all: vec!["ai".into(), "privacy".into()],
            ..rule()
        };
        let one = subscriber(None, &["AI"], &[]);
        let both = subscriber(None, &["Privacy", "AI"], &[]);
        assert!(matches(&any, &one) && matches(&any, &both));
        assert!(!matches(&all, &one) && matches(&all, &both));
        assert!(!matches(&any, &subscriber(None, &["design"], &[])));
    }

    #[test]
    fn attributes_equal_in_and_exist() {
        let role = |test| Rule {
            attributes: BTreeMap::from([("role".to_string(), test)]),
            ..rule()
        };
        let cmo = subscriber(None, &[], &[("Role", "CMO")]);
        let ebony = Rule {
            attributes: BTreeMap::from([("ébène".to_string(), AttributeTest::Exists(true))]),
            ..rule()
        };
        assert!(matches(&ebony, &subscriber(None, &[], &[("Ébène", "x")])));
        let mut local = subscriber(None, &[], &[]);
        local.locale = Some("en-GB".into());
        let english = Rule {
            attributes: BTreeMap::from([(
                "locale".to_string(),
                AttributeTest::In(vec!["en-gb".into(), "en-us".into()]),
            )]),
            ..rule()
        };
        assert!(matches(&english, &local));
        let none = subscriber(None, &[], &[]);
        assert!(matches(&role(AttributeTest::Equals("cmo".into())), &cmo));
        assert!(!matches(&role(AttributeTest::Equals("cto".into())), &cmo));
        let leaders = AttributeTest::In(vec!["CEO".into(), "CMO".into()]);
        assert!(matches(&role(leaders.clone()), &cmo));
        assert!(!matches(&role(leaders), &none));
        assert!(matches(&role(AttributeTest::Exists(true)), &cmo));
        assert!(matches(&role(AttributeTest::Exists(false)), &none));
        assert!(!matches(&role(AttributeTest::Exists(false)), &cmo));
    }

    #[test]
    fn every_condition_must_hold_and_an_empty_rule_matches_all() {
        let both = Rule {
            segment: vec!["data".into()],
            interests_any: vec!["ai".into()],
            ..rule()
        };
        assert!(matches(&both, &subscriber(Some("data"), &["ai"], &[])));
        assert!(!matches(&both, &subscriber(Some("data"), &["design"], &[])));
        assert!(matches(&rule(), &subscriber(None, &[], &[])));
    }
}
