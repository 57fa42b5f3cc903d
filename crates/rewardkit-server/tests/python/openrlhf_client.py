"""OpenRLHF's remote-reward client code path against a running `rewardkit serve`.

Written from the protocol (shared/reference/peers.md and OpenRLHF's remote_rm_utils): a
`requests.post` of {"query", "prompts", "labels"} with a 180 s timeout, `raise_for_status`, up to
five tries one second apart; the trainer then reads `rewards`, `scores` and `extra_logs`.

usage: python openrlhf_client.py PATH/TO/rewardkit
Starts the binary on a free port with an API key, runs the checks, stops it with SIGTERM and
checks that it exits cleanly.
"""

import concurrent.futures
import math
import os
import signal
import subprocess
import sys
import time

import requests

API_KEY = "ci-secret"
SPEC = os.path.join(os.path.dirname(__file__), "..", "..", "..", "..", "examples", "math-rl.toml")


def request_api_wrapper(url, data, headers, try_max_times=5):
    """OpenRLHF's client loop: POST, raise on HTTP errors, retry one second apart."""
    last = None
    for _ in range(try_max_times):
        try:
            response = requests.post(url=url, json=data, headers=headers, timeout=180)
            response.raise_for_status()
            return response
        except requests.RequestException as e:
            last = e
        time.sleep(1)
    raise RuntimeError(f"request failed {try_max_times} times: {last}")


def chatml(question):
    return f"<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n"


def main():
    binary = sys.argv[1]
    server = subprocess.Popen(
        [binary, "serve", "--spec", SPEC, "--port", "0", "--max-batch-wait-ms", "5"],
        stdout=subprocess.PIPE,
        env={**os.environ, "REWARDKIT_API_KEY": API_KEY, "RUST_LOG": "warn"},
        text=True,
    )
    try:
        line = server.stdout.readline()
        prefix = "rewardkit serve: listening on "
        assert line.startswith(prefix), f"unexpected first line {line!r}"
        base = line[len(prefix):].strip()
        auth = {"Content-Type": "application/json", "Authorization": f"Bearer {API_KEY}"}
        run_checks(base, auth)
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            code = server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            raise
    assert code == 0, f"the server exited with {code} after SIGTERM"
    print("ok: the server exited cleanly after SIGTERM")


def run_checks(base, auth):
    url = f"{base}/get_reward"
    questions = [(f"What is {a} + {b}?", a + b) for a in range(8) for b in range(8)]
    cases = []
    for i, (question, answer) in enumerate(questions):
        said = answer if i % 3 else answer + 1  # every third answer is wrong
        response = f"<think>{question}</think>\n#### {said}<|im_end|>"
        cases.append((chatml(question), response, str(answer)))

    # The truth for each case: /v1/score on the explicitly split sample.
    samples = [
        {"prompt": prompt, "completion": response.removesuffix("<|im_end|>"), "reference": label}
        for prompt, response, label in cases
    ]
    truth = request_api_wrapper(f"{base}/v1/score", {"samples": samples}, auth).json()["results"]
    assert all(r["kind"] == "scored" for r in truth), truth

    # OpenRLHF v0.11 posts one sample per request, from many rollout workers at once.
    def one(i):
        prompt, response, label = cases[i]
        r = request_api_wrapper(url, {"query": [prompt + response], "prompts": [prompt], "labels": [label]}, auth)
        return i, r.json(), int(r.headers["x-batch-size"]), float(r.headers["x-queue-time"])

    batch_sizes = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=64) as pool:
        for i, body, batch, queue_ms in pool.map(one, list(range(len(cases))) * 4):
            assert body["rewards"] == [truth[i]["value"]], (i, body, truth[i])
            assert body["scores"] == body["rewards"]
            assert all(math.isfinite(x) for x in body["rewards"])
            for name, values in body["extra_logs"].items():
                assert len(values) == 1 and all(math.isfinite(v) for v in values), (name, values)
            assert body["extra_logs"]["outcome/scored"] == [1.0]
            assert queue_ms >= 0
            batch_sizes.append(batch)
    print(f"ok: {len(batch_sizes)} single-sample requests from 64 threads, largest batch {max(batch_sizes)}")
    assert max(batch_sizes) > 1, "single-sample requests were never coalesced"

    # A whole batch in one request, without prompts: the ChatML marker splits the query.
    body = request_api_wrapper(url, {"query": [p + r for p, r, _ in cases], "labels": [l for _, _, l in cases]}, auth).json()
    assert body["rewards"] == [t["value"] for t in truth], body["rewards"]

    # A query that cannot be split is not a silent score: the fallback goes out, flagged.
    body = request_api_wrapper(url, {"query": ["no chat template here #### 4"], "labels": ["4"]}, auth).json()
    assert body["rewards"] == [0.0] and body["extra_logs"]["outcome/unscorable"] == [1.0], body

    # The client's retry loop gives up on a server that keeps refusing (wrong key: 401).
    started = time.monotonic()
    try:
        request_api_wrapper(url, {"query": ["x"]}, {"Authorization": "Bearer wrong"}, try_max_times=2)
        raise AssertionError("a wrong key was accepted")
    except RuntimeError as e:
        assert "401" in str(e), e
    assert time.monotonic() - started >= 2.0, "tries one second apart"
    print("ok: OpenRLHF client checks passed")


if __name__ == "__main__":
    main()
