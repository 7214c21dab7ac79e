"""Convert a scepter run config (`SOLVER:` with MODEL, OPTIMIZER, data, ...) into a vertebra one.

`convert_scepter(raw)` returns the vertebra run config and, for every scepter key it could
not carry over, the key's path and why (with what to use instead). The model block is
taken as it is (vertebra's parts take scepter's keys); the solver's settings map to
`TRAIN`, `OPTIMIZER`, `LR_SCHEDULER` and `DATA`. Nothing is downloaded and no code runs:
scepter's public datasets become vertebra-vision's `ImageFolder` over a local folder.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Mapping
from typing import Any, NamedTuple

from vertebra.errors import ConfigError, UserError

from ._files import dump, load

__all__ = ["Conversion", "Unmapped", "convert_scepter", "load_scepter", "render_conversion"]


class Unmapped(NamedTuple):
    """A scepter key that was not carried over, or that was with a change, and why."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


class Conversion(NamedTuple):
    """What `convert_scepter` made."""

    #: The vertebra run config (a plain mapping, ready to dump).
    config: dict[str, Any]
    #: scepter keys that are not in `config`, each with why and what to do instead.
    unmapped: list[Unmapped]
    #: Keys carried over whose meaning differs a little in vertebra.
    notes: list[Unmapped]


#: Keys of a scepter data block that are loader settings in vertebra.
_LOADER_KEYS = {
    "BATCH_SIZE": "BATCH_SIZE",
    "NUM_WORKERS": "NUM_WORKERS",
    "PIN_MEMORY": "PIN_MEMORY",
    "SHUFFLE": "SHUFFLE",
    "DROP_LAST": "DROP_LAST",
    "PREFETCH_FACTOR": "PREFETCH_FACTOR",
}
#: scepter's datasets that download a public dataset, and what it is.
_PUBLIC = {"ImageClassifyPublicDataset": "a public image dataset"}
_PUBLIC_NAMES = {
    "cifar10": "CIFAR-10",
    "cifar100": "CIFAR-100",
    "mnist": "MNIST",
    "fashionmnist": "Fashion-MNIST",
}
#: Transforms that turn a decoded image into a tensor or pick keys: vertebra's image
#: datasets already give `{"img": float tensor [C, H, W] in [0, 1], "label": int}`.
_NOT_NEEDED = ("ImageToTensor", "ToTensor", "Select", "ToNumpy", "LoadImageFromFile")
#: Schedule keys that scepter counts in epochs (its schedule steps once per epoch) and
#: vertebra in optimizer steps.
_EPOCH_KEYS = ("T_MAX", "STEP_SIZE", "MILESTONES", "TOTAL_ITERS")
_NO_EQUIVALENT = "vertebra has no equivalent setting"


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
    c = _Converter()
    for key, value in raw.items():
        if key == "SOLVER":
            c.solver(value)
        elif key == "ENV":
            c.env(value)
        else:
            c.skip(str(key), "not a SOLVER key: " + _NO_EQUIVALENT)
    return Conversion(c.finish(), c.unmapped, c.notes)


