"""Load, faults and bad input against `rewardkit serve` (issue 4), bounded in time.

    python bench/server_load.py BINARY SPEC ROLLOUTS.jsonl [--short] [--out RESULTS.json]

Wall time on the 2-core machine: about 100 s in full mode, about 30 s with --short.

* Truth: the same rollouts scored in process by `rewardkit score` (same binary, same spec).
* Saturation: N concurrent clients (1, 16, 64, 256; --short: 1, 16) send batches of 1, 32 and
  256 samples (--short: 1, 32) to /v1/score for a fixed time (3 s; --short 1.5 s); prints
  requests/s, samples/s, p50/p90/p99 latency and counts by status. Every 200 response is checked
  sample by sample against the truth (nothing lost, duplicated or changed). With the default
  queue (65,536 samples) every answer must be a 200.
* Overload: a server with a small queue (--max-queue-samples 128) and 256 clients (--short: 64)
  sending batches of 32: the excess must be refused over the socket with 429, each with a
  `Retry-After` header and the `queue_full` error code, while every 200 stays correct.
* Faults, each followed by a health check and a correctness check: under load (16 clients x 32),
  at the same time, clients that disconnect mid-body and before reading their answer, slow-body
  clients (408 from the body time-out), slow-header clients (closed by the header time-out),
  malformed bodies (400/422), oversized bodies (413); a spec reload (SIGHUP) during load with no
  failed request; then SIGTERM during load (every completed response must be correct and the
  server must exit 0).
* Peer (full mode, when fastapi and uvicorn are installed): OpenRLHF's /get_reward protocol
  against rewardkit (a gsm8k-only spec) and against bench/fastapi_rm.py (a `serve_rm.py`-style
  FastAPI server running verl's GSM8K rule), at 64 clients x batch 1 (OpenRLHF's pattern) and
  16 clients x batch 256; prints samples/s and the ratio.

HTTP overhead (samples/s over HTTP vs in process) is measured by the Rust harness
crates/rewardkit-server/examples/http_overhead.rs, which bench/server_load.sh runs in full mode: a
Python client cannot measure it on a 2-core machine, it takes the CPU the server needs.

Needs aiohttp (the client OpenRLHF uses); bench/server_load.sh makes the venv.
"""

import asyncio
import concurrent.futures
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import aiohttp


def percentile(values, q):
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def truth_of(binary, spec, rollouts):
    """Scores every rollout in process; returns (samples, rewards, in-process samples/s)."""
    samples = [json.loads(l) for l in open(rollouts) if l.strip()]
    samples = [s for s in samples if isinstance(s.get("completion"), str)]
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "in.jsonl")
        with open(data, "w") as f:
            for s in samples:
                f.write(json.dumps(s) + "\n")
        out = os.path.join(tmp, "out.jsonl")
        start = time.perf_counter()
        subprocess.run([binary, "score", "--spec", spec, "--input", data, "--output", out,
                        "--json", "--no-progress"], check=True, stdout=subprocess.DEVNULL)
        elapsed = time.perf_counter() - start
        rewards = [json.loads(l)["reward"] for l in open(out)]
    assert len(rewards) == len(samples)
    return samples, rewards, len(samples) / elapsed


class Server:
    def __init__(self, binary, spec, *extra):
        self.proc = subprocess.Popen(
            [binary, "serve", "--spec", spec, "--port", "0", *extra],
            stdout=subprocess.PIPE, text=True, env={**os.environ, "RUST_LOG": "error"})
        line = self.proc.stdout.readline()
        self.url = line.split("listening on ", 1)[1].strip()
        host, port = self.url.removeprefix("http://").rsplit(":", 1)
        self.address = (host, int(port))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=30)


