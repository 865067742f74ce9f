"""Adapters that run inside vLLM (imported by vLLM, not by the engine): see docs/pool.md."""
