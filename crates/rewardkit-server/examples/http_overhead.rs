//! HTTP overhead of `rewardkit serve`: samples/s of the same batches of samples
//!
//! 1. scored in process (`Pipeline::score_batch` on a pool of the server's size): the issue's
//!    baseline;
//! 2. in process from and to JSON (`rewardkit_server::score_body`: the server's own parsing,
//!    scoring and encoding of a `/v1/score` body, no HTTP, no queue);
//! 3. through `rewardkit serve` over real sockets;
//!
//! in **interleaved** repeats, with medians and the ratios 3/1 (the whole overhead) and 3/2
//! (what HTTP, the queue and thread hand-offs add beyond JSON). Then the same requests go to a
//! **transport floor**: a bare hyper server (this program with a hidden flag) that reads each
//! body whole and answers as many bytes as rewardkit does — what any HTTP server pays on this
//! machine before it parses a byte. Its CPU per sample plus the in-process JSON cost is the
//! least a server with this wire format can add to the scoring.
//!
//! Besides wall-clock samples/s it reports **CPU time per sample** (Linux `/proc/<pid>/stat`, all
//! threads): of the scoring in process, and of the server plus the client during the HTTP runs.
//! On a shared machine wall-clock ratios move with other people's load; CPU per sample moves much
//! less, and on a machine with cores to spare for the HTTP side the throughput ratio tends to the
//! scoring share of the server's CPU (HTTP work runs alongside the scoring pool).
//!
//! ```text
//! cargo run --release -p rewardkit-server --example http_overhead -- \
//!     BINARY SPEC ROLLOUTS.jsonl [--batch 256] [--clients 4] [--repeats 7] [--passes 1]
//!     [--workers 2] [--http-threads 2] [-- EXTRA SERVE FLAGS…]
//! ```
//!
//! The client is lean on purpose (the machine it runs on may have two cores): request bodies are
//! encoded once before timing, one blocking thread per client sends them over a keep-alive
//! connection and keeps a hash of each response; after timing, one response per distinct body is
//! parsed and compared sample by sample with the in-process scores, and every other response to
//! that body must hash the same. In-process and HTTP repeats alternate, so load from other
//! processes affects both alike; the ratio of medians is the number to quote.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use rewardkit::{Pipeline, Spec};
use rewardkit_core::Sample;

struct Options {
    binary: String,
    spec: String,
    rollouts: String,
    batch: usize,
    clients: usize,
    repeats: usize,
    passes: usize,
    workers: usize,
    http_threads: usize,
    extra: Vec<String>,
}

fn options() -> Result<Options, String> {
    let mut args = std::env::args().skip(1);
    let mut positional = Vec::new();
    let mut o = Options {
        binary: String::new(),
        spec: String::new(),
        rollouts: String::new(),
        batch: 256,
        clients: 4,
        repeats: 7,
        passes: 1,
        workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
        http_threads: 2,
        extra: Vec::new(),
    };
    while let Some(arg) = args.next() {
        let mut number = |name: &str| -> Result<usize, String> {
            args.next()
                .and_then(|v| v.parse().ok())
                .filter(|&v: &usize| v > 0)
                .ok_or_else(|| format!("{name} expects a positive whole number"))
        };
        match arg.as_str() {
            "--batch" => o.batch = number("--batch")?,
            "--clients" => o.clients = number("--clients")?,
            "--repeats" => o.repeats = number("--repeats")?,
            "--passes" => o.passes = number("--passes")?,
            "--workers" => o.workers = number("--workers")?,
            "--http-threads" => o.http_threads = number("--http-threads")?,
            "--" => o.extra = args.by_ref().collect(),
            flag if flag.starts_with("--") => return Err(format!("unknown flag {flag}")),
            _ => positional.push(arg),
        }
    }
    let [binary, spec, rollouts] = <[String; 3]>::try_from(positional)
        .map_err(|_| "usage: http_overhead BINARY SPEC ROLLOUTS.jsonl [flags]".to_string())?;
    (o.binary, o.spec, o.rollouts) = (binary, spec, rollouts);
    Ok(o)
}

