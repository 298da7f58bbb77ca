//! Upgrading `veil server` in place (SIGHUP): a successor process takes over the listening
//! sockets while the old process drains, and nobody's connection is dropped.
//!
//! 1. Every edge binds its UDP socket with `SO_REUSEPORT` (a fresh start first checks that
//!    nobody else listens there, so two edges on one port still fail the second).
//! 2. On SIGHUP the old process attaches a classic BPF program to the port's socket group
//!    ([`veil_engine::upgrade_steering`]): datagrams whose connection ID names the next
//!    generation, and new clients' Initials, go to the successor's socket; the rest to the
//!    old process's. Until the successor's socket joins, the program's choice is past the
//!    group's end and the kernel keeps everything with the old process.
//! 3. It starts the program at its own path again (the new binary, if one was installed
//!    there) with the same arguments, handing over by inheritance: the TCP listeners (the
//!    on-ramp's and the metrics', so that their accept queues carry over), the self-signed
//!    certificate if there is one (clients pinned it), and two pipes: one the successor
//!    writes `ready` on once it serves, one that ends when the old process exits. The
//!    environment variable [`ENV`] says which descriptor is which.
//! 4. The successor binds its own socket into the group and issues connection IDs of the
//!    next generation. Once it is ready, the old process tells systemd the new main PID,
//!    stops accepting on the TCP listeners, sends GOAWAY on every connection and lets open
//!    tunnels run for the upgrade drain before it exits. Clients open their new tunnels
//!    on a new connection, to the successor.
//! 5. When the old process has exited the successor detaches the program (every socket in
//!    the group is its own) and may be upgraded in turn.
//!
//! A successor that fails to start, or is not ready within [`READY_WITHIN`], changes
//! nothing: the old process goes on serving.

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};

/// The environment variable that tells a successor what it inherited; set by veil only.
pub const ENV: &str = "VEIL_UPGRADE";

/// How long a successor may take to start serving before the upgrade is abandoned.
pub const READY_WITHIN: Duration = Duration::from_secs(30);

/// What a process started by an upgrade inherited from its predecessor.
#[derive(Debug)]
pub struct Inheritance {
    /// This process's generation (its predecessor's plus one).
    pub generation: u8,
    /// The UDP address the predecessor listens on.
    pub udp: SocketAddr,
    /// The TCP on-ramp's listener, if the predecessor had one.
    pub tcp: Option<TcpListener>,
    /// The metrics listener, if the predecessor had one.
    pub metrics: Option<TcpListener>,
    /// The predecessor's self-signed certificate and key (PEM), if it had one.
    pub self_signed: Option<(String, String)>,
    /// Written once this process serves.
    ready: Option<File>,
    /// Reaches its end when the predecessor has exited.
    predecessor: Option<File>,
}

/// The descriptors and facts of [`ENV`], as text: `key=value` pairs joined by `,`.
#[derive(Debug, Default, PartialEq, Eq)]
struct Handover {
    generation: u8,
    udp: Option<SocketAddr>,
    tcp: Option<RawFd>,
    metrics: Option<RawFd>,
    certificate: Option<RawFd>,
    ready: Option<RawFd>,
    predecessor: Option<RawFd>,
}

impl Handover {
    fn render(&self) -> String {
        let mut parts = vec![format!("generation={}", self.generation)];
        if let Some(udp) = self.udp {
            parts.push(format!("udp={udp}"));
        }
        for (key, fd) in [
            ("tcp", self.tcp),
            ("metrics", self.metrics),
            ("certificate", self.certificate),
            ("ready", self.ready),
            ("predecessor", self.predecessor),
        ] {
            if let Some(fd) = fd {
                parts.push(format!("{key}={fd}"));
            }
        }
        parts.join(",")
    }

    fn parse(text: &str) -> anyhow::Result<Self> {
        let mut handover = Self::default();
        for part in text.split(',') {
            let (key, value) = part
                .split_once('=')
                .with_context(|| format!("{ENV}: `{part}` is not key=value"))?;
            let fd = || -> anyhow::Result<Option<RawFd>> {
                let fd: RawFd = value
                    .parse()
                    .with_context(|| format!("{ENV}: {key}={value}"))?;
                if fd < 3 {
                    bail!("{ENV}: {key}={value} is not an inherited descriptor");
                }
                Ok(Some(fd))
            };
            match key {
                "generation" => {
                    handover.generation = value
                        .parse()
                        .with_context(|| format!("{ENV}: generation"))?;
                }
                "udp" => handover.udp = Some(value.parse().with_context(|| format!("{ENV}: udp"))?),
                "tcp" => handover.tcp = fd()?,
                "metrics" => handover.metrics = fd()?,
                "certificate" => handover.certificate = fd()?,
                "ready" => handover.ready = fd()?,
                "predecessor" => handover.predecessor = fd()?,
                other => bail!("{ENV}: unknown key `{other}`"),
            }
        }
        Ok(handover)
    }
}

