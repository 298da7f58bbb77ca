//! Socket addresses as C holds them: a `struct sockaddr_storage` and its length, so that
//! `recvfrom(2)`, `sendto(2)`, `getaddrinfo(3)` and `accept(2)` fill or read them directly.

use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::ptr::{addr_of, copy_nonoverlapping};

use libc::{AF_INET, AF_INET6, c_int, sockaddr_in, sockaddr_in6, sockaddr_storage, socklen_t};

use crate::result::veil_result;

/// An IPv4 or IPv6 socket address: a `struct sockaddr_in` or `struct sockaddr_in6` at the
/// start of `addr`, and its length in `len`. Pass `(struct sockaddr *)&a.addr, &a.len` to
/// `recvfrom`/`accept`, and `(struct sockaddr *)&a.addr, a.len` to `sendto`/`connect`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct veil_sockaddr {
    /// The address; only the first `len` bytes are read.
    pub addr: sockaddr_storage,
    /// Bytes of `addr` in use: `sizeof(struct sockaddr_in)` or `sizeof(struct sockaddr_in6)`.
    pub len: socklen_t,
}

impl veil_sockaddr {
    /// An all-zero address (family `AF_UNSPEC`, length 0): "no address".
    pub fn unspecified() -> Self {
        Self {
            // SAFETY: sockaddr_storage is plain integers; all zeroes is a valid value.
            addr: unsafe { zeroed() },
            len: 0,
        }
    }
}

impl From<SocketAddr> for veil_sockaddr {
    fn from(addr: SocketAddr) -> Self {
        let mut out = Self::unspecified();
        let storage: *mut sockaddr_storage = &raw mut out.addr;
        match addr {
            SocketAddr::V4(v4) => {
                // SAFETY: sockaddr_in is plain integers; all zeroes is a valid value.
                let mut sin: sockaddr_in = unsafe { zeroed() };
                sin.sin_family = family(AF_INET);
                sin.sin_port = v4.port().to_be();
                sin.sin_addr.s_addr = u32::from(*v4.ip()).to_be();
                // SAFETY: sockaddr_storage is larger than and aligned for every sockaddr_*.
                unsafe { storage.cast::<sockaddr_in>().write(sin) };
                out.len = socklen(size_of::<sockaddr_in>());
            }
            SocketAddr::V6(v6) => {
                // SAFETY: sockaddr_in6 is plain integers; all zeroes is a valid value.
                let mut sin6: sockaddr_in6 = unsafe { zeroed() };
                sin6.sin6_family = family(AF_INET6);
                sin6.sin6_port = v6.port().to_be();
                sin6.sin6_flowinfo = v6.flowinfo().to_be();
                sin6.sin6_addr.s6_addr = v6.ip().octets();
                sin6.sin6_scope_id = v6.scope_id();
                // SAFETY: sockaddr_storage is larger than and aligned for every sockaddr_*.
                unsafe { storage.cast::<sockaddr_in6>().write(sin6) };
                out.len = socklen(size_of::<sockaddr_in6>());
            }
        }
        out
    }
}

