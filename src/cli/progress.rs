//! Apply progress: a bar on a terminal, plain lines otherwise.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use crate::apply::Progress;
use crate::plan::{Plan, Step};
use crate::provider::{Outcome, ProviderError};

pub trait Finish: Progress {
    fn finish(&self);
}

pub fn for_terminal(plan: &Plan) -> Box<dyn Finish> {
    if std::io::stderr().is_terminal() {
        let bar = ProgressBar::new(plan.steps.len() as u64);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}",
            )
            .expect("valid template"),
        );
        bar.enable_steady_tick(Duration::from_millis(120));
        Box::new(Bar(bar))
    } else {
        Box::new(Lines)
    }
}

struct Bar(ProgressBar);

impl Progress for Bar {
    fn started(&self, step: &Step) {
        self.0
            .set_message(format!("{} {}", step.action.as_str(), step.address));
    }
    fn finished(&self, step: &Step, result: &Result<Outcome, ProviderError>, took: Duration) {
        self.0.inc(1);
        self.0.println(line(step, result, took));
    }
}

impl Finish for Bar {
    fn finish(&self) {
        self.0.finish_and_clear();
    }
}

struct Lines;

impl Progress for Lines {
    fn started(&self, step: &Step) {
        eprintln!("{}: {}...", step.address, step.action.as_str());
    }
    fn finished(&self, step: &Step, result: &Result<Outcome, ProviderError>, took: Duration) {
        eprintln!("{}", line(step, result, took));
    }
}

impl Finish for Lines {
    fn finish(&self) {}
}

fn line(step: &Step, result: &Result<Outcome, ProviderError>, took: Duration) -> String {
    match result {
        Ok(o) => format!(
            "{}: {} ({:.1}s)",
            step.address,
            match o {
                Outcome::Created => "created",
                Outcome::Updated => "updated",
                Outcome::Deleted => "destroyed",
                Outcome::NotNeeded => "already done",
            },
            took.as_secs_f64()
        ),
        Err(e) => format!(
            "{}: FAILED after {:.1}s: {e}",
            step.address,
            took.as_secs_f64()
        ),
    }
}
