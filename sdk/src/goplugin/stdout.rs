//! After the handshake, a plugin's stdout belongs to the host's GRPCStdio
//! stream: fd 1 is replaced by a pipe that a thread drains, so `println!`
//! can never corrupt the protocol or block on a full pipe.

use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use tokio::sync::mpsc;

use plugboard_proto::plugin::{StdioData, stdio_data::Channel};

pub(super) fn capture(feed: mpsc::Sender<StdioData>) -> io::Result<()> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two fresh descriptors into the array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just created and are owned here.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: dup2 onto fd 1 is the documented way to redirect stdout.
    if unsafe { libc::dup2(write.as_raw_fd(), libc::STDOUT_FILENO) } < 0 {
        return Err(io::Error::last_os_error());
    }
    drop(write);
    std::thread::Builder::new().name("stdout-capture".into()).spawn(move || {
        let mut read = std::fs::File::from(read);
        let mut buf = vec![0u8; 1024];
        loop {
            match read.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    // Never block the plugin on a host that does not read
                    // stdio: beyond the buffer, output is dropped.
                    let _ = feed.try_send(StdioData { channel: Channel::Stdout as i32, data: buf[..n].to_vec() });
                }
            }
        }
    })?;
    Ok(())
}
