//! `homeport-bench --hosts`: another host through real OpenSSH on loopback, as the end-to-end
//! tests make it (Debian's sshd with a throwaway host key, user and key; needs root) — the
//! status of the host's agent through this one's SSH connection vs this computer's own, and
//! shipping a 50 MB release vs plain `rsync` of the same folder.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use homeport_types::{DeployEvent, DeployKind, DeployRequest, DeployResult, HostState};

use crate::sshd::SshHost;
use crate::{Agent, Bins, Res, Row, median};

/// Services on each side for the status rows: a small app's worth.
const SERVICES: usize = 10;

fn quantile(mut v: Vec<f64>, q: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * q).round() as usize]
}

fn git(dir: &Path, args: &[&str]) -> Res<()> {
    let st = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.email=b@x.invalid", "-c", "user.name=b"])
        .args(args)
        .stdout(Stdio::null())
        .status()?;
    if st.success() {
        Ok(())
    } else {
        Err(format!("git {args:?} failed").into())
    }
}

/// `SERVICES` idle fixture services of app `a`, environment `e`.
fn services(fixture: &Path, app: &str, env: &str) -> String {
    let mut s = format!("[apps.{app}.env.{env}]\nautostart = true\n");
    for i in 0..SERVICES {
        s.push_str(&format!(
            "services.s{i} = {{ command = [\"{}\"] }}\n",
            fixture.display()
        ));
    }
    s
}

/// 50 files of 1 MB: half text-like (compresses), half random (does not), from `seed`.
fn write_assets(dir: &Path, seed: u64, files: std::ops::Range<u64>) -> Res<()> {
    std::fs::create_dir_all(dir)?;
    for i in files {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (i + 1);
        let data: Vec<u8> = if i % 2 == 0 {
            let mut out = Vec::with_capacity(1 << 20);
            while out.len() < 1 << 20 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                out.extend_from_slice(
                    format!("export const v{} = \"{:x}\";\n", x % 100_000, x).as_bytes(),
                );
            }
            out.truncate(1 << 20);
            out
        } else {
            (0..(1 << 20) / 8)
                .flat_map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x.to_le_bytes()
                })
                .collect()
        };
        std::fs::write(dir.join(format!("asset{i:02}")), data)?;
    }
    Ok(())
}

