"""The data blocks of a scepter run config (`TRAIN_DATA`, `EVAL_DATA`) as vertebra loaders.

Loader settings go on the loader; a dataset ported to vertebra keeps its keys; scepter's
public datasets and the others become vertebra-vision's `ImageFolder` over a local folder
(nothing is downloaded), with the transforms vertebra-vision has.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ._scepter_record import Record, printable

__all__ = ["DataConversion"]


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
#: vertebra-vision's transforms; each takes scepter's keys of the transform of its name.
_TRANSFORMS = ("Normalize", "RandomCrop", "RandomHorizontalFlip", "RandomResizedCrop", "CenterCrop")


class DataConversion(Record):
    """Conversion of the data blocks (a part of the converter)."""

    def _loader(self, path: str, block: Any, split: str) -> dict[str, Any]:
        if not isinstance(block, Mapping):
            self.refuse(path, "a mapping with a NAME", block)
        loader: dict[str, Any] = {}
        rest: dict[str, Any] = {}
        for key, value in block.items():
            if key in _LOADER_KEYS:
                loader[_LOADER_KEYS[key]] = value
                self.carry(f"{path}.{key}", f"DATA.{split}.{_LOADER_KEYS[key]}")
            elif key == "SAMPLER":
                self.skip(
                    f"{path}.{key}",
                    "vertebra's loader goes through the dataset in epochs (shuffled with "
                    "SHUFFLE); TRAIN.MAX_STEPS runs on past the first",
                )
            else:
                rest[str(key)] = value
        loader = {"DATASET": self._dataset(path, rest, split), **loader}
        return loader

    def _dataset(self, path: str, block: dict[str, Any], split: str) -> dict[str, Any]:
        from vertebra.plugins._registries import registry_for

        datasets = registry_for("datasets")
        name = block.pop("NAME", None)
        if name is not None and not isinstance(name, str):
            self.refuse(f"{path}.NAME", "a dataset name", name)
        here = f"DATA.{split}.DATASET"
        if isinstance(name, str) and name in datasets and name not in _PUBLIC:
            self.carry(f"{path}.NAME", f"{here}.NAME")
            for key in block:
                self.carry(f"{path}.{key}", f"{here}.{key}")
            return {"NAME": name, **block}  # a dataset ported to vertebra: its keys as they are
        used = [key for key in ("MODE", "DATASET", "DATA_ROOT") if key in block]
        if name not in _PUBLIC:
            used = [key for key in used if key == "MODE"]  # the others are its own keys
        mode = block.pop("MODE", None)
        folder = str(mode) if mode else split.lower()
        if name in _PUBLIC:
            which = str(block.pop("DATASET", "") or "")
            root = str(block.pop("DATA_ROOT", "") or which or "data")
            what = _PUBLIC_NAMES.get(which.lower(), which or _PUBLIC[str(name)])
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
        for key in used:
            self.already(f"{path}.{key}", f"read into ImageFolder's ROOT {dataset['ROOT']}")
        transforms = block.pop("TRANSFORMS", None)
        for key in block:
            self.skip(f"{path}.{key}", f"a key of {name}: ImageFolder has no equivalent")
        if isinstance(transforms, list):
            converted = self._transforms(f"{path}.TRANSFORMS", transforms, dataset, here)
            if converted:
                dataset["TRANSFORMS"] = converted
        elif transforms is not None:
            self.skip(
                f"{path}.TRANSFORMS",
                "expected a list of transforms (mappings with a NAME): none carried over",
            )
        return dataset

    def _transforms(
        self, path: str, items: list[Any], dataset: dict[str, Any], target: str
    ) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for i, item in enumerate(items):
            here = f"{path}[{i}]"
            if not isinstance(item, Mapping):
                self.skip(here, "expected a mapping with a NAME")
                continue
            item = dict(item)
            name = item.pop("NAME", None)
            if name in _NOT_NEEDED:
                self.skip(
                    here,
                    f"{name} is not needed: ImageFolder gives items {{'img': float tensor "
                    "[C, H, W] in [0, 1], 'label': int}",
                )
                continue
            self._image_keys(here, item)
            if name == "Normalize":
                self._take(here, "Normalize", item, ("MEAN", "STD"), out, target)
            elif name == "RandomHorizontalFlip":
                self._take(here, "RandomHorizontalFlip", item, ("P",), out, target)
            elif name == "RandomCrop" and isinstance(item.get("SIZE"), int):
                self._take(here, "RandomCrop", item, ("SIZE", "PADDING"), out, target)
            elif name == "Resize" and "SIZE" in item:
                self._resize(here, item, dataset, target)
            elif name == "RandomResizedCrop":
                keys = ("SIZE", "SCALE", "RATIO", "INTERPOLATION")
                self._take(here, "RandomResizedCrop", item, keys, out, target)
            elif name == "CenterCrop":
                self._take(here, "CenterCrop", item, ("SIZE",), out, target)
            else:
                self.skip(
                    here,
                    f"vertebra-vision has no transform {printable(str(name))}; it has "
                    f"{', '.join(_TRANSFORMS)}",
                )
        return out

    def _image_keys(self, path: str, item: dict[str, Any]) -> None:
        """Take out the keys every scepter transform has and vertebra's need not."""
        for key in ("INPUT_KEY", "OUTPUT_KEY"):
            if key not in item:
                continue
            value = item.pop(key)
            if value in ("img", ["img"]):
                self.already(f"{path}.{key}", "vertebra-vision's transforms act on 'img'")
            else:
                self.skip(
                    f"{path}.{key}",
                    f"{value!r}: vertebra-vision's transforms read and write the item's 'img' "
                    "only (a network reads the keys it names, such as 'img')",
                )
        if "BACKEND" in item:
            item.pop("BACKEND")
            self.already(
                f"{path}.BACKEND",
                "vertebra-vision's transforms act on tensors, whatever scepter decoded with",
            )

    def _resize(
        self, path: str, item: dict[str, Any], dataset: dict[str, Any], target: str
    ) -> None:
        size = item.pop("SIZE")
        dataset["RESIZE"] = size
        self.already(f"{path}.NAME", "Resize is ImageFolder's RESIZE (see SIZE)")
        if item.get("INTERPOLATION", "bilinear") == "bilinear" and "INTERPOLATION" in item:
            item.pop("INTERPOLATION")
            self.already(f"{path}.INTERPOLATION", "bilinear: what ImageFolder's RESIZE does")
        change = f"ImageFolder RESIZE {size}"
        if isinstance(size, int):
            change += (
                f": every image becomes {size}x{size}, where scepter's Resize keeps the "
                "aspect ratio (its shorter side becomes SIZE): the same for square images"
            )
        self.note(f"{path}.SIZE", change)
        for key in item:
            self.skip(f"{path}.{key}", f"ImageFolder's RESIZE has no {key}")

    def _take(
        self,
        path: str,
        name: str,
        item: dict[str, Any],
        keys: tuple[str, ...],
        out: list[dict[str, Any]],
        target: str,
    ) -> None:
        """Append transform `name` with the `keys` of `item` to `out`; list the rest.

        A block that vertebra-vision's transform refuses (a SIZE of 0, an INTERPOLATION it
        lacks) is listed with why instead, so that the output validates.
        """
        taken: dict[str, Any] = {"NAME": name}
        for key, value in item.items():
            if key in keys:
                taken[key] = value
        refused = _refused(taken)
        if refused:
            self.skip(path, f"vertebra-vision's {name} refuses it ({printable(refused)})")
            return
        for key in item:
            if key not in keys:
                self.skip(f"{path}.{key}", f"vertebra-vision's {name} has no {key}")
        self.carry(path, f"{target}.TRANSFORMS[{len(out)}]")
        out.append(taken)


def _refused(block: dict[str, Any]) -> str | None:
    """Why vertebra-vision's transforms refuse `block`; None if they take it or are absent."""
    try:
        from vertebra_vision.transforms import TransformCfg
    except ImportError:  # checked by `vertebra validate` once vertebra-vision is installed
        return None
    from pydantic import TypeAdapter, ValidationError

    try:
        TypeAdapter(TransformCfg).validate_python(block)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = first["loc"][0] if first["loc"] else None  # what follows names union members
        return f"{key}: {first['msg']}" if isinstance(key, str) else str(first["msg"])
    return None