/// Takes ownership of an inherited descriptor and keeps it from our own successors.
#[allow(unsafe_code)]
fn adopt(fd: RawFd) -> anyhow::Result<OwnedFd> {
    // SAFETY: `fd` was named in `VEIL_UPGRADE`, which only veil's `spawn_successor` sets,
    // for a descriptor it duplicated for this process alone to inherit; nothing else in
    // this process knows the number, so this is its only owner. `fcntl_getfd` below checks
    // that it is open before anything else uses it.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    rustix::io::fcntl_getfd(&fd).context("an inherited descriptor is not open")?;
    rustix::io::fcntl_setfd(&fd, rustix::io::FdFlags::CLOEXEC)?;
    Ok(fd)
}

impl Inheritance {
    /// What [`ENV`] says this process inherited; `None` when it was started afresh.
    pub fn from_env() -> anyhow::Result<Option<Self>> {
        let Some(text) = std::env::var_os(ENV) else {
            return Ok(None);
        };
        let text = text
            .into_string()
            .map_err(|_| anyhow::anyhow!("{ENV} is not UTF-8"))?;
        let handover = Handover::parse(&text)?;
        let udp = handover
            .udp
            .with_context(|| format!("{ENV}: no udp address"))?;
        let self_signed = match handover.certificate {
            Some(fd) => {
                let mut pem = String::new();
                File::from(adopt(fd)?)
                    .read_to_string(&mut pem)
                    .context("reading the inherited certificate")?;
                let at = pem
                    .find("-----BEGIN PRIVATE KEY-----")
                    .context("the inherited certificate has no key")?;
                let key = pem.split_off(at);
                Some((pem, key))
            }
            None => None,
        };
        Ok(Some(Self {
            generation: handover.generation,
            udp,
            tcp: handover.tcp.map(adopt).transpose()?.map(TcpListener::from),
            metrics: handover
                .metrics
                .map(adopt)
                .transpose()?
                .map(TcpListener::from),
            self_signed,
            ready: handover.ready.map(adopt).transpose()?.map(File::from),
            predecessor: handover.predecessor.map(adopt).transpose()?.map(File::from),
        }))
    }

    /// Tells the predecessor this process serves, and returns what ends when the
    /// predecessor has exited.
    pub fn announce_ready(&mut self) -> Option<File> {
        if let Some(mut ready) = self.ready.take()
            && let Err(e) = ready.write_all(b"ready\n")
        {
            tracing::warn!(error = %e, "cannot tell the predecessor we are ready");
        }
        self.predecessor.take()
    }
}

/// Binds the edge's UDP socket with `SO_REUSEPORT`, so that a successor can share it. A
/// fresh start (`shared` false) first binds without it, to check that the address is free
/// (`SO_REUSEPORT` would otherwise let a second edge silently share the port) and, for
/// port 0, to have the kernel pick a port nobody holds.
pub fn bind_udp(addr: SocketAddr, shared: bool) -> anyhow::Result<UdpSocket> {
    let in_use = || format!("cannot listen on {addr} (UDP)");
    // The probe also picks "any port" (0): the kernel's choice for a socket with
    // SO_REUSEPORT may be a port another one of ours already holds, which it would join.
    let addr = if shared {
        addr
    } else {
        UdpSocket::bind(addr).with_context(in_use)?.local_addr()?
    };
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    socket.set_reuse_port(true)?;
    socket.bind(&addr.into()).with_context(in_use)?;
    Ok(socket.into())
}

/// The length of a socket option's value of type `T`.
fn option_len<T>() -> io::Result<libc::socklen_t> {
    libc::socklen_t::try_from(size_of::<T>()).map_err(|_| io::Error::other("option too large"))
}

/// Attaches `program` to the `SO_REUSEPORT` group of `socket` (the one implementation,
/// veil-glommio's, which attaches the same kind of program to its cores' group).
pub fn attach_steering(
    socket: &impl AsFd,
    program: &[veil_engine::BpfInstruction],
) -> io::Result<()> {
    veil_glommio::attach_steering(&socket.as_fd(), program)
}

