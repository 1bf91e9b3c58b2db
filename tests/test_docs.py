"""The documentation builds with warnings as errors and documents every public name.

The build runs on a copy of ``docs/`` and ``examples/`` in a temporary directory,
because sphinx-gallery writes generated pages next to the sources; the working
tree is left untouched. Examples are not executed (the docs' default).
"""

import importlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("sphinx")
pytest.importorskip("numpydoc")
pytest.importorskip("sphinx_gallery")

ROOT = Path(__file__).resolve().parents[1]

# Module -> the prefix its public names carry in the API reference.
PUBLIC_MODULES = {
    "sklearn_tmnre": "sklearn_tmnre.",
    "sklearn_tmnre.metrics": "sklearn_tmnre.metrics.",
    "sklearn_tmnre.plotting": "sklearn_tmnre.plotting.",
    "sklearn_tmnre.tasks": "sklearn_tmnre.tasks.",
}


@pytest.fixture(scope="module")
def built_docs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("docs_build")
    shutil.copytree(ROOT / "docs", tmp / "docs", ignore=shutil.ignore_patterns(
        "_build", "auto_examples", "gen_modules", "sg_execution_times.rst", "__pycache__"))
    shutil.copytree(ROOT / "examples", tmp / "examples", ignore=shutil.ignore_patterns(
        "output", "__pycache__", "*.zarr"))
    env = {k: v for k, v in os.environ.items() if k != "SKLEARN_TMNRE_DOCS_RUN_EXAMPLES"}
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
         "-d", str(tmp / "doctrees"), str(tmp / "docs"), str(tmp / "html")],
        capture_output=True, text=True, env=env, timeout=900,
    )
    return result, tmp / "html"


@pytest.mark.slow
def test_docs_build_with_warnings_as_errors(built_docs):
    result, html = built_docs
    assert result.returncode == 0, f"sphinx failed:\n{result.stderr[-6000:]}"
    for page in ("index", "api", "changelog", "benchmarking", "auto_examples/index",
                 "user_guide/method", "user_guide/bad_input"):
        assert (html / f"{page}.html").is_file(), page


@pytest.mark.slow
def test_api_reference_documents_every_public_name(built_docs):
    result, html = built_docs
    assert result.returncode == 0, f"sphinx failed:\n{result.stderr[-6000:]}"
    api = (html / "api.html").read_text(encoding="utf-8")
    missing = []
    for module_name, prefix in PUBLIC_MODULES.items():
        module = importlib.import_module(module_name)
        for name in module.__all__:
            if name.startswith("__") or isinstance(getattr(module, name), type(sys)):
                continue
            if f'id="{prefix}{name}"' not in api:
                missing.append(prefix + name)
    assert not missing, f"not in docs/api.rst (enable or add them): {missing}"
