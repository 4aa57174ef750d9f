//! Select stage: A/B variants, assigned per (issue, subscriber) from a
//! stable hash, so a resumed run gives every reader the same variant and
//! the shares follow the weights.
//!
//! Imports only config.

use sha2::{Digest, Sha256};

use crate::config::Variant;

/// The variant of `options` for `email` in issue `issue`; `dimension`
/// (`subject`, `cta`) keeps the choices of different tests independent.
/// `None` only when there are no options.
pub fn choose<'v, T>(
    options: &'v [Variant<T>],
    issue: &str,
    email: &str,
    dimension: &str,
) -> Option<&'v Variant<T>> {
    let total: u64 = options.iter().map(|v| u64::from(v.weight)).sum();
    if total == 0 {
        return options.first();
    }
    let mut hasher = Sha256::new();
    for part in [issue, &email.to_lowercase(), dimension] {
        hasher.update(part.as_bytes());
        hasher.update([0]);
    }
    let hash = hasher.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&hash[..8]);
    // A point in 0..total, uniform for a uniform hash.
    let point = ((u128::from(u64::from_be_bytes(first)) * u128::from(total)) >> 64) as u64;
    let mut edge = 0;
    options.iter().find(|v| {
        edge += u64::from(v.weight);
        point < edge
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(weights: &[u32]) -> Vec<Variant<()>> {
        weights
            .iter()
            .enumerate()
            .map(|(i, w)| Variant {
                id: ((b'a' + i as u8) as char).to_string(),
                weight: *w,
                value: (),
            })
            .collect()
    }

    #[test]
    fn the_same_reader_gets_the_same_variant_every_time() {
        let ab = options(&[1, 1]);
        let first = choose(&ab, "2026-05-05", "ana@example.com", "cta").unwrap();
        for _ in 0..10 {
            let again = choose(&ab, "2026-05-05", "ANA@example.com", "cta").unwrap();
            assert_eq!(again.id, first.id);
        }
    }

    #[test]
    fn shares_follow_the_weights_over_ten_thousand_readers() {
        let weighted = options(&[1, 3]);
        let b = (0..10_000)
            .filter(|n| {
                let email = format!("reader{n}@example.com");
                choose(&weighted, "2026-05-05", &email, "subject")
                    .unwrap()
                    .id
                    == "b"
            })
            .count();
        // 7,500 expected; ±3 standard deviations is about ±130.
        assert!((7_370..=7_630).contains(&b), "{b} of 10000 got b");
    }

    #[test]
    fn issues_and_dimensions_draw_independently() {
        let ab = options(&[1, 1]);
        let differs = (0..1_000)
            .filter(|n| {
                let email = format!("r{n}@example.com");
                let subject = choose(&ab, "i1", &email, "subject").unwrap().id.clone();
                let cta = choose(&ab, "i1", &email, "cta").unwrap().id.clone();
                subject != cta
            })
            .count();
        assert!((400..=600).contains(&differs), "{differs}");
        assert!(choose::<()>(&[], "i1", "a@b.c", "cta").is_none());
    }
}
