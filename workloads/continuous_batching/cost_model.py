"""Step cost model: how long the GPU steps of a batched generate loop take.

A cost model is a TOML file under ``traces/cost_models/<name>.toml`` (format
version 1); a spec names it (``cost_model = "<name>"``) or gives a path relative
to the spec. Times in µs. Each cost is a *floor-or-linear* model, ``max(floor_us,
linear)``: small steps are bound by host launch overhead (the floor), large ones
by the GPU (the linear part), which is what the measurements show.

=====================  ======================================================
cost                   model
=====================  ======================================================
batched prefill        ``max(prefill.floor_us, prefill.base_us + per_seq_us·m
                       + per_token_us·Σℓ + per_token_sq_us·Σℓ²)`` for ``m``
                       prompts of lengths ℓ prefilled together (setup
                       included)
batched decode step    ``max(decode.floor_us, decode.base_us + per_seq_us·m +
                       per_context_token_us·Σctx)`` for ``m`` occupied slots
                       whose contexts sum to Σctx
join / recycle         ``prefill(1, [ℓ]) + join.overhead_us``: prefill one
                       prompt alone, then insert its KV into a free or
                       finished slot of the running batch
fast path              prefill ``prefill(1, [ℓ])``; each token
                       ``max(fast_decode.floor_us, fast_decode.base_us +
                       per_context_token_us·ctx)``
batch cleanup          ``batch.cleanup_us`` once when a batch ends
=====================  ======================================================

``context_limit_tokens`` bounds prompt + output of one request.
``[provenance]`` says where the numbers came from (measured, with the script and
log, or derived from quoted figures, saying which are guesses).
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pydantic

from harness.errors import InputError, from_validation_error
from harness.paths import TRACES_DIR

COST_MODELS_DIR = TRACES_DIR / "cost_models"
COST_MODEL_FORMAT_VERSION = 1


class _Strict(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)  # inf costs: inf results


class CostProvenance(_Strict):
    source: str
    hardware: str
    date: str
    method: str = ""
    script: str = ""
    log: str = ""
    notes: str = ""


class PrefillCost(_Strict):
    floor_us: float = pydantic.Field(ge=0)
    base_us: float = pydantic.Field(ge=0)
    per_seq_us: float = pydantic.Field(ge=0)
    per_token_us: float = pydantic.Field(ge=0)
    per_token_sq_us: float = pydantic.Field(default=0.0, ge=0)


class DecodeCost(_Strict):
    floor_us: float = pydantic.Field(ge=0)
    base_us: float = pydantic.Field(ge=0)
    per_seq_us: float = pydantic.Field(ge=0)
    per_context_token_us: float = pydantic.Field(ge=0)


class JoinCost(_Strict):
    overhead_us: float = pydantic.Field(ge=0)


class FastDecodeCost(_Strict):
    floor_us: float = pydantic.Field(ge=0)
    base_us: float = pydantic.Field(ge=0)
    per_context_token_us: float = pydantic.Field(ge=0)


class BatchCost(_Strict):
    cleanup_us: float = pydantic.Field(default=0.0, ge=0)


class CostModel(_Strict):
    format_version: int
    name: str
    description: str = ""
    context_limit_tokens: int = pydantic.Field(gt=0)
    provenance: CostProvenance
    prefill: PrefillCost
    decode: DecodeCost
    join: JoinCost
    fast_decode: FastDecodeCost
    batch: BatchCost = BatchCost()
    samples: dict[str, list[list[float]]] = pydantic.Field(default_factory=dict)  # the measurements it was fitted to

    @pydantic.field_validator("format_version")
    @classmethod
    def _known_version(cls, v: int) -> int:
        if v != COST_MODEL_FORMAT_VERSION:
            raise ValueError(
                f"unsupported cost model format_version {v} (this harness reads {COST_MODEL_FORMAT_VERSION})"
            )
        return v

    # -- the costs, µs
    def prefill_us(self, prompt_lengths: list[int] | tuple[int, ...]) -> float:
        p = self.prefill
        if len(prompt_lengths) == 1:  # a join: one prompt (the same ints the sums give)
            total = prompt_lengths[0]
            squares = total * total
        else:
            total = sum(prompt_lengths)
            squares = sum(n * n for n in prompt_lengths)
        linear = p.base_us + p.per_seq_us * len(prompt_lengths) + p.per_token_us * total + p.per_token_sq_us * squares
        return max(p.floor_us, linear)

    def decode_us(self, slots: int, context_tokens: int) -> float:
        d = self.decode
        return max(d.floor_us, d.base_us + d.per_seq_us * slots + d.per_context_token_us * context_tokens)

    def decode_series_us(self, slots: int, context_tokens: int, tokens_per_step: int, steps: int) -> list[float]:
        """:meth:`decode_us` of ``steps`` decode steps in a row, the context growing by ``tokens_per_step`` a step.

        To the last bit what ``decode_us`` gives step by step (the same float operations in the same order),
        at a fraction of the cost for a long series: the linear part is monotone in the step, so the floor
        applies nowhere when it is above the floor at both ends of the series.
        """
        d = self.decode
        base, per_token, floor = d.base_us + d.per_seq_us * slots, d.per_context_token_us, d.floor_us
        if tokens_per_step:
            last = context_tokens + steps * tokens_per_step
            linear = [base + per_token * context for context in range(context_tokens, last, tokens_per_step)]
        else:
            linear = [base + per_token * context_tokens] * steps
        if linear and (linear[0] <= floor or linear[-1] <= floor):
            return [x if x > floor else floor for x in linear]
        return linear

    def join_us(self, prompt_tokens: int) -> float:
        return self.prefill_us((prompt_tokens,)) + self.join.overhead_us

    def fast_decode_us(self, context_tokens: int) -> float:
        f = self.fast_decode
        return max(f.floor_us, f.base_us + f.per_context_token_us * context_tokens)


def cost_model_path(name_or_path: str, spec_dir: Path | None = None) -> Path:
    """A bundled name (``traces/cost_models/<name>.toml``) or a path relative to the spec."""
    if name_or_path.endswith(".toml"):
        path = Path(name_or_path)
        return path if path.is_absolute() or spec_dir is None else (spec_dir / path).resolve()
    return COST_MODELS_DIR / f"{name_or_path}.toml"


def load_cost_model(name_or_path: str, spec_dir: Path | None = None) -> CostModel:
    path = cost_model_path(name_or_path, spec_dir)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        known = ", ".join(available_cost_models()) or "none"
        raise InputError(path, "", f"cost model not found (bundled: {known})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise InputError(path, "", f"malformed TOML: {err}") from None
    try:
        return CostModel.model_validate(raw)
    except pydantic.ValidationError as err:
        raise from_validation_error(path, err) from None


def available_cost_models() -> list[str]:
    return sorted(p.stem for p in COST_MODELS_DIR.glob("*.toml"))
