//! The panic boundary: no export lets a panic unwind into C.
//!
//! Every export runs its body through [`boundary`] (or the endpoint's variant, which also
//! poisons the endpoint), which turns a panic into `VEIL_ERR_PANIC`. The library must be
//! built with `panic = "unwind"` (the default) for this to hold; with `panic = "abort"` a
//! panic aborts the process instead.

use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::result::veil_result;

/// What an export's body produces: `Ok(code)` or, through `?`, `Err(code)`; both are
/// returned to C as they are.
pub(crate) type Outcome = Result<veil_result, veil_result>;

/// Runs `body`, turning a panic into `VEIL_ERR_PANIC`.
///
/// `AssertUnwindSafe` is right here: after a panic, no state `body` touched is used again
/// except an endpoint's, and [`crate::endpoint`] poisons the endpoint it was working on.
pub(crate) fn boundary(body: impl FnOnce() -> Outcome) -> veil_result {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(code) | Err(code)) => code,
        Err(_) => veil_result::VEIL_ERR_PANIC,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_a_result_code() {
        assert_eq!(boundary(|| panic!("boom")), veil_result::VEIL_ERR_PANIC);
        assert_eq!(
            boundary(|| Ok(veil_result::VEIL_DONE)),
            veil_result::VEIL_DONE
        );
        assert_eq!(
            boundary(|| Err(veil_result::VEIL_ERR_NULL)),
            veil_result::VEIL_ERR_NULL
        );
    }
}
