//! `homeport-bench --deploy`: the pipeline's own overhead — staging 50 MB of artifacts, the
//! pre-deploy backup, the switch and the restart — without the app's build or health wait.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use homeport_types::{DeployEvent, DeployKind, DeployRecord, DeployRequest, DeployResult};

use crate::{Agent, Bins, Res, Row, median};

fn git(dir: &Path, args: &[&str]) -> Res<()> {
    let st = Command::new("git").arg("-C").arg(dir).args(args).status()?;
    if st.success() {
        Ok(())
    } else {
        Err(format!("git {args:?} failed").into())
    }
}

fn run_deploy(agent: &Agent, req: DeployRequest) -> Res<DeployRecord> {
    let client = homeport_client::Client::discover(&agent.data())?;
    agent.rt.block_on(async {
        let mut events = Box::pin(client.deploy(&req).await?);
        while let Some(ev) = events.next().await {
            if let DeployEvent::Done { record } = ev? {
                return Ok(*record);
            }
        }
        Err("the deploy stream ended early".into())
    })
}

fn ms_of(r: &DeployRecord, steps: &[&str]) -> f64 {
    r.steps
        .iter()
        .filter(|s| steps.contains(&s.name.as_str()))
        .map(|s| s.ms as f64)
        .sum()
}

pub fn run(bins: &Bins, runs: usize) -> Res<Vec<Row>> {
    let dir = tempfile::tempdir()?;
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("assets"))?;
    // 50 MB of artifacts in 50 files.
    for i in 0..50 {
        let data: Vec<u8> = (0..1_000_000u32)
            .map(|j| (j.wrapping_mul(2_654_435_761).wrapping_add(i)) as u8)
            .collect();
        std::fs::write(src.join("assets").join(format!("blob{i:02}")), data)?;
    }
    std::fs::write(
        src.join("build.sh"),
        format!(
            "set -e\nmkdir -p out\ncp '{}' out/app\ncp -r assets out/\n",
            bins.fixture.display()
        ),
    )?;
    git(&src, &["init", "-q", "-b", "main"])?;
    git(
        &src,
        &[
            "-c",
            "user.email=b@x.invalid",
            "-c",
            "user.name=b",
            "add",
            "-A",
        ],
    )?;
    git(
        &src,
        &[
            "-c",
            "user.email=b@x.invalid",
            "-c",
            "user.name=b",
            "commit",
            "-q",
            "-m",
            "bench",
        ],
    )?;
    let db = dir.path().join("main.db");
    {
        let c = rusqlite::Connection::open(&db)?;
        c.execute_batch("PRAGMA journal_mode=WAL; CREATE TABLE hits (id INTEGER PRIMARY KEY, at TEXT NOT NULL); CREATE TABLE pad(v BLOB);")?;
        c.execute("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 2500) INSERT INTO pad SELECT randomblob(4000) FROM n", [])?;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let body = format!(
        "[apps.b]\nsource = \"{}\"\nbuild = [\"sh build.sh\"]\nartifacts = [\"out\"]\nkeep_releases = 3\n[apps.b.env.p]\nhealth_stable = \"0s\"\ndatabases = {{ main = \"{}\" }}\n[apps.b.env.p.services.web]\ncommand = [\"{{release}}/out/app\", \"--port\", \"{{port}}\", \"--db\", \"{{db.main}}\"]\nport = {port}\nhealth = {{ http = \"/health\", interval = \"100ms\" }}\n",
        src.display(),
        db.display()
    );
    let agent = Agent::start(bins, &body)?;
    agent.wait(Duration::from_secs(30), |s| s.services.len() == 1)?;
    let req = |kind| DeployRequest {
        app: "b".into(),
        env: "p".into(),
        kind,
        from_env: None,
        release: None,
        git_ref: None,
        build_on_host: false,
    };
    let overhead_steps = [
        "resolve source",
        "checkout",
        "stage",
        "backup",
        "switch",
        "restart",
    ];
    let mut deploys = Vec::new();
    let mut rollbacks = Vec::new();
    let mut baseline = Vec::new();
    run_deploy(&agent, req(DeployKind::Deploy))?;
    for _ in 0..runs {
        let r = run_deploy(&agent, req(DeployKind::Deploy))?;
        if r.result != DeployResult::Succeeded {
            return Err(format!("deploy failed: {:?}", r.error).into());
        }
        deploys.push(ms_of(&r, &overhead_steps));
        let r = run_deploy(&agent, req(DeployKind::Rollback))?;
        if r.result != DeployResult::Succeeded {
            return Err(format!("rollback failed: {:?}", r.error).into());
        }
        rollbacks.push(ms_of(&r, &["switch", "restart"]));
        // Baseline: copying the same 50 MB with cp.
        let out = dir.path().join("cp-baseline");
        let t = Instant::now();
        let st = Command::new("cp")
            .arg("-r")
            .arg(src.join("assets"))
            .arg(&out)
            .status()?;
        if !st.success() {
            return Err("cp failed".into());
        }
        Command::new("sync").status()?;
        baseline.push(t.elapsed().as_secs_f64() * 1000.0);
        std::fs::remove_dir_all(&out)?;
    }
    let (d, r, b) = (median(deploys), median(rollbacks), median(baseline));
    Ok(vec![
        Row {
            name: "deploy overhead: source, stage 50 MB, backup of a 10 MB database, switch, restart",
            baseline: format!("{b:.0} ms (cp -r of the 50 MB, then sync)"),
            homeport: format!("{d:.0} ms"),
            ratio: format!("{:.2}× the copy", d / b),
            goal: "≤ 1 s",
        },
        Row {
            name: "rollback: switch and restart (health wait excluded)",
            baseline: "–".into(),
            homeport: format!("{r:.0} ms"),
            ratio: "–".into(),
            goal: "≤ 1 s",
        },
    ])
}
