//! Checked views of the pointers C passes in. Each helper states the contract its caller
//! must uphold (what C promised in the header); the checks it can make (NULL, alignment,
//! length, UTF-8) become result codes.

use std::ffi::{CStr, c_char};

use crate::result::veil_result;

/// `len` bytes at `data`; NULL is allowed only with `len == 0`.
///
/// # Safety
/// A non-NULL `data` must be valid for reads of `len` bytes for `'a`, not written meanwhile.
pub(crate) unsafe fn bytes<'a>(data: *const u8, len: usize) -> Result<&'a [u8], veil_result> {
    // SAFETY: the caller's promise, as `items` wants it.
    unsafe { items(data, len) }
}

/// `len` counters at `data`; NULL is allowed only with `len == 0`.
///
/// # Safety
/// A non-NULL `data` must be valid for reads of `len` `uint64_t`s for `'a`, not written
/// meanwhile.
pub(crate) unsafe fn counters<'a>(data: *const u64, len: usize) -> Result<&'a [u64], veil_result> {
    // SAFETY: the caller's promise, as `items` wants it.
    unsafe { items(data, len) }
}

/// `len` values of `T` at `data`: NULL only with `len == 0`, aligned, at most `isize::MAX`
/// bytes.
///
/// # Safety
/// A non-NULL `data` must be valid for reads of `len` `T`s for `'a`, not written meanwhile.
unsafe fn items<'a, T>(data: *const T, len: usize) -> Result<&'a [T], veil_result> {
    if !checked_array(data, len)? {
        return Ok(&[]);
    }
    // SAFETY: non-NULL, aligned, the byte length fits isize, and the caller promises
    // `len` readable values.
    Ok(unsafe { std::slice::from_raw_parts(data, len) })
}

/// Whether `len` values of `T` at `data` may be made a slice: `false` for NULL with
/// `len == 0` (an empty one), `VEIL_ERR_NULL` for NULL with values,
/// `VEIL_ERR_INVALID_ARGUMENT` if misaligned or larger than `isize::MAX` bytes.
fn checked_array<T>(data: *const T, len: usize) -> Result<bool, veil_result> {
    if data.is_null() {
        return if len == 0 {
            Ok(false)
        } else {
            Err(veil_result::VEIL_ERR_NULL)
        };
    }
    let size = len
        .checked_mul(std::mem::size_of::<T>())
        .and_then(|size| isize::try_from(size).ok());
    if !data.is_aligned() || size.is_none() {
        return Err(veil_result::VEIL_ERR_INVALID_ARGUMENT);
    }
    Ok(true)
}

/// `len` writable slots of `T` at `data`: NULL only with `len == 0`, aligned, at most
/// `isize::MAX` bytes.
///
/// # Safety
/// A non-NULL `data` must be valid for writes of `len` `T`s for `'a`, used by nothing else
/// meanwhile.
pub(crate) unsafe fn slots<'a, T>(data: *mut T, len: usize) -> Result<&'a mut [T], veil_result> {
    if !checked_array(data.cast_const(), len)? {
        return Ok(&mut []);
    }
    // SAFETY: non-NULL, aligned, the byte length fits isize, and the caller promises
    // `len` writable values nobody else uses.
    Ok(unsafe { std::slice::from_raw_parts_mut(data, len) })
}

/// A writable buffer of `len` bytes at `data` (NULL or empty: `VEIL_ERR_NULL` /
/// `VEIL_ERR_BUFFER_TOO_SMALL`).
///
/// # Safety
/// A non-NULL `data` must be valid for writes of `len` bytes for `'a`, used by nothing else
/// meanwhile.
pub(crate) unsafe fn buffer<'a>(data: *mut u8, len: usize) -> Result<&'a mut [u8], veil_result> {
    if data.is_null() {
        return Err(veil_result::VEIL_ERR_NULL);
    }
    if len == 0 {
        return Err(veil_result::VEIL_ERR_BUFFER_TOO_SMALL);
    }
    if isize::try_from(len).is_err() {
        return Err(veil_result::VEIL_ERR_INVALID_ARGUMENT);
    }
    // SAFETY: non-NULL, len fits isize, the caller promises `len` writable bytes that
    // nothing else uses meanwhile. The engine only writes into output buffers and reads
    // back only what it wrote (as quiche's own C API does), so bytes C left uninitialised
    // are never read.
    Ok(unsafe { std::slice::from_raw_parts_mut(data, len) })
}

/// A NUL-terminated UTF-8 string.
///
/// # Safety
/// A non-NULL `text` must point to a NUL-terminated string valid for `'a`.
pub(crate) unsafe fn text<'a>(text: *const c_char) -> Result<&'a str, veil_result> {
    if text.is_null() {
        return Err(veil_result::VEIL_ERR_NULL);
    }
    // SAFETY: non-NULL and NUL-terminated, as the caller promises.
    let text = unsafe { CStr::from_ptr(text) };
    text.to_str()
        .map_err(|_| veil_result::VEIL_ERR_INVALID_ARGUMENT)
}

/// Checks an out-pointer: non-NULL and aligned for `T`.
pub(crate) fn out<T>(out: *mut T) -> Result<*mut T, veil_result> {
    if out.is_null() {
        return Err(veil_result::VEIL_ERR_NULL);
    }
    if !out.is_aligned() {
        return Err(veil_result::VEIL_ERR_INVALID_ARGUMENT);
    }
    Ok(out)
}

/// Writes `value` through an out-pointer checked by [`out`], without reading or dropping
/// what was there (C may hand us uninitialised memory).
///
/// # Safety
/// `out` must come from [`out`] and be valid for writes of a `T`.
pub(crate) unsafe fn put<T>(out: *mut T, value: T) {
    // SAFETY: non-NULL and aligned (checked by `out`), writable as the caller promises.
    unsafe { out.write(value) };
}
