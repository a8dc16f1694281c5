//! The Public Suffix List (ICANN and PRIVATE sections), embedded and parsed once.

use std::sync::LazyLock;

use publicsuffix::{List, Psl};

static LIST_TEXT: &str = include_str!("../data/public_suffix_list.dat");

/// The list, with every internationalised rule also added in its A-label (punycode) form, since
/// the `publicsuffix` crate only does that itself with its `punycode` feature, and our
/// [`Hostname`](crate::Hostname)s are always A-labels.
static LIST: LazyLock<List> = LazyLock::new(|| {
    let mut text = String::with_capacity(LIST_TEXT.len() + 16 * 1024);
    for line in LIST_TEXT.lines() {
        text.push_str(line);
        text.push('\n');
        if line.starts_with("//") || line.is_ascii() {
            continue;
        }
        if let Some(rule) = line.split_whitespace().next()
            && let Ok(ascii) = idna::domain_to_ascii(rule)
        {
            text.push_str(&ascii);
            text.push('\n');
        }
    }
    text.parse()
        .expect("the embedded public suffix list parses (checked by a test)")
});

/// Whether `name` (normalised: lower-case A-labels, no trailing dot) is itself a public suffix,
/// i.e. anyone can register names directly below it. Wildcard rules (`*.ck`) and exceptions
/// (`!www.ck`) apply, and by the list's default rule `*` every TLD, even an unknown one such as
/// `test`, is a public suffix.
pub fn is_public_suffix(name: &str) -> bool {
    if name.is_empty() {
        return false;
    }
    LIST.suffix(name.as_bytes())
        .is_some_and(|suffix| suffix.as_bytes() == name.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::is_public_suffix;

    #[test]
    fn public_suffixes() {
        for name in [
            "com",
            "co.uk",
            "uk",
            "github.io",
            "s3.amazonaws.com",
            "foo.ck",
            "test",
            "unknown-tld",
            "xn--55qx5d.cn",
            "公司.cn",
            "foo.compute.amazonaws.com",
        ] {
            assert!(is_public_suffix(name), "{name} should be a public suffix");
        }
    }

    #[test]
    fn not_public_suffixes() {
        for name in [
            "example.com",
            "allowed.test",
            "www.ck",
            "bucket.s3.amazonaws.com",
            "user.github.io",
            "example.co.uk",
            "",
        ] {
            assert!(
                !is_public_suffix(name),
                "{name} should not be a public suffix"
            );
        }
    }
}
