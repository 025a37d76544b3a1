"""The contrastive losses, and the distributed guarantee: two processes on CPU (gloo) give the same
loss and gradients as one process holding the doubled batch."""
import math

import open_clip
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from lit_clip import ClipLoss, SigLipLoss

WORLD_SIZE, LOCAL_BATCH, DIM = 2, 4, 8


def features_and_model(seed=0):
    """A tiny 'model' (two linear towers + logit scale) and a global batch of inputs."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(WORLD_SIZE * LOCAL_BATCH, 6, generator=generator)
    texts = torch.randn(WORLD_SIZE * LOCAL_BATCH, 5, generator=generator)
    towers = torch.nn.ModuleDict({"image": torch.nn.Linear(6, DIM), "text": torch.nn.Linear(5, DIM)})
    torch.manual_seed(seed)
    for p in towers.parameters():
        torch.nn.init.normal_(p)
    scale = torch.nn.Parameter(torch.tensor(math.log(1 / 0.07)))
    bias = torch.nn.Parameter(torch.tensor(-10.0))
    return images, texts, towers, scale, bias


def loss_and_grads(loss_name, images, texts, towers, scale, bias, local_loss=True, batch_rows=None):
    image_features = F.normalize(towers["image"](images), dim=-1)
    text_features = F.normalize(towers["text"](texts), dim=-1)
    if loss_name == "clip":
        loss = ClipLoss(local_loss=local_loss)(image_features, text_features, scale.exp(), batch_rows)["contrastive_loss"]
    else:
        loss = SigLipLoss()(image_features, text_features, scale.exp(), bias, batch_rows)["contrastive_loss"]
    params = [*towers.parameters(), scale, bias]
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    return loss.detach(), [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]


def ddp_worker(rank, init_file, loss_name, local_loss, results, kept=(LOCAL_BATCH, LOCAL_BATCH)):
    """``kept[r]``: the rows rank r keeps of its batch of LOCAL_BATCH (the others were bad samples)."""
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD_SIZE)
    try:
        images, texts, towers, scale, bias = features_and_model()
        rows = slice(rank * LOCAL_BATCH, rank * LOCAL_BATCH + kept[rank])
        batch_rows = LOCAL_BATCH if kept != (LOCAL_BATCH, LOCAL_BATCH) else None
        loss, grads = loss_and_grads(
            loss_name, images[rows], texts[rows], towers, scale, bias, local_loss, batch_rows
        )
        # What DDP does to gradients: average them over ranks. The reported loss is averaged likewise.
        for g in grads:
            dist.all_reduce(g)
            g /= WORLD_SIZE
        dist.all_reduce(loss)
        results[rank] = (loss / WORLD_SIZE, grads)
    finally:
        dist.destroy_process_group()


def assert_two_processes_equal_one(tmp_path, loss_name, local_loss, kept, single_loss, single_grads):
    """Every rank's averaged loss and gradients, from ``ddp_worker`` with ``kept`` rows, equal one process's."""
    with mp.Manager() as manager:
        results = manager.dict()
        mp.spawn(ddp_worker, args=(str(tmp_path / "init"), loss_name, local_loss, results, kept), nprocs=WORLD_SIZE)
        results = dict(results)
    for rank in range(WORLD_SIZE):
        loss, grads = results[rank]
        torch.testing.assert_close(loss, single_loss, rtol=1e-5, atol=1e-6)
        for g, expected in zip(grads, single_grads):
            torch.testing.assert_close(g, expected, rtol=1e-4, atol=1e-6)
    assert any(g.abs().sum() > 0 for g in single_grads)


@pytest.mark.parametrize("loss_name,local_loss", [("clip", True), ("clip", False), ("siglip", True)])
def test_two_processes_equal_one_process_with_the_doubled_batch(tmp_path, loss_name, local_loss):
    single = loss_and_grads(loss_name, *features_and_model(), local_loss=local_loss)
    assert_two_processes_equal_one(tmp_path, loss_name, local_loss, (LOCAL_BATCH, LOCAL_BATCH), *single)


@pytest.mark.parametrize("loss_name,local_loss", [("clip", True), ("clip", False), ("siglip", True)])
def test_two_processes_with_unequal_batches_equal_one_process_with_their_rows(tmp_path, loss_name, local_loss):
    """Bad samples left out: rank 0 keeps 4 rows, rank 1 only 1; the loss is still that of the 5 real pairs."""
    kept = (LOCAL_BATCH, 1)
    images, texts, towers, scale, bias = features_and_model()
    real = [*range(kept[0]), *range(LOCAL_BATCH, LOCAL_BATCH + kept[1])]
    single = loss_and_grads(loss_name, images[real], texts[real], towers, scale, bias, local_loss)
    assert_two_processes_equal_one(tmp_path, loss_name, local_loss, kept, *single)


def test_clip_loss_matches_open_clip():
    torch.manual_seed(0)
    images, texts = F.normalize(torch.randn(16, 32), dim=-1), F.normalize(torch.randn(16, 32), dim=-1)
    scale = torch.tensor(1 / 0.07)
    expected = open_clip.ClipLoss()(images, texts, scale)
    torch.testing.assert_close(ClipLoss()(images, texts, scale), {"contrastive_loss": expected})


def test_siglip_loss_matches_open_clip():
    torch.manual_seed(0)
    images, texts = F.normalize(torch.randn(16, 32), dim=-1), F.normalize(torch.randn(16, 32), dim=-1)
    scale, bias = torch.tensor(10.0), torch.tensor(-10.0)
    expected = open_clip.loss.SigLipLoss()(images, texts, scale, bias)
    torch.testing.assert_close(SigLipLoss()(images, texts, scale, bias), {"contrastive_loss": expected})


def test_clip_loss_is_low_for_matching_pairs():
    features = F.normalize(torch.randn(8, 16), dim=-1)
    matched = ClipLoss()(features, features, torch.tensor(100.0))["contrastive_loss"]
    shuffled = ClipLoss()(features, features.roll(1, dims=0), torch.tensor(100.0))["contrastive_loss"]
    assert matched < 0.1 < math.log(8) < shuffled

