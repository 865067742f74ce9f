"""Layer 1 (top), the wire: bytes and JSON-RPC in and out, and each LSP method wired to its
handler. Imports the layers below it (handlers, flow, adapters), never the other way."""
