"""The plan: one task per configuration, study parts after the tasks they read, longest first,
and a makefile generated from the same tasks."""

from minima import pipeline
from minima.__main__ import main
from minima.paths import TASK_RUNS
from minima.plan import build_plan, makefile, read_plan


def test_plan_tasks_dependencies_and_makefile_agree(tmp_path):
    assert main(["plan", "--profile", "tiny", "--root", str(tmp_path), "--no-progress"]) == 0
    plan = read_plan(tmp_path / "build" / "plan.json")
    ctx = pipeline.open_context("tiny", root=str(tmp_path))
    configs = {r.configuration for r in ctx.profile.runs}
    keys = [t.key for t in plan.tasks]
    assert {k for k in keys if k.startswith("config-")} == {f"config-{c}" for c in configs}
    assert len(keys) == len(configs) + 2 and all(t.pending for t in plan.tasks)
    by_key = {t.key: t for t in plan.tasks}
    # Dinh's run is the first *converged* SGD run, known only after training: it waits on every SGD task
    dinh_reads = pipeline.study_runs(ctx, "dinh")
    assert [r.optimizer.name for r in dinh_reads] == ["sgd"] * 4
    assert set(by_key["study-dinh"].after) == {f"config-{r.configuration}" for r in dinh_reads}
    assert set(by_key["study-interpolation"].after) == {f"config-{r.configuration}" for r in pipeline.study_runs(ctx, "interpolation")}
    for task in plan.tasks:
        if task.key.startswith("config-"):
            runs = [r for r in ctx.profile.runs if r.configuration == task.key[len("config-"):]]
            assert set(task.runs) == {r.run_hash for r in runs} and task.command[:3] == ("run", "--profile", "tiny")
        assert task.resources == {"gpu": 0}
    # longest first: the Dinh chain (its run plus the study) leads; SAM (two gradients a step) before SGD
    assert keys[0] in by_key["study-dinh"].after
    cost = {t.key: t.cost for t in plan.tasks}
    optimizer_of = {f"config-{r.configuration}": r.optimizer.name for r in ctx.profile.runs}
    sam = [k for k, name in optimizer_of.items() if name == "sam"]
    momentum = [k for k, name in optimizer_of.items() if name == "sgd_momentum"]
    assert min(cost[k] for k in sam) > max(cost[k] for k in momentum)
    # plan.mk: every pending command, each study part after the tasks it reads
    text = (tmp_path / "build" / "plan.mk").read_text()
    assert text == makefile(plan)
    lines = text.splitlines()
    for kind in ("dinh", "interpolation"):
        target = next(line for line in lines if line.startswith(f"study-{kind}:"))
        assert set(target.split(":")[1].split()) == set(by_key[f"study-{kind}"].after)
    for task in plan.tasks:
        assert "$(MINIMA) " + " ".join(task.command) in text


def test_a_plan_of_a_finished_study_has_nothing_pending(tiny_build_root):
    ctx = pipeline.open_context("tiny", root=str(tiny_build_root))
    plan = build_plan(ctx)
    assert not plan.pending and all(t.cost == 0 for t in plan.tasks)
    assert "$(MINIMA)" not in makefile(plan)
    # trained: Dinh reads the SGD runs up to the first converged one, and waits on their tasks only
    reads = pipeline.study_runs(ctx, "dinh")
    assert pipeline.dinh_run(ctx) == reads[-1] and len(reads) < 4
    dinh = next(t for t in plan.tasks if t.key == "study-dinh")
    assert set(dinh.after) == {f"config-{r.configuration}" for r in reads}


def test_configurations_differing_only_in_learning_rate_share_a_task():
    from minima.config import load_profile
    from minima.plan import task_groups

    quick = load_profile("quick")
    groups = task_groups(quick.runs, TASK_RUNS)  # 9: the three rates of one optimizer and batch size, 3 seeds each
    assert len(groups) == 12 and all(len(g) == 9 for g in groups)
    for group in groups:
        assert len({(r.optimizer.name, r.train.batch_size) for r in group}) == 1
        assert len({r.optimizer.lr for r in group}) == 3 and len({r.seed for r in group}) == 3
    assert sorted(r.run_hash for g in groups for r in g) == sorted(r.run_hash for r in quick.runs)
    assert [len(g) for g in task_groups(quick.runs, 4)] == [3] * 36  # a configuration's 3 seeds never split
    finest = task_groups(quick.runs, 1)
    assert len(finest) == 36 and all(len({r.configuration for r in g}) == 1 and len(g) == 3 for g in finest)
    paper = task_groups(load_profile("paper").runs, TASK_RUNS)
    assert all(len(g) == 5 for g in paper)  # five seeds: one configuration per task


def test_recipe_words_reach_the_shell_unchanged(tmp_path):
    """plan.mk passes profile paths through make and the shell: `$` is doubled for make and the
    word quoted for the shell (issue 25, try 3: `$(shell ...)` in a profile name ran)."""
    import subprocess

    from minima.plan import recipe_word

    words = ["x$(shell touch PWN).toml", "a$1b.toml", "my study.toml", "it's \"q\" ü $$ `ls` #c \\", "-n"]
    (tmp_path / "test.mk").write_text("all:\n" + "".join(f"\t@printf '%s\\n' {recipe_word(w)}\n" for w in words))
    done = subprocess.run(["make", "-s", "-f", "test.mk"], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert done.stdout.splitlines() == words and not (tmp_path / "PWN").exists()
