//! The Fly region codes flyplan accepts for `primary_region` and read
//! replicas: the current regions and the retired ones still seen in real
//! fly.toml files.

/// Every region code flyplan accepts, sorted. The JSON Schema's region enum
/// must equal this list (checked by a test).
pub const REGIONS: &[&str] = &[
    "ams", "arn", "atl", "bog", "bom", "bos", "cdg", "den", "dfw", "ewr", "eze", "fra", "gdl",
    "gig", "gru", "hkg", "iad", "jnb", "lax", "lhr", "maa", "mad", "mia", "nrt", "ord", "otp",
    "phx", "qro", "scl", "sea", "sin", "sjc", "syd", "waw", "yul", "yyz",
];

pub fn is_region(code: &str) -> bool {
    REGIONS.binary_search(&code).is_ok()
}

/// The nearest known code for a suggestion (codes are three letters, so any
/// code within two edits is offered).
pub fn closest_region(code: &str) -> Option<&'static str> {
    let code = code.to_ascii_lowercase();
    REGIONS
        .iter()
        .map(|r| (strsim::levenshtein(&code, r), *r))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, r)| r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_list_is_sorted_and_unique() {
        assert!(REGIONS.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn unknown_regions_get_the_nearest_code() {
        assert!(is_region("iad"));
        assert!(!is_region("IAD"));
        assert_eq!(closest_region("iaf"), Some("iad"));
        assert_eq!(closest_region("IAD"), Some("iad"));
        assert_eq!(closest_region("frankfurt"), None);
    }
}
