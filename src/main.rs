//! The `jitmux` command: serve, import, manage users, or run a demo ([`jitmux::cli`]).

fn main() -> std::process::ExitCode {
    keep_freed_memory();
    jitmux::cli::main()
}

/// Made bytes (a stored segment read, its transmuxed chunks: hundreds of KB each) are allocated
/// and freed many times a second as the node cache turns over. glibc's defaults hand such
/// blocks back to the kernel (`mmap` above an adaptive threshold, heap trimming above 128 KiB),
/// so the next segment faults fresh zeroed pages in, one per 4 KiB: in a VM that was most of the
/// cost of a cold MPEG-TS download. Keep freed memory for reuse instead; the process's footprint
/// is bounded by the cache (`--cache-bytes`) and the bodies in flight either way.
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; called once before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}
