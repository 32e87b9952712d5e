//! Progress of long work, for a person watching. The front end decides whether it is
//! drawn (on a terminal, and not when a script reads the output) and hands a
//! [`Progress`] to the library, which makes its bars from it.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Where a long-running function draws its progress: on stderr, or nowhere.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    shown: bool,
}

impl Progress {
    /// Bars drawn on stderr when `shown`, otherwise kept silent.
    pub fn new(shown: bool) -> Self {
        Progress { shown }
    }

    /// Nothing drawn.
    pub fn hidden() -> Self {
        Progress { shown: false }
    }

    /// A bar of `len` steps (settable later) drawn with an indicatif `template`.
    pub fn bar(&self, len: u64, template: &str) -> ProgressBar {
        let bar = ProgressBar::with_draw_target(Some(len), self.target());
        bar.set_style(
            ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    }

    /// A spinner showing `message` and a count, for work of unknown length.
    pub fn spinner(&self, message: &'static str) -> ProgressBar {
        ProgressBar::with_draw_target(None, self.target())
            .with_style(ProgressStyle::default_spinner())
            .with_message(message)
    }

    fn target(&self) -> ProgressDrawTarget {
        if self.shown {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        }
    }
}
