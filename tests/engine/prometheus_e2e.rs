//! End-to-end tests of the metrics: the real binary runs the real default model
//! (`profiler run --model llama --run-on cpu --duration 40s`) while a real Prometheus
//! scrapes its `--metrics-addr` endpoint, or while it pushes to a real Pushgateway
//! (`--pushgateway`) that Prometheus scrapes; Prometheus' HTTP API is asked whether the
//! samples arrived, and the final values are checked against the JSON report.
//!
//! Every process started here (profiler, prometheus, pushgateway) is killed whatever
//! happens. The two runs take a lock so that they never share the CPUs. A test whose
//! server binary is absent fails, naming the package to install (`scripts/test` installs
//! them).
//!
//! The scrape test needs the metrics of the finished run while the endpoint still
//! serves them. The binary writes its `--out` report after the last request and before
//! its metrics server stops, so `--out` names a FIFO that this test keeps full: the
//! binary blocks in that write until the test has taken its final scrape and drains the
//! FIFO. Linux only (`/proc`, a FIFO opened read-write), like the Debian servers.

#[path = "../common/mod.rs"]
mod common;

use common::prom::{
    free_port, get, parse_exposition, prometheus, pushgateway, require, value_of, PROMETHEUS,
    PROMTOOL, PUSHGATEWAY,
};
use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Barrier, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Length of each run.
const RUN: &str = "40s";
/// Longest wait, beyond the run's length, for the binary to load and finish.
const EXIT_PATIENCE: Duration = Duration::from_secs(100);
/// Concurrent scrapes of the endpoint during generation.
const SCRAPES: usize = 50;
/// `O_NONBLOCK` on Linux (x86_64 and aarch64), for `OpenOptionsExt::custom_flags`.
const O_NONBLOCK: i32 = 0o4000;

