//! An allocator that remembers the largest single allocation made on this thread, so a run
//! can tell a decoder that trusted a declared length from one that checked it against the
//! input. A binary or test opts in with
//! `#[global_allocator] static A: tally_fuzz::alloc::Counting = tally_fuzz::alloc::Counting;`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

pub struct Counting;

thread_local! {
    static PEAK: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    let _ = PEAK.try_with(|p| {
        if size > p.get() {
            p.set(size);
        }
    });
}

// SAFETY: every call is passed to the system allocator unchanged; the bookkeeping touches
// only a thread-local `Cell` with a const initializer, which never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        System.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        System.realloc(ptr, layout, new_size)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

pub fn reset_peak() {
    let _ = PEAK.try_with(|p| p.set(0));
}

/// The largest single allocation on this thread since [`reset_peak`] (0 when [`Counting`]
/// is not the global allocator).
pub fn peak() -> usize {
    PEAK.try_with(|p| p.get()).unwrap_or(0)
}

/// What a decoder may allocate at once for an input of `len` bytes: a fixed allowance plus a
/// bounded multiple of the input (a decoded value takes more room than its bytes: a one-byte
/// status becomes an enum of a few dozen bytes).
pub fn limit_for(len: usize) -> usize {
    256 * 1024 + 64 * len
}
