"""`copyspec serve`: the engine as an OpenAI-compatible streaming chat-completions service.

Data flows one way: `protocol` parses a request, `engine.ServeEngine` runs the turn on its
engine thread (`engine.engine_thread`) against the session's state (`history`, kept in an
`engine.session_cache.SessionCache`), and `app` streams the answer back as server-sent events;
`pool` runs the same app as Ray Serve replicas.
"""
