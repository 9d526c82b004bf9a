//! The managed block in /etc/hosts, for browsers that do not resolve `*.localhost` themselves
//! (Safari) and for extra names (`shop.test`) that nothing resolves. Only the lines between the
//! markers are Homeport's; everything else in the file is kept as it is.

pub const BEGIN: &str =
    "# BEGIN homeport (managed by `homeport hosts`; edit homeport.toml instead)";
pub const END: &str = "# END homeport";

/// The block for `names` (sorted, one name per line, IPv4 and IPv6 loopback).
pub fn block(names: &[String]) -> String {
    let mut names: Vec<&str> = names.iter().map(String::as_str).collect();
    names.sort_unstable();
    names.dedup();
    let mut b = format!("{BEGIN}\n");
    for n in names {
        b.push_str(&format!("127.0.0.1\t{n}\n::1\t{n}\n"));
    }
    b.push_str(END);
    b.push('\n');
    b
}

/// `text` with its managed block replaced by `block` (or added at the end); `None` removes it.
pub fn with_block(text: &str, block: Option<&str>) -> String {
    let mut out = String::with_capacity(text.len() + block.map_or(0, str::len));
    let mut inside = false;
    let mut placed = false;
    for line in text.split_inclusive('\n') {
        let bare = line.trim_end();
        if !inside && bare == BEGIN {
            inside = true;
            if let Some(b) = block {
                out.push_str(b);
                placed = true;
            }
            continue;
        }
        if inside {
            if bare == END {
                inside = false;
            }
            continue;
        }
        out.push_str(line);
    }
    if let Some(b) = block.filter(|_| !placed) {
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(b);
    }
    out
}

/// The managed block `text` has now, if any.
pub fn current_block(text: &str) -> Option<String> {
    let start = text.find(BEGIN)?;
    let end = text[start..].find(END)? + start + END.len();
    let mut b = text[start..end].to_owned();
    b.push('\n');
    Some(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOSTS: &str =
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost\n# my own\n10.0.0.2 nas\n";

    #[test]
    fn the_block_is_added_replaced_and_removed_leaving_the_rest() {
        let b1 = block(&[
            "shop.test".into(),
            "shop.localhost".into(),
            "shop.test".into(),
        ]);
        assert_eq!(
            b1,
            format!(
                "{BEGIN}\n127.0.0.1\tshop.localhost\n::1\tshop.localhost\n127.0.0.1\tshop.test\n::1\tshop.test\n{END}\n"
            )
        );
        let once = with_block(HOSTS, Some(&b1));
        assert!(once.starts_with(HOSTS));
        assert_eq!(current_block(&once).as_deref(), Some(b1.as_str()));
        let b2 = block(&["beta.shop.localhost".into()]);
        let twice = with_block(&once, Some(&b2));
        assert_eq!(twice, format!("{HOSTS}{b2}"));
        assert_eq!(with_block(&twice, None), HOSTS);
        assert_eq!(with_block(HOSTS, None), HOSTS);
        // A file without a final newline keeps its last line whole.
        assert_eq!(
            with_block("1.2.3.4 x", Some(&b2)),
            format!("1.2.3.4 x\n{b2}")
        );
    }
}
