//! The rlimits of a launch, set by the child between fork and exec.

/// rlimits as `(soft, hard)`.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Rlimits {
    pub address_space: Option<(u64, u64)>,
    pub cpu: Option<(u64, u64)>,
    pub open_files: Option<(u64, u64)>,
    pub processes: Option<(u64, u64)>,
}

impl Rlimits {
    /// Runs in the forked child: only `setrlimit`, which is async-signal-safe.
    pub fn apply(&self) -> std::io::Result<()> {
        let all = [
            (libc::RLIMIT_AS, self.address_space),
            (libc::RLIMIT_CPU, self.cpu),
            (libc::RLIMIT_NOFILE, self.open_files),
            (libc::RLIMIT_NPROC, self.processes),
        ];
        for (resource, value) in all {
            if let Some((soft, hard)) = value {
                let limit = libc::rlimit { rlim_cur: soft as libc::rlim_t, rlim_max: hard as libc::rlim_t };
                // SAFETY: setrlimit reads the struct we pass.
                if unsafe { libc::setrlimit(resource, &limit) } != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
        }
        Ok(())
    }
}
