"""Convert a scepter run config (`SOLVER:` with MODEL, OPTIMIZER, data, ...) into a vertebra one.

`convert_scepter(raw)` returns the vertebra run config and accounts for every key of the
input: carried over (where to), carried over with a change (a note), left out because
vertebra already does what it says, or not carried over, with why and what to do instead.
The model block is taken as it is (vertebra's parts take scepter's keys; a part's
`PRETRAINED_MODEL` becomes `WEIGHTS`); the solver's settings map to `TRAIN`, `OPTIMIZER`,
`LR_SCHEDULER` and `DATA`. Nothing is downloaded and no code runs: scepter's public
datasets become vertebra-vision's `ImageFolder` over a local folder.

The input is someone else's file: a value of the wrong kind where the conversion needs a
structure (hooks that are not a list, a dataset NAME that is not a name) is a `UserError`
naming the file and the key, and key text never reaches the output's comments unescaped.
What is recorded about each key lives in `_scepter_record`, the data blocks in
`_scepter_data`.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Mapping
from typing import Any, NamedTuple

from vertebra.errors import ConfigError, ConfigIssue, UserError

from ._files import dump, load
from ._scepter_data import DataConversion
from ._scepter_record import NO_EQUIVALENT, Unmapped, printable

__all__ = [
    "Conversion",
    "Unmapped",
    "convert_scepter",
    "load_scepter",
    "printable",
    "render_conversion",
]


class Conversion(NamedTuple):
    """What `convert_scepter` made."""

    #: The vertebra run config (a plain mapping, ready to dump).
    config: dict[str, Any]
    #: scepter keys that are not in `config`, each with why and what to do instead.
    unmapped: list[Unmapped]
    #: Keys carried over whose meaning differs a little in vertebra.
    notes: list[Unmapped]
    #: Keys left out because vertebra already does what they say (a default, a no-op).
    implied: list[Unmapped]
    #: (scepter path, vertebra path): the value at the first is in `config` at the second,
    #: as it is, with everything beneath it that no other list names.
    carried: list[tuple[str, str]]


#: Schedule keys that scepter counts in epochs (its schedule steps once per epoch) and
#: vertebra in optimizer steps.
_EPOCH_KEYS = ("T_MAX", "STEP_SIZE", "MILESTONES", "TOTAL_ITERS")


def load_scepter(path: str) -> dict[str, Any]:
    """Read a scepter run config file; `UserError` when it is not one."""
    raw = load(path)
    check_scepter(raw, path)
    return raw


def check_scepter(raw: Any, source: str) -> None:
    """Raise `UserError` unless `raw` is a scepter run config (a SOLVER with a MODEL)."""
    if not isinstance(raw, Mapping):
        raise UserError(f"{source} is not a scepter run config: it is not a mapping of keys")
    solver = raw.get("SOLVER")
    keys = ", ".join(str(k) for k in raw) or "none"
    if not isinstance(solver, Mapping):
        hint = (
            " (it looks like a vertebra run config already: check it with `vertebra validate`)"
            if "MODEL" in raw
            else ""
        )
        raise UserError(
            f"{source} is not a scepter run config: it has no SOLVER block (a mapping with "
            f"MODEL, OPTIMIZER, TRAIN_DATA, ...); its top-level keys: {keys}{hint}"
        )
    if not isinstance(solver.get("MODEL"), Mapping):
        raise UserError(
            f"{source} is not a scepter run config that vertebra can convert: its SOLVER has "
            "no MODEL block (a mapping with the network's NAME)"
        )


def convert_scepter(raw: Mapping[str, Any], source: str = "<config>") -> Conversion:
    """The vertebra run config for the scepter run config `raw`, and what did not map."""
    check_scepter(raw, source)
    c = _Converter(source)
    for key, value in raw.items():
        if key == "SOLVER":
            c.solver(value)
        elif key == "ENV":
            c.env(value)
        else:
            c.skip(str(key), "not a SOLVER key: " + NO_EQUIVALENT)
    return Conversion(c.finish(), c.unmapped, c.notes, c.implied, c.carried)


class _Converter(DataConversion):
    def __init__(self, source: str) -> None:
        super().__init__(source)
        self.model: dict[str, Any] = {}
        self.data: dict[str, Any] = {}
        self.optimizer: dict[str, Any] | None = None
        self.scheduler: dict[str, Any] | None = None
        self.train: dict[str, Any] = {}
        self._solver: Mapping[str, Any] = {}
        self._scheduler_raw: Mapping[str, Any] | None = None

    def set_train(self, path: str, key: str, value: Any) -> None:
        self.train[key] = value
        self.carry(path, f"TRAIN.{key}")

    # -- sections --------------------------------------------------------------------------

    def env(self, env: Any) -> None:
        if not isinstance(env, Mapping):
            self.refuse("ENV", "a mapping of keys", env)
        for key, value in env.items():
            path = f"ENV.{key}"
            if key == "SEED":
                self.set_train(path, "SEED", value)
            elif key == "CUDNN_DETERMINISTIC":
                if value:
                    self.train["DETERMINISTIC"] = True
                    self.note(
                        path,
                        "TRAIN.DETERMINISTIC: deterministic algorithms everywhere, not only "
                        "in cuDNN",
                    )
                else:
                    self.already(path, "vertebra's default (TRAIN.DETERMINISTIC: false)")
            elif key == "USE_PL":
                if value:
                    self.skip(path, "vertebra has one trainer (no PyTorch Lightning)")
                else:
                    self.already(path, "vertebra has one trainer (no PyTorch Lightning)")
            elif key == "BACKEND":
                self.skip(
                    path, "vertebra picks the process-group backend itself (nccl on CUDA, gloo)"
                )
            else:
                self.skip(path, NO_EQUIVALENT)

    def solver(self, solver: Mapping[str, Any]) -> None:
        self._solver = solver
        for key, value in solver.items():
            path = f"SOLVER.{key}"
            handler = getattr(self, f"_solver_{str(key).lower()}", None)
            if handler is not None and str(key).isupper():
                handler(path, value)
            else:
                self.skip(path, NO_EQUIVALENT)
        self._precision()
        if self._scheduler_raw is not None:
            self.scheduler = self._schedule("SOLVER.LR_SCHEDULER", self._scheduler_raw)

    def _steps_given(self) -> bool:
        steps: Any = self._solver.get("MAX_STEPS")
        return _whole(steps) and steps >= 1

    def _solver_name(self, path: str, value: Any) -> None:
        if value == "TrainValSolver":
            self.already(path, "vertebra train runs a training loop with evaluation, as it does")
        else:
            self.skip(
                path,
                f"{value}: vertebra train runs a training loop with evaluation, as "
                "TrainValSolver does; what this solver does beyond that does not carry over",
            )

    def _solver_model(self, path: str, value: Any) -> None:
        self.model = self._model(path, dict(value))

    def _solver_max_epochs(self, path: str, value: Any) -> None:
        if _whole(value) and value >= 1:
            self.set_train(path, "EPOCHS", value)
        elif self._steps_given():
            self.already(path, f"{value}: no limit in epochs; TRAIN.MAX_STEPS ends the run")
        else:
            self.skip(path, f"{value}: not a number of epochs; set TRAIN.EPOCHS or MAX_STEPS")

    def _solver_max_steps(self, path: str, value: Any) -> None:
        if _whole(value) and value >= 1:
            self.set_train(path, "MAX_STEPS", value)
        else:
            self.already(path, f"{value}: no limit in steps; TRAIN.EPOCHS ends the run")

    def _solver_work_dir(self, path: str, value: Any) -> None:
        if value:
            self.set_train(path, "OUTPUT_DIR", value)
        else:
            self.already(path, "empty: vertebra's default run folder (TRAIN.OUTPUT_DIR)")

    def _solver_accu_step(self, path: str, value: Any) -> None:
        self.set_train(path, "GRAD_ACCUM_STEPS", value)

    def _solver_resume_from(self, path: str, value: Any) -> None:
        if value:
            self.skip(
                path,
                f"resume with `vertebra train CONFIG --resume PATH` from a vertebra checkpoint "
                f"folder; scepter's checkpoint {value!r} does not resume a vertebra run (its "
                "weights do: `vertebra convert scepter-checkpoint`, then MODEL.WEIGHTS)",
            )
        else:
            self.already(path, "empty: a fresh run, as vertebra train starts without --resume")

    def _solver_load_model_only(self, path: str, value: Any) -> None:
        if self._solver.get("RESUME_FROM"):
            self.skip(
                path,
                "to start from a checkpoint's weights only, convert it with `vertebra convert "
                "scepter-checkpoint` and set MODEL.WEIGHTS to the .safetensors file",
            )
        else:
            self.already(path, "no RESUME_FROM: nothing to load")

    def _solver_eval_interval(self, path: str, value: Any) -> None:
        if self._steps_given() and _whole(value) and value >= 1:
            # A step-based solver (MAX_STEPS) evaluates every EVAL_INTERVAL steps.
            self.set_train(path, "EVAL_EVERY", value)
        elif value == 1:
            self.already(path, "vertebra evaluates after every epoch")
        else:
            self.skip(
                path,
                f"scepter evaluates every {value} epochs; vertebra evaluates after every epoch, "
                "or every TRAIN.EVAL_EVERY optimizer steps (set it to "
                f"{value} x the steps of one epoch)",
            )

    def _solver_num_folds(self, path: str, value: Any) -> None:
        if value in (None, 0, 1):
            self.already(path, f"{value}: one pass over the data per epoch, as vertebra's")
        else:
            self.skip(path, "a vertebra epoch is one pass over the data: raise MAX_EPOCHS instead")

    def _solver_log_file(self, path: str, value: Any) -> None:
        self.skip(path, "vertebra writes metrics.jsonl into the run folder and logs to stderr")

    def _solver_do_final_eval(self, path: str, value: Any) -> None:
        if value:
            self.already(path, "vertebra evaluates after the last epoch whenever DATA.VAL is given")
        else:
            self.skip(path, "vertebra evaluates after the last epoch whenever DATA.VAL is given")

    def _solver_save_eval_data(self, path: str, value: Any) -> None:
        if value:
            self.skip(path, "vertebra records evaluation metrics (metrics.jsonl), not the data")
        else:
            self.already(path, "vertebra records evaluation metrics only")

    def _solver_extra_keys(self, path: str, value: Any) -> None:
        if value:
            self.skip(path, NO_EQUIVALENT)
        else:
            self.already(path, "empty: nothing extra")

    def _solver_rescale_lr(self, path: str, value: Any) -> None:
        if value:
            self.skip(path, "vertebra uses OPTIMIZER.LR as given: scale it by hand")
        else:
            self.already(path, "vertebra uses OPTIMIZER.LR as given")

    def _solver_file_system(self, path: str, value: Any) -> None:
        self.skip(path, "vertebra reads local files only and downloads nothing")

    def _solver_channels_last(self, path: str, value: Any) -> None:
        if isinstance(value, bool):
            self.set_train(path, "CHANNELS_LAST", value)
        else:
            self.skip(path, f"{value!r}: TRAIN.CHANNELS_LAST takes true or false")

    def _solver_use_fsdp(self, path: str, value: Any) -> None:
        if value:
            self.train["STRATEGY"] = "fsdp"
            self.note(
                path,
                "TRAIN.STRATEGY: fsdp (FSDP2; TRAIN.FSDP.SHARD_MODULES picks the shard units "
                "by class name)",
            )
        else:
            self.already(path, "false: TRAIN.STRATEGY auto is ddp under torchrun or srun")

    def _solver_sharding_strategy(self, path: str, value: Any) -> None:
        if value in (None, "", "full_shard"):
            self.already(path, f"{value}: vertebra's fsdp shards parameters, gradients, state")
        else:
            self.skip(path, f"{value}: vertebra's fsdp always shards fully (full_shard)")

    def _solver_use_amp(self, path: str, value: Any) -> None:
        pass  # with DTYPE, in _precision

    def _solver_dtype(self, path: str, value: Any) -> None:
        pass  # with USE_AMP, in _precision

    def _precision(self) -> None:
        """scepter's autocast is USE_AMP with DTYPE: vertebra's TRAIN.PRECISION."""
        amp, dtype = self._solver.get("USE_AMP"), self._solver.get("DTYPE", "float32")
        if "USE_AMP" not in self._solver and "DTYPE" not in self._solver:
            return
        precision = _PRECISIONS.get(str(dtype)) if amp else "fp32"
        if precision is None:
            for key in ("USE_AMP", "DTYPE"):
                if key in self._solver:
                    self.skip(f"SOLVER.{key}", f"DTYPE {dtype!r}: set TRAIN.PRECISION by hand")
            return
        self.train["PRECISION"] = precision
        why = "fp16 with a gradient scaler" if precision == "fp16" else precision
        for key in ("USE_AMP", "DTYPE"):
            if key in self._solver:
                self.note(f"SOLVER.{key}", f"TRAIN.PRECISION: {precision} (autocast in {why})")

    def _solver_train_precision(self, path: str, value: Any) -> None:
        if str(value) in ("32", "32-true"):
            self.already(path, f"{value}: float32, as without ENV.USE_PL (PyTorch Lightning)")
        else:
            self.skip(path, f"{value}: a PyTorch Lightning precision; set TRAIN.PRECISION")

    def _solver_train_data(self, path: str, value: Any) -> None:
        self.data["TRAIN"] = self._loader(path, value, "TRAIN")

    def _solver_eval_data(self, path: str, value: Any) -> None:
        self.data["VAL"] = self._loader(path, value, "VAL")

    def _solver_optimizer(self, path: str, value: Any) -> None:
        self.optimizer = self._optimizer(path, value)

    def _solver_lr_scheduler(self, path: str, value: Any) -> None:
        if not isinstance(value, Mapping):
            self.refuse(path, "a mapping with a NAME", value)
        self._scheduler_raw = value  # after MAX_EPOCHS, wherever the file puts it

    def _solver_metrics(self, path: str, value: Any) -> None:
        self.skip(
            path,
            "vertebra evaluates the metrics of the network, MODEL.METRIC or MODEL.METRICS "
            "(the same metric parts); the solver has no metrics of its own",
        )

    def _solver_train_hooks(self, path: str, value: Any) -> None:
        self._hooks(path, value, train=True)

    def _solver_eval_hooks(self, path: str, value: Any) -> None:
        self._hooks(path, value, train=False)

    def _solver_test_hooks(self, path: str, value: Any) -> None:
        self._hooks(path, value, train=False)

    def _hooks(self, path: str, hooks: Any, *, train: bool) -> None:
        if hooks is not None and not isinstance(hooks, list):
            self.refuse(path, "a list of hooks (mappings with a NAME)", hooks)
        if not hooks:
            self.already(path, "no hooks")
            return
        for i, hook in enumerate(hooks):
            here = f"{path}[{i}]"
            if not isinstance(hook, Mapping):
                self.skip(here, "expected a mapping with a NAME")
                continue
            name = hook.get("NAME")
            if name == "LogHook" and not train:
                self.already(here, "vertebra logs each evaluation once, when it ends")
                continue
            taken = _HOOK_KEYS.get(name) if isinstance(name, str) and train else None
            if taken is None:
                self.skip(
                    here,
                    f"scepter hook {name}: vertebra's hooks are plugins, turned on under "
                    "PLUGINS (`vertebra plugins list` shows the installed ones)",
                )
                continue
            for key, value in hook.items():
                where = f"{here}.{key}"
                if key == "NAME":
                    self.already(where, f"vertebra's trainer does what {name} does")
                elif key == "PRIORITY":
                    self.already(where, "vertebra runs its steps in a fixed order")
                elif key in taken:
                    self._hook_setting(where, taken[key], value)
                else:
                    self.skip(where, f"{name}'s {key}: {NO_EQUIVALENT}")

    def _hook_setting(self, path: str, target: str, value: Any) -> None:
        if target == "GRAD_CLIP_NORM" and not (isinstance(value, int | float) and value > 0):
            self.already(path, f"{value}: no clipping, vertebra's default")
        elif target == "GRAD_ACCUM_STEPS" and "ACCU_STEP" in self._solver:
            self.skip(path, "SOLVER.ACCU_STEP gives TRAIN.GRAD_ACCUM_STEPS already")
        else:
            self.set_train(path, target, value)

    # -- the model -------------------------------------------------------------------------

    def _model(self, path: str, model: dict[str, Any]) -> dict[str, Any]:
        if model.get("NAME") == "Classifier" and "ACT_NAME" not in model:
            # scepter's Classifier applies softmax unless told otherwise; vertebra's default
            # returns the logits as they are.
            model["ACT_NAME"] = "softmax"
            self.note(f"{path}.ACT_NAME", "set to softmax, scepter's default for Classifier")
        issues = _issues(model)
        weights = self._checkpoints(path, model, "MODEL", issues)
        for issue in _issues(model):
            where = path + issue.path.removeprefix("MODEL")
            if issue.message.startswith("unknown key") and _drop(model, issue.path):
                self.skip(where, f"vertebra's part does not take this key ({issue.message})")
            else:
                self.skip(where, f"fix by hand in MODEL: {issue.message}")
        for block, value in weights:
            block["WEIGHTS"] = value  # after validation: the file is made later, by the user
        self.carry(path, "MODEL")
        return model

    def _checkpoints(
        self, path: str, block: dict[str, Any], where: str, issues: list[ConfigIssue]
    ) -> list[tuple[dict[str, Any], str]]:
        """Take scepter's `PRETRAINED_MODEL` (a checkpoint path) out of every part of
        `block` that does not take it itself; the `WEIGHTS` each such part gets."""
        found: list[tuple[dict[str, Any], str]] = []
        for key, value in list(block.items()):
            if isinstance(value, dict):
                found += self._checkpoints(f"{path}.{key}", value, f"{where}.{key}", issues)
            elif isinstance(value, list):
                for i, item in enumerate(value):
                    if isinstance(item, dict):
                        here = f"{path}.{key}[{i}]"
                        found += self._checkpoints(here, item, f"{where}.{key}[{i}]", issues)
        if "PRETRAINED_MODEL" not in block or _takes(issues, where, "PRETRAINED_MODEL"):
            return found
        here, value = f"{path}.PRETRAINED_MODEL", block.pop("PRETRAINED_MODEL")
        if "IGNORE_KEYS" in block and not _takes(issues, where, "IGNORE_KEYS"):
            if block.pop("IGNORE_KEYS"):
                self.skip(
                    f"{path}.IGNORE_KEYS",
                    "scepter's keys to leave out of PRETRAINED_MODEL: give them to "
                    "WEIGHTS_IGNORE as globs of the part's tensor names (`head.*`)",
                )
            else:
                self.already(f"{path}.IGNORE_KEYS", "empty: every tensor is loaded")
        if not value:
            self.already(here, "empty: no checkpoint to load")
        elif not isinstance(value, str):
            self.skip(here, f"{value!r} is not a checkpoint path")
        elif "WEIGHTS" in block:
            self.skip(here, "the part sets WEIGHTS already")
        elif "://" in value:
            self.skip(
                here,
                f"{value!r} is a download; vertebra downloads nothing. Fetch the checkpoint, "
                "convert it with `vertebra convert scepter-checkpoint FILE -o FILE.safetensors` "
                "and set WEIGHTS to the .safetensors file",
            )
        else:
            target = value if value.endswith(".safetensors") else _safetensors_name(value)
            found.append((block, target))
            how = (
                ""
                if target == value
                else f"; convert scepter's checkpoint first: `vertebra convert "
                f"scepter-checkpoint {value} -o {target}`"
            )
            self.note(here, f"WEIGHTS: {target} (a safetensors file vertebra loads{how})")
        return found

    # -- optimizer and schedule -------------------------------------------------------------

    def _optimizer(self, path: str, block: Any) -> dict[str, Any] | None:
        return self._part(path, block, "optimizers", {"LEARNING_RATE": "LR"}, "OPTIMIZER")

    def _schedule(self, path: str, block: Mapping[str, Any]) -> dict[str, Any] | None:
        block = dict(block)
        epochs = self._solver.get("MAX_EPOCHS")
        for key in _EPOCH_KEYS:
            if key not in block:
                continue
            value = block.pop(key)
            if key == "T_MAX" and epochs is not None and value == epochs:
                self.note(
                    f"{path}.T_MAX",
                    f"left out: {value} epochs is the whole run, vertebra's default T_MAX "
                    "(its schedule steps every optimizer step, scepter's every epoch)",
                )
            elif key == "TOTAL_ITERS" and self._steps_given():
                block[key] = value  # a step-based solver counts it in steps, as vertebra
            else:
                self.skip(
                    f"{path}.{key}",
                    f"scepter counts {key} in epochs (its schedule steps once per epoch), "
                    f"vertebra in optimizer steps: set {key} to {value} x the steps of one epoch",
                )
        if block.get("LAST_EPOCH", -1) == -1 and "LAST_EPOCH" in block:
            block.pop("LAST_EPOCH")
            self.already(f"{path}.LAST_EPOCH", "-1: a fresh schedule, vertebra's only start")
        return self._part(path, block, "lr_schedulers", {}, "LR_SCHEDULER")

    def _part(
        self,
        path: str,
        block: Any,
        registry_name: str,
        renames: dict[str, str],
        target: str,
    ) -> dict[str, Any] | None:
        from vertebra.plugins._registries import registry_for

        registry = registry_for(registry_name)
        if not isinstance(block, Mapping):
            self.refuse(path, "a mapping with a NAME", block)
        name = block.get("NAME")
        if not isinstance(name, str) or name not in registry:
            self.skip(
                path,
                f"no vertebra {registry.singular} is named {name!r} (registered: "
                f"{', '.join(registry.names())}); the default is used",
            )
            return None
        fields = registry.schema(name).model_fields
        out: dict[str, Any] = {"NAME": name}
        carried: list[tuple[str, str]] = [(f"{path}.NAME", f"{target}.NAME")]
        for key, value in block.items():
            key_text = str(key)
            renamed = renames.get(key_text, key_text)
            if key == "NAME":
                continue
            if renamed in fields:
                out[renamed] = value
                carried.append((f"{path}.{key_text}", f"{target}.{renamed}"))
            else:
                self.skip(f"{path}.{key_text}", f"vertebra's {name} has no {renamed}")
        try:
            registry.validate(out)
        except ConfigError as exc:
            problems = "; ".join(str(i) for i in exc.issues)
            self.skip(
                path, f"left out, vertebra's {name} rejects it ({problems}); the default is used"
            )
            return None
        self.carried += carried
        return out

    def finish(self) -> dict[str, Any]:
        out: dict[str, Any] = {"MODEL": self.model}
        if self.data:
            out["DATA"] = self.data
        if self.optimizer is not None:
            out["OPTIMIZER"] = self.optimizer
        if self.scheduler is not None:
            out["LR_SCHEDULER"] = self.scheduler
        if self.train:
            out["TRAIN"] = self.train
        return out


#: The train hooks whose settings are TRAIN keys: key -> TRAIN key.
_HOOK_KEYS: dict[str, dict[str, str]] = {
    "LogHook": {"LOG_INTERVAL": "LOG_EVERY"},
    "BackwardHook": {"GRADIENT_CLIP": "GRAD_CLIP_NORM", "ACCUMULATE_STEP": "GRAD_ACCUM_STEPS"},
    "ModelEmaHook": {"BETA": "EMA_DECAY"},
}
#: scepter's autocast DTYPE (with USE_AMP) -> TRAIN.PRECISION.
_PRECISIONS = {"float16": "fp16", "bfloat16": "bf16", "float32": "fp32"}


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _safetensors_name(path: str) -> str:
    stem, dot, suffix = path.rpartition(".")
    if dot and "/" not in suffix:
        return f"{stem}.safetensors"
    return f"{path}.safetensors"


def _issues(model: dict[str, Any]) -> list[ConfigIssue]:
    """What vertebra's validation finds in the model block (none when it is valid)."""
    from vertebra.plugins._registries import registry_for

    try:
        registry_for("models").validate(model, path="MODEL")
    except ConfigError as exc:
        return list(exc.issues)
    return []