pub fn run(bins: &Bins, runs: usize) -> Res<Vec<Row>> {
    let host = SshHost::start("homeport-bench --hosts")
        .ok_or("the hosts benchmark runs sshd and makes a throwaway user: run it as root")?;
    // The host's user cannot read this user's target folder: its own copy of the fixture.
    let fixture = host.home.join("fixture");
    std::fs::copy(&bins.fixture, &fixture)?;
    std::fs::set_permissions(
        &fixture,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )?;
    host.write_config(&format!(
        "[agent]\nport = 0\nrouter_port = 0\n\n{}",
        services(&fixture, "remote", "production")
    ));

    let work = tempfile::tempdir()?;
    let src = work.path().join("src");
    write_assets(&src.join("assets"), 0, 0..50)?;
    std::fs::write(
        src.join("build.sh"),
        format!(
            "set -e\nrm -rf out\nmkdir -p out\ncp '{}' out/app\ncp -r assets out/\n",
            bins.fixture.display()
        ),
    )?;
    git(&src, &["init", "-q", "-b", "main"])?;
    git(&src, &["add", "-A"])?;
    git(&src, &["commit", "-q", "-m", "0"])?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let body = format!(
        "{}\n[apps.shop]\nsource = \"{}\"\nbuild = [\"sh build.sh\"]\nartifacts = [\"out\"]\nkeep_releases = 2\n\
         [apps.shop.env.production]\nhost = \"vps\"\nhealth_stable = \"0s\"\n\
         [apps.shop.env.production.services.web]\ncommand = [\"{{release}}/out/app\", \"--port\", \"{{port}}\"]\n\
         port = {port}\nhealth = {{ http = \"/health\", interval = \"100ms\" }}\n",
        services(&bins.fixture, "local", "production"),
        src.display()
    );
    let agent = Agent::start_with_env(bins, &body, &[("SSH_AUTH_SOCK", &host.auth_sock)])?;
    agent.wait(Duration::from_secs(60), |s| {
        s.services.len() == SERVICES && s.services.iter().all(|x| x.pid.is_some())
    })?;
    let cli = |args: &[&str]| {
        let mut c = Command::new(&bins.homeport);
        c.arg("--config")
            .arg(agent.config())
            .args(args)
            .env("SSH_AUTH_SOCK", &host.auth_sock)
            .stdin(Stdio::null());
        c
    };
    let out = cli(&[
        "host",
        "add",
        "vps",
        &host.destination(),
        "--fingerprint",
        &host.fingerprint(),
    ])
    .output()?;
    if !out.status.success() {
        return Err(format!(
            "host add: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    let client = homeport_client::Client::discover(&agent.data())?;
    let remote = client.via_host("vps");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let connected = agent
            .rt
            .block_on(client.hosts())
            .ok()
            .and_then(|h| h.into_iter().find(|h| h.name == "vps"))
            .is_some_and(|h| h.state == HostState::Connected);
        let running = agent.rt.block_on(remote.status()).ok().is_some_and(|s| {
            s.services.len() == SERVICES && s.services.iter().all(|x| x.pid.is_some())
        });
        if connected && running {
            break;
        }
        if Instant::now() > deadline {
            return Err("vps did not connect with its services running within 120 s".into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }

    let mut rows = vec![
        status_cli(&cli, runs)?,
        status_api(&agent, &client, &remote)?,
    ];
    rows.extend(ship(&agent, &client, &host, &src, runs)?);
    Ok(rows)
}

/// `homeport status --json` as a person runs it, a new process each time, this computer's vs the
/// host's (`--host vps`: through this computer's agent and its SSH connection), interleaved.
fn status_cli(cli: &dyn Fn(&[&str]) -> Command, runs: usize) -> Res<Row> {
    let n = (runs * 10).max(30);
    let (mut local, mut remote) = (Vec::new(), Vec::new());
    for _ in 0..n {
        for (args, into) in [
            (&["status", "--json"][..], &mut local),
            (&["--host", "vps", "status", "--json"][..], &mut remote),
        ] {
            let t = Instant::now();
            let out = cli(args).output()?;
            into.push(t.elapsed().as_secs_f64() * 1000.0);
            if !out.status.success() {
                return Err(format!(
                    "homeport {args:?}: {}",
                    String::from_utf8_lossy(&out.stderr)
                )
                .into());
            }
        }
    }
    let (l, r) = (median(local.clone()), median(remote.clone()));
    Ok(Row {
        name: "`homeport status --json`, 10 services: the host's (`--host vps`, over SSH) vs this computer's (median / p90 of the runs)",
        baseline: format!(
            "{l:.1} / {:.1} ms (this computer's agent)",
            quantile(local, 0.9)
        ),
        homeport: format!("{r:.1} / {:.1} ms", quantile(remote, 0.9)),
        ratio: format!("{:.2}×", r / l),
        goal: "reported",
    })
}

/// `GET /api/v1/status` on one keep-alive connection: this agent's own vs the host's, relayed
/// (`/api/v1/hosts/vps/api/v1/status`: this agent → the SSH forward → the host's agent).
fn status_api(
    agent: &Agent,
    client: &homeport_client::Client,
    remote: &homeport_client::Client,
) -> Res<Row> {
    const N: usize = 1000;
    let time = |c: &homeport_client::Client| -> Res<Vec<f64>> {
        agent.rt.block_on(async {
            for _ in 0..50 {
                c.status().await?;
            }
            let mut v = Vec::with_capacity(N);
            for _ in 0..N {
                let t = Instant::now();
                c.status().await?;
                v.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            Ok(v)
        })
    };
    let (l, r) = (time(client)?, time(remote)?);
    let (l50, l99, r50, r99) = (
        quantile(l.clone(), 0.5),
        quantile(l, 0.99),
        quantile(r.clone(), 0.5),
        quantile(r, 0.99),
    );
    Ok(Row {
        name: "`GET /api/v1/status`, 10 services: the host's through this agent vs this agent's (p50 / p99 of 1,000)",
        baseline: format!("{l50:.2} / {l99:.2} ms"),
        homeport: format!("{r50:.2} / {r99:.2} ms"),
        ratio: format!("{:.2}× at p50", r50 / l50),
        goal: "reported",
    })
}

/// Deploys to the host, each time with 50 MB of new files (then once with one file changed),
/// and times its "ship to vps" step against plain `rsync -a` of the same release folder into an
/// empty folder there (then onto the previous copy), over a new SSH connection as by hand.
fn ship(
    agent: &Agent,
    client: &homeport_client::Client,
    host: &SshHost,
    src: &Path,
    runs: usize,
) -> Res<Vec<Row>> {
    let deploy = |seed: u64, files: std::ops::Range<u64>| -> Res<(String, f64, f64)> {
        write_assets(&src.join("assets"), seed, files)?;
        git(src, &["add", "-A"])?;
        git(src, &["commit", "-q", "-m", &seed.to_string()])?;
        let req = DeployRequest {
            app: "shop".into(),
            env: "production".into(),
            kind: DeployKind::Deploy,
            from_env: None,
            release: None,
            git_ref: None,
            build_on_host: false,
        };
        agent.rt.block_on(async {
            let mut events = Box::pin(client.deploy(&req).await?);
            let (mut ship, mut receive) = (None, None);
            while let Some(ev) = events.next().await {
                match ev? {
                    DeployEvent::Step {
                        name, ms: Some(ms), ..
                    } if name == "ship to vps" => ship = Some(ms as f64),
                    DeployEvent::Step {
                        name, ms: Some(ms), ..
                    } if name == "receive on vps" => receive = Some(ms as f64),
                    DeployEvent::Done { record } => {
                        if record.result != DeployResult::Succeeded {
                            return Err(format!("the deploy failed: {:?}", record.error).into());
                        }
                        let id = record.release.clone().ok_or("no release")?;
                        return Ok((
                            id,
                            ship.ok_or("no ship step")?,
                            receive.ok_or("no receive step")?,
                        ));
                    }
                    _ => {}
                }
            }
            Err("the deploy stream ended early".into())
        })
    };
    let rsync = |from: &Path, to: &str| -> Res<f64> {
        let rsh = format!(
            "ssh -p {} -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR",
            host.port
        );
        let t = Instant::now();
        let out = Command::new("rsync")
            .args(["-a", "-e", &rsh])
            .arg(format!("{}/", from.display()))
            .arg(format!("{}@127.0.0.1:{to}/", host.user))
            .env("SSH_AUTH_SOCK", &host.auth_sock)
            .stdin(Stdio::null())
            .output()?;
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        if !out.status.success() {
            return Err(format!("rsync: {}", String::from_utf8_lossy(&out.stderr)).into());
        }
        Ok(ms)
    };
    let releases = agent.data().join("apps/shop/releases");
    let size_mb = |id: &str| -> f64 {
        fn size(p: &Path) -> u64 {
            let Ok(m) = std::fs::symlink_metadata(p) else {
                return 0;
            };
            if m.is_dir() {
                std::fs::read_dir(p)
                    .into_iter()
                    .flatten()
                    .flatten()
                    .map(|e| size(&e.path()))
                    .sum()
            } else {
                m.len()
            }
        }
        size(&releases.join(id)) as f64 / 1e6
    };
    let base_dir = host.home.join("by-hand");
    std::fs::create_dir_all(&base_dir)?;
    std::os::unix::fs::chown(&base_dir, Some(host.uid), Some(host.gid))?;
    let (mut full_ours, mut full_base, mut full_recv, mut inc_ours, mut inc_base) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut mb = 0.0;
    for i in 0..runs {
        let seed = 1000 + i as u64;
        let (id, ship_ms, receive_ms) = deploy(seed, 0..50)?;
        mb = size_mb(&id);
        let to = base_dir.join(format!("full{i}"));
        full_base.push(rsync(&releases.join(&id), &to.display().to_string())?);
        full_ours.push(ship_ms);
        full_recv.push(receive_ms);

        // One file of the fifty changed: ours ships from the release there, by hand onto the
        // copy made above.
        let (id2, ship_ms, _) = deploy(seed + 500, 7..8)?;
        inc_base.push(rsync(&releases.join(&id2), &to.display().to_string())?);
        inc_ours.push(ship_ms);
    }
    let (fb, fo, ib, io) = (
        median(full_base),
        median(full_ours),
        median(inc_base),
        median(inc_ours),
    );
    Ok(vec![
        Row {
            name: "ship a 50 MB release to the host (half of it compressible), nothing of it there yet",
            baseline: format!(
                "{fb:.0} ms (`rsync -a` of the same {mb:.1} MB folder over a new `ssh`)"
            ),
            homeport: format!(
                "{fo:.0} ms (\"ship to vps\": rsync `--compress` over the held connection); then checking every checksum there {:.0} ms",
                median(full_recv)
            ),
            ratio: format!("{:.2}×", fo / fb),
            goal: "≤ 1.3×",
        },
        Row {
            name: "ship the next release, one 1 MB file of 50 changed",
            baseline: format!("{ib:.0} ms (`rsync -a` onto the previous copy)"),
            homeport: format!("{io:.0} ms (from the release running there, `--copy-dest`)"),
            ratio: format!("{:.2}×", io / ib),
            goal: "≤ 1.3×",
        },
    ])
}