class Tally:
    def __init__(self):
        self.latencies, self.samples, self.statuses, self.wrong, self.transport = [], 0, {}, 0, 0
        self.untyped_429 = 0  # 429s without Retry-After or without the queue_full code

    def summary(self, seconds):
        ok = len(self.latencies)
        return {
            "requests_per_s": round(ok / seconds, 1),
            "samples_per_s": round(self.samples / seconds, 1),
            "p50_ms": round(percentile(self.latencies, 0.50) * 1e3, 2),
            "p90_ms": round(percentile(self.latencies, 0.90) * 1e3, 2),
            "p99_ms": round(percentile(self.latencies, 0.99) * 1e3, 2),
            "statuses": self.statuses,
            "wrong": self.wrong,
            "transport_errors": self.transport,
            "untyped_429": self.untyped_429,
        }


async def client(session, url, samples, truth, batch, until, tally, offset):
    i = offset * batch
    n = len(samples)
    while time.perf_counter() < until:
        idx = [(i + k) % n for k in range(batch)]
        i += batch * 7919
        start = time.perf_counter()
        try:
            async with session.post(url + "/v1/score", json={"samples": [samples[j] for j in idx]}) as r:
                body = await r.read()
                tally.statuses[r.status] = tally.statuses.get(r.status, 0) + 1
                if r.status == 200:
                    tally.latencies.append(time.perf_counter() - start)
                    results = json.loads(body)["results"]
                    tally.samples += len(results)
                    if len(results) != batch or any(res["value"] != truth[j] for res, j in zip(results, idx)):
                        tally.wrong += 1
                elif r.status == 429:
                    retry = r.headers.get("Retry-After", "")
                    try:
                        code = json.loads(body)["error"]["code"]
                    except (ValueError, KeyError, TypeError):
                        code = None
                    if not retry.isdigit() or int(retry) < 1 or code != "queue_full":
                        tally.untyped_429 += 1
                    # A real client waits Retry-After seconds; the test waits briefly to keep
                    # the pressure on.
                    await asyncio.sleep(0.01)
        except (aiohttp.ClientError, asyncio.TimeoutError):
            tally.transport += 1


async def load(url, samples, truth, clients, batch, seconds):
    tally = Tally()
    connector = aiohttp.TCPConnector(limit=clients, force_close=False)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=180)) as session:
        until = time.perf_counter() + seconds
        await asyncio.gather(*(client(session, url, samples, truth, batch, until, tally, c) for c in range(clients)))
    return tally.summary(seconds)


def raw(address, data, pause=None, rest=b"", read=True):
    """Sends raw bytes; returns the status code (or None)."""
    with socket.create_connection(address, timeout=20) as s:
        s.sendall(data)
        if pause:
            time.sleep(pause)
        if rest:
            s.sendall(rest)
        if not read:
            return None
        reply = s.recv(100)
        return int(reply[9:12]) if reply.startswith(b"HTTP/1.1") else None


def post_raw(body, length=None):
    length = len(body) if length is None else length
    return (b"POST /v1/score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {length}\r\nConnection: close\r\n\r\n".encode() + body)


async def get_reward_load(url, samples, clients, batch, seconds):
    tally = Tally()
    connector = aiohttp.TCPConnector(limit=clients)

    async def one(session, offset):
        i = offset * batch
        while time.perf_counter() < until:
            rows = [samples[(i + k) % len(samples)] for k in range(batch)]
            i += batch * 7919
            body = {"query": [r["prompt"] + r["completion"] for r in rows],
                    "prompts": [r["prompt"] for r in rows],
                    "labels": [str(r.get("reference", "")) for r in rows]}
            start = time.perf_counter()
            try:
                async with session.post(url + "/get_reward", json=body) as r:
                    data = await r.read()
                    tally.statuses[r.status] = tally.statuses.get(r.status, 0) + 1
                    if r.status == 200:
                        tally.latencies.append(time.perf_counter() - start)
                        rewards = json.loads(data)["rewards"]
                        tally.samples += len(rewards)
                        tally.wrong += len(rewards) != batch
            except (aiohttp.ClientError, asyncio.TimeoutError):
                tally.transport += 1

    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=180)) as session:
        until = time.perf_counter() + seconds
        await asyncio.gather(*(one(session, c) for c in range(clients)))
    return tally.summary(seconds)


