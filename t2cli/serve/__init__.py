"""`t2 serve`: the two passes of Transformer² behind an OpenAI-compatible HTTP API (the `t2cli[serve]` extra).

    request ──schema──▶ Ask ──batcher (window, bounded queue)──▶ service: pass 1 per model, pass 2 per expert
                                                                          │
    response ◀──responses (JSON or SSE)◀── Answer (expert, α, confidence, usage) ◀──┘

`app` wires the FastAPI routes, `auth` the bearer key, `metrics` the Prometheus text, `accesslog` one JSON
line per request, `streaming` carries a streamed request's routing and text from the worker thread to its
response as they happen, and `server` runs uvicorn so that SIGTERM drains the queue before exiting 0.
"""
