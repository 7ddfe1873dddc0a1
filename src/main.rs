/// jemalloc instead of glibc's malloc: at 10,000 certificates it cut the
/// operator's CPU by a fifth and its peak memory during a renewal of all
/// by a tenth (two runs of each, docs/benchmarks.md). Its settings are
/// built in (`.cargo/config.toml`). Without the `jemalloc` feature the
/// binary uses the system's malloc, which a heap profiler such as
/// heaptrack can follow.
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use clap::Parser;

fn main() -> std::process::ExitCode {
    // Installed as `kubectl-certop`, kubectl runs it as `kubectl certop`.
    let as_plugin = std::env::args_os()
        .next()
        .and_then(|a| {
            std::path::Path::new(&a)
                .file_name()
                .map(|n| n == "kubectl-certop")
        })
        .unwrap_or(false);
    let cli = if as_plugin {
        use clap::{CommandFactory, FromArgMatches};
        let matches = certop::cli::Cli::command()
            .name("kubectl certop")
            .bin_name("kubectl certop")
            .get_matches();
        match certop::cli::Cli::from_arg_matches(&matches) {
            Ok(cli) => cli,
            Err(e) => e.exit(),
        }
    } else {
        certop::cli::Cli::parse()
    };
    match certop::cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
