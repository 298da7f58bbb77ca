//! Attaching the engine's steering program ([`veil_engine::driver_steering`]) to the
//! cores' `SO_REUSEPORT` group: every datagram then reaches the core that owns its
//! connection without a hop through the channel mesh.

use std::os::fd::AsRawFd;

use nix::libc;
use veil_engine::BpfInstruction;

/// Attaches the program for `cores` sockets to the group of `sockets` (bound in core
/// order). A kernel that refuses it leaves the 4-tuple hash, and the cores forward what
/// reaches the wrong one: logged, not fatal.
pub(crate) fn attach(sockets: &[socket2::Socket], cores: usize) {
    let program = u16::try_from(cores)
        .ok()
        .and_then(veil_engine::driver_steering);
    let attached = match (sockets.first(), program) {
        (Some(socket), Some(program)) => attach_steering(socket, &program),
        _ => Err(std::io::Error::other("no socket or no program")),
    };
    match attached {
        Ok(()) => tracing::debug!(cores, "steering program attached"),
        Err(error) => tracing::warn!(
            %error,
            "cannot attach the steering program: datagrams are spread by 4-tuple and forwarded between cores"
        ),
    }
}

/// Attaches `program` (one of the engine's steering programs) to the `SO_REUSEPORT`
/// group of `socket`: `setsockopt(SO_ATTACH_REUSEPORT_CBPF)`, which neither socket2 nor
/// nix wraps. The kernel checks the program and copies it.
#[allow(unsafe_code)]
pub fn attach_steering(socket: &impl AsRawFd, program: &[BpfInstruction]) -> std::io::Result<()> {
    let mut filters: Vec<libc::sock_filter> = program
        .iter()
        .map(|i| libc::sock_filter {
            code: i.code,
            jt: i.jt,
            jf: i.jf,
            k: i.k,
        })
        .collect();
    let prog = libc::sock_fprog {
        len: u16::try_from(filters.len()).map_err(|_| std::io::Error::other("program too long"))?,
        filter: filters.as_mut_ptr(),
    };
    let len = libc::socklen_t::try_from(size_of::<libc::sock_fprog>())
        .map_err(|_| std::io::Error::other("option too large"))?;
    // SAFETY: the descriptor is the caller's open socket, borrowed for the call; `prog` is a live
    // `sock_fprog` of the length given, pointing at `filters`, which outlives the call,
    // during which the kernel copies the program.
    let result = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_REUSEPORT_CBPF,
            (&raw const prog).cast(),
            len,
        )
    };
    if result == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