/// CPU seconds (user + system, all threads) used so far by process `pid` ("self" for this one).
fn cpu_seconds(pid: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return f64::NAN;
    };
    // Fields after the command name (which may hold spaces): state is field 3, utime 14, stime 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok());
    match (ticks(11), ticks(12)) {
        // USER_HZ is 100 on Linux.
        (Some(user), Some(system)) => (user + system) / 100.0,
        _ => f64::NAN,
    }
}

/// CPU seconds per thread name of process `pid` (threads of one name summed), largest first.
fn cpu_by_thread(pid: &str) -> Vec<(String, f64)> {
    let mut by_name: Vec<(String, f64)> = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return by_name;
    };
    for task in tasks.flatten() {
        let tid = task.file_name().to_string_lossy().into_owned();
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat")) else {
            continue;
        };
        let name = stat
            .split_once('(')
            .and_then(|(_, r)| r.rsplit_once(')'))
            .map_or("?", |(n, _)| n)
            .to_owned();
        let seconds = cpu_seconds(&format!("{pid}/task/{tid}"));
        match by_name.iter_mut().find(|(n, _)| *n == name) {
            Some((_, s)) => *s += seconds,
            None => by_name.push((name, seconds)),
        }
    }
    by_name.sort_by(|a, b| b.1.total_cmp(&a.1));
    by_name
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

struct Server {
    child: Child,
    address: String,
}

impl Server {
    /// `rewardkit serve` with the options' flags.
    fn start(o: &Options) -> Result<Server, String> {
        let mut command = Command::new(&o.binary);
        command
            .args(["serve", "--spec", &o.spec, "--port", "0"])
            .args(["--workers", &o.workers.to_string()])
            .args(["--http-threads", &o.http_threads.to_string()])
            .args(&o.extra);
        Server::spawn(command)
    }

    /// This program as the transport floor (see [`echo_server`]).
    fn start_echo(o: &Options, response_bytes: usize) -> Result<Server, String> {
        let me = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
        let mut command = Command::new(me);
        command.args([
            ECHO_FLAG,
            &response_bytes.to_string(),
            &o.http_threads.to_string(),
        ]);
        Server::spawn(command)
    }

    fn spawn(mut command: Command) -> Result<Server, String> {
        let mut child = command
            .env("RUST_LOG", "error")
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {command:?}: {e}"))?;
        let mut line = String::new();
        let stdout = child.stdout.take().expect("stdout is piped");
        BufReader::new(stdout)
            .read_line(&mut line)
            .map_err(|e| format!("no address from the server: {e}"))?;
        let address = line
            .split("http://")
            .nth(1)
            .map(|a| a.trim().to_owned())
            .ok_or_else(|| format!("unexpected first line from the server: {line:?}"))?;
        Ok(Server { child, address })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 exchange on a keep-alive connection; returns (status, body).
fn exchange(stream: &mut BufReader<TcpStream>, request: &[u8]) -> Result<(u16, Vec<u8>), String> {
    stream
        .get_mut()
        .write_all(request)
        .map_err(|e| format!("write: {e}"))?;
    let mut line = String::new();
    stream
        .read_line(&mut line)
        .map_err(|e| format!("read: {e}"))?;
    let status = line
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {line:?}"))?;
    let mut length = None;
    loop {
        line.clear();
        stream
            .read_line(&mut line)
            .map_err(|e| format!("read: {e}"))?;
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse::<usize>().ok();
            }
        }
    }
    let length = length.ok_or("the response has no content-length")?;
    let mut body = vec![0; length];
    stream
        .read_exact(&mut body)
        .map_err(|e| format!("read body: {e}"))?;
    Ok((status, body))
}

