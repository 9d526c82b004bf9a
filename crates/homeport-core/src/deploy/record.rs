//! One run of the pipeline as it is recorded: every step timed, streamed to the caller,
//! published as an event and kept in state.db with the output.

use std::path::PathBuf;
use std::sync::PoisonError;
use std::time::{Instant, SystemTime};

use homeport_types::{
    DeployEvent, DeployRecord, DeployRequest, DeployResult, Discarded, EventKind, StepRecord,
    StepStatus, Subject,
};
use tokio::sync::mpsc;

use super::PipelineError;
use crate::Core;

/// The output kept with a record: enough for a long build's end and any error above it.
const KEEP_OUTPUT_LINES: usize = 5000;
/// The last lines of a failed command step, kept with the step itself.
pub(crate) const FAILED_STEP_TAIL: usize = 40;

pub(crate) fn now() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

/// Collects timings and output, streams them, and keeps the record.
pub(super) struct Run<'a> {
    pub(super) core: &'a Core,
    tx: mpsc::Sender<DeployEvent>,
    pub(super) record: DeployRecord,
    /// Every line of output, `[step] line`, for the record and the diagnostics.
    pub(super) output: Vec<String>,
    started: Instant,
}

impl<'a> Run<'a> {
    pub(super) fn new(
        core: &'a Core,
        req: &DeployRequest,
        previous: Option<String>,
        tx: mpsc::Sender<DeployEvent>,
    ) -> Self {
        let record = DeployRecord {
            id: 0,
            app: req.app.clone(),
            env: req.env.clone(),
            kind: req.kind,
            release: None,
            previous,
            commit: None,
            started: now(),
            finished: None,
            result: DeployResult::Running,
            error: None,
            steps: vec![],
            diagnostics: None,
            ms: None,
            discarded: vec![],
        };
        let mut run = Run {
            core,
            tx,
            record,
            output: Vec::new(),
            started: Instant::now(),
        };
        run.save();
        core.emit(
            run.subject(),
            EventKind::DeployStarted {
                id: run.record.id,
                kind: run.record.kind,
            },
        );
        run
    }

    /// Records how it ended, publishes it, and sends the record as the stream's last line.
    pub(super) async fn finish(mut self, result: Result<(), PipelineError>) -> DeployRecord {
        self.record.finished = Some(now());
        self.record.ms = Some(self.started.elapsed().as_millis() as u64);
        match result {
            Ok(()) => self.record.result = DeployResult::Succeeded,
            Err(e) => {
                self.record.result = DeployResult::Failed;
                self.record.error = Some(e.to_string());
                if self.record.diagnostics.is_none() {
                    self.record.diagnostics = Some(self.step_output_text());
                }
            }
        }
        self.save();
        let r = &self.record;
        self.core.emit(
            self.subject(),
            EventKind::DeployFinished {
                id: r.id,
                kind: r.kind,
                result: r.result,
                release: r.release.clone(),
                previous: r.previous.clone(),
                error: r.error.clone(),
                discarded: r.discarded.clone(),
            },
        );
        let done = self.record.clone();
        self.emit(DeployEvent::Done {
            record: Box::new(done.clone()),
        })
        .await;
        done
    }

    async fn emit(&self, e: DeployEvent) {
        let _ = self.tx.send(e).await;
    }

    pub(super) fn save(&mut self) {
        let output = self.output.iter().rev().take(KEEP_OUTPUT_LINES).rev();
        let output: Vec<&String> = output.collect();
        let store = self
            .core
            .store()
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Ok(id) = store.save_deploy(&self.record, &output) {
            self.record.id = id;
        }
    }

    pub(super) fn subject(&self) -> Subject {
        Subject::env(&self.record.app, &self.record.env)
    }

    /// Data a rollback discarded: kept with the record and said in its end.
    pub(super) fn discarded(&mut self, d: Vec<Discarded>) {
        self.record.discarded.extend(d);
    }

