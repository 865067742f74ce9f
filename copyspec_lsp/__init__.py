"""CopySpec language server: streamed, cancellable LLM code refinement over LSP."""

__version__ = "0.1.0"
