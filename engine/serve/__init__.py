"""`copyspec serve`: the engine as an OpenAI-compatible streaming chat-completions service.

Data flows one way: `protocol` parses a request, `engine.ServeEngine` runs the turn on its one
engine thread against the session's cached state (`history`, `cache`), and `app` streams the
answer back as server-sent events; `pool` runs the same app as Ray Serve replicas.
"""
