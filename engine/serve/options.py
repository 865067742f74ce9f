"""What a replica needs to build its engine, as plain data (it travels to Ray actors)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from engine.config import COMPILE, SpecConfig
from engine.paths import demo_draft_model_path, demo_model_path, is_demo_model
from engine.session_cache import DEFAULT_BUDGET_BYTES

if TYPE_CHECKING:  # torch-heavy: the command line parses these options before loading
    from engine.serve.engine import ServeEngine

DEFAULT_CACHE_MB = DEFAULT_BUDGET_BYTES >> 20
"""Session memory per replica before least-recently-used sessions are dropped."""


@dataclass(frozen=True)
class ServeOptions:
    """Model, speculation and cache settings of every replica."""

    model: str | None = None
    """Model directory, GGUF file or cached HF id; None is the default model
    (`engine.paths.default_model_path`)."""
    draft_model: str | None = None
    device: str = "auto"
    dtype: str = "auto"
    threads: int | None = None
    compile: str = COMPILE
    """Decode compiled (`engine.compiled`): auto, on or off."""
    method: str = SpecConfig.method
    gamma: int = SpecConfig.gamma
    block: int = SpecConfig.block
    cost_aware: bool = SpecConfig.cost_aware
    cache_mb: int = DEFAULT_CACHE_MB
    trust_remote_code: bool = False

    def spec(self) -> SpecConfig:
        return SpecConfig(self.method, gamma=self.gamma, block=self.block,
                          cost_aware=self.cost_aware)

    def build(self, replica: str = "") -> ServeEngine:
        """Load the model (and draft) and make the engine; errors name what failed."""
        from engine.compiled import use_compile
        from engine.loading import load_model, use_cpu_threads
        from engine.serve.engine import ServeEngine

        spec = self.spec()
        lm = load_model(self.model, self.device, self.dtype, self.trust_remote_code)
        use_cpu_threads(self.threads, lm)
        use_compile(lm.model, self.compile)
        draft = None
        if spec.drafts:
            if self.draft_model is None and not is_demo_model(self.model):
                raise ValueError(f"method {spec.method} needs a draft model (--draft-model) "
                                 f"with the target's tokenizer (the demo draft serves only "
                                 f"--model {demo_model_path()})")
            draft = load_model(self.draft_model or demo_draft_model_path(), self.device,
                               self.dtype, self.trust_remote_code)
            use_compile(draft.model, self.compile)
        return ServeEngine(lm, spec, draft, self.cache_mb << 20, replica)
