//! Progress on stderr while something long runs.

use std::io::{IsTerminal, Write as _};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A status line on stderr while something long runs, only when stderr is a terminal.
pub struct Spinner {
    state: Option<Arc<Mutex<String>>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Spinner {
    pub fn start(message: impl Into<String>) -> Spinner {
        if !std::io::stderr().is_terminal() {
            return Spinner {
                state: None,
                task: None,
            };
        }
        let state = Arc::new(Mutex::new(message.into()));
        let s = state.clone();
        let task = tokio::spawn(async move {
            const FRAMES: [char; 4] = ['|', '/', '-', '\\'];
            let t0 = Instant::now();
            let mut i = 0usize;
            loop {
                tokio::time::sleep(Duration::from_millis(120)).await;
                if let Ok(msg) = s.lock() {
                    let mut err = std::io::stderr().lock();
                    let _ = write!(
                        err,
                        "\r{} {} ({:.1}s)\x1b[K",
                        FRAMES[i % 4],
                        msg,
                        t0.elapsed().as_secs_f64()
                    );
                    let _ = err.flush();
                }
                i += 1;
            }
        });
        Spinner {
            state: Some(state),
            task: Some(task),
        }
    }

    pub fn set(&self, message: impl Into<String>) {
        if let Some(s) = &self.state {
            if let Ok(mut m) = s.lock() {
                *m = message.into();
            }
        }
    }

    /// Prints a line on stdout without tearing the status line.
    pub fn println(&self, line: &str) {
        match &self.state {
            Some(s) => {
                let _g = s.lock();
                eprint!("\r\x1b[K");
                println!("{line}");
            }
            None => println!("{line}"),
        }
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
            let _g = self.state.as_ref().map(|s| s.lock());
            eprint!("\r\x1b[K");
            let _ = std::io::stderr().flush();
        }
    }
}
