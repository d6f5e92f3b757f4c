"""The gateway: one request's way from a parsed body to an engine stream, with no HTTP in it.

Read it top to bottom in the order a chat request takes:

1. `requests`   `ChatInput` / `CompletionInput`: what the HTTP edge (`api/protocol.py`) hands over.
2. `access`     `Gate`: the bearer token -> `Caller` (department, adapters it may use, limits).
3. `service`    `ChatService.prepare_chat`: `limits` checks, the sampling defaults, the caller's
                tokens per minute charged, then ...
4. `dispatch`   `Dispatcher.dispatch`: an explicit model through the registry, or `model: auto`
                through the router (`router/`), RAG passages added (`rag/`), the adapter version
                the traffic split assigns; the result is a `Dispatch` (decision + assignment).
5. `admission`  `AdmissionQueue`: a generation slot, or a fast 503 when the queue is full.
6. `service`    `ChatService.stream`: the engine's stream (`serve/`), timed and recorded for the
                A/B experiment, the `metrics` and the dashboard's `activity`.

`startup` opens all of it in dependency order into `services.AppServices`, which the HTTP app
keeps on `app.state`. Nothing here imports FastAPI (tests/test_imports.py checks it).
"""
