import torch

from minima.bench.training import bench_training


def test_bench_training_rows_compare_one_workload():
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(640, 1, 28, 28, generator=g), torch.randint(0, 10, (640,), generator=g)
    rows = bench_training(x, y, device="cpu", dtype=torch.float32, n_models=2, n_batches=2)
    assert [r["implementation"].split(",")[0] for r in rows] == [
        "eager nn.Module + torch.optim", "eager nn.Module + torch.optim", "minima functional step",
        "minima stacked vmap step"]
    # every ratio is the eager reference's time over the row's own, on the same work
    reference = rows[0]["seconds_per_model_epoch"]
    for r in rows:
        assert r["work"] == rows[0]["work"]
        assert r["ratio"] * r["seconds_per_model_epoch"] == __import__("pytest").approx(reference, rel=1e-12)