def _takes(issues: list[ConfigIssue], where: str, key: str) -> bool:
    """Whether validation accepted `key` of the part at `where`: neither the key, the part,
    nor a part above it was refused."""
    for issue in issues:
        if issue.path == f"{where}.{key}":
            return False
        head = issue.path.removesuffix(".NAME")
        if where == head or where.startswith(f"{head}.") or where.startswith(f"{head}["):
            return False
    return True


_STEP = re.compile(r"\.?([^.\[\]]+)|\[(\d+)\]")


def _drop(root: dict[str, Any], path: str) -> bool:
    """Remove the key at dotted `path` (`MODEL.BACKBONE.X`, first part the root's own name)."""
    steps: list[str | int] = [
        m[1] if m[1] is not None else int(m[2]) for m in _STEP.finditer(path)
    ][1:]
    node: Any = root
    for step in steps[:-1]:
        try:
            node = node[step]
        except (KeyError, IndexError, TypeError):
            return False
    if isinstance(node, dict) and steps and steps[-1] in node:
        del node[steps[-1]]
        return True
    return False


def render_conversion(conversion: Conversion, source: str) -> str:
    """The converted config as YAML, headed by comments that list what did not map."""
    lines = [
        f"# Converted from {printable(source)} (a scepter run config) by `vertebra convert scepter`."
    ]
    for title, items in (
        ("Not carried over", conversion.unmapped),
        ("Carried over with a change", conversion.notes),
        ("Left out, as vertebra already does what they say", conversion.implied),
    ):
        if not items:
            continue
        lines.append(f"# {title} ({len(items)}):")
        for item in items:
            # str(item) is printable: no key text can end the comment line
            wrapped = textwrap.wrap(str(item), width=86, break_on_hyphens=False)
            lines.append(f"#   {wrapped[0]}")
            lines.extend(f"#     {line}" for line in wrapped[1:])
    return "\n".join(lines) + "\n" + dump(conversion.config)
