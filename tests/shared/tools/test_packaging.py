"""The wheel carries every file the installed product reads (`.ci/wheel-check` installs it for real)."""
import fnmatch
import tomllib
from pathlib import Path

from shared.core.config import EXAMPLE_CONFIG

ROOT = Path(__file__).resolve().parents[3]


def test_the_top_level_example_config_is_the_packaged_one():
    top = ROOT / "config.example.toml"
    assert not top.is_symlink() and not EXAMPLE_CONFIG.is_symlink()
    assert top.read_text() == EXAMPLE_CONFIG.read_text(), (
        "config.example.toml and shared/core/config.example.toml differ: edit one, then copy it over the other")


def test_every_non_python_file_of_the_packages_is_package_data():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    package_data = pyproject["tool"]["setuptools"]["package-data"]
    missing = []
    for top in ("shared", "userbot", "worker"):
        for path in (ROOT / top).rglob("*"):
            if path.is_dir() or path.suffix in (".py", ".pyc") or "__pycache__" in path.parts:
                continue
            relative = path.relative_to(ROOT)
            covered = False
            for parent in relative.parents:
                package = ".".join(parent.parts)
                inside = str(relative.relative_to(parent)) if package else ""
                if any(fnmatch.fnmatch(inside, pattern) for pattern in package_data.get(package, [])):
                    covered = True
            if not covered:
                missing.append(str(relative))
    assert not missing, f"not in [tool.setuptools.package-data]: {missing}"


def test_the_license_is_an_spdx_expression_not_a_deprecated_table():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "MIT"
    assert not any(c.startswith("License ::") for c in project.get("classifiers", []))
