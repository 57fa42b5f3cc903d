"""Load, faults and bad input against `rewardkit serve` (issue 4), bounded in time.

    python bench/server_load.py BINARY SPEC ROLLOUTS.jsonl [--short] [--out RESULTS.json]

* Truth: the same rollouts scored in process by `rewardkit score` (same binary, same spec).
* Saturation: N concurrent clients (1, 16, 64, 256; --short: 1, 16) send batches of 1, 32 and
  256 samples (--short: 1, 32) to /v1/score for a fixed time; prints requests/s, samples/s,
  p50/p99 latency and error counts by status. Every 200 response is checked sample by sample
  against the truth (nothing lost, duplicated or changed); 429s are counted separately.
* Faults, each followed by a health check and a correctness check: clients that disconnect
  mid-request, a slow body (the server's body time-out answers 408), an oversized body (413),
  garbage bytes (400), a spec reload (SIGHUP) during load, and SIGTERM during load (every
  completed response must still be correct, and the server must exit 0).
* Overhead: samples/s through HTTP at batch 256 (16 clients) vs `rewardkit score` in process on
  the same samples; prints the ratio.
* Peer (full mode, when fastapi and uvicorn are installed): OpenRLHF's /get_reward protocol
  against rewardkit (a gsm8k-only spec) and against bench/fastapi_rm.py (a `serve_rm.py`-style
  FastAPI server running verl's GSM8K rule), at 64 clients × batch 1 (OpenRLHF's pattern) and
  16 clients × batch 256; prints samples/s and the ratio.

Needs aiohttp (the client OpenRLHF uses); bench/server_load.sh makes the venv.
"""

import asyncio
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

    def summary(self, seconds):
        ok = len(self.latencies)
        return {
            "requests_per_s": round(ok / seconds, 1),
            "samples_per_s": round(self.samples / seconds, 1),
            "p50_ms": round(percentile(self.latencies, 0.50) * 1e3, 2),
            "p99_ms": round(percentile(self.latencies, 0.99) * 1e3, 2),
            "statuses": self.statuses,
            "wrong": self.wrong,
            "transport_errors": self.transport,
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
                    await asyncio.sleep(0.01)
        except (aiohttp.ClientError, asyncio.TimeoutError):
            tally.transport += 1


async def load(url, samples, truth, clients, batch, seconds):
    tally = Tally()
    connector = aiohttp.TCPConnector(limit=clients)
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


async def faults(binary, spec, samples, truth, report):
    server = Server(binary, spec, "--body-timeout-ms", "500", "--max-body-bytes", "1000000")
    url = server.url
    one = json.dumps({"samples": samples[:4]}).encode()
    checks = {}
    # Clients that disconnect mid-request (body half sent), then one that leaves before reading.
    for _ in range(50):
        raw(server.address, post_raw(one[: len(one) // 2], len(one)), read=False)
        raw(server.address, post_raw(one), read=False)
    checks["slow_body_408"] = raw(server.address, post_raw(one[:10], len(one)), pause=1.0) == 408
    checks["oversized_413"] = raw(server.address, post_raw(b"x" * 10, 5_000_000)) == 413
    chunked = (b"POST /v1/score HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
               b"Connection: close\r\n\r\n" + b"%x\r\n" % 1_100_000 + b"x" * 1_100_000 + b"\r\n0\r\n\r\n")
    checks["oversized_chunked_413"] = raw(server.address, chunked) == 413
    checks["garbage_400"] = raw(server.address, post_raw(b"\x00\xff garbage {{{")) == 400
    checks["garbage_request_line"] = raw(server.address, b"\x16\x03\x01 not http\r\n\r\n") in (400, None)
    # A reload during load: every answer stays correct (the spec file is unchanged).
    task = asyncio.create_task(load(url, samples, truth, 16, 32, 2.0))
    for _ in range(5):
        await asyncio.sleep(0.3)
        server.proc.send_signal(signal.SIGHUP)
    during_reload = await task
    checks["reload_under_load_correct"] = during_reload["wrong"] == 0 and during_reload["statuses"].get(200, 0) > 0
    after = await load(url, samples, truth, 4, 8, 0.5)
    checks["healthy_after_faults"] = after["wrong"] == 0 and after["statuses"].get(200, 0) > 0
    # SIGTERM during load: completed responses are correct, the server exits 0.
    task = asyncio.create_task(load(url, samples, truth, 16, 32, 3.0))
    await asyncio.sleep(1.0)
    code = server.stop()
    during_term = await task
    checks["sigterm_completed_correct"] = during_term["wrong"] == 0
    checks["sigterm_exit_0"] = code == 0
    report["faults"] = {"checks": checks, "reload_load": during_reload, "sigterm_load": during_term}
    for name, ok in checks.items():
        print(f"  {'ok  ' if ok else 'FAIL'} {name}")
    return all(checks.values())


async def main(argv):
    short = "--short" in argv
    out = argv[argv.index("--out") + 1] if "--out" in argv else None
    binary, spec, rollouts = [a for a in argv if not a.startswith("--") and a != out][:3]
    samples, truth, inproc = truth_of(binary, spec, rollouts)
    print(f"{len(samples)} samples; in process (rewardkit score, file I/O included): {inproc:,.0f} samples/s")
    report = {"samples": len(samples), "in_process_samples_per_s": round(inproc, 1), "short": short,
              "cpus": os.cpu_count(), "saturation": []}
    clients_list = [1, 16] if short else [1, 16, 64, 256]
    batches = [1, 32] if short else [1, 32, 256]
    seconds = 1.5 if short else 5.0
    ok = True
    server = Server(binary, spec)
    print(f"{'clients':>7} {'batch':>5} {'req/s':>9} {'samples/s':>10} {'p50 ms':>8} {'p99 ms':>8}  statuses")
    for clients in clients_list:
        for batch in batches:
            r = await load(server.url, samples, truth, clients, batch, seconds)
            r.update(clients=clients, batch=batch)
            report["saturation"].append(r)
            print(f"{clients:>7} {batch:>5} {r['requests_per_s']:>9} {r['samples_per_s']:>10} "
                  f"{r['p50_ms']:>8} {r['p99_ms']:>8}  {r['statuses']} wrong={r['wrong']} transport={r['transport_errors']}")
            bad = set(r["statuses"]) - {200, 429}
            ok &= r["wrong"] == 0 and not bad and r["transport_errors"] == 0
    overhead = await load(server.url, samples, truth, 16, 256, seconds)
    ratio = overhead["samples_per_s"] / inproc
    report["overhead"] = {"http_batch256_samples_per_s": overhead["samples_per_s"],
                          "in_process_samples_per_s": round(inproc, 1), "http_over_in_process": round(ratio, 3)}
    print(f"overhead: HTTP batch 256 x 16 clients {overhead['samples_per_s']:,.0f} samples/s vs in process "
          f"{inproc:,.0f}: ratio {ratio:.2f}"
          + ("" if len(samples) >= 10_000 else " (too few samples: process start-up dominates)"))
    ok &= server.stop() == 0
    if not short:
        try:
            import fastapi, uvicorn  # noqa: F401
            print("peer: OpenRLHF /get_reward, rewardkit vs a serve_rm.py-style FastAPI server (verl GSM8K rule)")
            await compare_fastapi(binary, samples, seconds, report)
        except ImportError:
            print("peer: skipped (pip install fastapi uvicorn)")
    print("faults:")
    ok &= await faults(binary, spec, samples, truth, report)
    if out:
        with open(out, "w") as f:
            json.dump(report, f, indent=1)
    print("ok" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
