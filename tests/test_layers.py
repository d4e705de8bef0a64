"""The packages form layers that only point down (pyproject.toml lists them): no module imports a
package above its own, not even inside a function, and none edits sys.path to find another."""
import ast

import pytest

from densepolicy.paths import ROOT
LAYERS = ["densepolicy", "dataset", "agents", "pipeline"]   # bottom to top
# The sandbox's own interpreter finds the project from the directory its pool hands it.
SYS_PATH_ALLOWED = {"densepolicy/sandbox_worker.py"}


def imported_packages(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "import_module" \
                and node.args and isinstance(node.args[0], ast.Constant):
            names.add(str(node.args[0].value).split(".")[0])
    return names


def edits_sys_path(tree: ast.AST) -> bool:
    def is_sys_path(node):
        return isinstance(node, ast.Attribute) and node.attr == "path" and getattr(node.value, "id", "") == "sys"
    return any(isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
               and node.func.attr in ("insert", "append", "extend") and is_sys_path(node.func.value)
               for node in ast.walk(tree))


@pytest.mark.parametrize("layer", LAYERS)
def test_imports_point_down(layer):
    above = set(LAYERS[LAYERS.index(layer) + 1:])
    for path in sorted((ROOT / layer).glob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        wrong = imported_packages(tree) & above
        assert not wrong, f"{path.relative_to(ROOT)} imports {sorted(wrong)}, above {layer}"
        if str(path.relative_to(ROOT)) not in SYS_PATH_ALLOWED:
            assert not edits_sys_path(tree), f"{path.relative_to(ROOT)} edits sys.path"


def test_the_check_sees_imports_inside_functions():
    tree = ast.parse("def f():\n    from pipeline import launch\n    import agents.runner\n")
    assert imported_packages(tree) == {"pipeline", "agents"}
    assert edits_sys_path(ast.parse("import sys\nsys.path.insert(0, 'x')")) and not edits_sys_path(tree)