/// One run of the model at a time: two would share the CPUs.
fn one_run_at_a_time() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// `profiler run` of the default model on the CPU for [`RUN`], with `extra` flags.
fn run_args(extra: &[String]) -> Vec<String> {
    let mut args: Vec<String> = [
        "run",
        "--model",
        "llama",
        "--run-on",
        "cpu",
        "--duration",
        RUN,
        "--input-len",
        "32",
        "--output-len",
        "16",
        "-q",
        "--format",
        "json",
        "--no-host-check",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend_from_slice(extra);
    args
}

/// The running binary, killed when dropped; stdout and stderr go to files.
struct Profiler {
    child: Child,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Profiler {
    fn spawn(args: &[String], dir: &Path) -> Profiler {
        let stdout = dir.join("profiler.stdout");
        let stderr = dir.join("profiler.stderr");
        let child = common::profiler()
            .args(args)
            .stdin(Stdio::null())
            .stdout(File::create(&stdout).expect("stdout file"))
            .stderr(File::create(&stderr).expect("stderr file"))
            .spawn()
            .expect("cannot start profiler");
        Profiler {
            child,
            stdout,
            stderr,
        }
    }

    fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("cannot poll profiler")
    }

    fn stderr_text(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Fails unless the binary is still running.
    fn assert_running(&mut self, when: &str) {
        if let Some(status) = self.exited() {
            panic!(
                "profiler ended ({status}) {when}; stderr:\n{}",
                self.stderr_text()
            );
        }
    }

    /// Waits (bounded) for the binary to end, expecting success.
    fn wait_success(&mut self, started: Instant) {
        let deadline = started + EXIT_PATIENCE + Duration::from_secs(40);
        let status = loop {
            if let Some(status) = self.exited() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "profiler did not finish in time; stderr:\n{}",
                self.stderr_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        assert!(
            status.success(),
            "profiler failed ({status}); stderr:\n{}",
            self.stderr_text()
        );
    }

    /// The JSON report printed on stdout.
    fn report(&self) -> serde_json::Value {
        let text = std::fs::read_to_string(&self.stdout).expect("stdout");
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("report is not JSON ({e}): {text}"))
    }
}

impl Drop for Profiler {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A FIFO for `--out`, kept full so that the binary blocks in its report write.
struct ReportHold {
    path: PathBuf,
    pipe: File,
    filler: usize,
}

impl ReportHold {
    fn new(dir: &Path) -> ReportHold {
        let path = dir.join("report.fifo");
        let made = Command::new("mkfifo")
            .arg(&path)
            .status()
            .expect("cannot run mkfifo");
        assert!(made.success(), "mkfifo {} failed", path.display());
        let path = std::fs::canonicalize(&path).expect("fifo path");
        // Linux opens a FIFO read-write without waiting for a peer; non-blocking, so that
        // filling it stops at "would block".
        let mut pipe = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(O_NONBLOCK)
            .open(&path)
            .expect("cannot open the fifo");
        let mut filler = 0;
        for chunk in [4096, 1] {
            loop {
                match pipe.write(&vec![b'\n'; chunk]) {
                    Ok(0) => break,
                    Ok(n) => filler += n,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) => panic!("cannot fill the fifo: {e}"),
                }
            }
        }
        assert!(filler > 0, "the fifo took no filler");
        ReportHold { path, pipe, filler }
    }

    /// Whether the binary has the FIFO open, i.e. is blocked writing its report.
    fn held(&self, run: &Profiler) -> bool {
        let fds = format!("/proc/{}/fd", run.child.id());
        std::fs::read_dir(fds)
            .map(|d| {
                d.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                    .any(|target| target == self.path)
            })
            .unwrap_or(false)
    }

    /// Waits (bounded) until the binary is held: every request has finished and its
    /// metrics server still answers.
    fn wait_held(&self, run: &mut Profiler, started: Instant) {
        let deadline = started + EXIT_PATIENCE;
        while !self.held(run) {
            run.assert_running("before writing its report");
            assert!(
                Instant::now() < deadline,
                "profiler never wrote its report; stderr:\n{}",
                run.stderr_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Drains the FIFO until the binary ends; gives the report written to it.
    fn release(mut self, run: &mut Profiler) -> serde_json::Value {
        let deadline = Instant::now() + EXIT_PATIENCE;
        let mut text = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match self.pipe.read(&mut buf) {
                Ok(n) => text.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    // Nothing left to read: the binary has written everything once it ended.
                    if run.exited().is_some() {
                        break;
                    }
                    assert!(
                        Instant::now() < deadline,
                        "profiler did not end after its report; stderr:\n{}",
                        run.stderr_text()
                    );
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => panic!("cannot read the fifo: {e}"),
            }
        }
        assert!(text.len() > self.filler, "nothing written to --out");
        assert!(text[..self.filler].iter().all(|&b| b == b'\n'));
        serde_json::from_slice(&text[self.filler..]).expect("--out report is JSON")
    }
}

/// Scrapes the binary's `/metrics`, expecting 200 and a well-formed exposition.
fn scrape(addr: &str) -> (String, BTreeMap<String, f64>) {
    let (status, body) = get(addr, "/metrics").expect("metrics endpoint unreachable");
    assert_eq!(status, 200, "{body}");
    let samples = parse_exposition(&body);
    (body, samples)
}

/// Series that may only grow: counters, and histograms' buckets, counts and sums (every
/// observation is a non-negative duration).
fn monotonic_series(text: &str, samples: &BTreeMap<String, f64>) -> Vec<String> {
    let mut names = BTreeSet::new();
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words[..] {
            ["#", "TYPE", name, "counter"] => {
                names.insert(name.to_string());
            }
            ["#", "TYPE", name, "histogram"] => {
                for suffix in ["_bucket", "_count", "_sum"] {
                    names.insert(format!("{name}{suffix}"));
                }
            }
            _ => {}
        }
    }
    samples
        .keys()
        .filter(|s| names.contains(s.split('{').next().unwrap_or_default()))
        .cloned()
        .collect()
}

/// `promtool check metrics` on `text`.
fn promtool_check(text: &str) {
    require(PROMTOOL);
    let mut child = Command::new(PROMTOOL)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot start promtool");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("cannot feed promtool");
    let out = child.wait_with_output().expect("promtool");
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn count(report: &serde_json::Value, key: &str) -> f64 {
    report[key]
        .as_u64()
        .unwrap_or_else(|| panic!("report has no count {key}: {report}")) as f64
}

#[test]
#[cfg_attr(
    not(feature = "prometheus-tests"),
    ignore = "needs the Prometheus server, promtool and Pushgateway (Debian packages; scripts/test installs them and turns on prometheus-tests)"
)]
fn prometheus_scrapes_a_real_run() {
    require(PROMETHEUS);
    common::default_weights();
    let _one = one_run_at_a_time();
    let started = Instant::now();
    let dir = common::tempdir();
    let hold = ReportHold::new(dir.path());
    let addr = format!("127.0.0.1:{}", free_port());
    let mut run = Profiler::spawn(
        &run_args(&[
            "--metrics-addr".into(),
            addr.clone(),
            "--out".into(),
            hold.path.display().to_string(),
            "--device".into(),
            "inf2-profile".into(),
        ]),
        dir.path(),
    );
    let prom = prometheus(dir.path(), &addr, false);

    let rate = prom.wait_for_samples(
        r#"rate(profiler_generated_tokens_total{job="profiler",run_on="cpu"}[20s]) > 0"#,
    );
    assert!(rate.len() == 1 && rate[0] > 0.0, "{rate:?}");
    let ttft = prom.wait_for_samples(r#"profiler_ttft_seconds_count{run_on="cpu"} > 0"#);
    assert!(ttft.len() == 1 && ttft[0] >= 1.0, "{ttft:?}");
    assert_eq!(prom.wait_for_samples(r#"up{job="profiler"}"#), vec![1.0]);
    // Projections are published while the run goes on, not only with its report.
    let projected = prom.wait_for_samples(
        r#"profiler_projected_tpot_seconds{job="profiler",instance_type="inf2.48xlarge"} > 0"#,
    );
    assert_eq!(projected.len(), 1, "{projected:?}");
    assert!(
        !hold.held(&run),
        "projections appeared only once the report was being written"
    );

    // Many concurrent scrapes while the model generates.
    let (first_text, first) = scrape(&addr);
    let first_tokens = value_of(&first, "profiler_generated_tokens_total", &[]);
    let barrier = Barrier::new(SCRAPES);
    let bodies: Vec<BTreeMap<String, f64>> = std::thread::scope(|s| {
        let scrapers: Vec<_> = (0..SCRAPES)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    scrape(&addr).1
                })
            })
            .collect();
        scrapers
            .into_iter()
            .map(|t| t.join().expect("a scrape failed"))
            .collect()
    });
    assert!(
        !hold.held(&run),
        "the run ended during the concurrent scrapes"
    );
    run.assert_running("during the concurrent scrapes");
    for b in &bodies {
        assert!(value_of(b, "profiler_generated_tokens_total", &[]) >= first_tokens);
        assert!(value_of(b, "profiler_ttft_seconds_count", &[]) >= 1.0);
    }

    // Counters only grow between two scrapes.
    let (second_text, second) = common::prom::wait_for(|| {
        let (text, s) = scrape(&addr);
        (value_of(&s, "profiler_generated_tokens_total", &[]) > first_tokens).then_some((text, s))
    })
    .expect("no tokens generated between two scrapes");
    let monotonic = monotonic_series(&first_text, &first);
    assert!(
        monotonic
            .iter()
            .any(|s| s.starts_with("profiler_ttft_seconds_bucket")),
        "{monotonic:?}"
    );
    for series in &monotonic {
        let after = second
            .get(series)
            .unwrap_or_else(|| panic!("{series} vanished"));
        assert!(
            after >= &first[series],
            "{series}: {} then {after}",
            first[series]
        );
    }
    promtool_check(&second_text);

    // The final values, scraped while the binary writes its report.
    hold.wait_held(&mut run, started);
    let (final_text, last) = scrape(&addr);
    for series in &monotonic {
        assert!(last[series] >= second[series], "{series} went down");
    }
    promtool_check(&final_text);
    let out_report = hold.release(&mut run);
    run.wait_success(started);
    let report = run.report();
    assert_eq!(out_report, report, "--out and stdout differ");
    assert_eq!(report["interrupted"], serde_json::Value::Bool(false));

    let requests = count(&report, "requests");
    assert!(requests >= 1.0, "{report}");
    assert_eq!(
        value_of(&last, "profiler_ttft_seconds_count", &[]),
        requests
    );
    assert_eq!(
        value_of(&last, "profiler_requests_total", &[("status", "ok")]),
        requests
    );
    assert_eq!(
        value_of(&last, "profiler_requests_total", &[("status", "error")]),
        0.0
    );
    assert_eq!(
        value_of(&last, "profiler_request_duration_seconds_count", &[]),
        requests
    );
    assert_eq!(
        value_of(&last, "profiler_generated_tokens_total", &[]),
        count(&report, "output_tokens")
    );
    assert_eq!(count(&report, "output_tokens"), requests * 16.0);
    assert_eq!(
        value_of(&last, "profiler_prompt_tokens_total", &[]),
        count(&report, "prompt_tokens")
    );
    // The final projection gauges are the report's projections (to the last bits that
    // serde_json's float parsing may lose).
    let rows = report["projections"].as_array().expect("projections");
    assert_eq!(rows.len(), 4, "{report}");
    for row in rows {
        let instance = row["instance"].as_str().unwrap();
        let at = [("profile", "inf2-profile"), ("instance_type", instance)];
        let pairs = [
            (
                "profiler_projected_tpot_seconds",
                row["tpot_ms"].as_f64().unwrap() / 1e3,
            ),
            (
                "profiler_projected_ttft_seconds",
                row["ttft_ms"].as_f64().unwrap() / 1e3,
            ),
            (
                "profiler_projected_cost_usd_per_million_output_tokens",
                row["cost_usd_per_million_output_tokens"].as_f64().unwrap(),
            ),
            (
                "profiler_projected_cost_usd_per_million_tokens",
                row["cost_usd_per_million_tokens"].as_f64().unwrap(),
            ),
        ];
        for (name, want) in pairs {
            let got = value_of(&last, name, &at);
            assert!(
                (got - want).abs() <= 1e-12 * want.abs(),
                "{name} {instance}: scraped {got}, report {want}"
            );
        }
    }
    eprintln!(
        "prometheus_scrapes_a_real_run: {requests} requests, {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

#[test]
#[cfg_attr(
    not(feature = "prometheus-tests"),
    ignore = "needs the Prometheus server, promtool and Pushgateway (Debian packages; scripts/test installs them and turns on prometheus-tests)"
)]
fn a_real_run_pushes_to_the_pushgateway() {
    require(PUSHGATEWAY);
    require(PROMETHEUS);
    common::default_weights();
    let _one = one_run_at_a_time();
    let started = Instant::now();
    let dir = common::tempdir();
    let gateway = pushgateway(dir.path());
    let prom = prometheus(dir.path(), &gateway.addr, true);
    let mut run = Profiler::spawn(
        &run_args(&[
            "--pushgateway".into(),
            format!("http://{}", gateway.addr),
            "--push-interval".into(),
            "2".into(),
        ]),
        dir.path(),
    );

    let rate = prom.wait_for_samples(
        r#"rate(profiler_generated_tokens_total{job="profiler",run_on="cpu"}[20s]) > 0"#,
    );
    assert!(rate.len() == 1 && rate[0] > 0.0, "{rate:?}");
    prom.wait_for_samples(r#"profiler_ttft_seconds_count{job="profiler",run_on="cpu"} > 0"#);
    run.assert_running("while its pushes arrive");

    run.wait_success(started);
    let report = run.report();
    let requests = count(&report, "requests");
    let tokens = count(&report, "output_tokens");
    assert!(requests >= 1.0 && tokens >= 16.0, "{report}");

    // The final push carries the final values.
    let (status, text) = get(&gateway.addr, "/metrics").expect("gateway answers");
    assert_eq!(status, 200, "{text}");
    let pushed = parse_exposition(&text);
    let job = [("job", "profiler"), ("run_on", "cpu")];
    assert_eq!(
        value_of(&pushed, "profiler_generated_tokens_total", &job),
        tokens
    );
    assert_eq!(
        value_of(&pushed, "profiler_ttft_seconds_count", &job),
        requests
    );
    assert_eq!(
        value_of(
            &pushed,
            "profiler_requests_total",
            &[("job", "profiler"), ("status", "ok")]
        ),
        requests
    );
    // ... and Prometheus gets them from the gateway.
    let last = prom.wait_for_samples(&format!(
        r#"profiler_generated_tokens_total{{job="profiler",run_on="cpu"}} == {tokens}"#
    ));
    assert_eq!(last, vec![tokens]);
    eprintln!(
        "a_real_run_pushes_to_the_pushgateway: {requests} requests, {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn a_metrics_port_in_use_fails_before_the_model_loads() {
    let started = Instant::now();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let dir = common::tempdir();
    // Weights that cannot load: were the model loaded first, its error would show instead.
    let broken = dir.path().join("broken.gguf");
    std::fs::write(&broken, b"not a gguf file").expect("write");
    common::default_weights();
    for model in ["llama".to_string(), common::path_str(&broken)] {
        let out = common::run_err(&[
            "run",
            "--model",
            &model,
            "--run-on",
            "cpu",
            "--duration",
            RUN,
            "--input-len",
            "32",
            "--output-len",
            "16",
            "--metrics-addr",
            &addr,
            "-q",
            "--format",
            "json",
            "--no-host-check",
        ]);
        common::assert_one_line_error(&out, "address already in use");
        assert!(out.stdout.is_empty(), "{model}: stdout is not empty");
    }
    drop(taken);
    eprintln!(
        "a_metrics_port_in_use_fails_before_the_model_loads: {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