async def compare_fastapi(binary, samples, seconds, report):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    here = os.path.dirname(os.path.abspath(__file__))
    peer = subprocess.Popen([sys.executable, os.path.join(here, "fastapi_rm.py"), str(port)])
    with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as spec:
        spec.write('[[term]]\nname = "correct"\nkind = "gsm8k"\n')
    server = Server(binary, spec.name)
    try:
        peer_url = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                await asyncio.sleep(0.1)
        rows = []
        print(f"{'':>10} {'clients':>7} {'batch':>5} {'samples/s':>10} {'p50 ms':>8} {'p99 ms':>8}")
        for clients, batch in [(64, 1), (16, 256)]:
            rk = await get_reward_load(server.url, samples, clients, batch, seconds)
            py = await get_reward_load(peer_url, samples, clients, batch, seconds)
            for name, r in (("rewardkit", rk), ("fastapi", py)):
                print(f"{name:>10} {clients:>7} {batch:>5} {r['samples_per_s']:>10} {r['p50_ms']:>8} {r['p99_ms']:>8}  {r['statuses']}")
            ratio = rk["samples_per_s"] / max(py["samples_per_s"], 1e-9)
            print(f"{'':>10} rewardkit / fastapi samples/s: {ratio:.1f}x")
            rows.append({"clients": clients, "batch": batch, "rewardkit": rk, "fastapi": py,
                         "ratio": round(ratio, 2)})
        report["fastapi_peer"] = rows
    finally:
        server.stop()
        peer.terminate()
        peer.wait(timeout=10)
        os.unlink(spec.name)


def slow_headers(address, count):
    """Opens `count` connections that send half a request line and stop (slowloris)."""
    socks = []
    for _ in range(count):
        s = socket.create_connection(address, timeout=10)
        s.sendall(b"POST /v1/score HTTP/1.1\r\nHost: x\r\nContent-")
        socks.append(s)
    return socks


def closed_by_server(sock):
    """When (perf_counter) the server closed the connection (EOF or reset), or None."""
    try:
        while sock.recv(200):
            pass
        return time.perf_counter()
    except (ConnectionResetError, BrokenPipeError):
        return time.perf_counter()
    except socket.timeout:
        return None
    finally:
        sock.close()


