"""A reward server in the style of OpenRLHF's `serve_rm.py`, running verl's GSM8K rule: the peer
that bench/server_load.py compares `rewardkit serve` with.

    python bench/fastapi_rm.py PORT

Like `serve_rm.py`, it scores synchronously inside its async handler, one process, no batching
across requests. The rule is bench/gsm8k_peers.py's `verl_score` (strict mode); the completion is
the query after its prompt.
"""

import os
import sys

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

sys.path.insert(0, os.path.dirname(__file__))
from gsm8k_peers import verl_score  # noqa: E402

app = FastAPI()


@app.post("/get_reward")
async def get_reward(request: Request):
    data = await request.json()
    queries = data.get("query")
    prompts = data.get("prompts") or [""] * len(queries)
    labels = data.get("labels") or [""] * len(queries)
    rewards = [
        float(verl_score(q[len(p):] if q.startswith(p) else q, str(l), "strict"))
        for q, p, l in zip(queries, prompts, labels)
    ]
    return JSONResponse({"rewards": rewards, "scores": rewards, "extra_logs": {"dummy_scores": rewards}})


@app.get("/health")
async def health():
    return {"status": "ok"}


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="error")
