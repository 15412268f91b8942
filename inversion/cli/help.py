"""``python -m inversion --help``: the overview of the flags, printed without importing torch or the
operators (the parser's own help needs both: ``--operator`` is typed by the operators' base class).

Built from :class:`~inversion.cli.options.RestoreOptions` (its fields and their documentation) and a static
list of the operators (a test keeps it equal to :mod:`inversion.operators`).
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import textwrap

import inversion.cli as package
from inversion.cli.options import RestoreOptions

__all__ = ["OPERATORS", "overview"]

# the concrete operators of inversion.operators (``--operator NAME``; tests/test_startup_imports.py)
OPERATORS = (
    "SuperResolution", "Blur", "Inpainting", "Denoising", "Colorization", "CompressedSensing", "IAGANFourier",
    "Composite",
)  # fmt: skip


def field_docs(cls: type = RestoreOptions) -> dict[str, str]:
    """``name -> text`` of the ``Args:`` section of a dataclass's docstring (continuation lines joined)."""
    doc = inspect.cleandoc(cls.__doc__ or "").split("Args:", 1)[-1]
    docs: dict[str, str] = {}
    name = None
    for line in doc.splitlines():
        m = re.match(r"^    (\w+): (.*)$", line)
        if m:
            name, docs[m[1]] = m[1], m[2]
        elif name and line.startswith("        "):
            docs[name] += " " + line.strip()
        elif line.strip():
            name = None
    return docs


def overview(width: int = 100) -> str:
    docs = field_docs()
    lines = [
        "usage: python -m inversion [--config CONFIG] --prior PRIOR --operator OPERATOR [options]",
        "       python -m inversion compare OUT1 OUT2 ... [--output DIR]",
        "",
        package.__doc__.split("\n\n")[0].replace("``", ""),
        "",
        "options (each is also a key of the --config YAML):",
    ]

    def add(flag: str, text: str) -> None:
        body = textwrap.wrap(text, width - 26) or [""]
        head = f"  {flag:<21} "
        lines.append(head + body[0] if len(head) <= 24 else head.rstrip())
        lines.extend(" " * 24 + t for t in (body if len(head) > 24 else body[1:]))

    add("-h, --help", "show this overview and exit")
    add("--config CONFIG", "YAML preset (configs/inversion/*.yaml)")
    add("--print_config", "print the resulting configuration and exit")
    for f in dataclasses.fields(RestoreOptions):
        text = docs.get(f.name, "")
        if f.name == "operator":
            text += " One of: " + ", ".join(OPERATORS) + "; its arguments: --operator.help NAME."
        if f.default is dataclasses.MISSING:
            text += " (required)"
        else:
            text += f" (default: {f.default})"
        add(f"--{f.name} {f.name.upper()}", text.replace("``", ""))
    lines += ["", "example: python -m inversion --config configs/inversion/sr4.yaml --prior dcgan-faces-64 "
              "--input faces --output outputs/sr4"]  # fmt: skip
    return "\n".join(lines)
