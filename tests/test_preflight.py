"""What `validate` and `train` refuse or warn about before loading weights (train/preflight.py), and the
recipe's user code (--rewards-file), through the real CLI on a tiny model: one clear message, no traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import Result
from typer.testing import CliRunner

from tunesmith.cli import app
from tunesmith.testing.tasks import write_task
from tunesmith.testing.tiny import save_tiny

REWARDS = "def letters(prompts, completions, **fields):\n    return [float(len(c)) for c in completions]\n"


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tiny Llama with 128 positions and 40 alpaca rows."""
    root = tmp_path_factory.mktemp("preflight")
    data = root / "rows.jsonl"
    data.write_text("".join(json.dumps({"instruction": f"say {i}", "output": f"number {i}"}) + "\n" for i in range(40)))
    return save_tiny("llama", root / "base", vocab_size=300, max_positions=128), data


def write_recipe(setup: tuple[Path, Path], out: Path, **extra: object) -> Path:
    model, data = setup
    raw = {"name": "p", "model": str(model), "output": str(out / "runs"),
           "data": {"train": str(data), "eval": 0.0, "template": "plain"},
           "train": {"lr": 1e-3, "max_steps": 1, "batch_size": 4, "max_seq_len": 64, "mixed_precision": "no"},
           "model_options": {"dtype": "fp32"}, **extra}
    path = out / "r.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def cli(*args: str) -> Result:
    """The real command line, in this process (the imports are paid once for all the tests)."""
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})
    result.returncode = result.exit_code  # type: ignore[attr-defined]
    return result


def refused(result: Result, *phrases: str) -> str:
    """The one-line error of a refused command (exit 2, no traceback), checked for `phrases`."""
    err = " ".join(result.stderr.split())
    assert result.exit_code == 2, result.output[-3000:]
    assert result.exception is None or isinstance(result.exception, SystemExit), "a traceback, not one message"
    assert "error:" in err
    for phrase in phrases:
        assert phrase in err, err
    return err


@pytest.mark.parametrize("verb", ["validate", "train"])
def test_max_seq_len_beyond_the_models_context_is_refused(setup, tmp_path: Path, verb: str) -> None:
    recipe = write_recipe(setup, tmp_path)
    refused(cli(verb, str(recipe), "train.max_seq_len=256"), "train.max_seq_len=256 is beyond the context",
            "128 positions", "at most 128")
    assert not (tmp_path / "runs" / "p").exists()


@pytest.mark.parametrize("verb", ["validate", "train"])
def test_a_target_module_that_matches_nothing_is_named(setup, tmp_path: Path, verb: str) -> None:
    recipe = write_recipe(setup, tmp_path, adapter_args={"target_modules": ["q_proj", "qkv_proj"]})
    refused(cli(verb, str(recipe)), "adapter_args.target_modules: 'qkv_proj' matches no module",
            "its linear modules are: down_proj, gate_proj, k_proj, o_proj, q_proj, up_proj, v_proj")


def test_target_modules_that_exist_pass(setup, tmp_path: Path) -> None:
    from tunesmith.recipe.spec import load_recipe
    from tunesmith.train.preflight import check_before_loading

    for targets in (["q_proj", "mlp.down_proj"], r".*\.v_proj", "all-linear"):
        recipe = write_recipe(setup, tmp_path, adapter_args={"target_modules": targets})
        check_before_loading(load_recipe(recipe))


def test_output_naming_a_file_is_refused_by_validate(setup, tmp_path: Path) -> None:
    recipe = write_recipe(setup, tmp_path)
    (tmp_path / "taken").write_text("not a folder")
    refused(cli("validate", str(recipe), f"output={tmp_path / 'taken'}"), f"output: {tmp_path / 'taken'} is a file")


def test_a_batch_larger_than_the_data_warns_in_validate_and_train(setup, tmp_path: Path) -> None:
    recipe = write_recipe(setup, tmp_path)
    big = ("train.batch_size=16", "train.grad_accum=4", "train.packing=false")
    checked = cli("validate", str(recipe), *big)
    assert checked.returncode == 0, checked.stderr[-3000:]
    warning = "train.batch_size x train.grad_accum = 16 x 4 = 64 rows per optimizer step, but the training data has"
    assert warning in " ".join(checked.stdout.split())
    trained = cli("train", str(recipe), *big)
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert warning in " ".join(trained.stderr.split())
    fits = cli("validate", str(recipe), "train.packing=false")
    assert fits.returncode == 0 and "per optimizer step" not in fits.stdout


