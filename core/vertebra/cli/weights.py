"""`vertebra weights SUBCOMMAND`: installed pretrained weights, and packing a run's.

`list`, `show` and `verify` read entry-point metadata and manifests (no torch); `pack`
writes a wheel from a checkpoint, `import hf` one from a model folder. The work is `vertebra.weights`'; this module parses and
renders.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from vertebra.cli import COMMANDS

__all__ = ["add_parser"]


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "weights",
        help=COMMANDS["weights"],
        description="Pretrained weights shipped as Python distributions (entry-point group "
        "vertebra.weights), named in configs with WEIGHTS.",
    )
    wsub = p.add_subparsers(dest="weights_command", metavar="SUBCOMMAND")
    wsub.required = True
    ls = wsub.add_parser("list", help="installed weights: name, part, size, distribution, license")
    ls.add_argument("--json", action="store_true", help="print JSON")
    ls.set_defaults(run=_run_list)
    show = wsub.add_parser("show", help="the manifest of installed weights")
    show.add_argument("name", metavar="NAME", help="weights name (or DISTRIBUTION:NAME)")
    show.set_defaults(run=_run_show)
    verify = wsub.add_parser(
        "verify",
        help="recompute the sha256 of installed weights files",
        description="Exit status 1 naming each file whose size or sha256 differs from its "
        "manifest, or each manifest that cannot be read.",
    )
    verify.add_argument("name", metavar="NAME", nargs="?", help="only these weights")
    verify.set_defaults(run=_run_verify)
    pk = wsub.add_parser(
        "pack",
        help="write a wheel of a run's best checkpoint (or one part of it)",
        description="SOURCE is a run folder (its checkpoints/best) or a checkpoint folder. "
        "Writes NAME-VERSION-py3-none-any.whl, which pip installs offline.",
    )
    pk.add_argument("source", metavar="SOURCE", help="run folder or checkpoint folder")
    pk.add_argument("--name", required=True, help="weights and distribution name")
    pk.add_argument(
        "--part", default="MODEL", help="MODEL (default) or a part block: MODEL.BACKBONE"
    )
    pk.add_argument("--version", default="0.1.0", help="distribution version (default 0.1.0)")
    pk.add_argument("--license", default="", help="license of the weights (SPDX id)")
    pk.add_argument("--description", default="", help="one line about the weights")
    pk.add_argument("--output", default=".", metavar="DIR", help="folder of the wheel")
    pk.add_argument(
        "--force",
        action="store_true",
        help="replace a wheel of the same name and version in DIR (kept otherwise)",
    )
    pk.add_argument(
        "--default-for",
        metavar="KEYS",
        help="declare the weights the default for the part's NAME with the values of these "
        "comma-separated config keys (DEPTH), found by PRETRAINED: true; '' for the NAME alone",
    )
    pk.set_defaults(run=_run_pack)
    im = wsub.add_parser(
        "import",
        help="write a wheel of a model folder that save_pretrained wrote (hf)",
        description="FOLDER holds config.json and model.safetensors (or a pytorch_model.bin "
        "of plain tensors). Writes NAME-VERSION-py3-none-any.whl with both, the default "
        "weights for --part: a block {NAME: PART, PRETRAINED: true} or WEIGHTS: NAME loads it.",
    )
    im.add_argument("kind", choices=["hf"], help="hf: a Hugging Face (transformers) folder")
    im.add_argument("source", metavar="FOLDER", help="the model folder")
    im.add_argument(
        "--part",
        required=True,
        help="the part that rebuilds the model from config.json (HuggingfaceBackbone, "
        "HuggingfaceEncoder)",
    )
    im.add_argument("--name", required=True, help="weights and distribution name")
    im.add_argument("--version", default="0.1.0", help="distribution version (default 0.1.0)")
    im.add_argument("--license", default="", help="license of the weights (SPDX id)")
    im.add_argument("--description", default="", help="one line about the weights")
    im.add_argument("--output", default=".", metavar="DIR", help="folder of the wheel")
    im.add_argument(
        "--force",
        action="store_true",
        help="replace a wheel of the same name and version in DIR (kept otherwise)",
    )
    im.set_defaults(run=_run_import)


def _size(count: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if count < 1000 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000  # type: ignore[assignment]
    return str(count)


def _run_list(args: argparse.Namespace) -> int:
    from vertebra.errors import UserError
    from vertebra.weights import installed

    rows: list[dict[str, Any]] = []
    for w in installed():
        row: dict[str, Any] = {"name": w.name, "distribution": w.distribution, "version": w.version}
        try:
            m = w.manifest()
        except UserError as exc:
            row["error"] = str(exc)
        else:
            row.update(
                registry=m.registry,
                part=m.part,
                size=m.size,
                license=m.license,
                description=m.description,
            )
        rows.append(row)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no weights installed (entry-point group vertebra.weights)")
        return 0
    for r in rows:
        where = f"{r['distribution']} {r['version']}"
        if "error" in r:
            print(f"{r['name']}  ({where})  BROKEN: {r['error']}")
        else:
            print(
                f"{r['name']}  {r['registry']}:{r['part']}  {_size(r['size'])}  {where}  "
                f"{r['license'] or 'no license stated'}"
            )
    return 0


def _run_show(args: argparse.Namespace) -> int:
    from vertebra.weights import find

    w = find(args.name)
    m = w.manifest()
    print(f"{m.name}  ({w.distribution} {w.version})")
    print(f"  part:        {m.registry}:{m.part}")
    print(f"  license:     {m.license or 'not stated'}")
    if m.description:
        print(f"  description: {m.description}")
    if m.metrics:
        shown = ", ".join(f"{k}={v:.4f}" for k, v in m.metrics.items())
        print(f"  metrics:     {shown}" + (f" on {m.data}" if m.data else ""))
    print(f"  made by:     vertebra {m.vertebra_version or 'unknown'}")
    if m.default_for:
        print(f"  default for: {json.dumps(m.default_for)}")
    for f, path in zip(m.files, m.file_paths(), strict=True):
        print(f"  file:        {path} ({_size(f.size)}, sha256 {f.sha256})")
    print("  config:      " + json.dumps(m.config))
    return 0


def _run_verify(args: argparse.Namespace) -> int:
    from vertebra.errors import UserError
    from vertebra.weights import find, installed, verify

    chosen = [find(args.name)] if args.name else installed()
    bad = 0
    for w in chosen:
        try:
            problems = verify(w.manifest(), fresh=True)
        except UserError as exc:
            problems = [str(exc)]
        for problem in problems:
            print(f"{w.name} ({w.distribution} {w.version}): {problem}")
        if problems:
            bad += 1
        else:
            print(f"{w.name} ({w.distribution} {w.version}): ok")
    if bad:
        print(f"{bad} of {len(chosen)} weights failed verification")
        return 1
    return 0


def _run_pack(args: argparse.Namespace) -> int:
    from vertebra.weights._pack import pack

    wheel, manifest = pack(
        args.source,
        args.name,
        part=args.part,
        version=args.version,
        license=args.license,
        description=args.description,
        output=args.output,
        force=args.force,
        default_for=None
        if args.default_for is None
        else [k.strip() for k in args.default_for.split(",") if k.strip()],
    )
    print(f"{wheel} ({manifest.registry}:{manifest.part}, {_size(manifest.size)})")
    if manifest.default_for is not None:
        print(f"the default for: {json.dumps(manifest.default_for)} (PRETRAINED: true)")
    print(f"install it with: pip install {wheel}")
    return 0


def _run_import(args: argparse.Namespace) -> int:
    from vertebra.weights._hf import import_hf

    wheel, manifest = import_hf(
        args.source,
        args.part,
        args.name,
        version=args.version,
        license=args.license,
        description=args.description,
        output=args.output,
        force=args.force,
    )
    print(f"{wheel} ({manifest.registry}:{manifest.part}, {_size(manifest.size)})")
    print(f"the default for: {json.dumps(manifest.default_for)} (PRETRAINED: true)")
    print(f"install it with: pip install {wheel}")
    return 0
