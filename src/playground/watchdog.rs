//! A last line of defence against orphaned servers.
//!
//! `Drop` covers panics, but not a test binary killed by a signal or a
//! timeout (no destructor runs then). Each cluster therefore spawns a tiny
//! `sh` in its own process group that blocks reading a pipe from us. Every
//! copy of the pipe's write end dies with our process (Rust opens pipes
//! close-on-exec, so mariadbd never inherits it), so the read returns EOF
//! exactly when we are gone, without polling. The shell then SIGKILLs
//! every mariadbd started with a config file inside the cluster dir and,
//! for a temporary dir, removes it. A normal shutdown writes "stop" first.

use std::io::Write;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};

use super::error::{io_err, PlaygroundError};

const SCRIPT: &str = r#"
dir="$1"; clean="$2"
IFS= read -r line || true
[ "$line" = stop ] && exit 0
for c in /proc/[0-9]*/cmdline; do
  case "$(tr '\0' ' ' < "$c" 2>/dev/null)" in
    *"--defaults-file=$dir/"*) p="${c#/proc/}"; kill -9 "${p%/cmdline}" 2>/dev/null || true ;;
  esac
done
if [ "$clean" = 1 ]; then sleep 0.5; rm -rf -- "$dir"; fi
"#;

#[derive(Debug)]
pub(crate) struct Watchdog {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Watchdog {
    /// `remove_dir`: also delete `dir` if we die (temporary cluster dirs).
    pub(crate) fn spawn(dir: &Path, remove_dir: bool) -> Result<Watchdog, PlaygroundError> {
        use std::os::unix::process::CommandExt;
        let mut child = Command::new("/bin/sh")
            .arg("-c")
            .arg(SCRIPT)
            .arg("causeway-playground-watchdog")
            .arg(dir)
            .arg(if remove_dir { "1" } else { "0" })
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Not in our group: a Ctrl-C that kills us must not kill it.
            .process_group(0)
            .spawn()
            .map_err(io_err("spawning the playground watchdog (/bin/sh)"))?;
        let stdin = child.stdin.take();
        Ok(Watchdog { child, stdin })
    }

    /// Tells the watchdog that cleanup was done and reaps it.
    pub(crate) fn disarm(&mut self) {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.write_all(b"stop\n");
        }
        let _ = self.child.wait();
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.disarm();
    }
}