/// A cheap hash (a multiply-rotate fold over 8-byte words): the client must not eat the CPU
/// the server needs. Only used to tell identical responses from different ones.
fn hash(bytes: &[u8]) -> u64 {
    let mut h = bytes.len() as u64;
    let mut words = bytes.chunks_exact(8);
    for word in &mut words {
        let w = u64::from_le_bytes(word.try_into().expect("8 bytes"));
        h = (h ^ w).wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(29);
    }
    for &b in words.remainder() {
        h = (h ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
    h
}

/// Per response: its request's index, its hash, and its body if it is the first pass's.
type Seen = Vec<(usize, u64, Option<Vec<u8>>)>;

/// Sends every request `passes` times from `clients` threads; returns the seconds taken and,
/// per request index, the hashes of its responses (and one body to check).
fn http_run(
    address: &str,
    requests: &Arc<Vec<Vec<u8>>>,
    clients: usize,
    passes: usize,
) -> Result<(f64, Seen), String> {
    let total = requests.len() * passes;
    let next = Arc::new(AtomicUsize::new(0));
    let mut streams = Vec::new();
    for _ in 0..clients {
        let stream = TcpStream::connect(address).map_err(|e| format!("connect: {e}"))?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        streams.push(BufReader::with_capacity(1 << 16, stream));
    }
    let start = Instant::now();
    let handles: Vec<_> = streams
        .into_iter()
        .map(|mut stream| {
            let (requests, next) = (requests.clone(), next.clone());
            std::thread::spawn(move || -> Result<Seen, String> {
                let mut seen = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        return Ok(seen);
                    }
                    let index = i % requests.len();
                    let (status, body) = exchange(&mut stream, &requests[index])?;
                    if status != 200 {
                        return Err(format!(
                            "status {status}: {}",
                            String::from_utf8_lossy(&body)
                        ));
                    }
                    let h = hash(&body);
                    seen.push((index, h, (i < requests.len()).then_some(body)));
                }
            })
        })
        .collect();
    let mut seen = Vec::new();
    for handle in handles {
        seen.extend(handle.join().map_err(|_| "a client thread panicked")??);
    }
    Ok((start.elapsed().as_secs_f64(), seen))
}

/// The hidden first argument that makes this program the transport floor.
const ECHO_FLAG: &str = "--echo-server";

/// The floor of any HTTP reward server on this machine: hyper's HTTP/1.1 connection loop on a
/// tokio runtime with `threads` workers (as `rewardkit serve --http-threads`), which reads each
/// request body whole and answers `response_bytes` fixed bytes (the size of a real answer) —
/// TCP, HTTP parsing and the body copies, without JSON, queue or scoring.
fn echo_server(response_bytes: usize, threads: usize) -> Result<(), String> {
    use http_body_util::{BodyExt as _, Full};
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| e.to_string())?;
        let address = listener.local_addr().map_err(|e| e.to_string())?;
        println!("echo server: listening on http://{address}");
        std::io::stdout().flush().map_err(|e| e.to_string())?;
        let answer = hyper::body::Bytes::from(vec![b' '; response_bytes]);
        loop {
            let (stream, _) = listener.accept().await.map_err(|e| e.to_string())?;
            let _ = stream.set_nodelay(true);
            let answer = answer.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |request: hyper::Request<hyper::body::Incoming>| {
                        let answer = answer.clone();
                        async move {
                            let body = request.into_body().collect().await?.to_bytes();
                            std::hint::black_box(body);
                            Ok::<_, hyper::Error>(hyper::Response::new(Full::new(answer)))
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    })
}

