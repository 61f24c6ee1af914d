// mimalloc: the pipeline allocates and frees events on different threads
// (decode on a runtime worker, store on the writer thread, deliver on
// another worker); glibc's malloc spent a third of the host's CPU time on
// that in `make bench`, mimalloc a fraction of it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    plugboard_host::runtime::cli::main()
}
