"""Layer 3, the refine and fix flow: a request from its params to the final text in the
buffer, given a narrow context (`flow.context.FlowContext`). Imports only adapters."""
