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
from lit_clip.losses import MultiLabelContrastiveLoss, NTXentLoss

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
    elif loss_name == "ntxent":  # the two towers' outputs as an image's two views
        loss = NTXentLoss(0.1)(towers["image"](images), towers["text"](texts), batch_rows)["ssl_loss"]
    elif loss_name == "multi_label":  # two prompts per image: the text and the text reversed
        prompt_features = F.normalize(towers["text"](torch.stack([texts, texts.flip(-1)], dim=1)), dim=-1)
        loss = MultiLabelContrastiveLoss()(image_features, prompt_features, scale.exp(), batch_rows)["multi_label_loss"]
    else:
        loss = SigLipLoss()(image_features, text_features, scale.exp(), bias, batch_rows)["contrastive_loss"]
    params = [*towers.parameters(), scale, bias]
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    return loss.detach(), [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]


EQUAL, UNEQUAL = (LOCAL_BATCH, LOCAL_BATCH), (LOCAL_BATCH, 1)  # rows each rank keeps: all, or rank 1 only one
EQUAL_CASES = [("clip", True), ("clip", False), ("siglip", True), ("multi_label", True), ("ntxent", True)]
UNEQUAL_CASES = [("clip", True), ("clip", False), ("siglip", True), ("ntxent", True)]
CASES = [(name, local, EQUAL) for name, local in EQUAL_CASES] + [(name, local, UNEQUAL) for name, local in UNEQUAL_CASES]


def ddp_worker(rank, init_file, results):
    """Every case of :data:`CASES` on this rank: the loss and gradients averaged over ranks, as DDP averages them.
    ``kept[r]``: the rows rank r keeps of its batch of LOCAL_BATCH (the others were bad samples)."""
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD_SIZE)
    try:
        for loss_name, local_loss, kept in CASES:
            images, texts, towers, scale, bias = features_and_model()
            rows = slice(rank * LOCAL_BATCH, rank * LOCAL_BATCH + kept[rank])
            batch_rows = LOCAL_BATCH if kept != EQUAL else None
            loss, grads = loss_and_grads(loss_name, images[rows], texts[rows], towers, scale, bias, local_loss, batch_rows)
            for g in grads:
                dist.all_reduce(g)
                g /= WORLD_SIZE
            dist.all_reduce(loss)
            results[(rank, loss_name, local_loss, kept)] = (loss / WORLD_SIZE, grads)
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    """The results of :func:`ddp_worker` on 2 gloo processes, every case in one launch (each launch costs seconds)."""
    with mp.Manager() as manager:
        results = manager.dict()
        mp.spawn(ddp_worker, args=(str(tmp_path_factory.mktemp("gloo") / "init"), results), nprocs=WORLD_SIZE)
        return dict(results)


def assert_two_processes_equal_one(results, loss_name, local_loss, kept, single_loss, single_grads):
    """Every rank's averaged loss and gradients, from ``ddp_worker`` with ``kept`` rows, equal one process's."""
    for rank in range(WORLD_SIZE):
        loss, grads = results[(rank, loss_name, local_loss, kept)]
        torch.testing.assert_close(loss, single_loss, rtol=1e-5, atol=1e-6)
        for g, expected in zip(grads, single_grads):
            torch.testing.assert_close(g, expected, rtol=1e-4, atol=1e-6)
    assert any(g.abs().sum() > 0 for g in single_grads)


@pytest.mark.parametrize("loss_name,local_loss", EQUAL_CASES)
def test_two_processes_equal_one_process_with_the_doubled_batch(two_processes, loss_name, local_loss):
    single = loss_and_grads(loss_name, *features_and_model(), local_loss=local_loss)
    assert_two_processes_equal_one(two_processes, loss_name, local_loss, EQUAL, *single)


@pytest.mark.parametrize("loss_name,local_loss", UNEQUAL_CASES)
def test_two_processes_with_unequal_batches_equal_one_process_with_their_rows(two_processes, loss_name, local_loss):
    """Bad samples left out: rank 0 keeps 4 rows, rank 1 only 1; the loss is still that of the 5 real pairs."""
    images, texts, towers, scale, bias = features_and_model()
    real = [*range(UNEQUAL[0]), *range(LOCAL_BATCH, LOCAL_BATCH + UNEQUAL[1])]
    single = loss_and_grads(loss_name, images[real], texts[real], towers, scale, bias, local_loss)
    assert_two_processes_equal_one(two_processes, loss_name, local_loss, UNEQUAL, *single)


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



