"""`TextClassifier`: tokenizer, backbone, neck, head, loss and metrics for raw texts."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Sequence
from typing import Any

import torch
from pydantic import Field, model_validator
from vertebra.errors import ConfigError, ConfigIssue
from vertebra.model.networks.classifier import Classifier, ClassifierConfig
from vertebra.model.tokenizers import BaseTokenizer
from vertebra.schema import NeckCfg, TokenizerCfg

from vertebra_text.networks._tokenizer_sizes import FROM_TOKENIZER, fill_from_tokenizer, reported

__all__ = ["DEFAULT_NECK", "TextClassifier", "TextClassifierConfig"]

DEFAULT_NECK = "MeanPooling"


class TextClassifierConfig(ClassifierConfig):
    """Settings of `TextClassifier`: the Classifier's parts plus a tokenizer."""

    TOKENIZER: TokenizerCfg = Field(
        description="Turns the batch's texts into token ids (a TOKENIZERS part)."
    )
    NECK: NeckCfg = Field(
        None,
        description="Pools token features `[B, T, D]` to `[B, D]` (a NECKS part); unset: "
        "MeanPooling, which ignores padding.",
    )

    @model_validator(mode="after")
    def _tokenizer_fits_backbone(self) -> TextClassifierConfig:
        problems = []
        for key in FROM_TOKENIZER:
            ours, theirs = getattr(self.TOKENIZER, key, None), getattr(self.BACKBONE, key, None)
            if isinstance(ours, int) and isinstance(theirs, int) and theirs < ours:
                problems.append(
                    f"BACKBONE.{key} ({theirs}) is smaller than TOKENIZER.{key} ({ours}); "
                    f"leave BACKBONE.{key} unset to take the tokenizer's"
                )
        if problems:
            raise ValueError("; ".join(problems))
        return self


class TextClassifier(Classifier):
    """`forward(text=[...], label=...)`: logits = head(neck(backbone(tokenizer(text)))).

    The tokenizer runs inside the network, so a batch holds raw texts (`text`, a list of
    strings) and label ids. Unset `VOCAB_SIZE` and `MAX_LENGTH` of the backbone are taken
    from the tokenizer; a backbone that cannot take the tokenizer's ids fails the build.
    Training returns `{"loss": ..., "acc@1": ...}`; evaluation returns
    `{"logits": ..., "metrics": {...}}` and accumulates the metrics.
    """

    Config = TextClassifierConfig  # type: ignore[assignment]
    cfg: TextClassifierConfig

    def __init__(self, cfg: TextClassifierConfig, logger: logging.Logger | None = None) -> None:
        from vertebra.model.registry import NECKS, TOKENIZERS

        tokenizer: BaseTokenizer = TOKENIZERS.build(cfg.TOKENIZER, logger=logger)
        update: dict[str, Any] = {
            "BACKBONE": fill_from_tokenizer(
                cfg.BACKBONE,
                tokenizer,
                backbone_path="BACKBONE",
                tokenizer_path="TOKENIZER",
                source=f"{cfg.NAME} config",
            )
        }
        if cfg.NECK is None:
            update["NECK"] = NECKS.validate({"NAME": DEFAULT_NECK}, "NECK")
        super().__init__(cfg.model_copy(update=update), logger)
        self.tokenizer = tokenizer
        self._check_tokenizer()
        forward = self.neck.forward if self.neck is not None else None
        self._neck_takes_mask = (
            forward is not None and "attention_mask" in inspect.signature(forward).parameters
        )

    def _check_tokenizer(self) -> None:
        """Fail at build time, naming the keys, when the backbone cannot take the token ids."""
        issues = []
        backbone, tokenizer = self.cfg.BACKBONE, self.cfg.TOKENIZER
        for key, attr in FROM_TOKENIZER.items():
            have, need = getattr(self.backbone, attr, None), reported(self.tokenizer, attr)
            if not (isinstance(have, int) and isinstance(need, int) and have < need):
                continue
            what = "token ids" if key == "VOCAB_SIZE" else "positions"
            if key in type(backbone).model_fields:
                where, fix = (
                    f"BACKBONE.{key}",
                    f"leave it unset to take the tokenizer's, or set it to {need}",
                )
            elif key == "MAX_LENGTH":
                where, fix = "TOKENIZER.MAX_LENGTH", f"set it to at most {have}"
            else:
                where, fix = "TOKENIZER", "use the tokenizer that was saved with the model"
            issues.append(
                ConfigIssue(
                    where,
                    f"BACKBONE {backbone.NAME} takes {have} {what}, but TOKENIZER "
                    f"{tokenizer.NAME} gives {need}; {fix}",
                )
            )
        if issues:
            raise ConfigError(issues, source=f"{self.cfg.NAME} config")

    def tokenize(self, text: Sequence[str]) -> dict[str, torch.Tensor]:
        """Token ids and attention mask of `text`, on the network's device."""
        if isinstance(text, str):
            text = [text]
        device = next(self.parameters()).device
        tokens = self.tokenizer.tokenize(list(text))
        return {key: value.to(device) for key, value in tokens.items()}

    def features(self, text: Sequence[str]) -> torch.Tensor:
        """Pooled text features `[N, D]`: what the head sees."""
        tokens = self.tokenize(text)
        features = self.backbone(tokens["input_ids"], attention_mask=tokens["attention_mask"])
        if self.neck is None:
            return features  # type: ignore[no-any-return]
        if self._neck_takes_mask:
            return self.neck(features, attention_mask=tokens["attention_mask"])  # type: ignore[no-any-return]
        return self.neck(features)  # type: ignore[no-any-return]

    def logits(self, text: Sequence[str]) -> torch.Tensor:  # type: ignore[override]
        """Class logits `[N, C]` for a list of texts."""
        return self.head(self.features(text))  # type: ignore[no-any-return]

    def forward_train(self, text: Sequence[str], label: Any) -> dict[str, Any]:  # type: ignore[override]
        logits = self.logits(text)
        label = torch.as_tensor(label, device=logits.device)
        out: dict[str, Any] = {"loss": self.loss(logits, label)}
        out.update(self.batch_metrics(logits.detach(), label))
        return out

    def forward_test(self, text: Sequence[str], label: Any = None) -> dict[str, Any]:  # type: ignore[override]
        logits = self.activate(self.logits(text))
        metrics: dict[str, torch.Tensor] = {}
        if label is not None:
            label = torch.as_tensor(label, device=logits.device)
            for metric in self.metrics:
                metrics.update(metric(logits, label))
        return {"logits": logits, "metrics": metrics}