    pub(super) async fn step<T, F>(&mut self, name: &str, work: F) -> Result<T, PipelineError>
    where
        F: std::future::Future<Output = Result<T, PipelineError>>,
    {
        let started = self.begin_step(name).await;
        let r = work.await;
        self.end_step(
            name,
            started,
            r.as_ref().err().map(ToString::to_string),
            vec![],
        )
        .await;
        r
    }

    /// A step made of commands: timed and recorded like [`Run::step`], its output streamed line
    /// by line, and the last lines kept with the step when it fails.
    pub(super) async fn command_step(
        &mut self,
        name: &str,
        steps: Vec<Vec<String>>,
        dir: PathBuf,
        env: Vec<(String, String)>,
    ) -> Result<(), PipelineError> {
        let started = self.begin_step(name).await;
        let from = self.output.len();
        let r = self.commands(name, steps, dir, env).await;
        let tail = if r.is_err() {
            let prefix = format!("[{name}] ");
            let lines: Vec<String> = self.output[from..]
                .iter()
                .map(|l| l.strip_prefix(&prefix).unwrap_or(l).to_owned())
                .collect();
            lines[lines.len().saturating_sub(FAILED_STEP_TAIL)..].to_vec()
        } else {
            vec![]
        };
        self.end_step(
            name,
            started,
            r.as_ref().err().map(ToString::to_string),
            tail,
        )
        .await;
        r
    }

    /// One line of a step's output, streamed and kept with the record.
    pub(super) async fn say(&mut self, step: &str, line: String) {
        self.output.push(format!("[{step}] {line}"));
        self.emit(DeployEvent::Output {
            step: step.into(),
            line,
        })
        .await;
    }

    /// Streams a step's progress to the caller and publishes it as an event.
    async fn step_event(
        &self,
        name: &str,
        status: StepStatus,
        ms: Option<u64>,
        detail: Option<String>,
    ) {
        self.core.emit(
            self.subject(),
            EventKind::DeployStep {
                id: self.record.id,
                kind: self.record.kind,
                step: name.into(),
                status,
                ms,
                detail: detail.clone(),
            },
        );
        self.emit(DeployEvent::Step {
            name: name.into(),
            status,
            ms,
            detail,
        })
        .await;
    }

    pub(super) async fn begin_step(&self, name: &str) -> Instant {
        self.step_event(name, StepStatus::Started, None, None).await;
        Instant::now()
    }

    /// Records a finished step, streams its end, and saves the record.
    pub(super) async fn end_step(
        &mut self,
        name: &str,
        started: Instant,
        error: Option<String>,
        output: Vec<String>,
    ) {
        let ms = started.elapsed().as_millis() as u64;
        let detail = error.clone();
        self.record.steps.push(StepRecord {
            name: name.into(),
            ok: error.is_none(),
            ms,
            detail: detail.clone(),
            output,
        });
        let status = if error.is_none() {
            StepStatus::Ok
        } else {
            StepStatus::Failed
        };
        self.save();
        self.step_event(name, status, Some(ms), detail).await;
    }

    /// Runs commands in a blocking thread, streaming each output line as it comes.
    async fn commands(
        &mut self,
        name: &str,
        steps: Vec<Vec<String>>,
        dir: PathBuf,
        env: Vec<(String, String)>,
    ) -> Result<(), PipelineError> {
        let (ltx, mut lrx) = mpsc::channel::<String>(1024);
        let worker = tokio::task::spawn_blocking(move || {
            for argv in &steps {
                let _ = ltx.blocking_send(format!("$ {}", argv.join(" ")));
                homeport_deploy::run_step(argv, &dir, &env, |l| {
                    let _ = ltx.blocking_send(l.to_owned());
                })?;
            }
            Ok::<(), PipelineError>(())
        });
        while let Some(line) = lrx.recv().await {
            self.say(name, line).await;
        }
        worker.await?
    }

    /// The step output as text, for a record's diagnostics.
    pub(super) fn step_output_text(&self) -> String {
        let mut d = String::from("== step output ==\n");
        for l in self.output.iter().rev().take(500).rev() {
            d.push_str(l);
            d.push('\n');
        }
        d
    }
}
