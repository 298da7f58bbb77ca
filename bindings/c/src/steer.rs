//! Several endpoints on one UDP port: an edge that runs one endpoint per thread or core
//! (its drivers) binds their sockets into one `SO_REUSEPORT` group, numbers each endpoint
//! (`veil_config_set_endpoint_number`) and attaches the program this writes to the group
//! (`setsockopt(fd, SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, ...)`): the kernel then sends
//! every datagram to the socket of the endpoint that owns its connection, whatever the
//! client's address (NAT rebinding, migration), and a new connection from a client's lane
//! to the endpoint the lane's number names. The program is the engine's
//! (`veil_engine::driver_steering`); the host only attaches it.

use crate::panic::boundary;
use crate::ptr;
use crate::result::veil_result::{
    self, VEIL_ERR_BUFFER_TOO_SMALL, VEIL_ERR_INVALID_ARGUMENT, VEIL_OK,
};

/// One classic BPF instruction, laid out as Linux's `struct sock_filter` (a `veil_sock_filter`
/// array is what `struct sock_fprog` points to).
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C)]
pub struct veil_sock_filter {
    /// Operation.
    pub code: u16,
    /// Jump offset when the condition holds.
    pub jt: u8,
    /// Jump offset when it does not.
    pub jf: u8,
    /// Operand.
    pub k: u32,
}

/// Writes the steering program for `drivers` endpoints (1 to 65535) on one port into
/// `program`, room for `capacity` instructions, and its length to `*len`. With too little
/// room (or `program` NULL and `capacity` 0, to ask the size) nothing is written but
/// `*len`, and the result is `VEIL_ERR_BUFFER_TOO_SMALL`.
///
/// Results: `VEIL_OK`; `VEIL_ERR_NULL`; `VEIL_ERR_INVALID_ARGUMENT` (no driver, or
/// `program` misaligned); `VEIL_ERR_BUFFER_TOO_SMALL`.
///
/// # Safety
/// `program` must be NULL or valid for writing `capacity` instructions; `len` NULL or valid
/// for writing one `size_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn veil_driver_steering(
    drivers: u16,
    program: *mut veil_sock_filter,
    capacity: usize,
    len: *mut usize,
) -> veil_result {
    boundary(|| {
        let len = ptr::out(len)?;
        let steps = veil_engine::driver_steering(drivers).ok_or(VEIL_ERR_INVALID_ARGUMENT)?;
        // SAFETY: `len` is checked non-NULL and aligned; the caller promises it writable.
        unsafe { ptr::put(len, steps.len()) };
        if capacity < steps.len() {
            return Err(VEIL_ERR_BUFFER_TOO_SMALL);
        }
        // SAFETY: the caller promises `capacity` writable instructions at `program`.
        let slots = unsafe { ptr::slots(program, capacity) }?;
        for (slot, step) in slots.iter_mut().zip(&steps) {
            *slot = veil_sock_filter {
                code: step.code,
                jt: step.jt,
                jf: step.jf,
                k: step.k,
            };
        }
        Ok(VEIL_OK)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_c_host_gets_the_engines_program_and_its_size() {
        let mut len = 0usize;
        // SAFETY: asking the size: no program, a valid length pointer.
        let asked = unsafe { veil_driver_steering(2, std::ptr::null_mut(), 0, &raw mut len) };
        assert_eq!(asked, VEIL_ERR_BUFFER_TOO_SMALL);
        let want = veil_engine::driver_steering(2).expect("drivers");
        assert_eq!(len, want.len());
        let mut program = vec![veil_sock_filter::default(); len];
        // SAFETY: room for `len` instructions.
        let written =
            unsafe { veil_driver_steering(2, program.as_mut_ptr(), program.len(), &raw mut len) };
        assert_eq!(written, VEIL_OK);
        for (got, want) in program.iter().zip(&want) {
            assert_eq!(
                (got.code, got.jt, got.jf, got.k),
                (want.code, want.jt, want.jf, want.k)
            );
        }
        // SAFETY: no driver; then a NULL length pointer.
        unsafe {
            assert_eq!(
                veil_driver_steering(0, program.as_mut_ptr(), program.len(), &raw mut len),
                VEIL_ERR_INVALID_ARGUMENT
            );
            assert_eq!(
                veil_driver_steering(2, program.as_mut_ptr(), program.len(), std::ptr::null_mut()),
                veil_result::VEIL_ERR_NULL
            );
        }
        assert_eq!(
            std::mem::size_of::<veil_sock_filter>(),
            8,
            "struct sock_filter"
        );
    }
}