def disconnectors(address, one, count):
    """Clients that leave mid-body, and clients that send everything and leave before the answer."""
    for _ in range(count):
        raw(address, post_raw(one[: len(one) // 2], len(one)), read=False)
        raw(address, post_raw(one), read=False)
    return count * 2


async def malformed(url, seconds):
    """Bad bodies sent in a loop; returns {status: count}. Each must be a 400 or 422."""
    bodies = [b"\x00\xff garbage {{{", b'{"samples": [', b'{"samples": 5}', b"[]",
              b'{"samples": [{"prompt": "p"}]}', b'{"samples": [{"completion": 7}]}',
              b'{"samples": [{"completion": "x"}], "extra": 1}', "\u00e9".encode("latin-1")]
    statuses = {}
    until = time.perf_counter() + seconds
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        i = 0
        while time.perf_counter() < until:
            body = bodies[i % len(bodies)]
            i += 1
            async with session.post(url + "/v1/score", data=body,
                                    headers={"Content-Type": "application/json"}) as r:
                await r.read()
                statuses[r.status] = statuses.get(r.status, 0) + 1
    return statuses


def clean(r):
    """A load tally with only correct 200s: no other status, no transport error."""
    return (r["wrong"] == 0 and set(r["statuses"]) == {200} and r["transport_errors"] == 0)


async def faults(binary, spec, samples, truth, report):
    header_ms = 1000
    server = Server(binary, spec, "--body-timeout-ms", "500", "--header-timeout-ms", str(header_ms),
                    "--max-body-bytes", "1000000")
    url = server.url
    one = json.dumps({"samples": samples[:4]}).encode()
    checks = {}
    # Single-shot bad input first.
    checks["slow_body_408"] = raw(server.address, post_raw(one[:10], len(one)), pause=1.0) == 408
    checks["oversized_413"] = raw(server.address, post_raw(b"x" * 10, 5_000_000)) == 413
    chunked = (b"POST /v1/score HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
               b"Connection: close\r\n\r\n" + b"%x\r\n" % 1_100_000 + b"x" * 1_100_000 + b"\r\n0\r\n\r\n")
    checks["oversized_chunked_413"] = raw(server.address, chunked) == 413
    checks["garbage_400"] = raw(server.address, post_raw(b"\x00\xff garbage {{{")) == 400
    checks["garbage_request_line"] = raw(server.address, b"\x16\x03\x01 not http\r\n\r\n") in (400, None)
    # Everything at once, under load: 20 slow-header connections, disconnecting clients,
    # slow bodies and malformed bodies while 16 clients score batches of 32.
    # Blocking socket work runs on its own threads (asyncio's default pool has only a few).
    threads = concurrent.futures.ThreadPoolExecutor(max_workers=40)
    loop = asyncio.get_running_loop()

    def bg(fn, *args):
        return loop.run_in_executor(threads, fn, *args)

    start = time.perf_counter()
    slow = slow_headers(server.address, 20)
    watchers = [bg(closed_by_server, s) for s in slow]
    loaded = asyncio.create_task(load(url, samples, truth, 16, 32, 3.0))
    bad = asyncio.create_task(malformed(url, 2.5))
    left = bg(disconnectors, server.address, one, 50)
    slow_bodies = [bg(raw, server.address, post_raw(one[:10], len(one)), 1.0) for _ in range(5)]
    during, bad_statuses, left_count, *slow_body_codes = await asyncio.gather(loaded, bad, left, *slow_bodies)
    closed_at = await asyncio.gather(*watchers)
    threads.shutdown()
    closed = [t is not None for t in closed_at]
    closed_after = max((t - start for t in closed_at if t is not None), default=float("nan"))
    checks["load_correct_during_faults"] = clean(during)
    checks["malformed_400_422_under_load"] = bool(bad_statuses) and set(bad_statuses) <= {400, 422}
    checks["slow_body_408_under_load"] = all(code == 408 for code in slow_body_codes)
    # Closed by the header time-out (1 s), not left open until the load ended (3 s).
    checks["slow_headers_closed"] = all(closed) and closed_after < 2.5
    # A reload during load: no failed request, every answer correct (the spec file is unchanged).
    task = asyncio.create_task(load(url, samples, truth, 16, 32, 2.0))
    for _ in range(5):
        await asyncio.sleep(0.3)
        server.proc.send_signal(signal.SIGHUP)
    during_reload = await task
    checks["reload_under_load_no_failure"] = clean(during_reload) and during_reload["statuses"].get(200, 0) > 0
    metrics = await asyncio.to_thread(lambda: __import__("urllib.request").request.urlopen(url + "/metrics").read().decode())
    reloads = sum(float(l.split()[-1]) for l in metrics.splitlines()
                  if l.startswith('rewardkit_spec_reloads_total{result="ok"}'))
    checks["reloads_counted"] = reloads >= 5
    after = await load(url, samples, truth, 4, 8, 0.5)
    checks["healthy_after_faults"] = clean(after) and after["statuses"].get(200, 0) > 0
    # SIGTERM during load: completed responses are correct, the server exits 0.
    task = asyncio.create_task(load(url, samples, truth, 16, 32, 3.0))
    await asyncio.sleep(1.0)
    code = server.stop()
    during_term = await task
    checks["sigterm_completed_correct"] = during_term["wrong"] == 0
    checks["sigterm_exit_0"] = code == 0
    report["faults"] = {"checks": checks, "under_load": during, "malformed_statuses": bad_statuses,
                        "disconnecting_clients": left_count, "slow_header_connections": len(slow),
                        "slow_headers_closed_within_s": round(closed_after, 2), "header_timeout_ms": header_ms,
                        "reload_load": during_reload, "reloads_ok": reloads, "sigterm_load": during_term}
    print(f"  under load: {during['statuses']} wrong={during['wrong']} transport={during['transport_errors']}; "
          f"malformed answers {bad_statuses}; {left_count} disconnecting clients; "
          f"{sum(closed)}/{len(slow)} slow-header connections closed (the last {closed_after:.2f} s after opening, "
          f"header time-out {header_ms} ms); 5 slow bodies {slow_body_codes}")
    print(f"  reload under load: {during_reload['statuses']} wrong={during_reload['wrong']}; "
          f"SIGTERM under load: {during_term['statuses']} wrong={during_term['wrong']}, exit {code}")
    for name, ok in checks.items():
        print(f"  {'ok  ' if ok else 'FAIL'} {name}")
    return all(checks.values())


async def overload(binary, spec, samples, truth, clients, seconds, report):
    """A small queue and many clients: the excess gets typed 429s over the socket."""
    server = Server(binary, spec, "--max-queue-samples", "128")
    try:
        r = await load(server.url, samples, truth, clients, 32, seconds)
    finally:
        code = server.stop()
    r.update(clients=clients, batch=32, queue_capacity_samples=128)
    report["overload"] = r
    n429 = r["statuses"].get(429, 0)
    print(f"overload: {clients} clients x batch 32, queue of 128 samples: {r['statuses']}, "
          f"{r['samples_per_s']} samples/s, p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms; "
          f"429s without Retry-After/queue_full: {r['untyped_429']}; wrong={r['wrong']} "
          f"transport={r['transport_errors']}")
    return (n429 > 0 and r["untyped_429"] == 0 and r["wrong"] == 0 and r["transport_errors"] == 0
            and set(r["statuses"]) <= {200, 429} and r["statuses"].get(200, 0) > 0 and code == 0)


async def main(argv):
    short = "--short" in argv
    out = argv[argv.index("--out") + 1] if "--out" in argv else None
    binary, spec, rollouts = [a for a in argv if not a.startswith("--") and a != out][:3]
    begun = time.perf_counter()
    samples, truth, _ = truth_of(binary, spec, rollouts)
    print(f"{len(samples)} samples scored in process for the truth")
    report = {"samples": len(samples), "short": short, "cpus": os.cpu_count(), "saturation": []}
    clients_list = [1, 16] if short else [1, 16, 64, 256]
    batches = [1, 32] if short else [1, 32, 256]
    seconds = 1.5 if short else 3.0
    ok = True
    started = time.perf_counter()
    server = Server(binary, spec)
    print(f"{'clients':>7} {'batch':>5} {'req/s':>9} {'samples/s':>10} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8}  statuses")
    for clients in clients_list:
        for batch in batches:
            r = await load(server.url, samples, truth, clients, batch, seconds)
            r.update(clients=clients, batch=batch)
            report["saturation"].append(r)
            print(f"{clients:>7} {batch:>5} {r['requests_per_s']:>9} {r['samples_per_s']:>10} "
                  f"{r['p50_ms']:>8} {r['p90_ms']:>8} {r['p99_ms']:>8}  {r['statuses']} wrong={r['wrong']} transport={r['transport_errors']}")
            ok &= clean(r)
    ok &= server.stop() == 0
    print(f"(saturation grid: {time.perf_counter() - started:.0f} s)")
    good = await overload(binary, spec, samples, truth, 64 if short else 256, 2.0 if short else 4.0, report)
    print(f"  {'ok  ' if good else 'FAIL'} overload_typed_429")
    ok &= good
    if not short:
        try:
            import fastapi, uvicorn  # noqa: F401
            print("peer: OpenRLHF /get_reward, rewardkit vs a serve_rm.py-style FastAPI server (verl GSM8K rule)")
            await compare_fastapi(binary, samples, seconds, report)
        except ImportError:
            print("peer: skipped (pip install fastapi uvicorn)")
    print("faults:")
    ok &= await faults(binary, spec, samples, truth, report)
    report["wall_s"] = round(time.perf_counter() - begun, 1)
    report["ok"] = bool(ok)
    if out:
        with open(out, "w") as f:
            json.dump(report, f, indent=1)
    print(f"{'ok' if ok else 'FAILED'} ({report['wall_s']} s)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
