//! `faulty spin`: burns CPU on the calling thread until the process is
//! stopped (by its `cpu_time` limit, in the tests).

pub fn forever() -> ! {
    let mut x: u64 = 1;
    loop {
        // Opaque to the optimizer, so the loop really computes.
        x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
    }
}
