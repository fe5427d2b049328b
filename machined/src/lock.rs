//! One rule for poisoned locks, used by every `std::sync::Mutex` in
//! machined: a panic while a lock was held (a bug already reported by the
//! panic hook) must not take PID 1's later work down with it, nor silently
//! drop that work, so the data is taken over as it was left.

use std::sync::{Mutex, MutexGuard, PoisonError};

pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