fn run() -> Result<(), String> {
    let o = options()?;
    let text = std::fs::read_to_string(&o.rollouts)
        .map_err(|e| format!("cannot read {}: {e}", o.rollouts))?;
    let mut samples = Vec::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let sample: Sample =
            serde_json::from_str(line).map_err(|e| format!("{}:{}: {e}", o.rollouts, i + 1))?;
        samples.push(sample);
    }
    let batches: Vec<Vec<Sample>> = samples.chunks(o.batch).map(<[Sample]>::to_vec).collect();
    let n: usize = samples.len() * o.passes;
    let spec = Spec::from_path(std::path::Path::new(&o.spec)).map_err(|e| e.to_string())?;
    let pipeline = Pipeline::build(&spec).map_err(|e| e.to_string())?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(o.workers)
        .build()
        .map_err(|e| e.to_string())?;
    let truth: Vec<Vec<Option<f64>>> = batches
        .iter()
        .map(|b| {
            pool.install(|| pipeline.score_batch(b))
                .iter()
                .map(|s| s.reward.value())
                .collect()
        })
        .collect();
    let address_holder;
    let requests: Arc<Vec<Vec<u8>>> = {
        let server = Server::start(&o)?;
        address_holder = server;
        let host = &address_holder.address;
        Arc::new(
            batches
                .iter()
                .map(|b| {
                    let body = serde_json::to_vec(&serde_json::json!({ "samples": b }))
                        .expect("samples serialise");
                    let mut request = format!(
                        "POST /v1/score HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                        body.len()
                    )
                    .into_bytes();
                    request.extend_from_slice(&body);
                    request
                })
                .collect(),
        )
    };
    let server = address_holder;
    let body_bytes: usize = requests.iter().map(Vec::len).sum::<usize>() / requests.len();
    println!(
        "{} samples in {} batches of {} (~{} KB per request), {} pass(es) per repeat; \
         {} scoring workers, {} HTTP threads, {} client threads; {} CPUs",
        samples.len(),
        batches.len(),
        o.batch,
        body_bytes / 1024,
        o.passes,
        o.workers,
        o.http_threads,
        o.clients,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );
    // Warm-up of both sides (page cache, allocator, connections).
    http_run(&server.address, &requests, o.clients, 1)?;
    let (mut inproc, mut http) = (Vec::new(), Vec::new());
    let mut checked = 0usize;
    let mut hashes: Vec<Option<u64>> = vec![None; requests.len()];
    let bodies: Vec<&[u8]> = requests
        .iter()
        .map(|r| {
            let at = r
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .expect("a request has a header end");
            &r[at + 4..]
        })
        .collect();
    let config = rewardkit_server::ServerConfig::default();
    let mut json = Vec::new();
    let server_pid = server.child.id().to_string();
    // CPU seconds: in-process scoring, in-process JSON, server and client during HTTP.
    let mut cpu = [0.0f64; 4];
    println!(
        "{:>6} {:>14} {:>14} {:>14} {:>9} {:>9}",
        "repeat", "in-process/s", "+JSON/s", "HTTP/s", "HTTP/in", "HTTP/JSON"
    );
    for repeat in 0..o.repeats {
        let before = cpu_seconds("self");
        let start = Instant::now();
        for _ in 0..o.passes {
            for b in &batches {
                let scored = pool.install(|| pipeline.score_batch(b));
                std::hint::black_box(scored);
            }
        }
        let a = n as f64 / start.elapsed().as_secs_f64();
        let middle = cpu_seconds("self");
        cpu[0] += middle - before;
        let start = Instant::now();
        for _ in 0..o.passes {
            for body in &bodies {
                let out = pool
                    .install(|| rewardkit_server::score_body(&pipeline, body, &config))
                    .map_err(|e| e.to_string())?;
                std::hint::black_box(out);
            }
        }
        let j = n as f64 / start.elapsed().as_secs_f64();
        let (client_before, server_before) = (cpu_seconds("self"), cpu_seconds(&server_pid));
        cpu[1] += client_before - middle;
        let (seconds, seen) = http_run(&server.address, &requests, o.clients, o.passes)?;
        cpu[2] += cpu_seconds(&server_pid) - server_before;
        cpu[3] += cpu_seconds("self") - client_before;
        let b = n as f64 / seconds;
        for (index, h, body) in seen {
            if let Some(body) = body {
                let value: serde_json::Value =
                    serde_json::from_slice(&body).map_err(|e| format!("response: {e}"))?;
                let results = value["results"]
                    .as_array()
                    .ok_or("a response without results")?;
                let got: Vec<Option<f64>> = results.iter().map(|r| r["value"].as_f64()).collect();
                // serde_json's default float parser may be one ulp off a shortest round-trip
                // decimal, hence the tolerance (the Python load test compares exactly).
                let same = |a: &Option<f64>, b: &Option<f64>| match (a, b) {
                    (Some(a), Some(b)) => (a - b).abs() <= 1e-12 * a.abs().max(1.0),
                    (a, b) => a == b,
                };
                if got.len() != truth[index].len()
                    || got.iter().zip(&truth[index]).any(|(a, b)| !same(a, b))
                {
                    let first = got.iter().zip(&truth[index]).position(|(a, b)| !same(a, b));
                    return Err(format!(
                        "request {index}: HTTP rewards differ from in-process (first at {first:?}: {:?} vs {:?})",
                        first.map(|i| got[i]),
                        first.map(|i| truth[index][i])
                    ));
                }
                checked += got.len();
            }
            match hashes[index] {
                Some(expected) if expected != h => {
                    return Err(format!("request {index}: responses differ between repeats"))
                }
                _ => hashes[index] = Some(h),
            }
        }
        println!(
            "{:>6} {:>14.0} {:>14.0} {:>14.0} {:>9.3} {:>9.3}",
            repeat + 1,
            a,
            j,
            b,
            b / a,
            b / j
        );
        inproc.push(a);
        json.push(j);
        http.push(b);
    }
    let (a, j, b) = (median(&mut inproc), median(&mut json), median(&mut http));
    println!(
        "median samples/s: in process {a:.0}, in process with JSON {j:.0}, HTTP {b:.0}\n\
         HTTP / in-process = {:.3} (overhead {:.1}%); HTTP / in-process-with-JSON = {:.3}; \
         JSON / in-process = {:.3}\n\
         {checked} samples checked against in-process scores, 0 differ",
        b / a,
        (1.0 - b / a) * 100.0,
        b / j,
        j / a
    );
    let per = |seconds: f64| seconds / (n * o.repeats) as f64 * 1e6;
    let (score, json, server_cpu, client) = (per(cpu[0]), per(cpu[1]), per(cpu[2]), per(cpu[3]));
    println!(
        "CPU per sample (all repeats, 10 ms ticks): scoring in process {score:.2} us; \
         in process with JSON {json:.2} us; server {server_cpu:.2} us + client {client:.2} us \
         over HTTP\n\
         scoring share of the server's CPU = {:.3}; in-process / server CPU = {:.3} (client \
         excluded); in-process / (server + client) CPU = {:.3}",
        score / server_cpu,
        score / server_cpu,
        score / (server_cpu + client)
    );
    let threads: Vec<String> = cpu_by_thread(&server_pid)
        .iter()
        .map(|(name, seconds)| format!("{name} {seconds:.2} s"))
        .collect();
    println!(
        "server CPU by thread (whole run, warm-up included): {}",
        threads.join(", ")
    );
    drop(server);

    // The transport floor: the same requests against a bare hyper server that reads each body
    // and answers as many bytes as rewardkit does, on as many runtime threads.
    let mut response_bytes = 0;
    for body in &bodies {
        response_bytes += pool
            .install(|| rewardkit_server::score_body(&pipeline, body, &config))
            .map_err(|e| e.to_string())?
            .len();
    }
    let response_bytes = response_bytes / bodies.len();
    let echo = Server::start_echo(&o, response_bytes)?;
    let echo_pid = echo.child.id().to_string();
    http_run(&echo.address, &requests, o.clients, 1)?;
    let (mut rates, mut echo_cpu) = (Vec::new(), [0.0f64; 2]);
    for _ in 0..o.repeats {
        let (client_before, echo_before) = (cpu_seconds("self"), cpu_seconds(&echo_pid));
        let (seconds, _) = http_run(&echo.address, &requests, o.clients, o.passes)?;
        echo_cpu[0] += cpu_seconds(&echo_pid) - echo_before;
        echo_cpu[1] += cpu_seconds("self") - client_before;
        rates.push(n as f64 / seconds);
    }
    drop(echo);
    let (floor, floor_client) = (per(echo_cpu[0]), per(echo_cpu[1]));
    let best = score / (score + floor + (json - score).max(0.0));
    println!(
        "transport floor (a bare hyper server that reads each body and answers {} bytes; no \
         JSON, no queue, no scoring): {:.0} samples/s; CPU per sample: {floor:.2} us + client \
         {floor_client:.2} us\n\
         best CPU ratio this wire format allows, scoring / (scoring + transport floor + JSON): \
         {best:.3} (client excluded), {:.3} (client included)",
        response_bytes,
        median(&mut rates),
        score / (score + floor + (json - score).max(0.0) + floor_client),
    );
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let result = if args.get(1).map(String::as_str) == Some(ECHO_FLAG) {
        let number = |i: usize| args.get(i).and_then(|v| v.parse().ok()).unwrap_or(0);
        echo_server(number(2), number(3))
    } else {
        run()
    };
    if let Err(e) = result {
        eprintln!("http_overhead: {e}");
        std::process::exit(1);
    }
}
