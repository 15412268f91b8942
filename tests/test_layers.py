"""The package layering, bottom to top: datamodules < callbacks < lcm < inversion. No module imports a
package above its own, not even inside a function (read from the source, so lazy imports count too)."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ORDER = ["datamodules", "callbacks", "lcm", "inversion"]


def _imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", ORDER[:-1])
def test_no_package_imports_a_package_above_it(package):
    above = set(ORDER[ORDER.index(package) + 1 :])
    bad = []
    for path in sorted((ROOT / package).rglob("*.py")):
        if path.name.startswith("benchmark"):  # experiments, leaving the packages for benchmarks/ (issue 22)
            continue
        wrong = _imported_packages(path) & above
        if wrong:
            bad.append(f"{path.relative_to(ROOT)} imports {sorted(wrong)}")
    assert not bad, "\n".join(bad)
