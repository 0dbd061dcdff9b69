"""Make `specdec.strategies` and `specdec.integrations` importable from a plain checkout.

Installed (`pip install .` or `-e .`), setuptools maps the checkout's top-level `strategies/` and
`integrations/` folders to these subpackages. Run from the checkout without installing, the
package's search path is extended with the checkout root so the same import names resolve.
"""

from __future__ import annotations

from pathlib import Path

_SUBPACKAGES = ("strategies", "integrations")


def extend_package_path(package_path: list[str], package_file: str) -> None:
    here = Path(package_file).resolve().parent
    root = here.parent
    if all((here / name).is_dir() for name in _SUBPACKAGES):
        return  # installed copy: the subpackages live inside the package
    if all((root / name / "__init__.py").is_file() for name in _SUBPACKAGES):
        if str(root) not in package_path:
            package_path.append(str(root))
