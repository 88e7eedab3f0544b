//! The `profiler` command: everything happens in the library; this prints the error chain.

fn main() {
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown".into());
        let first = msg.lines().next().unwrap_or("").to_string();
        eprintln!("error: internal error: {first}");
    }));
    let code = match profiler::cli::run() {
        Ok(()) => 0,
        Err(e) => match e.downcast_ref::<profiler::cli::Exit>() {
            Some(profiler::cli::Exit(code)) => *code,
            None => {
                // libtorch messages carry C++ backtraces after the first line.
                let msg = format!("{e:#}");
                eprintln!("error: {}", msg.lines().next().unwrap_or(""));
                1
            }
        },
    };
    std::process::exit(code);
}
