from dataclasses import replace

from tests.train.micro import write_setup
from ufo_nas.train import load_recipe
from ufo_nas.train.stages import make_stage


def stages(tmp_path, **chip):
    _, path = write_setup(tmp_path)
    recipe, space = load_recipe(path)
    recipe = replace(recipe, chip_stage=replace(recipe.chip_stage, **chip))
    return space, make_stage("task", space, recipe), make_stage("chip", space, recipe)


def test_task_stage_trains_the_largest_subnet_on_the_router_paths(tmp_path):
    space, task, _ = stages(tmp_path)
    [subnet] = task.subnets(0)
    assert subnet.arch == space.parse("d2-h2,2-m2,2-face:mm-object:mm")
    assert subnet.objective.label_weight == 1 and subnet.objective.distill_weight == 0


def test_chip_stage_is_the_sandwich_rule_with_in_place_distillation(tmp_path):
    space, _, chip = stages(tmp_path, random_subnets=3, paths="sampled", distill_weight=0.7)
    steps = [chip.subnets(s) for s in range(20)]
    for subnets in steps:
        assert len(subnets) == 5 and subnets[0].teacher and not any(s.teacher for s in subnets[1:])
        largest, smallest = subnets[0].arch, subnets[1].arch
        assert (largest.depth, largest.num_heads, largest.mlp_ratio) == (2, (2, 2), (2.0, 2.0))
        assert (smallest.depth, smallest.num_heads, smallest.mlp_ratio) == (1, (1,), (1.0,))
        for s in subnets:  # one path draw per step, shared by the sandwich
            assert all(
                s.arch.task_paths(t) == largest.task_paths(t)[: s.arch.depth]
                for t in ("face", "object")
            )
        assert [s.objective.distill_weight for s in subnets] == [0, 0.7, 0.7, 0.7, 0.7]
    assert len({s[0].arch.task_paths("face") for s in steps}) > 2  # paths sampled per step
    assert len({s[2].arch for s in steps}) > 5  # random subnets vary
    assert [s.arch for s in chip.subnets(7)] == [
        s.arch for s in steps[7]
    ]  # a pure function of the step
    again = make_stage("chip", space, chip.recipe)
    assert [s.arch for s in again.subnets(3)] == [s.arch for s in steps[3]]


def test_a_fixed_arch_task_stage_trains_and_validates_that_subnet_only(tmp_path):
    _, path = write_setup(tmp_path)
    recipe, space = load_recipe(path)
    arch = "d1-h1-m2-face:t-object:s"
    recipe = replace(recipe, task_stage=replace(recipe.task_stage, arch=arch))
    task = make_stage("task", space, recipe)
    assert [[s.arch for s in task.subnets(k)] for k in range(3)] == [[space.parse(arch)]] * 3
    assert task.subnets(0)[0].role == "arch" and task.validation_archs() == {
        "arch": space.parse(arch)
    }
    roles = [s.role for s in make_stage("chip", space, recipe).subnets(0)]
    assert roles == ["largest", "smallest", "random0"]
