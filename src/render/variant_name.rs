//! Render stage: the name of the A/B variant a reader's digest is.
//! Imports config and select's variant choice.

use crate::config::{Segment, SegmentCta, Variant};
use crate::select::variant;

/// The name of the variant `email` gets in issue `issue`: the ids of the
/// subject and CTA variants the segment tests, or `default`.
pub fn variant_of(segment: &Segment, issue: &str, email: &str) -> String {
    match variant::choose(&segment.subjects, issue, email, "subject") {
        Some(subject) => variant_label(
            segment,
            subject,
            variant::choose(&segment.ctas, issue, email, "cta"),
        ),
        None => "default".into(),
    }
}

/// The variant's name: the ids of the tests this segment runs.
pub(super) fn variant_label(
    segment: &Segment,
    subject: &Variant<String>,
    cta: Option<&Variant<SegmentCta>>,
) -> String {
    let mut parts = Vec::new();
    if segment.subjects.len() > 1 {
        parts.push(subject.id.clone());
    }
    if let Some(cta) = cta.filter(|_| segment.ctas.len() > 1) {
        parts.push(cta.id.clone());
    }
    // Ids are ASCII letters, digits, '-' and '_': '.' keeps pairs apart.
    if parts.is_empty() {
        "default".into()
    } else {
        parts.join(".")
    }
}
