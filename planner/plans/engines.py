"""Which engine can balance which model family: the one support table behind every export refusal.

A placement file only helps when the engine's model class takes part in expert load balancing:

* **SGLang** reads ``--init-expert-location`` through the model class's
  ``get_model_config_for_expert_location``; a class without it gets a one-layer dummy configuration and
  the start-up asserts (``srt/eplb/expert_location.py``).
* **vLLM** balances only model classes that implement its ``MixtureOfExperts`` interface; the mapping
  file itself needs vLLM PR #41141 (``initial_mapping_path``, not merged at the time of writing).
* **TensorRT-LLM**'s load balancer is wired into DeepseekV3, Mixtral, Llama4, Qwen2Moe and Qwen3Moe
  only; for other models the ``moe_config.load_balancer`` block is silently ignored.

The table is keyed by the Hugging Face ``model_type`` of the model profile (``hf_model_type``).
``docs/engines.md`` prints the same table; ``tests/test_export.py`` keeps the two equal.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SUPPORTED", "UNSUPPORTED", "UNVERIFIED", "ENGINE_NAMES", "SUPPORT", "Support", "engine_support"]

SUPPORTED, UNSUPPORTED, UNVERIFIED = "yes", "no", "unverified"
ENGINE_NAMES = {"sglang": "SGLang", "vllm": "vLLM", "trtllm": "TensorRT-LLM"}

_SG_HOOK = "model class has get_model_config_for_expert_location"
_SG_NO_HOOK = "no get_model_config_for_expert_location: SGLang falls back to a 1-layer dummy and asserts"
_VL_MOE = "model class implements MixtureOfExperts"
_TRT_LIST = "in the load balancer's model list (DeepseekV3, Mixtral, Llama4, Qwen2Moe, Qwen3Moe)"
_TRT_NOT = "not in the load balancer's model list (DeepseekV3, Mixtral, Llama4, Qwen2Moe, Qwen3Moe): the block is silently ignored"

#: (engine, hf_model_type) -> (status, why). Families missing here are "unverified".
SUPPORT: dict[tuple[str, str], tuple[str, str]] = {
    ("sglang", "deepseek_v2"): (SUPPORTED, _SG_HOOK),
    ("sglang", "deepseek_v3"): (SUPPORTED, _SG_HOOK + " (DeepseekV3 subclasses DeepseekV2)"),
    ("sglang", "qwen2_moe"): (SUPPORTED, _SG_HOOK),
    ("sglang", "qwen3_moe"): (SUPPORTED, _SG_HOOK),
    ("sglang", "gpt_oss"): (SUPPORTED, _SG_HOOK),
    ("sglang", "mixtral"): (UNVERIFIED, "the Mixtral class checked had no expert-location hook; newer SGLang may"),
    ("sglang", "olmoe"): (UNSUPPORTED, _SG_NO_HOOK),
    ("vllm", "deepseek_v2"): (SUPPORTED, _VL_MOE + " (EPLB's first model)"),
    ("vllm", "deepseek_v3"): (SUPPORTED, _VL_MOE + " (DeepseekV3 shares DeepseekV2's class)"),
    ("vllm", "qwen3_moe"): (UNVERIFIED, "EPLB support reported upstream, not checked against the class here"),
    ("vllm", "qwen2_moe"): (UNVERIFIED, "the Qwen2-MoE class checked did not implement MixtureOfExperts"),
    ("vllm", "mixtral"): (UNVERIFIED, "MixtureOfExperts added by vLLM PR #22842; check your version"),
    ("vllm", "gpt_oss"): (UNVERIFIED, "the GPT-OSS class checked did not implement MixtureOfExperts"),
    ("vllm", "olmoe"): (UNSUPPORTED, "OLMoE's model class is not a MixtureOfExperts: vLLM cannot balance it"),
    ("trtllm", "deepseek_v3"): (SUPPORTED, _TRT_LIST),
    ("trtllm", "mixtral"): (SUPPORTED, _TRT_LIST),
    ("trtllm", "llama4"): (SUPPORTED, _TRT_LIST),
    ("trtllm", "qwen2_moe"): (SUPPORTED, _TRT_LIST),
    ("trtllm", "qwen3_moe"): (SUPPORTED, _TRT_LIST),
    ("trtllm", "deepseek_v2"): (UNSUPPORTED, _TRT_NOT),
    ("trtllm", "gpt_oss"): (UNSUPPORTED, _TRT_NOT),
    ("trtllm", "olmoe"): (UNSUPPORTED, _TRT_NOT),
}


@dataclass(frozen=True)
class Support:
    """Whether ``engine`` balances the model ``family``: ``status`` is yes / no / unverified, ``reason`` why."""

    engine: str
    family: str
    status: str
    reason: str

    def line(self, model_id: str) -> str:
        """One line for a warning or a refusal."""
        name = ENGINE_NAMES.get(self.engine, self.engine)
        verdict = {SUPPORTED: "balances", UNSUPPORTED: "cannot balance",
                   UNVERIFIED: "may not balance"}[self.status]
        return f"{name} {verdict} {model_id} ({self.family}): {self.reason} (docs/engines.md)"


def engine_support(engine: str, family: str | None) -> Support:
    """The support table's entry for ``engine`` and a Hugging Face ``model_type``.

    >>> engine_support("trtllm", "olmoe").status
    'no'
    >>> engine_support("sglang", "some_new_moe").status
    'unverified'
    """
    fam = family or "unknown"
    status, reason = SUPPORT.get((engine, fam), (UNVERIFIED, "model family not in moeplan's support table"))
    return Support(engine, fam, status, reason)