/// Removes the program of `socket`'s group: the kernel hashes by 4-tuple again.
pub fn detach_steering(socket: &impl AsFd) -> io::Result<()> {
    let unused: libc::c_int = 0;
    set_socket_option(socket, libc::SO_DETACH_REUSEPORT_BPF, &unused)
}

/// `setsockopt(SOL_SOCKET, name, value)`, for the options no safe crate wraps.
#[allow(unsafe_code)]
fn set_socket_option<T>(socket: &impl AsFd, name: libc::c_int, value: &T) -> io::Result<()> {
    // SAFETY: the descriptor is an open socket borrowed for the call, and `value` a live
    // `T` of the length given; what it points to (a program) outlives the call, during
    // which the kernel copies what it needs.
    let result = unsafe {
        libc::setsockopt(
            socket.as_fd().as_raw_fd(),
            libc::SOL_SOCKET,
            name,
            std::ptr::from_ref(value).cast(),
            option_len::<T>()?,
        )
    };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// What the old process hands its successor (duplicates of its own descriptors).
#[derive(Debug)]
pub struct Handing {
    /// The successor's generation.
    pub generation: u8,
    /// The old process's UDP socket (the group's first member).
    pub udp: UdpSocket,
    /// The TCP on-ramp's listener.
    pub tcp: Option<TcpListener>,
    /// The metrics listener.
    pub metrics: Option<TcpListener>,
    /// A self-signed certificate and key, PEM.
    pub self_signed: Option<(String, String)>,
}

impl Handing {
    /// Another handle on the same descriptors, for one attempt.
    pub fn duplicate(&self) -> io::Result<Self> {
        Ok(Self {
            generation: self.generation,
            udp: self.udp.try_clone()?,
            tcp: self.tcp.as_ref().map(TcpListener::try_clone).transpose()?,
            metrics: self
                .metrics
                .as_ref()
                .map(TcpListener::try_clone)
                .transpose()?,
            self_signed: self.self_signed.clone(),
        })
    }
}

/// A successor that said it is ready.
#[derive(Debug)]
pub struct Successor {
    /// Its process.
    pub child: Child,
    /// Held until this process exits: its end tells the successor we are gone.
    pub alive: File,
}

/// The program to start: this one's path. A binary replaced on disk (the upgrade's point)
/// shows as `PATH (deleted)` in `/proc/self/exe`; the new one is at `PATH`.
fn program_path() -> io::Result<std::path::PathBuf> {
    let exe = std::env::current_exe()?;
    let text = exe.as_os_str().to_string_lossy();
    Ok(match text.strip_suffix(" (deleted)") {
        Some(path) => path.into(),
        None => exe,
    })
}

/// A pipe whose read end and write end are both ours (close-on-exec: only the
/// duplicates made for a successor are inherited).
fn pipe() -> io::Result<(File, File)> {
    let (reader, writer) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
    Ok((File::from(reader), File::from(writer)))
}

/// Steers the group, starts the successor, and waits (blocking) until it is ready. On any
/// failure the successor is gone and the old process serves as before.
pub fn spawn_successor(handing: &Handing) -> anyhow::Result<Successor> {
    // One socket in each process: the tokio edge's.
    let program =
        veil_engine::upgrade_steering(handing.generation, 1, 1).context("the steering program")?;
    attach_steering(&handing.udp, &program).context("attaching the steering program")?;
    let udp = handing.udp.local_addr()?;
    // Duplicates without close-on-exec: the successor inherits exactly these.
    let mut inherited: Vec<OwnedFd> = Vec::new();
    let mut inherit = |fd: std::os::fd::BorrowedFd<'_>| -> io::Result<RawFd> {
        let dup = rustix::io::dup(fd)?;
        let raw = dup.as_raw_fd();
        inherited.push(dup);
        Ok(raw)
    };
    let tcp = handing
        .tcp
        .as_ref()
        .map(|l| inherit(l.as_fd()))
        .transpose()?;
    let metrics = handing
        .metrics
        .as_ref()
        .map(|l| inherit(l.as_fd()))
        .transpose()?;
    let certificate = match &handing.self_signed {
        Some((cert, key)) => {
            let (reader, mut writer) = pipe()?;
            // Far below a pipe's capacity: written before the successor reads it.
            writer.write_all(cert.as_bytes())?;
            writer.write_all(key.as_bytes())?;
            drop(writer);
            Some(inherit(reader.as_fd())?)
        }
        None => None,
    };
    let (mut ready_reader, ready_writer) = pipe()?;
    let ready = Some(inherit(ready_writer.as_fd())?);
    let (predecessor_reader, alive) = pipe()?;
    let predecessor = Some(inherit(predecessor_reader.as_fd())?);
    let handover = Handover {
        generation: handing.generation,
        udp: Some(udp),
        tcp,
        metrics,
        certificate,
        ready,
        predecessor,
    };
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let path = program_path()?;
    let mut child = Command::new(&path)
        .args(&args)
        .env(ENV, handover.render())
        .stdin(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", path.display()))?;
    // Only the successor holds the write end now: its exit ends our read.
    drop((inherited, ready_writer, predecessor_reader));
    let (done, answer) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut said = String::new();
        let _ = done.send(ready_reader.read_to_string(&mut said).map(|_| said));
    });
    match answer.recv_timeout(READY_WITHIN) {
        Ok(Ok(said)) if said.starts_with("ready") => Ok(Successor { child, alive }),
        outcome => {
            let _ = child.kill();
            let status = child.wait().ok();
            bail!(
                "the successor (pid {}) did not become ready: {}",
                child.id(),
                match (outcome, status) {
                    (Err(_), _) => format!("nothing within {READY_WITHIN:?}"),
                    (_, Some(status)) => format!("it ended ({status})"),
                    (_, None) => "it ended".to_owned(),
                }
            )
        }
    }
}