def test_multi_label_loss_equals_the_official_soft_targets_written_out():
    """The official construction, one process: image i's targets are 1/K on its own K prompts of the flattened
    [B * K] prompts; prompt (i, k)'s target is image i; the soft cross-entropies averaged over rows, then halved."""
    generator = torch.Generator().manual_seed(0)
    batch, count, dim = 3, 2, 4
    images = F.normalize(torch.randn(batch, dim, generator=generator), dim=-1)
    prompts = F.normalize(torch.randn(batch, count, dim, generator=generator), dim=-1)
    scale = torch.tensor(12.0)
    flat = prompts.reshape(batch * count, dim)
    image_targets = torch.zeros(batch, batch * count)
    prompt_targets = torch.zeros(batch * count, batch)
    for i in range(batch):
        for k in range(count):
            image_targets[i, i * count + k] = 1 / count
            prompt_targets[i * count + k, i] = 1
    per_image = -(image_targets * F.log_softmax(scale * images @ flat.T, dim=-1)).sum(-1).mean()
    per_prompt = -(prompt_targets * F.log_softmax(scale * flat @ images.T, dim=-1)).sum(-1).mean()
    loss = MultiLabelContrastiveLoss()(images, prompts, scale)["multi_label_loss"]
    torch.testing.assert_close(loss, (per_image + per_prompt) / 2)


def test_multi_label_loss_with_a_repeated_noun_gives_it_its_share_twice():
    """A caption naming "circle" twice gets two identical prompts: each keeps the target 1/K, so the image's
    loss pulls it toward that prompt with weight 2/K, as the official code (no deduplication)."""
    image = torch.tensor([[1.0, 0.0]])
    circle, star = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    repeated = MultiLabelContrastiveLoss()(image, torch.stack([circle, circle])[None], torch.tensor(10.0))
    distinct = MultiLabelContrastiveLoss()(image, torch.stack([circle, star])[None], torch.tensor(10.0))
    # One image: the prompt side is a single candidate (loss 0); the image side is -(1/2)(log p1 + log p2).
    torch.testing.assert_close(repeated["multi_label_loss"], torch.tensor(math.log(2) / 2))
    assert distinct["multi_label_loss"] > repeated["multi_label_loss"]


def test_nt_xent_equals_simclr_written_out():
    """SimCLR's loss (Chen et al., 2020, eq. 1): 2N views, each with the other view of its image as the positive
    among the 2N - 1 others, cosine similarities over the temperature; the mean over all 2N views."""
    generator = torch.Generator().manual_seed(0)
    view_1, view_2 = torch.randn(5, 8, generator=generator), torch.randn(5, 8, generator=generator)
    views = F.normalize(torch.cat([view_1, view_2]), dim=-1)
    similarity = views @ views.T / 0.1
    n = view_1.shape[0]
    expected = 0.0
    for i in range(2 * n):
        positive = (i + n) % (2 * n)
        others = [k for k in range(2 * n) if k != i]
        expected += -(similarity[i, positive] - torch.logsumexp(similarity[i, others], dim=0))
    loss = NTXentLoss(0.1)(view_1, view_2)["ssl_loss"]
    torch.testing.assert_close(loss, expected / (2 * n))


def test_nt_xent_is_low_when_the_views_agree_and_in_fp32_under_autocast():
    generator = torch.Generator().manual_seed(1)
    views = torch.randn(16, 32, generator=generator)
    agreeing = NTXentLoss(0.1)(views, views + 0.01 * torch.randn(16, 32, generator=generator))["ssl_loss"]
    unrelated = NTXentLoss(0.1)(views, torch.randn(16, 32, generator=generator))["ssl_loss"]
    assert agreeing < 0.1 < math.log(31) - 0.5 < unrelated
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_autocast = NTXentLoss(0.1)(views.bfloat16(), views.bfloat16())["ssl_loss"]
    assert under_autocast.dtype == torch.float32
    torch.testing.assert_close(under_autocast, NTXentLoss(0.1)(views.bfloat16().float(), views.bfloat16().float())["ssl_loss"])
