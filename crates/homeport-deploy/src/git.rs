//! The app's source checkout, through the `git` command.

use std::path::Path;
use std::process::Command;

use crate::DeployError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceInfo {
    pub commit: String,
    pub short: String,
    pub branch: String,
    pub dirty: bool,
    /// What people call this revision: the nearest tag ([`version`]).
    pub version: String,
}

fn git(dir: &Path, args: &[&str]) -> Result<String, DeployError> {
    let out = homeport_fs::inherit::restore(&mut Command::new("git"))
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .map_err(|e| DeployError::Git(format!("cannot run git: {e}")))?;
    if !out.status.success() {
        return Err(DeployError::Git(format!(
            "git {} in {}: {}",
            args.join(" "),
            dir.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

pub fn resolve(source: &Path) -> Result<SourceInfo, DeployError> {
    let commit = git(source, &["rev-parse", "HEAD"])?;
    let branch = git(source, &["rev-parse", "--abbrev-ref", "HEAD"])?;
    let dirty = !git(source, &["status", "--porcelain"])?.is_empty();
    let short: String = commit.chars().take(7).collect();
    Ok(SourceInfo {
        version: version(source, &commit).unwrap_or_else(|| short.clone()),
        short,
        commit,
        branch,
        dirty,
    })
}

/// The version of `commit` from the nearest tag reachable from it: `1.4.2` on the tag itself,
/// `1.5.0-rc1+3` three commits past `v1.5.0-rc1`; `None` when no tag is reachable (callers fall
/// back to the short commit).
pub fn version(source: &Path, commit: &str) -> Option<String> {
    let described = git(
        source,
        &["describe", "--tags", "--long", "--abbrev=7", commit],
    )
    .ok()?;
    Some(version_from_describe(&described))
}

/// `TAG-N-gHASH` (as `git describe --long` writes it; the tag may contain `-`) as a version:
/// the tag without a leading `v` before a digit, and `+N` when N commits came after it.
fn version_from_describe(described: &str) -> String {
    let mut parts = described.rsplitn(3, '-');
    let (_hash, count, tag) = (parts.next(), parts.next(), parts.next());
    let (Some(count), Some(tag)) = (count.and_then(|c| c.parse::<u32>().ok()), tag) else {
        return described.to_owned();
    };
    let tag = match tag.strip_prefix('v') {
        Some(rest) if rest.starts_with(|c: char| c.is_ascii_digit()) => rest,
        _ => tag,
    };
    if count == 0 {
        tag.to_owned()
    } else {
        format!("{tag}+{count}")
    }
}

/// The commit a branch, tag or commit (or a remote branch, `origin/main`) names in the source.
pub fn resolve_ref(source: &Path, r: &str) -> Result<SourceInfo, DeployError> {
    let commit = git(
        source,
        &[
            "rev-parse",
            "--verify",
            "--quiet",
            "--end-of-options",
            &format!("{r}^{{commit}}"),
        ],
    )
    .map_err(|_| {
        DeployError::Git(format!(
            "{r} names no branch, tag or commit in {} (see `git -C {0} log --oneline --all`)",
            source.display()
        ))
    })?;
    let short: String = commit.chars().take(7).collect();
    Ok(SourceInfo {
        version: version(source, &commit).unwrap_or_else(|| short.clone()),
        short,
        commit,
        branch: r.to_owned(),
        dirty: false,
    })
}

/// A clean checkout of `commit` in `dir` (a detached worktree of `source`).
pub fn worktree(source: &Path, commit: &str, dir: &Path) -> Result<(), DeployError> {
    git(
        source,
        &[
            "worktree",
            "add",
            "--detach",
            "--force",
            &dir.display().to_string(),
            commit,
        ],
    )
    .map(drop)
}

pub fn remove_worktree(source: &Path, dir: &Path) {
    let _ = git(
        source,
        &["worktree", "remove", "--force", &dir.display().to_string()],
    );
    let _ = std::fs::remove_dir_all(dir);
    let _ = git(source, &["worktree", "prune"]);
}

/// Fetches the upstream and says how many commits the checkout is behind and ahead.
pub fn fetch_behind(source: &Path) -> Result<(u32, u32), DeployError> {
    require_upstream(source)?;
    git(source, &["fetch", "--quiet"])?;
    let counts = git(
        source,
        &["rev-list", "--left-right", "--count", "HEAD...@{u}"],
    )?;
    let mut it = counts
        .split_whitespace()
        .map(|n| n.parse::<u32>().unwrap_or(0));
    let ahead = it.next().unwrap_or(0);
    let behind = it.next().unwrap_or(0);
    Ok((behind, ahead))
}

/// The commit the upstream of the checkout's branch is at (as of the last fetch).
pub fn upstream_commit(source: &Path) -> Result<String, DeployError> {
    git(source, &["rev-parse", "@{u}"])
}

/// How many commits `to` has that `from` lacks (all of `to`'s history when `from` is empty).
pub fn count_new(source: &Path, from: &str, to: &str) -> Result<u32, DeployError> {
    let range = if from.is_empty() {
        to.to_owned()
    } else {
        format!("{from}..{to}")
    };
    git(source, &["rev-list", "--count", &range])?
        .parse()
        .map_err(|e| DeployError::Git(format!("git rev-list --count {range}: {e}")))
}

/// Refuses, with what to do instead, a checkout whose branch tracks nothing (git would say only
/// "fatal: no upstream configured").
fn require_upstream(source: &Path) -> Result<(), DeployError> {
    let branch = git(source, &["rev-parse", "--abbrev-ref", "HEAD"])?;
    if branch == "HEAD" {
        return Err(DeployError::Git(format!(
            "{} is on a detached HEAD, so it has no upstream to update from; check out a branch \
             (git -C {0} switch BRANCH), or deploy what is checked out with `homeport deploy`",
            source.display()
        )));
    }
    let has_upstream = Command::new("git")
        .arg("-C")
        .arg(source)
        .args(["rev-parse", "--abbrev-ref", "--symbolic-full-name", "@{u}"])
        .output()
        .is_ok_and(|o| o.status.success());
    if has_upstream {
        return Ok(());
    }
    let remotes = git(source, &["remote"])?;
    let how = match remotes.lines().next() {
        Some(remote) => format!(
            "set one with `git -C {} branch --set-upstream-to={remote}/{branch}`",
            source.display()
        ),
        None => format!(
            "it has no remote; add one with `git -C {} remote add origin URL`, then `git -C {0} \
             branch --set-upstream-to=origin/{branch}`",
            source.display()
        ),
    };
    Err(DeployError::Git(format!(
        "branch {branch} of {} has no upstream, so there is nothing to update from: {how}; \
         or deploy what is checked out with `homeport deploy`",
        source.display()
    )))
}

/// Fast-forwards the checkout to its upstream; refuses a dirty or diverged checkout.
pub fn fast_forward(source: &Path) -> Result<u32, DeployError> {
    if resolve(source)?.dirty {
        return Err(DeployError::Git(format!(
            "{} has uncommitted changes; commit or stash them first",
            source.display()
        )));
    }
    let (behind, ahead) = fetch_behind(source)?;
    if ahead > 0 && behind > 0 {
        return Err(DeployError::Git(format!(
            "{} has diverged from its upstream ({ahead} local, {behind} upstream commits); merge or rebase by hand",
            source.display()
        )));
    }
    if behind > 0 {
        git(source, &["merge", "--ff-only", "--quiet", "@{u}"])?;
    }
    Ok(behind)
}

#[cfg(test)]
mod tests {
    use super::version_from_describe;

    #[test]
    fn versions_read_like_tags_with_the_commits_since() {
        assert_eq!(version_from_describe("v1.4.2-0-gabcdef1"), "1.4.2");
        assert_eq!(
            version_from_describe("v1.5.0-rc1-3-g1a2b3c4"),
            "1.5.0-rc1+3"
        );
        assert_eq!(version_from_describe("release-2-5-g1a2b3c4"), "release-2+5");
        assert_eq!(version_from_describe("vintage-0-g1a2b3c4"), "vintage");
        assert_eq!(version_from_describe("odd"), "odd");
    }
}