class _Converter:
    def __init__(self) -> None:
        self.model: dict[str, Any] = {}
        self.data: dict[str, Any] = {}
        self.optimizer: dict[str, Any] | None = None
        self.scheduler: dict[str, Any] | None = None
        self.train: dict[str, Any] = {}
        self.unmapped: list[Unmapped] = []
        self.notes: list[Unmapped] = []
        self._epochs: Any = None
        self._scheduler_raw: Mapping[str, Any] | None = None

    def skip(self, path: str, reason: str) -> None:
        self.unmapped.append(Unmapped(path, reason))

    def note(self, path: str, reason: str) -> None:
        self.notes.append(Unmapped(path, reason))

    # -- sections --------------------------------------------------------------------------

    def env(self, env: Any) -> None:
        if not isinstance(env, Mapping):
            self.skip("ENV", "expected a mapping")
            return
        for key, value in env.items():
            path = f"ENV.{key}"
            if key == "SEED":
                self.train["SEED"] = value
            elif key == "CUDNN_DETERMINISTIC":
                if value:
                    self.train["DETERMINISTIC"] = True
                    self.note(
                        path,
                        "TRAIN.DETERMINISTIC: deterministic algorithms everywhere, not only "
                        "in cuDNN",
                    )
            elif key == "USE_PL":
                if value:
                    self.skip(path, "vertebra has one trainer (no PyTorch Lightning)")
            elif key == "BACKEND":
                self.skip(path, "vertebra picks the process-group backend itself")
            else:
                self.skip(path, _NO_EQUIVALENT)

    def solver(self, solver: Mapping[str, Any]) -> None:
        self._epochs = solver.get("MAX_EPOCHS")
        for key, value in solver.items():
            path = f"SOLVER.{key}"
            handler = getattr(self, f"_solver_{str(key).lower()}", None)
            if handler is not None:
                handler(path, value)
            else:
                self.skip(path, _NO_EQUIVALENT)
        if self._scheduler_raw is not None:
            self.scheduler = self._schedule("SOLVER.LR_SCHEDULER", self._scheduler_raw)

    def _solver_name(self, path: str, value: Any) -> None:
        if value != "TrainValSolver":
            self.skip(
                path,
                f"{value}: vertebra train runs a training loop with evaluation, as "
                "TrainValSolver does; what this solver does beyond that does not carry over",
            )

    def _solver_model(self, path: str, value: Any) -> None:
        self.model = self._model(path, dict(value))

    def _solver_max_epochs(self, path: str, value: Any) -> None:
        self.train["EPOCHS"] = value

    def _solver_work_dir(self, path: str, value: Any) -> None:
        if value:
            self.train["OUTPUT_DIR"] = value

    def _solver_accu_step(self, path: str, value: Any) -> None:
        self.train["GRAD_ACCUM_STEPS"] = value

    def _solver_resume_from(self, path: str, value: Any) -> None:
        if value:
            self.skip(
                path,
                f"resume with `vertebra train CONFIG --resume PATH` from a vertebra checkpoint "
                f"folder; scepter's checkpoint {value!r} does not resume a vertebra run",
            )

    def _solver_eval_interval(self, path: str, value: Any) -> None:
        if value != 1:
            self.skip(
                path,
                f"scepter evaluates every {value} epochs; vertebra evaluates after every epoch, "
                "or every TRAIN.EVAL_EVERY optimizer steps (set it to "
                f"{value} x the steps of one epoch)",
            )

    def _solver_num_folds(self, path: str, value: Any) -> None:
        if value not in (None, 1):
            self.skip(path, "a vertebra epoch is one pass over the data: raise MAX_EPOCHS instead")

    def _solver_log_file(self, path: str, value: Any) -> None:
        self.skip(path, "vertebra writes metrics.jsonl into the run folder and logs to stderr")

    def _solver_do_final_eval(self, path: str, value: Any) -> None:
        if not value:
            self.skip(path, "vertebra evaluates after the last epoch whenever DATA.VAL is given")

    def _solver_save_eval_data(self, path: str, value: Any) -> None:
        if value:
            self.skip(path, "vertebra records evaluation metrics (metrics.jsonl), not the data")

    def _solver_extra_keys(self, path: str, value: Any) -> None:
        if value:
            self.skip(path, _NO_EQUIVALENT)

    def _solver_train_data(self, path: str, value: Any) -> None:
        self.data["TRAIN"] = self._loader(path, value, "train")

    def _solver_eval_data(self, path: str, value: Any) -> None:
        self.data["VAL"] = self._loader(path, value, "val")

    def _solver_optimizer(self, path: str, value: Any) -> None:
        self.optimizer = self._optimizer(path, value)

    def _solver_lr_scheduler(self, path: str, value: Any) -> None:
        if isinstance(value, Mapping):
            self._scheduler_raw = value  # after MAX_EPOCHS, wherever the file puts it
        else:
            self.skip(path, "expected a mapping with a NAME")

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
        for i, hook in enumerate(hooks or []):
            here = f"{path}[{i}]"
            name = hook.get("NAME") if isinstance(hook, Mapping) else None
            if name == "LogHook" and train:
                if "LOG_INTERVAL" in hook:
                    self.train["LOG_EVERY"] = hook["LOG_INTERVAL"]
                for key in hook:
                    if key not in ("NAME", "LOG_INTERVAL", "PRIORITY"):
                        self.skip(f"{here}.{key}", _NO_EQUIVALENT)
            elif name == "LogHook":
                pass  # vertebra logs each evaluation once, when it ends
            else:
                self.skip(
                    here,
                    f"scepter hook {name}: vertebra's hooks are plugins, turned on under "
                    "PLUGINS (`vertebra plugins list` shows the installed ones)",
                )

    # -- the model -------------------------------------------------------------------------

    def _model(self, path: str, model: dict[str, Any]) -> dict[str, Any]:
        if model.get("NAME") == "Classifier" and "ACT_NAME" not in model:
            # scepter's Classifier applies softmax unless told otherwise; vertebra's default
            # returns the logits as they are.
            model["ACT_NAME"] = "softmax"
            self.note(f"{path}.ACT_NAME", "set to softmax, scepter's default for Classifier")
        from vertebra.plugins._registries import registry_for

        try:
            registry_for("models").validate(model, path="MODEL")
        except ConfigError as exc:
            for issue in exc.issues:
                where = path + issue.path.removeprefix("MODEL")
                if issue.message.startswith("unknown key") and _drop(model, issue.path):
                    self.skip(where, f"vertebra's part does not take this key ({issue.message})")
                else:
                    self.skip(where, f"fix by hand in MODEL: {issue.message}")
        return model

    # -- data ------------------------------------------------------------------------------

    def _loader(self, path: str, block: Any, split: str) -> dict[str, Any]:
        if not isinstance(block, Mapping):
            self.skip(path, "expected a mapping with a NAME")
            block = {}
        loader: dict[str, Any] = {}
        rest: dict[str, Any] = {}
        for key, value in block.items():
            if key in _LOADER_KEYS:
                loader[_LOADER_KEYS[key]] = value
            else:
                rest[str(key)] = value
        loader = {"DATASET": self._dataset(path, rest, split), **loader}
        return loader

    def _dataset(self, path: str, block: dict[str, Any], split: str) -> dict[str, Any]:
        from vertebra.plugins._registries import registry_for

        datasets = registry_for("datasets")
        name = block.pop("NAME", None)
        if isinstance(name, str) and name in datasets and name not in _PUBLIC:
            return {"NAME": name, **block}  # a dataset ported to vertebra: its keys as they are
        mode = block.pop("MODE", None)
        folder = str(mode) if mode else split
        if name in _PUBLIC:
            which = str(block.pop("DATASET", "") or "")
            root = str(block.pop("DATA_ROOT", "") or which or "data")
            what = _PUBLIC_NAMES.get(which.lower(), which or _PUBLIC[name])
            dataset: dict[str, Any] = {
                "NAME": "ImageFolder",
                "ROOT": f"{root.rstrip('/')}/{folder}",
            }
            reason = (
                f"{name} downloads {what}; vertebra downloads nothing. Written as "
                f"vertebra-vision's ImageFolder with ROOT {dataset['ROOT']}: put the images "
                "there, one subfolder per class, or try the config first with vertebra-vision's "
                "SyntheticImages (DATASET: {NAME: SyntheticImages}, generated 3x32x32 images "
                "in 10 classes)"
            )
        else:
            dataset = {"NAME": "ImageFolder", "ROOT": f"data/{folder}"}
            reason = (
                f"no vertebra dataset is named {name!r}; written as vertebra-vision's "
                f"ImageFolder with ROOT {dataset['ROOT']} (one subfolder of images per class)"
            )
        if "ImageFolder" not in datasets:
            reason += "; ImageFolder comes with vertebra-vision: pip install vertebra-vision"
        self.skip(f"{path}.NAME", reason)
        transforms = block.pop("TRANSFORMS", None)
        for key in block:
            self.skip(f"{path}.{key}", f"a key of {name}: ImageFolder has no equivalent")
        if transforms:
            converted = self._transforms(f"{path}.TRANSFORMS", transforms, dataset)
            if converted:
                dataset["TRANSFORMS"] = converted
        return dataset

    def _transforms(self, path: str, items: Any, dataset: dict[str, Any]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for i, item in enumerate(items if isinstance(items, list) else []):
            here = f"{path}[{i}]"
            if not isinstance(item, Mapping):
                self.skip(here, "expected a mapping with a NAME")
                continue
            item = dict(item)
            name = item.pop("NAME", None)
            for key in ("INPUT_KEY", "OUTPUT_KEY"):
                if item.get(key, "img") == "img":
                    item.pop(key, None)  # vertebra's transforms act on the image: the same
            item.pop("BACKEND", None)  # vertebra's act on tensors, whatever scepter decoded with
            if name in _NOT_NEEDED:
                self.skip(
                    here,
                    f"{name} is not needed: ImageFolder gives items {{'img': float tensor "
                    "[C, H, W] in [0, 1], 'label': int}",
                )
                continue
            if name == "Normalize":
                out.append(self._take(here, "Normalize", item, ("MEAN", "STD")))
            elif name == "RandomHorizontalFlip":
                out.append(self._take(here, "RandomHorizontalFlip", item, ("P",)))
            elif name == "RandomCrop" and isinstance(item.get("SIZE"), int):
                out.append(self._take(here, "RandomCrop", item, ("SIZE", "PADDING")))
            elif name == "Resize" and "SIZE" in item:
                size = item.pop("SIZE")
                dataset["RESIZE"] = size
                if item.get("INTERPOLATION", "bilinear") == "bilinear":
                    item.pop("INTERPOLATION", None)  # what RESIZE does
                change = f"ImageFolder RESIZE {size}"
                if isinstance(size, int):
                    change += (
                        f": every image becomes {size}x{size}, where scepter's Resize keeps the "
                        "aspect ratio (its shorter side becomes SIZE): the same for square images"
                    )
                self.note(f"{here}.SIZE", change)
                for key in item:
                    self.skip(f"{here}.{key}", f"ImageFolder's RESIZE has no {key}")
            elif name == "RandomResizedCrop":
                self.skip(
                    here,
                    "vertebra-vision has no RandomResizedCrop (a random scale and aspect ratio); "
                    "the closest is RandomCrop {SIZE, PADDING}",
                )
            else:
                self.skip(
                    here,
                    f"vertebra-vision has no transform {name}; it has Normalize, RandomCrop and "
                    "RandomHorizontalFlip",
                )
        return out

    def _take(
        self, path: str, name: str, item: dict[str, Any], keys: tuple[str, ...]
    ) -> dict[str, Any]:
        out: dict[str, Any] = {"NAME": name}
        for key, value in item.items():
            if key in keys:
                out[key] = value
            else:
                self.skip(f"{path}.{key}", f"vertebra-vision's {name} has no {key}")
        return out

    # -- optimizer and schedule -------------------------------------------------------------

    def _optimizer(self, path: str, block: Any) -> dict[str, Any] | None:
        return self._part(path, block, "optimizers", {"LEARNING_RATE": "LR"})

    def _schedule(self, path: str, block: Mapping[str, Any]) -> dict[str, Any] | None:
        block = dict(block)
        for key in _EPOCH_KEYS:
            if key not in block:
                continue
            value = block.pop(key)
            if key == "T_MAX" and self._epochs is not None and value == self._epochs:
                self.note(
                    f"{path}.T_MAX",
                    f"left out: {value} epochs is the whole run, vertebra's default T_MAX "
                    "(its schedule steps every optimizer step, scepter's every epoch)",
                )
            else:
                self.skip(
                    f"{path}.{key}",
                    f"scepter counts {key} in epochs (its schedule steps once per epoch), "
                    f"vertebra in optimizer steps: set {key} to {value} x the steps of one epoch",
                )
        if block.get("LAST_EPOCH", -1) == -1:
            block.pop("LAST_EPOCH", None)  # a fresh schedule: vertebra's only start
        return self._part(path, block, "lr_schedulers", {})

    def _part(
        self, path: str, block: Any, registry_name: str, renames: dict[str, str]
    ) -> dict[str, Any] | None:
        from vertebra.plugins._registries import registry_for

        registry = registry_for(registry_name)
        if not isinstance(block, Mapping):
            self.skip(path, "expected a mapping with a NAME")
            return None
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
        for key, value in block.items():
            target = renames.get(str(key), str(key))
            if key == "NAME":
                continue
            if target in fields:
                out[target] = value
            else:
                self.skip(f"{path}.{key}", f"vertebra's {name} has no {target}")
        try:
            registry.validate(out)
        except ConfigError as exc:
            problems = "; ".join(str(i) for i in exc.issues)
            self.skip(
                path, f"left out, vertebra's {name} rejects it ({problems}); the default is used"
            )
            return None
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
    lines = [f"# Converted from {source} (a scepter run config) by `vertebra convert scepter`."]
    for title, items in (
        ("Not carried over", conversion.unmapped),
        ("Carried over with a change", conversion.notes),
    ):
        if not items:
            continue
        lines.append(f"# {title} ({len(items)}):")
        for item in items:
            wrapped = textwrap.wrap(str(item), width=86, break_on_hyphens=False)
            lines.append(f"#   {wrapped[0]}")
            lines.extend(f"#     {line}" for line in wrapped[1:])
    return "\n".join(lines) + "\n" + dump(conversion.config)
