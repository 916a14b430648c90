import pytest
import yaml

from tests.train.micro import write_setup
from ufo_nas.train import RecipeError, load_recipe
from ufo_nas.train.recipe import recipe_from_dict


def test_the_shipped_recipe_loads_with_losses_by_task_kind():
    recipe, space = load_recipe("recipes/ufo_vit_tiny.yaml")
    assert space.name == "ufo_vit_tiny" and set(recipe.task_names) == {"face", "object", "digits"}
    losses = {t.name: t.loss for t in recipe.tasks}
    assert losses == {"face": "cosface", "object": "cosface+triplet", "digits": "cosface"}
    assert recipe.task("face").images_per_step == 32
    assert recipe.task_stage.steps > 0 and recipe.chip_stage.steps > 0


def test_overrides_reach_their_sections_and_change_the_fingerprint():
    recipe, _ = load_recipe("recipes/ufo_vit_tiny.yaml")
    changed = recipe.with_overrides(task_steps=7, chip_steps=None, lr=0.5, seed=9)
    assert changed.task_stage.steps == 7 and changed.chip_stage == recipe.chip_stage
    assert changed.optimizer.lr == 0.5 and changed.seed == 9
    assert changed.fingerprint() != recipe.fingerprint()
    assert recipe.with_overrides().fingerprint() == recipe.fingerprint()


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: d.update(epochs=3), "(top level)|epochs: unknown key; allowed: space"),
        (
            lambda d: d["tasks"]["face"].update(loss="arcface"),
            "tasks.face.loss: 'arcface' is not allowed; allowed: cosface, cosface+triplet",
        ),
        (lambda d: d["tasks"]["face"].update(scale=0), "tasks.face.scale: must be > 0"),
        (lambda d: d["tasks"]["face"].update(margin=float("nan")), "expected a finite number"),
        (
            lambda d: d["tasks"]["object"].update(classes_per_batch=2),
            "tasks.object.batch_size: give either classes_per_batch",
        ),
        (lambda d: d["tasks"]["face"].update(images_per_class=1), "need classes_per_batch >= 2"),
        (lambda d: d["optimizer"].update(name="lamb"), "optimizer.name: 'lamb' is not allowed"),
        (lambda d: d["stages"]["chip"].update(paths="best"), "stages.chip.paths"),
        (lambda d: d["stages"].update(task={"steps": 0}, chip={"steps": 0}), "no training steps"),
        (lambda d: d.update(drop_path_rate=1.0), "drop_path_rate: must be < 1"),
        (lambda d: d.update(checkpoint_every=0), "checkpoint_every: expected an integer >= 1"),
        (lambda d: d.update(batches="mixed"), "batches: 'mixed' is not allowed"),
        (lambda d: d["tasks"]["face"].update(flip="yes"), "tasks.face.flip: expected true or"),
        (lambda d: d["tasks"]["face"].update(shift=-1), "tasks.face.shift: expected an integer"),
        (lambda d: d["router"].update(lr_scale=-2), "router.lr_scale: must be >= 0"),
        (lambda d: d["stages"]["task"].update(arch=3), "stages.task.arch: expected an arch"),
    ],
)
def test_bad_recipes_name_the_key_and_what_is_allowed(tmp_path, change, message):
    _, path = write_setup(tmp_path)
    data = yaml.safe_load(path.read_text())
    change(data)
    with pytest.raises(RecipeError) as err:
        recipe_from_dict(data, str(path))
    text = str(err.value)
    assert text.startswith(str(path)) and "\n" not in text
    assert any(part in text for part in message.split("|"))


def test_a_task_the_space_lacks_and_a_triplet_without_identity_batches(tmp_path):
    _, path = write_setup(tmp_path)
    data = yaml.safe_load(path.read_text())
    data["tasks"]["person"] = data["tasks"]["object"]
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(
        RecipeError, match="tasks.person: space 'micro' has no such task; its tasks: face, object"
    ):
        load_recipe(path)
    del data["tasks"]["person"]
    data["tasks"]["object"]["loss"] = "cosface+triplet"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(
        RecipeError, match="tasks.object: loss cosface\\+triplet mines triplets in P x K"
    ):
        load_recipe(path)


def test_unreadable_recipe_files(tmp_path):
    with pytest.raises(RecipeError, match="no training recipe at"):
        load_recipe(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("tasks: [unclosed\n")
    with pytest.raises(RecipeError, match=r"bad.yaml: not valid YAML at line 2"):
        load_recipe(bad)
    bad.write_bytes(b"\xff\xfe")
    with pytest.raises(RecipeError, match="not UTF-8"):
        load_recipe(bad)


def test_space_checks_of_the_fixed_arch_and_the_shift(tmp_path):
    _, path = write_setup(tmp_path)
    data = yaml.safe_load(path.read_text())
    data["stages"]["task"]["arch"] = "d1-h2-m2-face:t"
    path.write_text(yaml.safe_dump(data))
    recipe, _ = load_recipe(path)
    assert recipe.task_stage.arch == "d1-h2-m2-face:t-object:s"  # canonical, every task
    data["stages"]["task"]["arch"] = "d3-h2,2,2-m2,2,2"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(RecipeError, match=r"recipe.yaml: stages.task.arch: .*depth"):
        load_recipe(path)
    del data["stages"]["task"]["arch"]
    data["tasks"]["face"]["shift"] = 16
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(RecipeError, match="tasks.face.shift: 16 pixels is not less than half"):
        load_recipe(path)
