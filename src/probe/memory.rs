//! Giving a finished pass's memory back to the system before the next pass.
//!
//! mimalloc keeps the pages of freed blocks resident for a while (its purge
//! delay), so that the next allocation of their size needs no help from the
//! kernel. Between the probe's passes that is the wrong trade: what one pass
//! freed (tract's copy of the weights, its plan, the values it kept) stays
//! resident while the next pass allocates its own, and the two add up in
//! the process's peak. Measured on torchvision's VGG-11 (133 M weights),
//! `--overfit-steps 0`: the backward pass started at 1280 MiB resident
//! with the forward pass's memory kept, and at 34 MiB given back; the
//! whole run peaked at 1.69 GB against 1.84 GB.
//!
//! Given back pages are cleared by the kernel again when they are next
//! used, which costs more than it saves on a small model: a ResNet-18 at
//! 64 x 64 took 0.1 s longer. So only a model whose weights are over
//! [`GIVE_BACK_MIN`] gives back.

/// Weight bytes from which a model's passes give back what they freed.
pub const GIVE_BACK_MIN: usize = 256 << 20;

/// Returns the pages of every block freed so far to the system when the
/// model's weights take `weight_bytes`, over [`GIVE_BACK_MIN`].
pub fn give_back(weight_bytes: usize) {
    if weight_bytes < GIVE_BACK_MIN {
        return;
    }
    // SAFETY: `mi_collect` takes a flag and only releases memory mimalloc
    // holds free; it may be called from any thread at any time, and when
    // mimalloc is not the process's allocator it has nothing to release.
    unsafe { libmimalloc_sys::mi_collect(true) }
}