def test_packed_rows_count_for_the_batch_warning(setup, tmp_path: Path) -> None:
    from tunesmith.data.pipeline import prepare_data
    from tunesmith.models.load import load_tokenizer
    from tunesmith.recipe.spec import load_recipe
    from tunesmith.train.preflight import batch_notes

    recipe = load_recipe(write_recipe(setup, tmp_path), ["train.batch_size=32"])  # 40 samples, fewer packed rows
    notes = batch_notes(recipe, prepare_data(recipe, load_tokenizer(str(setup[0]))))
    assert len(notes) == 1 and "packed rows" in notes[0]


def grpo_recipe(setup: tuple[Path, Path], out: Path, rewards: list[str]) -> Path:
    data = write_task("names", out / "names.jsonl", 16)
    path = write_recipe(setup, out, method="grpo", grpo={"rewards": rewards, "group_size": 2, "max_new_tokens": 4})
    raw = yaml.safe_load(path.read_text())
    raw["data"] = {"train": str(data), "eval": 0.0, "template": "plain"}
    path.write_text(yaml.safe_dump(raw))
    return path


def test_os_getcwd_as_a_reward_is_refused_before_anything_runs(setup, tmp_path: Path) -> None:
    recipe = grpo_recipe(setup, tmp_path, ["os:getcwd"])
    for verb in ("validate", "train"):
        refused(cli(verb, str(recipe)), "grpo.rewards: unknown reward 'os:getcwd'", "built-in rewards: exact_match",
                "--rewards-file my_rewards.py")


def test_rewards_come_from_the_file_named_on_the_command_line(setup, tmp_path: Path) -> None:
    (tmp_path / "my_rewards.py").write_text(REWARDS)
    recipe = grpo_recipe(setup, tmp_path, ["my_rewards:letters"])
    refused(cli("validate", str(recipe)), "unknown reward 'my_rewards:letters'", "no --rewards-file was given")
    result = cli("train", str(recipe), "--rewards-file", str(tmp_path / "my_rewards.py"))
    assert result.returncode == 0, result.stderr[-3000:]
    records = [json.loads(line) for line in (tmp_path / "runs" / "p" / "metrics.jsonl").read_text().splitlines()]
    assert any("reward/my_rewards:letters" in r for r in records)


def test_plan_and_compare_take_the_rewards_file_like_train(setup, tmp_path: Path) -> None:
    """A recipe naming its own reward must get past every verb that validates it, each given the same file."""
    from tunesmith.compare.execute import train_child
    from tunesmith.compare.spec import CompareSpec, strategy_recipes, write_recipe
    from tunesmith.recipe.user_code import UserCode

    rewards = tmp_path / "my_rewards.py"
    rewards.write_text(REWARDS)
    recipe = grpo_recipe(setup, tmp_path, ["my_rewards:letters"])
    refused(cli("plan", str(recipe), "--memory", "8GiB"), "unknown reward 'my_rewards:letters'", "no --rewards-file")
    planned = cli("plan", str(recipe), "--memory", "8GiB", "--rewards-file", str(rewards))
    assert planned.exit_code == 0, planned.stderr[-3000:]

    shared = yaml.safe_load(recipe.read_text())
    compare_spec = tmp_path / "compare.yaml"
    compare_spec.write_text(yaml.safe_dump({"name": "c", "out": str(tmp_path / "cmp"), "recipe": shared,
                                            "strategies": {"grpo": {}}}))
    refused(cli("compare", str(compare_spec)), "unknown reward 'my_rewards:letters'")
    spec = CompareSpec.model_validate(yaml.safe_load(compare_spec.read_text()))
    code = UserCode.from_files([rewards])
    strategy = strategy_recipes(spec, code)["grpo"]
    recipe_file = write_recipe(strategy, tmp_path / "cmp" / "recipes" / "grpo.yaml")
    train_child(recipe_file, strategy.run_dir, tmp_path / "child.log", code.files)  # raises when the child fails
    records = [json.loads(line) for line in (strategy.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert any("reward/my_rewards:letters" in r for r in records)
