"""The project's code uses PyTorch through its public API only: no
``torch.jit`` (deprecated; its warnings had to be silenced), no ``_``-name of
a torch module, tensor or ``nn.Module``, and no warnings filter that hides
PyTorch's warnings. A grep over the source, so that a private name creeping
back in fails here instead of at the next PyTorch upgrade."""
import re
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ["models", "demo", "explain", "training"]

ALLOWED: set[tuple[str, str]] = set()  # (file, name) pairs let through; none


def project_sources() -> list[Path]:
    files = [ROOT / "app.py"]
    for package in PACKAGES:
        files += sorted((ROOT / package).rglob("*.py"))
    return [f for f in files if f.exists()]


def code_lines(path: Path):
    """(line number, text without its comment) of every line of code."""
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        yield number, line.split("#", 1)[0]


def torch_private_names() -> set[str]:
    """``_``-names (not dunders) that tensors, parameters and modules have."""
    from torch.nn.modules import module as module_globals

    names = set()
    for thing in (torch.zeros(1), torch.nn.Parameter(torch.zeros(1)), torch.nn.Linear(1, 1), module_globals):
        names |= {n for n in dir(thing) if n.startswith("_") and not n.startswith("__")}
    return names


PRIVATE_PATH = re.compile(r"\btorch(?:\.\w+)*\.(_(?!_)\w+)")  # torch._C, ...; not dunders (__version__)
ATTRIBUTE = re.compile(r"\.(_[A-Za-z]\w*)\b")


def violations() -> list[str]:
    private = torch_private_names()
    found = []
    for path in project_sources():
        relative = path.relative_to(ROOT).as_posix()
        for number, code in code_lines(path):
            where = f"{relative}:{number}: {code.strip()}"
            if re.search(r"\btorch\.jit\b|\bjit\.(trace|script)\b", code):
                found.append(f"{where}  (torch.jit)")
            for match in PRIVATE_PATH.finditer(code):
                if (relative, match.group(0)) not in ALLOWED:
                    found.append(f"{where}  (private torch name {match.group(1)})")
            for match in ATTRIBUTE.finditer(code):
                if match.group(1) in private:
                    found.append(f"{where}  (private torch attribute {match.group(1)})")
            if re.search(r"\b(filterwarnings|simplefilter)\s*\(", code) and re.search(r"torch|Tracer|models", code):
                found.append(f"{where}  (a filter for PyTorch's warnings)")
    return found


def test_the_project_uses_public_pytorch_only():
    assert violations() == []


def test_pytest_does_not_hide_pytorchs_warnings():
    config = (ROOT / "pytest.ini").read_text(encoding="utf-8")
    assert not re.search(r"ignore:.*(torch|Tracer)", config)


@pytest.mark.parametrize("line, what", [
    ("x = torch.jit.trace(f, (x,))", "torch.jit"),
    ("for store in (module._parameters, module._buffers):", "_parameters"),
    ("key = (table._version, table.data_ptr())", "_version"),
    ("from torch.nn.modules import module; module._global_forward_hooks", "_global_forward_hooks"),
    ("graph: torch._C.Graph", "_C"),
    ('warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)', "filter"),
])
def test_the_check_finds_each_kind(tmp_path, monkeypatch, line, what):
    """The grep is not vacuous: each kind of use it forbids is reported."""
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "bad.py").write_text(f"import torch\n{line}\n", encoding="utf-8")
    (tmp_path / "app.py").write_text("", encoding="utf-8")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    found = violations()
    assert found and any(what in f for f in found), found
