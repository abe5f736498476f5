"""The functions of ``scd/`` with a parameter annotated ``Config`` (the whole config), and their number.

    python count_config_params.py <checkout>
"""

import ast
import sys
from pathlib import Path

root = Path(sys.argv[1])
hits = []
for path in sorted(root.glob("scd/**/*.py")):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            arguments = [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs]
            whole = [a.arg for a in arguments if a.annotation is not None
                     and ast.unparse(a.annotation).strip("'\"") in ("Config", "Config | None", "Optional[Config]")]
            if whole:
                hits.append(f"{path.relative_to(root)}:{node.lineno} {node.name}({whole[0]})")
print("\n".join(hits))
print(len(hits))