/// Reads a caller's address. NULL: `VEIL_ERR_NULL`; misaligned, a length beyond the
/// storage, a family other than `AF_INET`/`AF_INET6` or a length too short for its family:
/// `VEIL_ERR_INVALID_ARGUMENT`.
///
/// # Safety
/// A non-NULL `addr` must point to a `veil_sockaddr` whose `len` field and first `len`
/// bytes of `addr` are initialised.
pub(crate) unsafe fn read(addr: *const veil_sockaddr) -> Result<SocketAddr, veil_result> {
    if addr.is_null() {
        return Err(veil_result::VEIL_ERR_NULL);
    }
    if !addr.is_aligned() {
        return Err(veil_result::VEIL_ERR_INVALID_ARGUMENT);
    }
    // SAFETY: non-NULL, aligned, and `len` is initialised as the caller promises.
    let len = unsafe { addr_of!((*addr).len).read() };
    let len = usize::try_from(len).map_err(|_| veil_result::VEIL_ERR_INVALID_ARGUMENT)?;
    if len > size_of::<sockaddr_storage>() {
        return Err(veil_result::VEIL_ERR_INVALID_ARGUMENT);
    }
    // Copy only the `len` bytes C initialised; the rest of the storage may be garbage.
    // SAFETY: sockaddr_storage is plain integers; all zeroes is a valid value.
    let mut storage: sockaddr_storage = unsafe { zeroed() };
    // SAFETY: the source holds `len` initialised bytes (caller's promise) inside its
    // storage (checked above); the destination is a distinct local of at least `len` bytes.
    unsafe {
        copy_nonoverlapping(
            addr_of!((*addr).addr).cast::<u8>(),
            (&raw mut storage).cast::<u8>(),
            len,
        );
    }
    from_storage(&storage, len)
}

fn from_storage(storage: &sockaddr_storage, len: usize) -> Result<SocketAddr, veil_result> {
    let storage: *const sockaddr_storage = storage;
    match c_int::from(storage_family(storage)) {
        AF_INET if len >= size_of::<sockaddr_in>() => {
            // SAFETY: the storage is aligned for and larger than sockaddr_in, fully
            // initialised (zeroed, then copied), and its family says it holds one.
            let sin = unsafe { storage.cast::<sockaddr_in>().read() };
            let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
            Ok(SocketAddrV4::new(ip, u16::from_be(sin.sin_port)).into())
        }
        AF_INET6 if len >= size_of::<sockaddr_in6>() => {
            // SAFETY: as above, for sockaddr_in6.
            let sin6 = unsafe { storage.cast::<sockaddr_in6>().read() };
            let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            Ok(SocketAddrV6::new(
                ip,
                u16::from_be(sin6.sin6_port),
                u32::from_be(sin6.sin6_flowinfo),
                sin6.sin6_scope_id,
            )
            .into())
        }
        _ => Err(veil_result::VEIL_ERR_INVALID_ARGUMENT),
    }
}

fn storage_family(storage: *const sockaddr_storage) -> libc::sa_family_t {
    // SAFETY: `storage` points to a live, initialised sockaddr_storage (from_storage's
    // argument); ss_family is one of its fields.
    unsafe { addr_of!((*storage).ss_family).read() }
}

fn family(af: c_int) -> libc::sa_family_t {
    libc::sa_family_t::try_from(af).unwrap_or_default()
}

fn socklen(len: usize) -> socklen_t {
    socklen_t::try_from(len).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_round_trip_through_sockaddr() {
        for text in ["127.0.0.1:4433", "[::1]:443", "[fe80::1%3]:53", "0.0.0.0:0"] {
            let addr: SocketAddr = text.parse().expect("address");
            let c = veil_sockaddr::from(addr);
            // SAFETY: `c` is a fully initialised veil_sockaddr.
            let back = unsafe { read(&raw const c) };
            assert_eq!(back, Ok(addr), "{text}");
        }
    }

    #[test]
    fn malformed_addresses_are_refused() {
        let v4 = veil_sockaddr::from(SocketAddr::from(([127, 0, 0, 1], 1)));
        let mut short = v4;
        short.len -= 1;
        let mut long = v4;
        long.len = socklen(size_of::<sockaddr_storage>() + 1);
        let unspecified = veil_sockaddr::unspecified();
        for bad in [short, long, unspecified] {
            // SAFETY: each is a fully initialised veil_sockaddr.
            let read = unsafe { read(&raw const bad) };
            assert_eq!(read, Err(veil_result::VEIL_ERR_INVALID_ARGUMENT));
        }
        // SAFETY: NULL is checked before any read.
        let null = unsafe { read(std::ptr::null()) };
        assert_eq!(null, Err(veil_result::VEIL_ERR_NULL));
    }
}
