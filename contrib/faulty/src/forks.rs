//! `faulty fork N`: starts up to N child processes that only wait to be
//! killed, stopping at the first fork that fails (the plugin's processes
//! limit), then kills and reaps them all and reports how far it got. N
//! bounds it even where no limit stops it.

pub fn up_to(n: usize) -> String {
    let mut children = Vec::new();
    let mut failure = None;
    for _ in 0..n {
        // SAFETY: the child runs only pause(), which is async-signal-safe,
        // until the SIGKILL below (or the host's, for its process group).
        match unsafe { libc::fork() } {
            0 => loop {
                unsafe { libc::pause() };
            },
            -1 => {
                failure = Some(std::io::Error::last_os_error());
                break;
            }
            pid => children.push(pid),
        }
    }
    for &pid in &children {
        // SAFETY: plain syscalls on our own children.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
            libc::waitpid(pid, std::ptr::null_mut(), 0);
        }
    }
    match failure {
        Some(e) => format!("forked {} of {n}, then fork failed: {e}\n", children.len()),
        None => format!("forked {n} of {n}\n"),
    }
}