/// Waits (blocking) until the predecessor has exited, then detaches the steering program
/// from `socket`'s group.
pub fn after_predecessor(mut predecessor: File, socket: &UdpSocket) {
    let mut rest = Vec::new();
    let _ = predecessor.read_to_end(&mut rest);
    match detach_steering(socket) {
        Ok(()) => tracing::info!("the predecessor has exited; steering detached"),
        Err(e) => tracing::warn!(error = %e, "cannot detach the steering program"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_handover_round_trips_and_rejects_nonsense() {
        let handover = Handover {
            generation: 7,
            udp: Some("127.0.0.1:4433".parse().expect("valid")),
            tcp: Some(5),
            metrics: None,
            certificate: Some(6),
            ready: Some(7),
            predecessor: Some(8),
        };
        assert_eq!(
            Handover::parse(&handover.render()).expect("valid"),
            handover
        );
        assert!(Handover::parse("generation=300").is_err());
        assert!(Handover::parse("tcp=1").is_err(), "standard streams");
        assert!(Handover::parse("pid=5").is_err());
        assert!(Handover::parse("generation").is_err());
    }

    /// The kernel runs the engine's program: with the old process's sockets first in the
    /// group and a successor's next, each ID reaches a socket of its generation.
    #[test]
    fn the_kernel_steers_by_generation() {
        for (older, newer) in [(1u16, 1u16), (2, 2), (1, 2)] {
            steer(older, newer);
        }
    }

    /// The kernel runs the drivers' program: every issued ID reaches its driver's socket,
    /// and a client's Initials the socket of the lane in its source ID, whatever the
    /// sender's port.
    #[test]
    fn the_kernel_keeps_connections_with_their_drivers() {
        let drivers = 3u16;
        let first = bind_udp("127.0.0.1:0".parse().expect("valid"), false).expect("bind");
        let addr = first.local_addr().expect("bound");
        let mut sockets = vec![first];
        for _ in 1..drivers {
            sockets.push(bind_udp(addr, true).expect("join"));
        }
        let program = veil_engine::driver_steering(drivers).expect("program");
        attach_steering(&sockets[0], &program).expect("attach");
        for socket in &sockets {
            socket.set_nonblocking(true).expect("nonblocking");
        }
        let layout = |core| veil_engine::CidLayout::new(core, drivers).expect("valid");
        let short = |id: &[u8]| [&[0x40][..], id, &[0; 20]].concat();
        let initial = |scid: &[u8]| {
            let mut packet = vec![0xc0, 0, 0, 0, 1, 8];
            packet.extend_from_slice(&[0xee; 8]);
            packet.push(u8::try_from(scid.len()).expect("short"));
            packet.extend_from_slice(scid);
            packet.resize(1200, 0);
            packet
        };
        // Many senders: a 4-tuple hash alone would spread them over every socket.
        for _ in 0..8 {
            let sender = UdpSocket::bind("127.0.0.1:0").expect("sender");
            for core in 0..drivers {
                let id = layout(core).issue().expect("rng");
                sender.send_to(&short(&id), addr).expect("send");
                // A lane's source ID: lanes 3 and 4 of 5 go to drivers 0 and 1.
                let lane = if core + 3 < 5 { core + 3 } else { core };
                let lane = veil_engine::CidLayout::new(lane, 5)
                    .expect("valid")
                    .issue()
                    .expect("rng");
                sender.send_to(&initial(&lane), addr).expect("send");
            }
        }
        std::thread::sleep(Duration::from_millis(100));
        let mut buf = [0u8; 1500];
        for (core, socket) in (0..drivers).zip(&sockets) {
            let mut got = 0;
            while let Ok((n, _)) = socket.recv_from(&mut buf) {
                got += 1;
                let owner = if buf[0] & 0x80 == 0 {
                    layout(core).owner_of(&buf[1..17])
                } else {
                    let at = 7 + usize::from(buf[5]);
                    veil_engine::CidLayout::new(0, 5)
                        .expect("valid")
                        .owner_of(&buf[at..at + 16])
                        .map(|lane| lane % drivers)
                };
                assert!(n > 17);
                assert_eq!(owner, Some(core), "driver {core} got another's datagram");
            }
            assert_eq!(got, 16, "driver {core}");
        }
    }

    fn steer(older: u16, newer: u16) {
        let first = bind_udp("127.0.0.1:0".parse().expect("valid"), false).expect("bind");
        let addr = first.local_addr().expect("bound");
        let mut old = vec![first];
        for _ in 1..older {
            old.push(bind_udp(addr, true).expect("join"));
        }
        let program = veil_engine::upgrade_steering(4, older, newer).expect("program");
        // Through a duplicate, as the edge does.
        attach_steering(&old[0].try_clone().expect("dup"), &program).expect("attach");
        let new: Vec<UdpSocket> = (0..newer)
            .map(|_| bind_udp(addr, true).expect("join the group"))
            .collect();
        for socket in old.iter().chain(&new) {
            socket.set_nonblocking(true).expect("nonblocking");
        }
        let layout = veil_engine::CidLayout::new(0, 1).expect("valid");
        let old_id = layout.with_server(9, 3).issue().expect("rng");
        let new_id = layout.with_server(9, 4).issue().expect("rng");
        let short = |id: &[u8]| [&[0x40][..], id, &[0; 20]].concat();
        // A client's first Initial: a random 16-byte ID, never with our tag here.
        let mut initial = vec![0xc0, 0, 0, 0, 1, 16];
        initial.extend_from_slice(&[0xee; 16]);
        initial.resize(1200, 0);
        // Many senders: a 4-tuple hash alone would spread them over every socket.
        for _ in 0..16 {
            let sender = UdpSocket::bind("127.0.0.1:0").expect("sender");
            sender.send_to(&short(&old_id), addr).expect("send");
            sender.send_to(&short(&new_id), addr).expect("send");
            sender.send_to(&initial, addr).expect("send");
        }
        std::thread::sleep(Duration::from_millis(100));
        let drain = |sockets: &[UdpSocket]| {
            let mut got = Vec::new();
            let mut buf = [0u8; 128];
            for socket in sockets {
                while let Ok((n, _)) = socket.recv_from(&mut buf) {
                    got.push(buf[..n].to_vec());
                }
            }
            got
        };
        let (to_old, to_new) = (drain(&old), drain(&new));
        assert_eq!(
            to_old.len(),
            16,
            "{older}+{newer}: the old process got {}",
            to_old.len()
        );
        assert!(
            to_old.iter().all(|d| d[1..17] == old_id),
            "{older}+{newer}: old"
        );
        assert_eq!(
            to_new.len(),
            32,
            "{older}+{newer}: the successor got {}",
            to_new.len()
        );
        assert!(
            to_new
                .iter()
                .all(|d| d[0] & 0x80 != 0 || d[1..17] == new_id),
            "{older}+{newer}: new"
        );
        // Once the old sockets have gone, everything reaches the successor.
        drop(old);
        let sender = UdpSocket::bind("127.0.0.1:0").expect("sender");
        sender.send_to(&short(&old_id), addr).expect("send");
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(
            drain(&new).len(),
            1,
            "{older}+{newer}: after the old sockets closed"
        );
        detach_steering(&new[0]).expect("detach");
    }
}
