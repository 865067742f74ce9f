"""Layer 2, the handlers: one method per LSP method, each short, handing a refine or fix to
the flow and its errors back as JSON-RPC codes. Imports only flow and adapters."""
