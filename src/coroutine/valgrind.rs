//! Valgrind client requests that tell memcheck where coroutine stacks are.
//!
//! Without them valgrind takes every stack switch for a huge stack-pointer jump and reports
//! bogus invalid reads and writes. Outside valgrind a client request is a handful of no-op
//! rotates, so it costs a few nanoseconds per stack *mapping* (not per switch).

use core::arch::asm;

const STACK_REGISTER: usize = 0x1501;
const STACK_DEREGISTER: usize = 0x1502;

/// Issues a client request; returns `default` when not running under valgrind.
fn client_request(default: usize, request: usize, arg1: usize, arg2: usize) -> usize {
    let args: [usize; 6] = [request, arg1, arg2, 0, 0, 0];
    let mut result = default;
    // SAFETY: the "magic sequence" rotates rdi by 128 bits in total (leaving it unchanged) and
    // `xchg rbx, rbx` is a no-op; valgrind recognises the pattern and reads the six words at rax.
    // Natively nothing but the flags changes.
    unsafe {
        asm!(
            "rol rdi, 3",
            "rol rdi, 13",
            "rol rdi, 61",
            "rol rdi, 51",
            "xchg rbx, rbx",
            inout("rdx") result,
            in("rax") args.as_ptr(),
            options(nostack),
        );
    }
    result
}

/// Registers `[low, high)` as a stack; returns valgrind's id for it (0 natively).
pub(crate) fn stack_register(low: usize, high: usize) -> usize {
    client_request(0, STACK_REGISTER, low, high)
}

/// Forgets a stack registered by [`stack_register`].
pub(crate) fn stack_deregister(id: usize) {
    client_request(0, STACK_DEREGISTER, id, 0);
}
